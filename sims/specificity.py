#!/usr/bin/env python
"""Which optimizers imprint specificity in the norm, and in which direction: every optimizer of
``nf.OPTIMIZERS`` on a concept hierarchy (specificity = depth) and on a flat task with a
continuous spread (specificity = -spread), one table.

Front end of :mod:`normflow.experiments.specificity` (the experiment lives in the package; ``normflow specificity``
runs the same ``main``). ``python sims/specificity.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.specificity import main

if __name__ == "__main__":
    script(main)
