#!/usr/bin/env python
"""Main job: Diffrax gradient flow against a discrete optimizer, with docs/theory.md's formula for
that optimizer drawn against the measured norms, level by level of the concept tree.

Front end of :mod:`normflow.experiments.ode_vs_adam` (the experiment lives in the package; ``normflow ode_vs_adam``
runs the same ``main``). ``python sims/ode_vs_adam.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.ode_vs_adam import main

if __name__ == "__main__":
    script(main)
