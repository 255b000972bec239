#!/usr/bin/env python
"""Learning-rate schedules (docs/theory.md §13): warmup + cosine decay to 0 under SGD+decay and
AdamW, with the per-step mean-field maps drawn against the measured norms along the whole run.

Front end of :mod:`normflow.experiments.schedule` (the experiment lives in the package; ``normflow schedule``
runs the same ``main``). ``python sims/schedule.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.schedule import main

if __name__ == "__main__":
    script(main)
