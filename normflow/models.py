"""Embedding models: the free table (docs/theory.md §2–8) and two network cases (docs/theory.md §9).

Every model is an ``eqx.Module`` with the same three methods:

- ``embed_concepts(ids) -> float[B, d]``: embeddings of the concepts in a batch;
- ``concept_embeddings() -> float[N, d]``: all concept embeddings (what the lab records);
- ``embed_contexts(contexts) -> float[B, d]``: the context side of the contrastive pair.

Trainable parameters are the model's inexact arrays (``eqx.is_inexact_array``). For the free
table the contexts are data (fixed unit vectors), so the only parameter is the table and
``x_i`` is literally the parameter row ``i``.
"""

from __future__ import annotations

import abc
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = ["AbstractEmbeddingModel", "EmbeddingTable", "ConceptMLP", "DualEncoder", "is_free_table"]


class AbstractEmbeddingModel(eqx.Module):
    """A contrastive embedding model: what the engines train and the lab measures.

    Its trainable parameters are its inexact arrays (``eqx.is_inexact_array``); the loss of a
    batch is :meth:`normflow.tasks.AbstractTask.loss`, on ``embed_concepts`` against
    ``embed_contexts``; the norms the lab records are those of ``concept_embeddings``.
    """

    @abc.abstractmethod
    def embed_concepts(self, ids: Int[Array, " B"]) -> Float[Array, "B d"]:
        """Embeddings of the concepts ``ids`` of a batch."""

    @abc.abstractmethod
    def concept_embeddings(self) -> Float[Array, "N d"]:
        """Every concept's embedding (row ``i`` = concept ``i``)."""

    @abc.abstractmethod
    def embed_contexts(self, contexts: Float[Array, "B c"]) -> Float[Array, "B d"]:
        """The context side of the contrastive pairs."""


@functools.partial(jax.jit, static_argnums=(1, 2, 4))  # one compile, not one per eager op
def _random_rows(key, n, d, norm, dtype):
    v = jax.random.normal(key, (n, d), dtype=dtype)
    return norm * v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True))


class EmbeddingTable(AbstractEmbeddingModel):
    """One free vector per concept: ``x_i = weight[i]`` (the clean case of docs/theory.md §2–8).

    Rows start in uniformly random directions with norm ``init_norm``.
    """

    weight: Float[Array, "N d"]

    def __init__(self, num_concepts: int, dim: int, *, key: PRNGKeyArray, init_norm: float = 1.0, dtype=jnp.float32):
        self.weight = _random_rows(key, num_concepts, dim, init_norm, dtype)

    def embed_concepts(self, ids: Int[Array, " B"]) -> Float[Array, "B d"]:
        return self.weight[ids]

    def concept_embeddings(self) -> Float[Array, "N d"]:
        return self.weight

    def embed_contexts(self, contexts: Float[Array, "B c"]) -> Float[Array, "B c"]:
        return contexts


class ConceptMLP(AbstractEmbeddingModel):
    """Concept table followed by a shared MLP encoder: ``x(a) = f_θ(table[a])`` (docs/theory.md §9).

    The shared MLP couples concepts through the NTK ``K(a,b) = J(a)J(b)ᵀ``, so gradient flow
    moves norms even though the loss is scale-invariant. Contexts are data, as for the table.
    """

    table: Float[Array, "N h"]
    mlp: eqx.nn.MLP

    def __init__(
        self,
        num_concepts: int,
        dim: int,
        *,
        key: PRNGKeyArray,
        hidden: int = 64,
        depth: int = 2,
        activation=jax.nn.tanh,
        dtype=jnp.float32,
    ):
        k_t, k_m = jax.random.split(key)
        # Input rows with unit-variance coordinates (norm sqrt(hidden)).
        self.table = _random_rows(k_t, num_concepts, hidden, math.sqrt(hidden), dtype)
        self.mlp = eqx.nn.MLP(hidden, dim, hidden, depth, activation=activation, key=k_m, dtype=dtype)

    def embed_concepts(self, ids: Int[Array, " B"]) -> Float[Array, "B d"]:
        return jax.vmap(self.mlp)(self.table[ids])

    def concept_embeddings(self) -> Float[Array, "N d"]:
        return jax.vmap(self.mlp)(self.table)

    def embed_contexts(self, contexts: Float[Array, "B c"]) -> Float[Array, "B c"]:
        return contexts


class DualEncoder(AbstractEmbeddingModel):
    """CLIP-like dual encoder: a concept tower (table + MLP) and a context tower (MLP).

    Both towers output ``dim``-vectors; the loss sees only their cosines, so the norms of
    both sides are free (and recorded for the concept side).
    """

    concept_tower: ConceptMLP
    context_tower: eqx.nn.MLP

    def __init__(
        self,
        num_concepts: int,
        dim: int,
        *,
        key: PRNGKeyArray,
        context_dim: int | None = None,
        hidden: int = 64,
        depth: int = 2,
        activation=jax.nn.tanh,
        dtype=jnp.float32,
    ):
        k_a, k_b = jax.random.split(key)
        cdim = dim if context_dim is None else context_dim
        self.concept_tower = ConceptMLP(num_concepts, dim, key=k_a, hidden=hidden, depth=depth, activation=activation, dtype=dtype)
        self.context_tower = eqx.nn.MLP(cdim, dim, hidden, depth, activation=activation, key=k_b, dtype=dtype)

    def embed_concepts(self, ids: Int[Array, " B"]) -> Float[Array, "B d"]:
        return self.concept_tower.embed_concepts(ids)

    def concept_embeddings(self) -> Float[Array, "N d"]:
        return self.concept_tower.concept_embeddings()

    def embed_contexts(self, contexts: Float[Array, "B c"]) -> Float[Array, "B d"]:
        return jax.vmap(self.context_tower)(contexts)


def is_free_table(model) -> bool:
    """True for the free table, where each concept's embedding is its own parameter row."""
    return isinstance(model, EmbeddingTable)
