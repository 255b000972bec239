"""Adam without decay, Adam with L2 decay, AdamP (docs/theory.md §8.3–§8.5).

One mean-field recursion per concept serves all three (:func:`adam_moments`). It carries two
scalars per concept: ``X = R²`` and ``ν``, the concept's second-moment EMA summed over its
``d`` coordinates (Adam's ``Σᵢ vᵢ``, without bias correction). Its inputs are measured
statistics only (``p``, ``pW²``, ``|s̄|²`` along the run) and the hyperparameters.

The three ingredients (docs/theory.md §8.3):

1. **Second-moment lag.** The gradient energy per step is ``E_k = pW²_k/R_k²`` (``∇ₓℓ = s/R``,
   zeros when the concept is absent). Adam divides by ``√v̂`` with ``Σᵢv̂ᵢ = ν̂_k``, the
   bias-corrected EMA of ``E`` over ``1/(1-β₂)`` steps, so the normalised gradient has energy
   ``d·ρ_k`` per step with ``ρ_k = E_k/ν̂_k``: ``ρ < 1`` while ``R`` grows or ``pW²`` falls
   within β₂'s memory (it is what slows Adam's random walk; specific concepts, whose ``pW²``
   collapses early, are slowed most).
2. **Restoring mean part.** A concept in an angular well feels a mean gradient anti-correlated
   with the buffer's past; the buffer's energy is ``E|m|² = c·d·ρ·f``, ``c = (1-β₁)/(1+β₁)``,
   with ``f = E_eff/pW²`` and ``E_eff = pW² - (2β₁/(1+β₁))p²|s̄|²`` (:func:`buffer_energy`,
   docs/theory.md §7.0: exact for a quadratic well; the EMA ``m`` is heavy ball up to the scale
   ``1-β₁``).
3. **Momentum's radial identity.** Each past gradient is tangent where it was taken, so
   ``x_k·g_{k-j} = (x_k-x_{k-j})·g_{k-j}`` and, summing the EMA, ``x_k·m_k = -η Σ_{i≥1} β₁ⁱ |m_{k-i}|²``
   exactly; hence ``E[R²_{k+1}-R²_k] = η² E|m|²(1+β₁)/(1-β₁) = η² d ρ f`` per step (Adam), and the
   radial part of ``m`` is ``m_r ≈ -(η/R)(β₁/(1-β₁))E|m|²`` (AdamP removes it).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from ._context import Context, Prediction, rms_window, window
from ._core import FloatLike, kernel_jit
from ._momentum import buffer_energy

__all__ = ["adam_moments", "decay_lag_gain", "adam_l2_equilibrium", "adamp_equilibrium", "predict_adam", "predict_adam_l2",
           "predict_adamp"]

_KINDS = ("free", "l2", "projected")
# Gauss–Hermite (probabilists') nodes: the squared coordinate y = d·x̂ᵢ² of a random unit vector
# is χ²₁ for large d, so (1/d)Σᵢ F(d x̂ᵢ²) ≈ E[F(g²)], g ~ N(0, 1) (docs/theory.md §8.4).
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(64)
_GH_W = _GH_W / _GH_W.sum()


def _chi2_moments(q):
    """``(A, B, Cq) = E[1/(1+qy)], E[y/√(1+qy)], E[y/(1+qy)]`` for ``y ~ χ²₁`` (quadrature)."""
    y = jnp.asarray(_GH_X**2, q.dtype)
    w = jnp.asarray(_GH_W, q.dtype)
    qy = q[..., None] * y
    a = jnp.sum(w / (1 + qy), -1)
    b = jnp.sum(w * y / jnp.sqrt(1 + qy), -1)
    cq = jnp.sum(w * y / (1 + qy), -1)
    return a, b, cq


@kernel_jit(static_argnames=("kind", "dim"))
def adam_moments(r0: Float[ArrayLike, " N"], pw2_path: Float[ArrayLike, "T N"], buffer_factor: Float[ArrayLike, "T N"],
                 lrs: Float[ArrayLike, " T"], weight_decay: Float[ArrayLike, ""], b1: Float[ArrayLike, ""],
                 b2: Float[ArrayLike, ""], dim: int, kind: str) -> tuple[Float[Array, "T N"], Float[Array, "T N"]]:
    """Mean-field recursion of the Adam family, step by step (docs/theory.md §8.3–§8.5).

    Per concept, before step ``k``: ``X = R_k²``, ``ν`` (the raw EMA of ``E = pW²/X``). With
    ``ν ← β₂ν + (1-β₂)E``, ``ν̂ = ν/(1-β₂^{k+1})``, ``ρ = E/ν̂``, ``f = buffer_factor[k]``,
    ``c = (1-β₁)/(1+β₁)``, ``Γ = (η²/X)(β₁/(1-β₁))²``:

    - ``kind="free"`` (Adam, no decay; §8.3)::

          X' = X + η² d ρ f,      |Pu|² = c d ρ f - Γ (c d ρ f)²

    - ``kind="projected"`` (AdamP: radial part of ``m̂/√v̂`` removed, then ``x ← (1-ηλ)x``; §8.5).
      The unprojected energy is ``U₀ = c d ρ f`` and its radial part is ``m_r² = Γ U²``::

          U = (√(1+4ΓU₀) - 1)/(2Γ)   (root of U = U₀ - ΓU²),      X' = (1-ηλ)²X + η²U

    - ``kind="l2"`` (``λx`` added to the gradient before Adam; §8.4). Per coordinate
      ``vᵢ = (ν̂ + λ²R²·d x̂ᵢ²)/d``, i.e. relative decay load ``Q = λ²X/ν̂`` times ``yᵢ = d x̂ᵢ²``;
      the decay's share of ``m`` is ``λx`` (it is the same every step), so its radial drift is
      ``u_r = √(Qd)·E[y/√(1+Qy)]`` and it adds ``Qd·E[y/(1+Qy)]`` to ``|u|²``::

          X' = X - 2η√X·u_r + η² d (ρ f E[1/(1+Qy)] + Q E[y/(1+Qy)])
          |Pu|² = (c d ρ f E[1/(1+Qy)] - Γ (c d ρ f E[1/(1+Qy)])²)·decay_lag_gain(√(Qd)·η/R, β₁)

      (the gain: the decay share of ``m`` is an EMA of *past* positions, whose tangential part
      pushes ``x̂`` further along its recent path; :func:`decay_lag_gain`).

    (``E`` over ``y ~ χ²₁``: a concept's direction is generic with respect to the coordinate axes).
    ``pw2_path``: measured ``pW²`` per step; ``buffer_factor``: ``E_eff/pW²`` (:func:`buffer_energy`).
    Returns ``(X' [T, N], sin²θ [T, N])``, ``sin²θ_k = η²|Pu|²/X'`` (docs/theory.md §14).
    """
    dtype = jnp.result_type(r0, pw2_path, buffer_factor, lrs, weight_decay, b1, b2, float)
    e_in = jnp.asarray(pw2_path, dtype)
    fac = jnp.asarray(buffer_factor, dtype)
    lrs = jnp.asarray(lrs, dtype)
    lam, b1, b2 = (jnp.asarray(a, dtype) for a in (weight_decay, b1, b2))
    x0 = jnp.broadcast_to(jnp.asarray(r0, dtype) ** 2, e_in.shape[1:])
    c = (1 - b1) / (1 + b1)
    lagw = (b1 / (1 - b1)) ** 2
    ks = jnp.arange(e_in.shape[0], dtype=dtype)

    def step(carry, inp):
        X, nu = carry
        pw2, f, eta, k = inp
        E = pw2 / X
        nu1 = b2 * nu + (1 - b2) * E
        nuh = nu1 / (1 - b2 ** (k + 1))
        # a concept with no gradient energy yet (measured pW² = 0) takes no step: Adam's 0/(0+eps)
        rho = jnp.where(nuh > 0, E / jnp.where(nuh > 0, nuh, 1), 0.0)
        gam = eta**2 / X * lagw
        if kind == "free":
            m2 = c * dim * rho * f
            X1 = X + eta**2 * dim * rho * f
            pu2 = m2 - gam * m2**2
        elif kind == "projected":
            u0 = c * dim * rho * f
            pu2 = 2 * u0 / (1 + jnp.sqrt(1 + 4 * gam * u0))
            X1 = (1 - eta * lam) ** 2 * X + eta**2 * pu2
        elif kind == "l2":
            Q = lam**2 * X / nuh
            A, B, Cq = _chi2_moments(Q)
            m2 = c * dim * rho * f * A
            ur = jnp.sqrt(Q * dim) * B
            X1 = X - 2 * eta * jnp.sqrt(X) * ur + eta**2 * dim * (rho * f * A + Q * Cq)
            pu2 = (m2 - gam * m2**2) * decay_lag_gain(jnp.sqrt(Q * dim) * eta / jnp.sqrt(X), b1)
        else:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        return (X1, nu1), (X1, eta**2 * pu2 / X1)

    _, (xs, s2) = lax.scan(step, (x0, jnp.zeros_like(x0)), (e_in, fac, lrs, ks))
    return xs, s2


@jax.jit
def decay_lag_gain(G: FloatLike, b1: Float[ArrayLike, ""]) -> Float[Array, "..."]:
    """``E|Pu|²/E|N|²`` for Adam+L2 (docs/theory.md §8.4): the tangential update is the noise
    buffer ``N`` plus the tangential part of the decay buffer ``λΣⱼcⱼx_{k-j}/√v``::

        Pu_k = N_k + G S_k,   S_k = Σ_{i≥1} β₁ⁱ Pu_{k-i},   G = √(Qd)·η/R  (= λη/√(v per coordinate))

    because ``x_{k-j} = R(x̂_k + (η/R)Σ_{i=1}^{j} Pu_{k-i}) + radial`` and ``Σⱼcⱼ Σ_{i≤j} = Σᵢβ₁ⁱ``.
    With ``N`` an AR(1) of coefficient β₁ (uncorrelated sources) and ``b = β₁(1+G) < 1``
    (``S_{k+1} = b S_k + β₁N_k``)::

        gain = 1 + 2Gβ₁²/(1-bβ₁) + G²β₁²(1+bβ₁)/((1-b²)(1-bβ₁))

    The decay's lagged pull is *anti*-restoring (it pushes away from where ``x`` was), so it
    amplifies the rotation; ``G`` is small where ``R`` is large (generic concepts: ~5 %) and not
    where ``R`` is small (specific concepts: ~25 % in θ² at the lab's defaults)."""
    G = jnp.asarray(G)
    b1 = jnp.asarray(b1, G.dtype)
    b = b1 * (1 + G)
    return 1 + 2 * G * b1**2 / (1 - b * b1) + G**2 * b1**2 * (1 + b * b1) / ((1 - b**2) * (1 - b * b1))


def adamp_equilibrium(lr, weight_decay, b1, dim, buffer_factor=1.0):
    """AdamP's fixed point (docs/theory.md §8.5): with ``U₀ = c d f``, ``c = (1-β₁)/(1+β₁)``,
    ``q = 1-ηλ``, the balance ``(1-q²)R² = η²U`` and ``U = U₀ - (η²/R²)(β₁/(1-β₁))²U²`` give::

        U = U₀ / (1 + (1-q²)(β₁/(1-β₁))²),      R*² = η²U/(1-q²) ≈ ηU/(2λ)

    (the lab's ``R*² = ηdc/(2λ)`` is ``f = 1`` without the projection lag ``2ηλβ₁²/(1-β₁)² ≈ 8 %``)."""
    q = 1 - lr * weight_decay
    u = (1 - b1) / (1 + b1) * dim * buffer_factor / (1 + (1 - q**2) * (b1 / (1 - b1)) ** 2)
    return np.sqrt(lr**2 * u / (1 - q**2))


def adam_l2_equilibrium(pw2, lr, weight_decay, dim, buffer_factor=1.0):
    """Leading order of Adam+L2's fixed point (docs/theory.md §8.4), ``Q = λ²R⁴/pW² ≪ 1``::

        2R·√(Qd) = η d f   ⇔   R*³ = η √(d·pW²) f / (2λ)

    so ``R* ∝ (pW²)^{1/6}``: the generic/specific ratio is ``(pW²_gen/pW²_spec)^{1/6}``."""
    return (lr * np.sqrt(dim * np.asarray(pw2)) * buffer_factor / (2 * weight_decay)) ** (1 / 3)


def _predict(ctx: Context, kind: str, name: str, formula: str, section: str, note: str, equilibrium: bool):
    pw2 = ctx.path("pw2")
    e_eff = np.asarray(buffer_energy(pw2, ctx.path("p"), ctx.path("mean_sq"), ctx.b1))
    fac = np.clip(e_eff / np.maximum(pw2, 1e-300), 0.0, 1.0)
    xs, s2 = adam_moments(np.asarray(ctx.r0, float), pw2, fac, ctx.lrs(), ctx.weight_decay, ctx.b1, ctx.b2,
                          dim=int(ctx.dim), kind=kind)
    full = np.sqrt(np.concatenate([np.asarray(ctx.r0, float)[None] ** 2, np.asarray(xs)], axis=0))
    theta = np.arcsin(np.sqrt(np.clip(np.asarray(s2), 0.0, 1.0)))
    r_end = full[-1]
    regime = {"eta_lambda": ctx.lr * ctx.weight_decay, "b1": ctx.b1, "b2": ctx.b2,
              "memory_steps": 1 / (1 - ctx.b2),
              # angular step of the normalised update at the end (the expansion of x_k - x_{k-j})
              "eps_end": float(np.max(ctx.lr * np.sqrt(ctx.dim) / r_end)),
              "buffer_factor_end": float(np.mean(fac[-1]))}
    if kind == "l2":  # decay's share of v and the lag gain's G (equilibrium ν̂ ≈ pW²/R²)
        q_end = ctx.weight_decay**2 * r_end**4 / np.maximum(pw2[-1], 1e-300)
        regime["Q_end"] = float(np.max(q_end))
        regime["G_end"] = float(np.max(np.sqrt(q_end * ctx.dim) * ctx.lr / r_end))
    return Prediction(name, formula, section, note, ctx.at_steps(full), equilibrium,
                      rms_window(theta, window(ctx, True)), regime)


def predict_adam(ctx: Context) -> Prediction:
    """Adam without decay (docs/theory.md §8.3): :func:`adam_moments` with ``kind="free"``,
    ``R²_{k+1} = R²_k + η² d ρ_k f_k`` — the scale-free walk ``R₀² + η²dk`` slowed by the
    second-moment lag ``ρ`` and the restoring mean part ``f``."""
    return _predict(ctx, "free", "adam", "R²' = R² + η²d·ρ·f (ρ = pW²/R² over its β₂-EMA, f = E_eff/pW²)",
                    "docs/theory.md §8.3",
                    "2-scalar recursion (R², Adam's ν) driven by measured pW², p, |s̄|²", False)


def predict_adam_l2(ctx: Context) -> Prediction:
    """Adam with L2 decay through the preconditioner (docs/theory.md §8.4): :func:`adam_moments`
    with ``kind="l2"``; leading-order equilibrium ``R*³ = η√(d·pW²)f/(2λ)``."""
    return _predict(ctx, "l2", "adam_l2", "Adam+L2: R*³ ≈ η√(d·pW²)·f/(2λ) (decay normalised by √v)",
                    "docs/theory.md §8.4",
                    "radial drift λx/√v is first order and ∝ R²/√pW²; recursion (R², ν) with χ² quadrature",
                    True)


def predict_adamp(ctx: Context) -> Prediction:
    """AdamP (docs/theory.md §8.5): :func:`adam_moments` with ``kind="projected"``; equilibrium
    ``R*² ≈ ηU/(2λ)``, ``U = c d f/(1 + 2ηλβ₁²/(1-β₁)²)`` (:func:`adamp_equilibrium`)."""
    return _predict(ctx, "projected", "adamp",
                    "AdamP: R*² = ηU/(2λ), U = d(1-β1)/(1+β1)·f/(1+2ηλβ1²/(1-β1)²)",
                    "docs/theory.md §8.5",
                    "projection removes the buffer's lag m_r² = (η/R)²(β1/(1-β1))²U²; f from the mean part", True)
