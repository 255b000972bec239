#!/usr/bin/env python
"""Paper Fig. 1 on a synthetic task: under gradient flow the free table's norms stay constant
while a network's drift, at exactly the NTK radial rate D of docs/theory.md §9.

Front end of :mod:`normflow.experiments.ntk_drift` (the experiment lives in the package; ``normflow ntk_drift``
runs the same ``main``). ``python sims/ntk_drift.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.ntk_drift import main

if __name__ == "__main__":
    script(main)
