#!/usr/bin/env python
"""Issue 16: the norm against measured word frequency at the size of a real vocabulary (30,000
words, wordfreq frequencies over all-MiniLM-L6-v2's whole-word tokens), under SGD+decay, AdamW
and lazy AdamW, beside each formula and beside the real model's token-norm curve.

Front end of :mod:`normflow.experiments.vocabulary` (the experiment lives in the package; ``normflow vocabulary``
runs the same ``main``). ``python sims/vocabulary.py --help`` lists its flags.
"""

import _early_signals  # noqa: F401  (first: Ctrl-C while JAX imports ends cleanly)

from normflow.cli import script
from normflow.experiments.vocabulary import main

if __name__ == "__main__":
    script(main)
