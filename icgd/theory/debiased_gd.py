"""Debiased (mean-centred) one-step GD for isotropic Gaussian regression: its exact risk as a
function of the step and the optimal step m* (He, Pan, Chen, Yang 2025; SPEC §6).

Setting: x_ℓ, x_q ~ N(0, I_d) i.i.d., w independent of them with `b = E‖w‖²` (any law),
`y = xᵀw + ε`, ε ~ N(0, σ²). The predictor, normalised exactly as
`icgd.experiments.softmax_heads.measurements.one_step_predictors(...)["debiased"]`, is

    ŷ(m) = m · g,    g = x_qᵀ v,    v = (1/n) Σ_ℓ y_ℓ (x_ℓ − x̄),    x̄ = (1/n) Σ_ℓ x_ℓ.

It is the first-order term of He et al.'s heads: a head with KQ x-block ω I and OV label entry μ
predicts `μ ȳ + μ ω g + O(ω²)` (softmax over the n context keys), so H heads give the step
`m = Σ_h μ_h ω_h` on this g.

Derivation. Write `S = (1/n) Σ_ℓ (x_ℓ − x̄)(x_ℓ − x̄)ᵀ`; since Σ_ℓ (x_ℓ − x̄) = 0,
`v = S w + (1/n) Σ_ℓ (x_ℓ − x̄) ε_ℓ`. `nS ~ Wishart(I_d, n − 1)`, independent of x_q and w, so

- `E[S] = ((n−1)/n) I` and `E[S²] = ((n−1)(n+d)/n²) I` (Wishart: E[W²] = k(k+d+1) I for
  W ~ W(I, k), here k = n − 1);
- `E[y_q g] = E[wᵀ x_q x_qᵀ v] = E[wᵀ S w] = b (n−1)/n`;
- `E[g²] = E‖v‖² = E[wᵀ S² w] + (σ²/n²) E Σ_ℓ ‖x_ℓ − x̄‖² = ((n−1)/n²) ((n+d) b + d σ²)`;
- `E[y_q²] = b + σ²`.

The risk `R(m) = E(y_q − m g)² = (b + σ²) − 2 m E[y_q g] + m² E[g²]` is a parabola, minimised at

    m* = E[y_q g] / E[g²] = n b / (n b + d (b + σ²)),

with the floor `R(m*) = b + σ² − m* b (n−1)/n`. (Plain one-step GD, without the centring, has
`E[y_q g] = b`, `E[g²] = b + ((d+1) b + d σ²)/n`, so its optimal step is
`n b / (n b + (d+1) b + d σ²)`: the centring trades the (d+1) for d.)
"""

from __future__ import annotations


def _check(n: int, d: int, b: float, noise_std: float) -> None:
    if n < 2:
        raise ValueError(f"n: the debiased step needs n >= 2 context points, got {n}")
    if d < 1:
        raise ValueError(f"d: must be >= 1, got {d}")
    if b <= 0:
        raise ValueError(f"b = E‖w‖²: must be > 0, got {b}")
    if noise_std < 0:
        raise ValueError(f"noise_std: must be >= 0, got {noise_std}")


def m_star(n: int, d: int, b: float, noise_std: float = 0.0) -> float:
    """The optimal step of debiased one-step GD, `m* = n b / (n b + d (b + σ²))` (module docstring).

    n: context length, d: dimension, b: `E‖w‖²` (= d for w ~ N(0, I_d)), noise_std: σ.
    """
    _check(n, d, b, noise_std)
    return n * b / (n * b + d * (b + noise_std**2))


def debiased_one_step_risk(m: float, n: int, d: int, b: float, noise_std: float = 0.0) -> float:
    """Exact risk `E(y_q − m g)²` of debiased one-step GD with step m (module docstring):
    `(b + σ²) − 2 m b (n−1)/n + m² ((n−1)/n²) ((n+d) b + d σ²)`."""
    _check(n, d, b, noise_std)
    s2 = noise_std**2
    cross = b * (n - 1) / n
    second = (n - 1) / n**2 * ((n + d) * b + d * s2)
    return (b + s2) - 2 * m * cross + m * m * second


def debiased_one_step_floor(n: int, d: int, b: float, noise_std: float = 0.0) -> float:
    """The risk at the optimal step, `R(m*) = b + σ² − m* b (n−1)/n`."""
    return (b + noise_std**2) - m_star(n, d, b, noise_std) * b * (n - 1) / n
