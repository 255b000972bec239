#!/usr/bin/env python
"""docs/theory.md §8.2: under AdamW the norm encodes frequency p through the gaps between sightings.
Zipf-distributed concepts (p spanning about four decades), AdamW with β₂ ∈ {0.99, 0.999} and
SGD+decay beside it; norm against p with the predicted curves.

Front end of :mod:`normflow.experiments.frequency` (the experiment lives in the package; ``normflow frequency``
runs the same ``main``). ``python sims/frequency.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.frequency import main

if __name__ == "__main__":
    script(main)
