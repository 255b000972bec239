"""Scale-invariant contrastive losses on cosines (docs/theory.md §1).

Each loss takes anchor embeddings ``x`` [B, d] (the concepts) and context embeddings ``y``
[B, d] (row b is the positive of row b; the other rows are in-batch negatives) and depends on
them only through the directions ``x̂ = x/|x|`` and ``ŷ``. So ``∇ₓℓ ⊥ x`` exactly and
``|∇ₓℓ| ∝ 1/|x|`` (Euler's theorem for a degree-0 function).

The normalisation uses ``x · rsqrt(|x|²)`` with no epsilon, so scale invariance is exact to
rounding (an epsilon would break it near zero).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

__all__ = ["cosine_logits", "info_nce", "symmetric_info_nce", "siglip", "LOSSES", "get_loss", "batch_loss"]

LossFn = Callable[..., Scalar]


def _unit(v: Float[Array, "B d"]) -> Float[Array, "B d"]:
    return v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True))


def cosine_logits(x: Float[Array, "B d"], y: Float[Array, "B d"], temperature: float) -> Float[Array, "B B"]:
    """``logits[a, b] = cos(x_a, y_b) / temperature``."""
    return (_unit(x) @ _unit(y).T) / temperature


def info_nce(x: Float[Array, "B d"], y: Float[Array, "B d"], temperature: float = 0.1) -> Scalar:
    """One-sided InfoNCE (concept → contexts): mean over a of ``-log softmax_b(logits[a])[a]``."""
    logits = cosine_logits(x, y, temperature)
    return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=-1)))


def symmetric_info_nce(x: Float[Array, "B d"], y: Float[Array, "B d"], temperature: float = 0.1) -> Scalar:
    """CLIP's symmetric InfoNCE: the mean of the concept→context and context→concept losses."""
    logits = cosine_logits(x, y, temperature)
    a = jnp.diagonal(jax.nn.log_softmax(logits, axis=-1))
    b = jnp.diagonal(jax.nn.log_softmax(logits, axis=0))
    return -0.5 * (jnp.mean(a) + jnp.mean(b))


def siglip(x: Float[Array, "B d"], y: Float[Array, "B d"], temperature: float = 0.1, bias: float = 0.0) -> Scalar:
    """Sigmoid (SigLIP) loss: ``-(1/B) Σ_ab log σ(z_ab (cos_ab / temperature + bias))`` with
    ``z_ab = +1`` on the diagonal and ``-1`` off it. Temperature and bias are fixed here."""
    logits = cosine_logits(x, y, temperature) + bias
    z = 2.0 * jnp.eye(x.shape[0], dtype=logits.dtype) - 1.0
    return -jnp.sum(jax.nn.log_sigmoid(z * logits)) / x.shape[0]


LOSSES: dict[str, LossFn] = {
    "info_nce": info_nce,
    "symmetric_info_nce": symmetric_info_nce,
    "siglip": siglip,
}


def get_loss(loss: str | LossFn) -> LossFn:
    """A loss by name (one of ``LOSSES``) or a callable ``loss(x, y, temperature)``."""
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}") from None


def batch_loss(model, batch, loss_fn: Callable, temperature) -> Float[Array, ""]:
    """The loss of one minibatch, the one closure every engine differentiates: ``loss_fn`` on the
    concepts' embeddings ``model.embed_concepts(batch.concepts)`` against the contexts'
    ``model.embed_contexts(batch.contexts)`` at ``temperature``."""
    return loss_fn(model.embed_concepts(batch.concepts), model.embed_contexts(batch.contexts), temperature)
