"""The lab's theory: closed-form norm dynamics of scale-invariant embeddings, one pure function
per formula of ``docs/theory.md``, and :func:`predict`, the one place that says which formula
an optimizer's run follows.

Every formula cites its section of ``docs/theory.md`` (in this repository). The functions work
elementwise and broadcast (per-concept arrays in and out), hold no state, and are jit-compiled.

Notation (docs/theory.md §1): ``R = |x|`` the norm, ``η`` = ``lr``, ``λ`` = ``weight_decay``
(a step is ``x' = (1-ηλ) x - η u``, §2), ``s`` the source (loss gradient on the unit sphere,
``∇ₓℓ = s/R``), ``p`` the probability that a concept is in a minibatch, ``W² = |s̄|² + V²`` its
source energy per sighting, ``pw2 = p·W²`` per step. Time is ``t = η·k`` for step ``k``.

Modules (private, re-exported here): ``_core`` (§2–§9: identity, flows, SGD, momentum, the
frequent-concept AdamW equilibrium, drift balance), ``_adam`` (§8: Adam without decay, Adam+L2,
AdamP), ``_adamw`` (§8: AdamW at any frequency and finite ηλ; §8.6 lazy AdamW), ``_lion`` (§12), ``_momentum``
(§7: heavy ball, coupled, decoupled and projected), ``_schedule`` (§13: per-step learning rates), ``_predict``
(§15: optimizer → formula).
"""

from ._core import *  # noqa: F401,F403
from ._core import __all__ as _core_all
from ._adam import *  # noqa: F401,F403
from ._adam import __all__ as _adam_all
from ._adamw import *  # noqa: F401,F403
from ._adamw import __all__ as _adamw_all
from ._lion import *  # noqa: F401,F403
from ._lion import __all__ as _lion_all
from ._momentum import *  # noqa: F401,F403
from ._momentum import __all__ as _momentum_all
from ._schedule import *  # noqa: F401,F403
from ._schedule import __all__ as _schedule_all
from ._context import Context, Prediction
from ._predict import PREDICTIONS, predict

__all__ = [*_core_all, *_adam_all, *_adamw_all, *_lion_all, *_momentum_all, *_schedule_all,
           "Context", "Prediction", "predict", "PREDICTIONS"]
