"""The TD family of candidate algorithms for `identify`, and their iterates for `probe_layers`.

On packed TD prompts (`icgd.analysis.identify.td`: X = [φ, γφ'], y = r, x_q = [φ_q, 0]) every
candidate predicts `v̂ = φ_qᵀ w` from the n transitions. With `u_i` an update direction, the
full-batch iterations of `icgd.algorithms.td` from `w_0 = 0` are

    w ← w + α (b − A w),    A = (1/n) Σ_i u_i (φ_i − γφ'_i)ᵀ,   b = (1/n) Σ_i r_i u_i,

| name                 | u_i        | free parameters                    | steps k tried (default) |
|----------------------|------------|------------------------------------|-------------------------|
| `td0`                | φ_i        | step α (log α)                     | 1 … 8                   |
| `preconditioned-td0` | φ_i        | C (d×d, α absorbed: `w ← w + C(b − Aw)`) | 1, 2, 3           |
| `residual-gradient`  | φ_i − γφ'_i | step α (log α)                    | 1 … 8                   |
| `lstd`               | φ_i        | none: the TD fixed point `A⁻¹b`    | —                       |

Batch TD(0) is what the in-context TD transformer runs (Wang, Blaser, Daneshmand, Zhang 2025;
`icgd.constructions.transformer_from_td0`); residual gradient (Baird 1995) is gradient descent on
the mean squared TD error, a different iteration on the same data, and LSTD (Bradtke & Barto
1996) the limit TD converges to: the two baselines that give the ranking its meaning.

Fitting (ours, as for GD in `candidates`): the scalar steps on a log grid `[10⁻⁴, 10]/c̄`,
`c̄` = the mean over prompts of `‖A‖_F/√d`, one batched pass of the recurrence giving every k at
every grid point, then a zoom per k and the least-squares polish of the `n_polish` best k
(`icgd.analysis.identify.fitting`). The preconditioned form is fitted like `preconditioned-gd`
(`icgd.analysis.identify.preconditioned`): k = 1 is linear in C, `v̂ = φ_qᵀ C b` (ordinary least
squares on `vec(φ_q bᵀ)`, exact); k ≥ 2 polishes from the better of `c·I/c̄` and `c·Ĉ_{k−1}`
on a scale grid. References: `batch_td0`, `residual_gradient`, `td_fixed_point` with γ = 1 on
the packed `(φ, γφ')`. Shapes: X (B, n, 2d), y (B, n), x_q (B, 2d).

Iterates registered for `probe_layers` (`icgd.analysis.identify.probe.ITERATES`): `td0` and
`residual-gradient` (parameter `alpha`; default per prompt `1/‖A‖₂`, ours) and
`preconditioned-td0` (parameter `C` (d, d), required).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor

from icgd.algorithms.td import TDResult, batch_td0, residual_gradient, td_fixed_point
from icgd.analysis.identify.candidates import FixedCandidate
from icgd.analysis.identify.fitting import (
    ELEMENT_BUDGET,
    FitData,
    StepFit,
    chunked_loss,
    zoom_and_polish,
)
from icgd.analysis.identify.identify import CANDIDATE_FAMILIES
from icgd.analysis.identify.preconditioned import PreconditionedGD, fit_shared_matrix
from icgd.analysis.identify.probe import ITERATES, PROBE_ALGORITHMS
from icgd.analysis.identify.td import unpack


def td_moments(X: Tensor, y: Tensor, residual: bool = False) -> tuple[Tensor, Tensor]:
    """`A` (B, d, d) and `b` (B, d) of the module docstring for packed prompts, with `u_i = φ_i`
    (TD(0)) or `u_i = φ_i − γφ'_i` (`residual`)."""
    n, d = X.shape[1], X.shape[-1] // 2
    diff = X[..., :d] - X[..., d:]  # (B, n, d): φ_i − γφ'_i
    u = diff if residual else X[..., :d]
    return torch.einsum("bnd,bne->bde", u, diff) / n, torch.einsum("bn,bnd->bd", y, u) / n


def step_values(A: Tensor, b: Tensor, phi_q: Tensor, alpha: Tensor, K: int) -> Tensor:
    """`φ_qᵀ w_k`, k = 0 … K, of `w ← w + α (b − A w)` at Q steps α (Q,): (K+1, Q, B)."""
    w = alpha.new_zeros(alpha.shape[0], *b.shape)  # (Q, B, d)
    out = [w.sum(-1)]
    for _ in range(K):  # a loop over the steps only
        w = w + alpha[:, None, None] * (b - torch.einsum("bij,qbj->qbi", A, w))
        out.append((w * phi_q).sum(-1))
    return torch.stack(out)


def _finite_loss(err: Tensor) -> Tensor:
    loss = err.square().mean(-1)
    return torch.where(torch.isfinite(loss), loss, torch.full_like(loss, math.inf))


class ScalarStepTD:
    """k steps of `w ← w + α(b − Aw)` from 0 with one fitted α (module docstring); subclasses
    set `name`, `residual` and `reference`."""

    name: ClassVar[str]
    parameter_names: ClassVar[tuple[str, ...]] = ("alpha",)
    residual: ClassVar[bool] = False
    points: ClassVar[int] = 57

    def __init__(self, steps: Sequence[int] = tuple(range(1, 9)), *, n_polish: int = 3) -> None:
        self.steps = tuple(int(k) for k in steps)
        if not self.steps or min(self.steps) < 1 or len(set(self.steps)) != len(self.steps):
            raise ValueError(f"steps must be distinct integers >= 1, got {list(steps)}")
        if n_polish < 1:
            raise ValueError(f"n_polish must be >= 1, got {n_polish}")
        self.n_polish = n_polish

    def _grid(self, A, b, phi_q, k: int, theta: Tensor) -> Tensor:
        return step_values(A, b, phi_q, theta[:, 0].exp(), k)[k]  # (Q, B)

    def _one(self, A, b, phi_q, k: int, theta: Tensor) -> Tensor:
        return self._grid(A, b, phi_q, k, theta.unsqueeze(0))[0]  # (B,)

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        """Coarse log-α grid for every k in one pass, a zoom per k, polish the `n_polish` best."""
        A, b = td_moments(data.X, data.y, self.residual)
        phi_q = unpack(data.X, data.y, data.x_q)[3]
        d, K = b.shape[-1], max(self.steps)
        scale = max(torch.linalg.matrix_norm(A).mean().item() / math.sqrt(d), 1e-300)
        axis = math.log(1 / scale) + torch.linspace(math.log(1e-4), math.log(10.0), self.points)
        axis = axis.double()
        chunk = max(1, ELEMENT_BUDGET // (target.shape[0] * d))
        with torch.no_grad():  # (K+1, Q) losses, every k from one recurrence per chunk
            coarse = torch.cat(
                [
                    _finite_loss(step_values(A, b, phi_q, axis[i : i + chunk].exp(), K) - target)
                    for i in range(0, axis.shape[0], chunk)  # memory only
                ],
                dim=1,
            )
        spacing = torch.tensor([(axis[1] - axis[0]).item()], dtype=torch.float64)
        return zoom_and_polish(
            self.steps,
            coarse[list(self.steps)],
            axis.unsqueeze(-1),
            spacing,
            lambda k: chunked_loss(partial(self._grid, A, b, phi_q, k), target, d),
            lambda k: partial(self._one, A, b, phi_q, k),
            target,
            n_polish=self.n_polish,
        )

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        return {"alpha": theta[..., 0].exp()}

    def reference(self, X, y, x_q, steps, params):
        raise NotImplementedError


class TD0(ScalarStepTD):
    """k steps of batch TD(0) with one step α (`icgd.algorithms.td.batch_td0`)."""

    name = "td0"

    def reference(self, X, y, x_q, steps, params):
        phi, gphi, r, phi_q = unpack(X, y, x_q)
        out = batch_td0(phi, gphi, r, 1.0, steps=steps, alpha=float(params["alpha"]))
        return out.values(phi_q)[:, -1]


class ResidualGradient(ScalarStepTD):
    """k steps of residual gradient with one step α (`icgd.algorithms.td.residual_gradient`)."""

    name = "residual-gradient"
    residual = True

    def reference(self, X, y, x_q, steps, params):
        phi, gphi, r, phi_q = unpack(X, y, x_q)
        out = residual_gradient(phi, gphi, r, 1.0, steps=steps, alpha=float(params["alpha"]))
        return out.values(phi_q)[:, -1]


def _predict_C(A: Tensor, b: Tensor, phi_q: Tensor, k: int, theta: Tensor) -> Tensor:
    """Predictions (B,) of k steps `w ← w + C(b − Aw)`, C = θ reshaped (d, d) (row-major)."""
    d = phi_q.shape[1]
    C = theta.reshape(d, d)
    w = torch.zeros_like(b)
    for _ in range(k):  # a loop over the steps only
        w = w + (b - torch.einsum("bij,bj->bi", A, w)) @ C.T
    return (w * phi_q).sum(-1)


class PreconditionedTD0(PreconditionedGD):
    """k steps of batch TD(0) with one fitted d×d preconditioner C, α absorbed (module
    docstring); steps tried: `steps` (default 1, 2, 3). Parameter: `C` (d, d). The fit is
    preconditioned GD's (`fit_shared_matrix`) on the TD system A w = b, started from
    C = I / (‖A‖_F mean / √d)."""

    name = "preconditioned-td0"
    parameter_names = ("C",)

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        A, b = td_moments(data.X, data.y)
        phi_q = unpack(data.X, data.y, data.x_q)[3]
        d = phi_q.shape[1]
        scale = max(torch.linalg.matrix_norm(A).mean().item() / math.sqrt(d), 1e-300)
        start = torch.eye(d, dtype=torch.float64) / scale
        predict = partial(_predict_C, A, b, phi_q)
        return fit_shared_matrix((A, b), phi_q, target, self.steps, predict, start, self.max_nfev)

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        d = math.isqrt(theta.shape[-1])
        return {"C": theta.reshape(*theta.shape[:-1], d, d)}

    def reference(self, X, y, x_q, steps, params):
        phi, gphi, r, phi_q = unpack(X, y, x_q)
        C = params["C"].to(X.dtype)
        return batch_td0(phi, gphi, r, 1.0, steps=steps, C=C).values(phi_q)[:, -1]


class LSTD(FixedCandidate):
    """The TD fixed point `w* = A⁻¹ b` (`icgd.algorithms.td.td_fixed_point`): nothing to fit."""

    name = "lstd"

    def predictions(self, data: FitData) -> Tensor:
        return self.reference(data.X, data.y, data.x_q, None, {})

    def reference(self, X, y, x_q, steps, params):
        phi, gphi, r, phi_q = unpack(X, y, x_q)
        return (td_fixed_point(phi, gphi, r, 1.0) * phi_q).sum(-1)


TD_CANDIDATES = {c.name: c for c in (TD0, PreconditionedTD0, ResidualGradient, LSTD)}
TD_ALGORITHMS = tuple(TD_CANDIDATES)
TD_PROBE_ALGORITHMS = ("td0", "residual-gradient")
"""The iterates `probe_layers` should compare a TD model's layers with (fitted α from an
`Identification`, else the per-prompt default)."""


class _Iterates:
    """`predict(x_q) → (K+1, B)` of a TD run, as `probe_layers` reads iterates."""

    def __init__(self, result: TDResult) -> None:
        self.result = result

    def predict(self, x_q: Tensor) -> Tensor:
        d = self.result.weights.shape[-1]
        return self.result.values(x_q[:, :d]).T


def _step(X: Tensor, y: Tensor, p: Mapping[str, Any], residual: bool) -> dict[str, Any]:
    """`alpha=` given, or `C = I/‖A‖₂` per prompt (the default, module docstring)."""
    if p.get("alpha") is not None:
        return {"alpha": float(p["alpha"])}
    A = td_moments(X, y, residual)[0]
    norm = torch.linalg.matrix_norm(A, ord=2).clamp_min(1e-300)  # (B,)
    eye = torch.eye(A.shape[-1], dtype=A.dtype)
    return {"C": eye / norm[:, None, None]}


def _td0_iterates(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]) -> _Iterates:
    d = X.shape[-1] // 2
    return _Iterates(batch_td0(X[..., :d], X[..., d:], y, 1.0, steps=K, **_step(X, y, p, False)))


def _rg_iterates(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]) -> _Iterates:
    d = X.shape[-1] // 2
    step = _step(X, y, p, True)
    return _Iterates(residual_gradient(X[..., :d], X[..., d:], y, 1.0, steps=K, **step))


def _ptd0_iterates(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]) -> _Iterates:
    if p.get("C") is None:
        raise ValueError("probe_layers: preconditioned-td0 needs parameters {'C': (d, d)}")
    d = X.shape[-1] // 2
    C = torch.as_tensor(p["C"], dtype=X.dtype)
    return _Iterates(batch_td0(X[..., :d], X[..., d:], y, 1.0, steps=K, C=C))


CANDIDATE_FAMILIES["td"] = (TD_CANDIDATES, TD_ALGORITHMS)
PROBE_ALGORITHMS["td"] = TD_PROBE_ALGORITHMS
ITERATES["td0"] = _td0_iterates
ITERATES["residual-gradient"] = _rg_iterates
ITERATES["preconditioned-td0"] = _ptd0_iterates
