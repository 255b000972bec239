"""normflow: a JAX lab for how optimizer dynamics write the training signal into the norms of
scale-invariant (cosine) embeddings. See docs/theory.md (the lab's theory) and the README.

Time convention, everywhere: continuous time ``t = η · step``.
"""

from importlib import metadata as _metadata

from . import balance, defaults, devices, losses, measure, models, ntk, optimizers, retrieval, stats, tasks, theory
from . import trajectory, validity
from ._lazy_adam import lazy_adam, lazy_adamw, scale_by_lazy_adam
from ._sparse import SPARSE_OPTIMIZERS, SparseOptState
from .balance import BalanceTerms, balance_terms
from .defaults import DEFAULTS
from .devices import cpu_devices_per_core
from .flows import gradient_flow, gradient_flow_solution, log_times, modified_flow, sde_flow
from .losses import LOSSES, get_loss, info_nce, siglip, symmetric_info_nce
from .measure import SourceEnergy, radial_drift, source_energy, split_update
from .models import AbstractEmbeddingModel, ConceptMLP, DualEncoder, EmbeddingTable
from .ntk import radial_votes
from .optimizers import OPTIMIZERS, Hyper, WarmupCosine, make_optimizer, project_radial
from .sweep import grid, sweep
from .tasks import AbstractTask, Batch, FlatTask, HierarchicalTask, zipf_weights
from .train import default_model, full_batch, full_batch_of, simulate, train
from .trajectory import Trajectory, log_steps

try:
    __version__ = _metadata.version("normflow")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.1.0"

__all__ = [
    # modules
    "balance", "defaults", "devices", "losses", "measure", "models", "ntk", "optimizers", "retrieval", "stats",
    "tasks", "theory", "trajectory", "validity",
    # tasks and models
    "AbstractTask", "Batch", "FlatTask", "HierarchicalTask", "zipf_weights",
    "AbstractEmbeddingModel", "ConceptMLP", "DualEncoder", "EmbeddingTable", "default_model",
    # losses and optimizers
    "LOSSES", "get_loss", "info_nce", "siglip", "symmetric_info_nce",
    "OPTIMIZERS", "DEFAULTS", "Hyper", "WarmupCosine", "make_optimizer", "project_radial",
    "lazy_adam", "lazy_adamw", "scale_by_lazy_adam", "SPARSE_OPTIMIZERS", "SparseOptState",
    # engines
    "train", "simulate", "sweep", "grid", "full_batch", "full_batch_of", "Trajectory", "log_steps",
    "gradient_flow", "gradient_flow_solution", "modified_flow", "sde_flow", "log_times", "cpu_devices_per_core",
    # measurements
    "SourceEnergy", "source_energy", "radial_drift", "split_update", "BalanceTerms", "balance_terms", "radial_votes",
    "__version__",
]
