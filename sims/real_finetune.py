#!/usr/bin/env python
"""The intervention: fine-tune all-MiniLM-L6-v2's token table under SGD+decay and AdamW from the same
start, and hold each token's norm change against the lab's prediction for that optimizer.

Front end of :mod:`normflow.experiments.real_finetune` (the experiment lives in the package; ``normflow real_finetune``
runs the same ``main``). ``python sims/real_finetune.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.real_finetune import main

if __name__ == "__main__":
    script(main)
