"""normflow: a JAX lab for how optimizer dynamics write the training signal into the norms of
scale-invariant (cosine) embeddings. See docs/theory.md (the lab's theory) and the README.

Time convention, everywhere: continuous time ``t = η · step``.
"""

from importlib import metadata as _metadata

from . import benchmark, losses, measure, models, optimizers, retrieval, tasks, theory, trajectory
from . import defaults, stats
from .defaults import DEFAULTS
from .flows import gradient_flow, gradient_flow_solution, log_times, modified_flow, sde_flow
from .losses import LOSSES, get_loss, info_nce, siglip, symmetric_info_nce
from .models import ConceptMLP, DualEncoder, EmbeddingTable
from .optimizers import OPTIMIZERS, Hyper, WarmupCosine, make_optimizer, project_radial
from .tasks import Batch, FlatTask, HierarchicalTask, zipf_weights
from .measure import SourceEnergy, radial_drift, source_energy, split_update
from .train import default_model, full_batch, full_batch_of, simulate, train
from .sweep import grid, sweep
from . import devices
from .devices import cpu_devices_per_core
from .trajectory import Trajectory, log_steps
from . import balance, ntk
from .balance import BalanceTerms, balance_terms
from .ntk import radial_votes

try:
    __version__ = _metadata.version("normflow")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.1.0"

__all__ = [
    "Batch", "ConceptMLP", "DualEncoder", "EmbeddingTable", "FlatTask", "HierarchicalTask", "Hyper",
    "LOSSES", "OPTIMIZERS", "Trajectory", "default_model", "full_batch", "full_batch_of", "get_loss", "gradient_flow",
    "gradient_flow_solution", "info_nce", "log_steps", "log_times", "losses", "make_optimizer", "models",
    "modified_flow", "optimizers", "project_radial", "retrieval", "theory", "sde_flow", "siglip", "simulate", "symmetric_info_nce",
    "tasks", "train", "trajectory", "zipf_weights", "__version__", "measure", "SourceEnergy", "radial_drift",
    "source_energy", "split_update",
]
__all__ += ["grid", "sweep", "devices", "cpu_devices_per_core"]
__all__ += ["DEFAULTS", "defaults", "stats", "WarmupCosine"]
__all__ += ["benchmark"]
__all__ += ["balance", "ntk", "BalanceTerms", "balance_terms", "radial_votes"]
