#!/usr/bin/env python
"""Paper Fig. 2 on a task whose truth is known: sweep the weight decay λ, read the equilibrium
norm, and test docs/theory.md §6's fourth-root law R⁴ = ηpV²/(λ(2-ηλ)) under SGD+decay and AdamW.

Front end of :mod:`normflow.experiments.lambda_sweep` (the experiment lives in the package; ``normflow lambda_sweep``
runs the same ``main``). ``python sims/lambda_sweep.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.lambda_sweep import main

if __name__ == "__main__":
    script(main)
