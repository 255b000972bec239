#!/usr/bin/env python
"""The validity map (docs/theory.md §16): where each equilibrium formula holds, measured over its small groups.
One compiled sweep per formula family on a Zipf task; heatmaps of the error with 5 % and 10 % contours.

Front end of :mod:`normflow.experiments.validity` (the experiment lives in the package; ``normflow validity``
runs the same ``main``). ``python sims/validity.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.validity import main

if __name__ == "__main__":
    script(main)
