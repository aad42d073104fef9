"""Batch temporal-difference methods with linear value functions, batched over problems (SPEC §5).

For one problem: n transitions `(φ_i, r_i, φ'_i)`, i = 1..n, in trajectory order, with features
`φ_i = φ(s_i) ∈ R^d`, next-state features `φ'_i = φ(s_{i+1})`, rewards `r_i`, a discount
`γ ∈ [0, 1]`, a step size α and a preconditioner `C ∈ R^{d×d}` (default I). The value estimate is
`v̂(s) = φ(s)ᵀ w` and the TD error of transition i is

    δ_i(w) = r_i + γ wᵀφ'_i − wᵀφ_i.

Every algorithm runs `steps` = K full-batch iterations from `w_0` (default 0) and returns all
iterates (`TDResult`):

- `batch_td0`: semi-gradient TD(0),      `w ← w + (α/n) C Σ_i δ_i(w) φ_i`.
- `residual_gradient`: gradient descent on the mean squared TD error `(1/2n) Σ_i δ_i(w)²`
  (Baird 1995), `w ← w + (α/n) C Σ_i δ_i(w) (φ_i − γφ'_i)`.
- `td_lambda`: batch TD with accumulating eligibility traces over the context,
  `e_i = Σ_{k≤i} β^{i−k} φ_k` (`e_i = β e_{i−1} + φ_i`, `e_0 = 0`),
  `w ← w + (α/n) C Σ_i δ_i(w) e_i`.

  Convention for β = `trace_decay`: SPEC §5 and the reference implementation of Wang et al.
  build the transformer mask as `M[i, k] = λ^{i−k}` (k ≤ i among context columns) with the
  discount kept only in the prompt's `γφ'` rows, so the in-context algorithm decays traces by the
  mask parameter alone. Textbook backward-view TD(λ) (Sutton & Barto 2018, §12.2) decays them by
  `γλ`. This function takes the per-step decay β itself: pass `trace_decay = λ` for the paper's
  masked transformer (`icgd.constructions.transformer_from_td_lambda(..., trace_decay=λ)`) and
  `trace_decay = γλ` for textbook TD(λ). β = 0 is TD(0).
- `average_reward_td`: undiscounted differential TD with a reward-rate estimate r̄ (Tsitsiklis &
  Van Roy 1999, "Average cost temporal-difference learning", in batch form; the in-context form
  is ours: the paper's exact construction was not available to us). With
  `δ_i(w, r̄) = r_i − r̄ + wᵀφ'_i − wᵀφ_i` both estimates move simultaneously from `(w_k, r̄_k)`:

      w_{k+1} = w_k + (α/n) C Σ_i δ_i(w_k, r̄_k) φ_i,     r̄_{k+1} = r̄_k + (β/n) Σ_i (r_i − r̄_k).

  (So `r̄_k = r̄_0 + (1 − (1 − β)^k)(mean_i r_i − r̄_0)` in closed form.)

`td_fixed_point` solves the TD(0) (or TD with traces) fixed-point equation in closed form,
`A w* = b` with `A = (1/n) Σ_i e_i (φ_i − γφ'_i)ᵀ`, `b = (1/n) Σ_i r_i e_i` (`e_i = φ_i` for TD(0)):
for `C = I`, batch TD(0) is the linear iteration `w ← w + α(b − A w)`, which converges to w* iff
every eigenvalue of `I − αA` lies strictly inside the unit disc.

The transformer side: Wang, Blaser, Daneshmand, Zhang (2025), "Transformers learn temporal
difference methods for in-context reinforcement learning" (ICLR 2025) — an L-layer linear
transformer with the TD weights computes `w_L` of these iterations with `α` absorbed into `C`
(`icgd.constructions.td`).

Shapes: phi, phi_next (B, n, d), rewards (B, n); C (d, d) or (B, d, d); w0 (B, d) or (d,).
Everything is batched over problems and context points; the only Python loop is over the K
iterations. Computations run in phi's dtype and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS


@dataclass(frozen=True)
class TDResult:
    """Every iterate of a batch TD method on B problems (module docstring for the symbols).

    weights: (B, K+1, d), `weights[:, k]` = `w_k` (`weights[:, 0] = w_0`); td_errors: (B, K+1, n),
    `td_errors[:, k, i]` = `δ_i` at iterate k (for average-reward TD `δ_i(w_k, r̄_k)`);
    average_reward: (B, K+1) the iterates `r̄_k` of `average_reward_td`, None for the others.
    """

    weights: Tensor
    td_errors: Tensor
    average_reward: Tensor | None = None

    @property
    def final(self) -> Tensor:
        """The last iterate `w_K`: (B, d)."""
        return self.weights[:, -1]

    def values(self, phi_q: Tensor) -> Tensor:
        """Value estimates `φ_qᵀ w_k` of every iterate: phi_q (B, d) → (B, K+1)."""
        return torch.einsum("bkd,bd->bk", self.weights, phi_q.to(self.weights.dtype))


# ----------------------------------------------------------------------------------- checks


def _check_data(phi: Tensor, phi_next: Tensor, rewards: Tensor) -> tuple[int, int, int]:
    if phi.ndim != 3 or phi_next.shape != phi.shape or rewards.shape != phi.shape[:2]:
        raise ValueError(
            "expected phi (B, n, d), phi_next (B, n, d) and rewards (B, n), got "
            f"{tuple(phi.shape)}, {tuple(phi_next.shape)} and {tuple(rewards.shape)}"
        )
    if not phi.is_floating_point():
        raise ValueError(f"phi must be a floating-point tensor, got {phi.dtype}")
    B, n, d = phi.shape
    if n < 1:
        raise ValueError("need at least one transition (n >= 1)")
    return B, n, d


def _finite(name: str, value: float, lo: float | None = None, hi: float | None = None) -> float:
    value = float(value)
    if (
        not math.isfinite(value)
        or (lo is not None and value < lo)
        or (hi is not None and value > hi)
    ):
        rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else ""
        raise ValueError(f"{name} must be a finite number{rng}, got {value}")
    return value


def _preconditioner(C: Tensor | None, B: int, d: int, like: Tensor) -> Tensor | None:
    """C as (d, d) or (B, d, d) in like's dtype/device; None stands for the identity."""
    if C is None:
        return None
    C = torch.as_tensor(C, dtype=like.dtype, device=like.device)
    if C.shape not in ((d, d), (B, d, d)):
        raise ValueError(f"C must have shape ({d}, {d}) or ({B}, {d}, {d}), got {tuple(C.shape)}")
    return C


def _apply(C: Tensor | None, g: Tensor) -> Tensor:
    """`C g` for g (B, d): C None (identity), (d, d) or (B, d, d)."""
    if C is None:
        return g
    if C.ndim == 2:
        return g @ C.T  # (B, d)
    return torch.bmm(C, g.unsqueeze(-1)).squeeze(-1)  # (B, d)


def _initial(w0: Tensor | None, B: int, d: int, like: Tensor) -> Tensor:
    if w0 is None:
        return like.new_zeros(B, d)
    w0 = torch.as_tensor(w0, dtype=like.dtype, device=like.device)
    if w0.shape not in ((d,), (B, d)):
        raise ValueError(f"w0 must have shape ({d},) or ({B}, {d}), got {tuple(w0.shape)}")
    return w0.expand(B, d).clone()


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    return steps


# ------------------------------------------------------------------------------ primitives


def td_errors(phi: Tensor, phi_next: Tensor, rewards: Tensor, w: Tensor, gamma: float) -> Tensor:
    """`δ_i = r_i + γ wᵀφ'_i − wᵀφ_i`: phi, phi_next (B, n, d), rewards (B, n), w (B, d) →
    (B, n)."""
    _check_data(phi, phi_next, rewards)
    return rewards + torch.einsum("bnd,bd->bn", gamma * phi_next - phi, w)


def eligibility_traces(phi: Tensor, trace_decay: float) -> Tensor:
    """Accumulating traces over the context in trajectory order, `e_i = Σ_{k≤i} β^{i−k} φ_k`.

    phi: (B, n, d), trace_decay: β ∈ [0, 1] → e: (B, n, d). One batched product with the
    lower-triangular (n, n) decay matrix `D[i, k] = β^{i−k}` (k ≤ i), no loop over points.
    """
    beta = _finite("trace_decay", trace_decay, 0.0, 1.0)
    n = phi.shape[1]
    return torch.einsum("ik,bkd->bid", decay_matrix(n, beta, phi.dtype, phi.device), phi)


def decay_matrix(
    n: int, trace_decay: float, dtype: torch.dtype = torch.float64, device=None
) -> Tensor:
    """`D[i, k] = β^{i−k}` for k ≤ i, 0 above the diagonal: (n, n) (D = I for β = 0)."""
    idx = torch.arange(n, device=device)
    lag = idx[:, None] - idx[None, :]  # (n, n) i − k
    powers = torch.pow(
        torch.tensor(float(trace_decay), dtype=dtype, device=device), lag.clamp_min(0)
    )
    return torch.where(lag >= 0, powers, torch.zeros((), dtype=dtype, device=device))


def _run(
    phi: Tensor,
    phi_next: Tensor,
    rewards: Tensor,
    gamma: float,
    alpha: float,
    steps: int,
    C: Tensor | None,
    w0: Tensor | None,
    direction: Tensor,
) -> TDResult:
    """K iterations `w ← w + (α/n) C Σ_i δ_i(w) u_i` with `u_i` = direction (B, n, d)."""
    B, n, d = _check_data(phi, phi_next, rewards)
    gamma = _finite("gamma", gamma, 0.0, 1.0)
    alpha = _finite("alpha", alpha)
    steps = _check_steps(steps)
    C = _preconditioner(C, B, d, phi)
    phi_next, rewards = phi_next.to(phi.dtype), rewards.to(phi.dtype)
    w = _initial(w0, B, d, phi)
    diff = gamma * phi_next - phi  # (B, n, d): γφ'_i − φ_i
    weights, errors = [w], []
    for _ in range(steps):  # loop over the K iterations only
        delta = rewards + torch.einsum("bnd,bd->bn", diff, w)  # (B, n) δ_i(w_k)
        g = torch.einsum("bn,bnd->bd", delta, direction) / n  # (B, d) (1/n) Σ_i δ_i u_i
        w = w + alpha * _apply(C, g)
        weights.append(w)
        errors.append(delta)
    errors.append(rewards + torch.einsum("bnd,bd->bn", diff, w))  # δ at the last iterate
    return TDResult(weights=torch.stack(weights, dim=1), td_errors=torch.stack(errors, dim=1))


# ------------------------------------------------------------------------------ algorithms


def batch_td0(
    phi: Tensor,
    phi_next: Tensor,
    rewards: Tensor,
    gamma: float,
    *,
    steps: int,
    alpha: float = 1.0,
    C: Tensor | None = None,
    w0: Tensor | None = None,
) -> TDResult:
    """`steps` iterations of batch (semi-gradient) TD(0), `w ← w + (α/n) C Σ_i δ_i(w) φ_i`.

    phi, phi_next: (B, n, d) features of s_i and s_{i+1}; rewards: (B, n); gamma ∈ [0, 1]; alpha:
    step size; C: (d, d) or (B, d, d) preconditioner (default I); w0: (B, d) or (d,) (default 0).
    Returns a `TDResult` with weights (B, steps+1, d) and td_errors (B, steps+1, n).
    """
    return _run(phi, phi_next, rewards, gamma, alpha, steps, C, w0, direction=phi)


def residual_gradient(
    phi: Tensor,
    phi_next: Tensor,
    rewards: Tensor,
    gamma: float,
    *,
    steps: int,
    alpha: float = 1.0,
    C: Tensor | None = None,
    w0: Tensor | None = None,
) -> TDResult:
    """`steps` iterations of residual gradient, `w ← w + (α/n) C Σ_i δ_i(w) (φ_i − γφ'_i)`.

    This is preconditioned gradient descent on `(1/2n) Σ_i δ_i(w)²` (its gradient is
    `−(1/n) Σ_i δ_i (φ_i − γφ'_i)`). Arguments and result as in `batch_td0`.
    """
    _check_data(phi, phi_next, rewards)
    gamma_f = _finite("gamma", gamma, 0.0, 1.0)
    direction = phi - gamma_f * phi_next.to(phi.dtype)  # (B, n, d)
    return _run(phi, phi_next, rewards, gamma, alpha, steps, C, w0, direction=direction)


def td_lambda(
    phi: Tensor,
    phi_next: Tensor,
    rewards: Tensor,
    gamma: float,
    *,
    trace_decay: float,
    steps: int,
    alpha: float = 1.0,
    C: Tensor | None = None,
    w0: Tensor | None = None,
) -> TDResult:
    """`steps` iterations of batch TD with eligibility traces, `w ← w + (α/n) C Σ_i δ_i(w) e_i`.

    `e_i = Σ_{k≤i} β^{i−k} φ_k` over the context in trajectory order (`eligibility_traces`), β =
    `trace_decay` ∈ [0, 1]. β is the per-step trace decay itself: the paper's masked transformer
    (mask `λ^{i−k}`) is β = λ; textbook TD(λ) is β = γλ (module docstring). β = 0 gives
    `batch_td0`. Other arguments and the result as in `batch_td0`.
    """
    _check_data(phi, phi_next, rewards)
    traces = eligibility_traces(phi, trace_decay)  # (B, n, d)
    return _run(phi, phi_next, rewards, gamma, alpha, steps, C, w0, direction=traces)


def average_reward_td(
    phi: Tensor,
    phi_next: Tensor,
    rewards: Tensor,
    *,
    steps: int,
    alpha: float = 1.0,
    beta: float = 1.0,
    C: Tensor | None = None,
    w0: Tensor | None = None,
    rbar0: float | Tensor = 0.0,
) -> TDResult:
    """`steps` iterations of batch average-reward (differential) TD, simultaneous updates:

        δ_i = r_i − r̄_k + w_kᵀφ'_i − w_kᵀφ_i,
        w_{k+1} = w_k + (α/n) C Σ_i δ_i φ_i,     r̄_{k+1} = r̄_k + (β/n) Σ_i (r_i − r̄_k).

    phi, phi_next: (B, n, d) (no discount: φ' enters undiscounted); rewards: (B, n); alpha, beta:
    step sizes of w and r̄; C: (d, d) or (B, d, d) (default I); w0: (B, d) or (d,) (default 0);
    rbar0: a number or (B,) (default 0). Returns a `TDResult` with weights (B, steps+1, d),
    td_errors (B, steps+1, n) = `δ_i(w_k, r̄_k)` and average_reward (B, steps+1) = `r̄_k`.
    """
    B, n, d = _check_data(phi, phi_next, rewards)
    alpha = _finite("alpha", alpha)
    beta = _finite("beta", beta)
    steps = _check_steps(steps)
    C = _preconditioner(C, B, d, phi)
    phi_next, rewards = phi_next.to(phi.dtype), rewards.to(phi.dtype)
    w = _initial(w0, B, d, phi)
    rbar = torch.as_tensor(rbar0, dtype=phi.dtype, device=phi.device)
    if rbar.shape not in ((), (B,)):
        raise ValueError(f"rbar0 must be a number or have shape ({B},), got {tuple(rbar.shape)}")
    rbar = rbar.expand(B).clone()
    diff = phi_next - phi  # (B, n, d)
    mean_r = rewards.mean(-1)  # (B,)
    weights, errors, rbars = [w], [], [rbar]
    for _ in range(steps):
        delta = rewards - rbar[:, None] + torch.einsum("bnd,bd->bn", diff, w)  # (B, n)
        g = torch.einsum("bn,bnd->bd", delta, phi) / n  # (B, d)
        w = w + alpha * _apply(C, g)
        rbar = rbar + beta * (mean_r - rbar)  # (β/n) Σ_i (r_i − r̄_k)
        weights.append(w)
        rbars.append(rbar)
        errors.append(delta)
    errors.append(rewards - rbar[:, None] + torch.einsum("bnd,bd->bn", diff, w))
    return TDResult(
        weights=torch.stack(weights, dim=1),
        td_errors=torch.stack(errors, dim=1),
        average_reward=torch.stack(rbars, dim=1),
    )


def td_fixed_point(
    phi: Tensor,
    phi_next: Tensor,
    rewards: Tensor,
    gamma: float,
    *,
    trace_decay: float = 0.0,
) -> Tensor:
    """The TD fixed point `w*` solving `A w* = b` for each problem: (B, d).

    `A = (1/n) Σ_i e_i (φ_i − γφ'_i)ᵀ`, `b = (1/n) Σ_i r_i e_i` with `e_i = φ_i` (trace_decay = 0,
    TD(0)) or the traces of `eligibility_traces` (the fixed point of `td_lambda` with the same
    trace_decay). It is the limit of those iterations whenever they converge, for any invertible
    C. Solved with `torch.linalg.solve`; A must be invertible.
    """
    B, n, d = _check_data(phi, phi_next, rewards)
    gamma = _finite("gamma", gamma, 0.0, 1.0)
    phi_next, rewards = phi_next.to(phi.dtype), rewards.to(phi.dtype)
    e = phi if float(trace_decay) == 0.0 else eligibility_traces(phi, trace_decay)  # (B, n, d)
    A = torch.einsum("bnd,bne->bde", e, phi - gamma * phi_next) / n  # (B, d, d)
    b = torch.einsum("bn,bnd->bd", rewards, e) / n  # (B, d)
    return torch.linalg.solve(A, b)


ALGORITHMS.register("td0", batch_td0)
ALGORITHMS.register("td-lambda", td_lambda)
ALGORITHMS.register("residual-gradient", residual_gradient)
ALGORITHMS.register("average-reward-td", average_reward_td)
