"""Synthetic contrastive tasks whose ground truth (specificity, frequency, spread) is known.

A task is an ``eqx.Module`` holding arrays only, so it can be closed over or passed into
``jit``/``vmap``. ``task.sample(key, batch_size)`` draws a :class:`Batch` of concept ids and
unit-norm context vectors; it is deterministic given the key.

Sampling model (shared by every task): each of the ``batch_size`` slots draws a concept id
i.i.d. from the categorical distribution ``weights`` (by inverse CDF, :meth:`sample_concepts`);
concept ``i`` then draws a context.
The probability that concept ``i`` is in a batch (and so receives a gradient in a step,
docs/theory.md §1's ``p_i``) is ``frequency_i = 1 - (1 - weights_i)^batch_size``; use
:meth:`frequency` with the batch size of the run.
"""

from __future__ import annotations

import functools
import math

import abc
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .losses import batch_loss

__all__ = ["AbstractTask", "Batch", "HierarchicalTask", "FlatTask", "FULL_BATCH_FOLD", "zipf_weights"]


class Batch(eqx.Module):
    """A minibatch: ``concepts`` int[B] and unit-norm ``contexts`` float[B, dim]."""

    concepts: Int[Array, " B"]
    contexts: Float[Array, "B dim"]


FULL_BATCH_FOLD = 2**31 - 1  # the full batch's key: fold_in(data key, this), apart from every step's fold_in(k)


class AbstractTask(eqx.Module):
    """What the engines need of a task (``train``, ``sweep``, the flows, the measurements).

    A subclass holds arrays only (so it can be passed into ``jit``/``vmap``) and provides
    ``sample``, ``num_concepts``, ``dim``, ``dtype`` and a 0-d ``temperature``. The loss of a
    batch and the full batch of a run are defined here, once, for every task.
    """

    temperature: eqx.AbstractVar[Float[Array, ""]]

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, batch_size: int) -> Batch:
        """``batch_size`` (concept id, context) pairs, deterministic given ``key``."""

    @property
    @abc.abstractmethod
    def num_concepts(self) -> int:
        """Number of concepts ``N`` (rows of the concept embeddings)."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Dimension of a context as the task emits it."""

    @property
    @abc.abstractmethod
    def dtype(self):
        """Float dtype of the task's arrays (and of the default model)."""

    def loss(self, model, batch: Batch, loss_fn) -> Float[Array, ""]:
        """The loss of one minibatch under ``model``: the one closure every engine
        differentiates (:func:`normflow.losses.batch_loss` at this task's temperature)."""
        return batch_loss(model, batch, loss_fn, self.temperature)

    def full_batch(self, data_key: PRNGKeyArray, n_samples: int) -> Batch:
        """The fixed ``n_samples`` set of a run whose data key is ``data_key``: the lab's one
        convention, the same set for ``gd`` in ``train``/``sweep`` and for the flows."""
        return self.sample(jax.random.fold_in(data_key, FULL_BATCH_FOLD), n_samples)

    def prepared(self) -> "AbstractTask":
        """This task with whatever its ``sample`` can compute once per run computed; the
        engines call it once per compiled chunk, outside their step loop, and it must not
        change a draw. The default: the task itself."""
        return self


def _normalize(v: Float[Array, "... d"]) -> Float[Array, "... d"]:
    return v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True))


def zipf_weights(n: int, exponent: float, dtype=jnp.float32) -> Float[Array, " n"]:
    """Sampling weights ``w_r ∝ r^{-exponent}`` for ranks r = 1..n (exponent 0 = uniform)."""
    if exponent < 0:
        raise ValueError(f"zipf exponent must be >= 0, got {exponent}")
    r = np.arange(1, n + 1, dtype=np.float64)
    w = r ** (-float(exponent))
    return jnp.asarray(w / w.sum(), dtype=dtype)


# the search tree's fan-out: at most this many comparisons per query and level
_FAN_OUT = 32


def _search_levels(cdf: Float[Array, " N"]) -> tuple[Float[Array, "nodes m"], ...]:
    """The levels of an ``m``-ary search tree over a non-decreasing ``cdf``, padded with
    ``inf`` to ``m^L`` entries (``L = ceil(log2(N)/log2(F))`` levels for the fan-out
    ``F = _FAN_OUT``, and the smallest ``m <= F`` with ``m^L >= N``).

    Level ``j`` (0 = root) has ``m^j`` nodes of ``m`` keys: the last entries of the ``m``
    sub-blocks of ``m^(L-1-j)`` entries below the node; the last level holds ``cdf`` itself.
    """
    n = cdf.shape[0]
    bits = _FAN_OUT.bit_length() - 1  # log2 of the fan-out (a power of 2)
    depth = max(1, -(-max(n - 1, 1).bit_length() // bits))  # ceil(log2(n) / log2(fan-out))
    m = 2
    while m**depth < n:
        m += 1
    padded = jnp.concatenate([cdf, jnp.full((m**depth - n,), jnp.inf, cdf.dtype)])
    return tuple(padded.reshape(m ** (j + 1), -1)[:, -1].reshape(-1, m) for j in range(depth))


def _count_in_levels(levels: tuple[Float[Array, "nodes m"], ...], u: Float[Array, " B"]) -> Int[Array, " B"]:
    """:func:`_count_at_most` on a cdf already laid out by :func:`_search_levels`."""
    idx = jnp.zeros(u.shape, jnp.int32)
    for j, keys in enumerate(levels):
        m = keys.shape[1]
        # sub-blocks at or below u (one is, iff its last entry is); the next one holds the first
        # entry above u, unless all are at or below u (then the clamp descends into the last)
        c = jnp.sum(keys[idx] <= u[:, None], axis=1).astype(jnp.int32)
        idx = idx * m + (jnp.minimum(c, m - 1) if j < len(levels) - 1 else c)
    return idx


def _count_at_most(cdf: Float[Array, " N"], u: Float[Array, " B"]) -> Int[Array, " B"]:
    """``#{i : cdf_i <= u_b}`` for a non-decreasing ``cdf``: ``searchsorted(cdf, u, side="right")``,
    exactly (a count of the same comparisons, so the same integers).

    A search tree of fan-out ``m <= 32`` (:func:`_search_levels`): at each of its
    ``L = ceil(log2(N)/5)`` levels one node's ``m`` keys are compared with ``u`` in one fused,
    vectorised kernel, ``L·m`` comparisons per query in all (64 at 1,024 entries, 80 at
    131,072). A binary search is ``log2 N`` rounds of one dependent gather each (a loop of
    small kernels, each a launch on a GPU); two levels of ``sqrt(N)`` keys cost ``2·sqrt(N)``
    comparisons (724 at 131,072: 256 draws with their uniforms took 104 µs there, against
    22 µs for the tree, on a 2-core CPU).
    """
    return _count_in_levels(_search_levels(cdf), u)


class SamplingTable(eqx.Module):
    """What the inverse-CDF sampler computes from ``weights``, computed once: the search tree
    over the cumulative weights (:func:`_search_levels`), their total, and the last concept of
    positive weight. Built by :meth:`_Task.prepared`; a function of ``weights`` only.

    The cumulative sum is made non-decreasing by a running maximum: XLA's parallel ``cumsum``
    can dip by an ulp, and the search assumes order. Where it does not dip (every task of the
    lab's sims in float32 and float64) the running maximum is the sum itself.
    """

    levels: tuple[Float[Array, "nodes m"], ...]
    total: Float[Array, ""]
    last: Int[Array, ""]

    def __init__(self, weights: Float[Array, " N"]):
        cdf = jax.lax.cummax(jnp.cumsum(weights))
        self.levels = _search_levels(cdf)
        self.total = cdf[-1]
        self.last = (weights.shape[0] - 1 - jnp.argmax(weights[::-1] > 0)).astype(jnp.int32)


class _Task(AbstractTask):
    """Shared sampling: concept ids from ``weights``, a context from the concept's leaves."""

    weights: Float[Array, " N"]
    leaf_centers: Float[Array, "L dim"]
    leaf_lo: Int[Array, " N"]
    leaf_count: Int[Array, " N"]
    # 0-d arrays (not static), so a changed temperature does not recompile and tasks can be vmapped
    context_noise: Float[Array, ""]
    temperature: Float[Array, ""]
    # the sampler's once-computed table (:meth:`prepared`); None (as every subclass __init__
    # sets it): computed at every draw
    sampling_table: SamplingTable | None
    # (no defaults: every field is set by the subclass __init__)

    @property
    def num_concepts(self) -> int:
        return self.weights.shape[0]

    @property
    def dim(self) -> int:
        return self.leaf_centers.shape[1]

    @property
    def dtype(self):
        return self.leaf_centers.dtype

    def frequency(self, batch_size: int) -> Float[Array, " N"]:
        """``p_i``: probability that concept i appears at least once in a batch (docs/theory.md §1)."""
        return 1.0 - (1.0 - self.weights) ** batch_size

    def sample_concepts(self, key: PRNGKeyArray, batch_size: int) -> Int[Array, " B"]:
        """``batch_size`` i.i.d. concept ids from ``weights``, by inverse CDF.

        One uniform ``u`` per slot, scaled by the total weight; the id is the first ``i`` with
        ``cdf_i > u`` (``searchsorted(cumsum(weights), u, side="right")``, computed by a search
        tree: :func:`_count_at_most`), so a concept of weight 0 is not drawn (the cdf is made
        non-decreasing: :class:`SamplingTable`). This is the categorical distribution of
        ``weights`` up to float rounding of the cumulative sum (about 1e-7 absolute per concept
        in float32), at one uniform per slot and ``L·m`` comparisons (64 at 1,024 concepts,
        80 at 131,072) instead of the ``N`` Gumbel draws per slot of
        ``jax.random.categorical`` (a whole ``sample`` of 256 over 1,024 concepts: 0.13 ms
        instead of 10 ms on a 2-core CPU; see ``benchmarks/run.py``). The tree is built from
        ``weights`` at each call, unless the task was :meth:`prepared`.
        """
        table = self.sampling_table if self.sampling_table is not None else SamplingTable(self.weights)
        u = jax.random.uniform(key, (batch_size,), dtype=table.total.dtype) * table.total
        ids = _count_in_levels(table.levels, u)
        # u < total up to rounding; a u that rounds onto the total picks the last concept
        # of positive weight
        return jnp.minimum(ids, table.last).astype(jnp.int32)

    def prepared(self) -> "_Task":
        """This task with its :class:`SamplingTable` computed, so that a step's
        :meth:`sample_concepts` reads it instead of summing all ``N`` weights again (the
        engines call this once per compiled chunk, outside their step loop: at 131,072
        concepts the sum is most of a sparse step). The draws are the same integers.
        The table is a function of ``weights`` at the time of the call: a task whose
        ``weights`` are replaced afterwards (``eqx.tree_at``) must be prepared again."""
        # a copy with one field set (``eqx.tree_at`` cannot address a field that holds None)
        new = object.__new__(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(new, f.name, getattr(self, f.name))
        object.__setattr__(new, "sampling_table", SamplingTable(self.weights))
        return new

    def sample(self, key: PRNGKeyArray, batch_size: int) -> Batch:
        """Draw ``batch_size`` (concept, context) pairs; deterministic given ``key``."""
        k_c, k_leaf, k_noise = jax.random.split(key, 3)
        concepts = self.sample_concepts(k_c, batch_size)
        u = jax.random.uniform(k_leaf, (batch_size,), dtype=self.dtype)
        count = self.leaf_count[concepts]
        offset = jnp.minimum(jnp.floor(u * count).astype(jnp.int32), count - 1)
        leaf = self.leaf_lo[concepts] + offset
        noise = jax.random.normal(k_noise, (batch_size, self.dim), dtype=self.dtype)
        ctx = self.leaf_centers[leaf] + self.context_noise * noise / math.sqrt(self.dim)
        return Batch(concepts=concepts, contexts=_normalize(ctx))

    def context_mean(self) -> Float[Array, "N dim"]:
        """Mean direction of each concept's leaves (noise-free context mean, not normalised)."""
        return _context_mean(self.leaf_centers, self.leaf_lo, self.leaf_count)


def _context_mean(leaf_centers, leaf_lo, leaf_count):
    cs = jnp.cumsum(jnp.concatenate([jnp.zeros((1, leaf_centers.shape[1]), leaf_centers.dtype), leaf_centers]), axis=0)
    total = cs[leaf_lo + leaf_count] - cs[leaf_lo]
    return total / leaf_count[:, None].astype(leaf_centers.dtype)


class HierarchicalTask(_Task):
    """A concept tree: level 0 = most generic (``branching`` roots) … ``depth-1`` = leaves.

    Directions are generated top-down: a level-0 node is a random unit vector; a child is
    ``normalize(parent + level_spread[l] * g)`` with ``g ~ N(0, I/dim)``. A context of a concept
    is drawn uniformly from the leaves below it, plus ``context_noise * g``, normalised, so a
    generic concept has spread-out contexts and a specific one narrow contexts.

    Concepts are numbered level by level (all of level 0, then level 1, …), and leaves in
    depth-first order so that each concept's leaves are contiguous.

    Per-concept arrays: ``depth`` (level), ``spread`` (``1 - |mean leaf direction|²``, the
    noise-free context dispersion: 0 for a leaf, larger for generic concepts), ``weights``
    (sampling weights; ``frequency(batch_size)`` gives p), ``num_concepts``.
    """

    depth: Int[Array, " N"]
    spread: Float[Array, " N"]

    def __init__(
        self,
        depth: int = 3,
        branching: int = 4,
        dim: int = 32,
        *,
        key: PRNGKeyArray,
        level_spread: float | tuple[float, ...] = 0.8,
        context_noise: float = 0.3,
        frequency: str = "uniform",  # "uniform" or "zipf" (checked, with a one-line ValueError)
        zipf_exponent: float = 1.0,
        temperature: float = 0.1,
        dtype=jnp.float32,
    ):
        if depth < 1 or branching < 1 or dim < 2:
            raise ValueError(f"need depth >= 1, branching >= 1, dim >= 2; got {depth}, {branching}, {dim}")
        if isinstance(level_spread, (int, float)):
            level_spread = (float(level_spread),) * depth
        if len(level_spread) != depth:
            raise ValueError(f"level_spread needs {depth} entries, got {len(level_spread)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if frequency not in ("uniform", "zipf"):
            raise ValueError(f"frequency must be 'uniform' or 'zipf', got {frequency!r}")
        # Node j at level l covers leaves [j * b^(depth-1-l), (j+1) * b^(depth-1-l)).
        sizes = [branching ** (lvl + 1) for lvl in range(depth)]
        spans = [branching ** (depth - 1 - lvl) for lvl in range(depth)]
        self.leaf_lo = jnp.asarray(np.concatenate([np.arange(n) * sp for n, sp in zip(sizes, spans)]), jnp.int32)
        self.leaf_count = jnp.asarray(np.concatenate([np.full(n, sp) for n, sp in zip(sizes, spans)]), jnp.int32)
        self.depth = jnp.asarray(np.concatenate([np.full(n, lvl) for lvl, n in enumerate(sizes)]), jnp.int32)
        self.context_noise = jnp.asarray(context_noise, dtype)
        self.temperature = jnp.asarray(temperature, dtype)
        self.sampling_table = None
        self.leaf_centers, self.weights, self.spread = _hierarchy_arrays(
            key, self.leaf_lo, self.leaf_count, depth=depth, branching=branching, dim=dim,
            level_spread=tuple(level_spread), zipf_exponent=zipf_exponent if frequency == "zipf" else None,
            dtype=dtype)
        assert branching**depth == self.leaf_centers.shape[0]

    @property
    def num_levels(self) -> int:
        return int(np.max(np.asarray(self.depth))) + 1


class FlatTask(_Task):
    """Concepts with a continuous specificity knob: each concept owns ``leaves_per_concept``
    context directions spread around its own centre with a per-concept ``spread_scale`` drawn
    uniformly from ``spread_range``; a bigger scale = a more generic concept.

    ``spread`` is ``1 - |mean leaf direction|²`` as for :class:`HierarchicalTask`; ``depth`` is
    absent (use ``spread`` or ``spread_scale`` as the regressor).

    ``weights`` (optional): given sampling weights, one per concept (e.g. measured word
    frequencies, :func:`normflow.real.vocabulary_frequencies`), normalised to sum 1 in float64;
    concept ``i`` then has weight ``weights[i]`` in that order (no random ranking), with the same
    random draws for everything else. Only with ``frequency="uniform"`` (the default; a
    ``ValueError`` otherwise). In float32 the inverse-CDF sampler resolves a weight only to about
    ``1e-7`` (the uniform's grid): weights far below that need ``dtype=jnp.float64``.
    """

    spread: Float[Array, " N"]
    spread_scale: Float[Array, " N"]

    def __init__(
        self,
        num_concepts: int = 64,
        dim: int = 32,
        *,
        key: PRNGKeyArray,
        spread_range: tuple[float, float] = (0.1, 2.0),
        leaves_per_concept: int = 16,
        context_noise: float = 0.1,
        frequency: str = "uniform",  # "uniform" or "zipf" (checked, with a one-line ValueError)
        zipf_exponent: float = 1.0,
        temperature: float = 0.1,
        dtype=jnp.float32,
        weights: Float[np.ndarray, " N"] | None = None,
    ):
        if num_concepts < 1 or dim < 2 or leaves_per_concept < 1:
            raise ValueError(
                f"need num_concepts >= 1, dim >= 2, leaves_per_concept >= 1; got "
                f"{num_concepts}, {dim}, {leaves_per_concept}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if frequency not in ("uniform", "zipf"):
            raise ValueError(f"frequency must be 'uniform' or 'zipf', got {frequency!r}")
        if weights is not None:
            if frequency != "uniform":
                raise ValueError(f"give weights or frequency={frequency!r}, not both")
            w = np.asarray(weights, np.float64)
            if w.shape != (num_concepts,):
                raise ValueError(f"weights needs shape ({num_concepts},), got {w.shape}")
            if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
                bad = w[~(np.isfinite(w) & (w >= 0))]
                raise ValueError(f"weights must be finite, >= 0 and not all 0, got {bad[0] if bad.size else 0.0}")
        self.leaf_lo = jnp.arange(num_concepts, dtype=jnp.int32) * leaves_per_concept
        self.leaf_count = jnp.full((num_concepts,), leaves_per_concept, dtype=jnp.int32)
        self.context_noise = jnp.asarray(context_noise, dtype)
        self.temperature = jnp.asarray(temperature, dtype)
        self.sampling_table = None
        self.leaf_centers, self.weights, self.spread, self.spread_scale = _flat_arrays(
            key, self.leaf_lo, self.leaf_count, num_concepts=num_concepts, dim=dim,
            spread_range=tuple(float(v) for v in spread_range), leaves_per_concept=leaves_per_concept,
            zipf_exponent=zipf_exponent if frequency == "zipf" else None, dtype=dtype)
        if weights is not None:
            self.weights = jnp.asarray(w / w.sum(), dtype)


# The tasks' arrays are built by one compiled program each (not op by op: on a CPU each eager
# op is a compile of its own, ~50 ms), from the same random draws in the same order.


def _ranked_weights(key, n, zipf_exponent, dtype):
    """Uniform weights (``zipf_exponent`` None), or Zipf over a random ranking of the concepts
    (frequency independent of specificity)."""
    if zipf_exponent is None:
        return zipf_weights(n, 0.0, dtype)
    perm = jax.random.permutation(key, n)
    return zipf_weights(n, zipf_exponent, dtype)[jnp.argsort(perm)]


def _spread(leaf_centers, leaf_lo, leaf_count):
    mean = _context_mean(leaf_centers, leaf_lo, leaf_count)
    return 1.0 - jnp.sum(mean * mean, axis=-1)


@functools.partial(jax.jit, static_argnames=("depth", "branching", "dim", "level_spread", "zipf_exponent", "dtype"))
def _hierarchy_arrays(key, leaf_lo, leaf_count, *, depth, branching, dim, level_spread, zipf_exponent, dtype):
    keys = jax.random.split(key, depth + 1)
    # Level directions, top-down.
    dirs = _normalize(jax.random.normal(keys[0], (branching, dim), dtype=dtype))
    for lvl in range(1, depth):
        parent = jnp.repeat(dirs, branching, axis=0)
        g = jax.random.normal(keys[lvl], parent.shape, dtype=dtype) / math.sqrt(dim)
        dirs = _normalize(parent + level_spread[lvl] * g)
    weights = _ranked_weights(keys[depth], leaf_lo.shape[0], zipf_exponent, dtype)
    return dirs, weights, _spread(dirs, leaf_lo, leaf_count)


@functools.partial(jax.jit, static_argnames=("num_concepts", "dim", "spread_range", "leaves_per_concept",
                                             "zipf_exponent", "dtype"))
def _flat_arrays(key, leaf_lo, leaf_count, *, num_concepts, dim, spread_range, leaves_per_concept, zipf_exponent,
                 dtype):
    k_c, k_s, k_l, k_p = jax.random.split(key, 4)
    centers = _normalize(jax.random.normal(k_c, (num_concepts, dim), dtype=dtype))
    lo_s, hi_s = spread_range
    scale = jax.random.uniform(k_s, (num_concepts,), dtype=dtype, minval=lo_s, maxval=hi_s)
    g = jax.random.normal(k_l, (num_concepts, leaves_per_concept, dim), dtype=dtype)
    leaves = _normalize(centers[:, None, :] + scale[:, None, None] * g / math.sqrt(dim))
    leaf_centers = leaves.reshape(num_concepts * leaves_per_concept, dim)
    weights = _ranked_weights(k_p, num_concepts, zipf_exponent, dtype)
    return leaf_centers, weights, _spread(leaf_centers, leaf_lo, leaf_count), scale
