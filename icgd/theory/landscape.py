"""The looped loss over the full whitened preconditioner: value, gradient, minimiser; float64.

Setting (Gatmiry et al. 2024; SPEC §6): ``x ~ N(0, Σ)``, ``w* ~ N(0, Σ⁻¹)``, σ = 0, L loops of
``w ← w − Γ(Ŝw − Xᵀy/n)`` from 0 (the sparse looped model with ``Γ = Aᵀ``). In whitened
coordinates ``Γ̃ = Σ^½ Γ Σ^½`` and ``S̃ = GᵀG/n`` (``G ∈ R^{n×d}`` standard normal) the error is
``−(I − Γ̃S̃)^L`` applied to a standard normal vector, so, exactly over w* and x_q,

    f(Γ̃) = E_S̃ ‖(I − Γ̃S̃)^L‖_F²,

whatever Σ is (we write Γ for Γ̃ below). Γ need not be symmetric. ``f(RΓRᵀ) = f(Γ)`` for every
orthogonal R, so minimisers come in orbits; ``a*·I`` (`icgd.theory.looped`) is a critical point,
a minimum or a saddle by the sign of ``c(L, n, d)`` (`icgd.theory.skew`).

Gradient. With ``M = I − ΓS̃`` and ``E = M^L``, ``df = 2 Σ_k tr(Eᵀ M^k dM M^{L−1−k})`` and
``dM = −dΓ S̃``, so

    ∇f = −2 E[H S̃],   H = Σ_{k<L} (Mᵀ)^k E (Mᵀ)^{L−1−k}.

``H`` by the recursion ``T_0 = E``, ``T_j = Mᵀ T_{j−1} + E (M^j)ᵀ`` (``H = T_{L−1}``), and the
average of ``H S̃`` is one matrix product over the draws. `whitened_loss` is the same value by
autograd (for batches of Γ and for tests); `whitened_gradient` is the fast path.

Common random numbers: the draws are fixed (`whitened_draws`; the X stream of
`population_draws` with the same seed and Σ = I, so `icgd.theory.population` gives the same
numbers), so f is a smooth deterministic function of Γ and its minimiser is a deterministic
function of the seed. Compare two matrices on *other* draws (`loss_gap`): a minimiser fitted to
one set of draws is biased low on them.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from icgd.core.rng import make_generator

_CHUNK = 4_096  # as population_draws: a seed gives the same X there and here
_GRAD_CHUNK = 4_096  # draws per kernel call in whitened_gradient: summed in this fixed order
_F64 = torch.float64


def whitened_draws(n: int, d: int, n_samples: int = 20_000, seed: int = 0) -> Tensor:
    """(S, d, d) draws of ``S̃ = GᵀG/n``, G (n, d) standard normal, chunk by chunk from
    ``make_generator(seed)`` exactly as `population_draws` draws X when Σ = I."""
    if n < 1 or d < 1 or n_samples < 2:
        raise ValueError(f"need n >= 1, d >= 1, n_samples >= 2; got {n=}, {d=}, {n_samples=}")
    generator = make_generator(seed)
    out = torch.empty(n_samples, d, d, dtype=_F64)
    for start in range(0, n_samples, _CHUNK):
        size = min(_CHUNK, n_samples - start)
        g = torch.randn(size, n, d, generator=generator, dtype=_F64)
        out[start : start + size] = g.transpose(1, 2) @ g / n
    return out


def _powers(gamma: Tensor, draws: Tensor, L: int) -> list[Tensor]:
    """``[I, M, M², …, M^L]`` with ``M = I − ΓS̃`` per draw; gamma (..., d, d), draws (S, d, d)."""
    eye = torch.eye(draws.shape[-1], dtype=_F64)
    M = eye - gamma.unsqueeze(-3) @ draws  # (..., S, d, d)
    powers = [eye.expand_as(M), M]
    for _ in range(L - 1):
        powers.append(powers[-1] @ M)
    return powers


def whitened_loss(gamma: Tensor, L: int, draws: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(Γ), SE)``: mean and standard error over the draws of ``‖(I − ΓS̃)^L‖_F²``.

    gamma (d, d) or a batch (B, d, d) giving (B,) values; differentiable by autograd.
    """
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    per_draw = _powers(torch.as_tensor(gamma, dtype=_F64), draws, L)[L].square().sum((-1, -2))
    se = per_draw.detach().std(dim=-1) / math.sqrt(per_draw.shape[-1])
    return per_draw.mean(dim=-1), se


def whitened_gradient(gamma: Tensor, L: int, draws: Tensor) -> tuple[float, Tensor]:
    """``(f(Γ), ∇f(Γ))`` for one Γ (d, d) by the adjoint recursion of the module docstring.

    The optimiser's hot path: a compiled loop per draw (`icgd.theory.looped_kernel`) over fixed
    chunks of draws, on torch's thread count (the kernel releases the GIL). The chunks are summed
    in order, so the result does not depend on the thread count. It agrees with autograd through
    `whitened_loss` to rounding (tested).
    """
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    # here, not at the top: numba costs ~0.2 s to import, and `icgd.theory` stays light without it
    from icgd.theory.looped_kernel import chunk_sums

    g = torch.as_tensor(gamma, dtype=_F64).detach().contiguous().numpy()
    chunks = [c.contiguous().numpy() for c in draws.to(_F64).split(_GRAD_CHUNK)]
    workers = min(torch.get_num_threads(), len(chunks))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda s: chunk_sums(g, s, L), chunks))
    else:
        parts = [chunk_sums(g, s, L) for s in chunks]
    value = sum(p[0] for p in parts) / draws.shape[0]
    grad = sum(p[1] for p in parts) / draws.shape[0]
    return value, torch.from_numpy(grad)


def loss_gap(gamma: Tensor, reference: Tensor, L: int, draws: Tensor) -> tuple[float, float]:
    """``(f(Γ) − f(Γ_ref), SE)`` paired draw by draw (the common draws cancel most noise)."""
    both = torch.stack([torch.as_tensor(gamma, dtype=_F64), torch.as_tensor(reference, dtype=_F64)])
    per_draw = _powers(both, draws, L)[L].square().sum((-1, -2))  # (2, S)
    diff = per_draw[0] - per_draw[1]
    return float(diff.mean()), float(diff.std() / math.sqrt(diff.numel()))


@dataclass(frozen=True)
class LandscapeMinimum:
    """A local minimiser of f found by L-BFGS: ``gamma`` (d, d), its loss on the draws it was fit
    to, ``grad_norm`` there, the optimiser's ``iterations`` and ``success``."""

    gamma: Tensor
    loss: float
    grad_norm: float
    iterations: int
    success: bool

    @property
    def gain(self) -> float:
        """``tr(Γ)/d``: the scale of the identity part."""
        return float(torch.trace(self.gamma)) / self.gamma.shape[0]

    @property
    def antisymmetric_share(self) -> float:
        """``‖(Γ − Γᵀ)/2‖_F / ‖Γ‖_F``: 0 for a symmetric Γ (a*·I included)."""
        return float(torch.linalg.matrix_norm(self.gamma - self.gamma.T) / 2) / float(
            torch.linalg.matrix_norm(self.gamma)
        )

    @property
    def off_identity(self) -> float:
        """``‖Γ − (tr Γ/d) I‖_F / ‖Γ‖_F``: distance from the scalar matrices."""
        eye = torch.eye(self.gamma.shape[0], dtype=_F64)
        return float(torch.linalg.matrix_norm(self.gamma - self.gain * eye)) / float(
            torch.linalg.matrix_norm(self.gamma)
        )


def minimise_looped_loss(
    start: Tensor, L: int, draws: Tensor, *, max_iter: int = 3000, tol: float = 1e-11
) -> LandscapeMinimum:
    """Minimise ``f`` over all (d, d) matrices from ``start`` with scipy's L-BFGS-B (exact
    gradients, `whitened_gradient`); stops when the projected gradient or the relative decrease
    falls below ``tol``."""
    from scipy.optimize import minimize

    d = start.shape[-1]

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = whitened_gradient(torch.from_numpy(x.reshape(d, d)), L, draws)
        return value, grad.reshape(-1).numpy()

    x0 = torch.as_tensor(start, dtype=_F64).reshape(-1).numpy().copy()
    result = minimize(
        value_and_grad,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": tol},
    )
    gamma = torch.from_numpy(result.x.reshape(d, d).copy())
    value, grad = whitened_gradient(gamma, L, draws)
    return LandscapeMinimum(
        gamma=gamma,
        loss=value,
        grad_norm=float(grad.norm()),
        iterations=int(result.nit),
        success=bool(result.success),
    )
