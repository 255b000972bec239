#!/usr/bin/env python
"""Paper Fig. 3 and Fig. 5 on a synthetic Zipf task: predicted vs observed equilibrium norm from
docs/theory.md §9's drift balance, for the free table and for a network (concept table + shared MLP).

Front end of :mod:`normflow.experiments.balance_fit` (the experiment lives in the package; ``normflow balance_fit``
runs the same ``main``). ``python sims/balance_fit.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.balance_fit import main

if __name__ == "__main__":
    script(main)
