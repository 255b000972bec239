"""Norm-aware retrieval (docs/theory.md §10): the metrics (nDCG@k of norm-weighted cosine
scores, ``_metrics.py``) and the synthetic corpus they are measured on (documents on a concept
tree, which is also a task to train on, ``_corpus.py``), under one name."""

from ._corpus import *  # noqa: F403
from ._corpus import __all__ as _corpus_all
from ._metrics import *  # noqa: F403
from ._metrics import __all__ as _metrics_all

__all__ = [*_metrics_all, *_corpus_all]
