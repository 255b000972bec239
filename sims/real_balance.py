#!/usr/bin/env python
"""Paper Fig. 3 and Fig. 5 on the real model: per-token gradient statistics of all-MiniLM-L6-v2's token table
under its own contrastive loss, and the balance's predicted norm against the observed.

Front end of :mod:`normflow.experiments.real_balance` (the experiment lives in the package; ``normflow real_balance``
runs the same ``main``). ``python sims/real_balance.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.real_balance import main

if __name__ == "__main__":
    script(main)
