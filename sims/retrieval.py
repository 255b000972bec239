#!/usr/bin/env python
"""Norm-aware retrieval (paper Fig. 4 and Fig. 6): when does scoring cos(q,d)·|d|^α beat cosine?

Front end of :mod:`normflow.experiments.retrieval` (the experiment lives in the package; ``normflow retrieval``
runs the same ``main``). ``python sims/retrieval.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.retrieval import main

if __name__ == "__main__":
    script(main)
