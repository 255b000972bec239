#!/usr/bin/env python
"""Norm probe of all-MiniLM-L6-v2: token-table norms and single-word encoding norms against word
frequency and WordNet depth (Spearman, partial given frequency, per zipf bin, two-branch fit).

Front end of :mod:`normflow.experiments.real_probe` (the experiment lives in the package; ``normflow real_probe``
runs the same ``main``). ``python sims/real_probe.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.real_probe import main

if __name__ == "__main__":
    script(main)
