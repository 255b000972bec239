#!/usr/bin/env python
"""Paper Fig. 4 and Fig. 6 on the real model (all-MiniLM-L6-v2): norm-weighted retrieval on a
WordNet gloss ↔ word benchmark, against a shuffled-norm null and the norm-side baselines.

Front end of :mod:`normflow.experiments.real_retrieval` (the experiment lives in the package;
``normflow real_retrieval`` runs the same ``main``). ``python sims/real_retrieval.py --help``
lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.real_retrieval import main

if __name__ == "__main__":
    script(main)
