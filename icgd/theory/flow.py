"""Gradient flow of a differentiable loss, integrated by scipy's adaptive ODE solvers; float64.

Gradient flow is the ODE

    dθ/dt = −∇L(θ),   θ(0) = θ₀,

whose solution is the small-step limit of gradient descent ``θ_{k+1} = θ_k − η ∇L(θ_k)``:
GD with learning rate η at step k is (to first order in η) the flow at time ``t = k η``, so flow
time t corresponds to ``t / η`` GD steps. (The clock belongs to the loss as written: a training
loss ``c·L`` runs the same flow ``c`` times faster. icgd's losses have no ½, SPEC §1.) Along the
flow ``dL/dt = −‖∇L‖² ≤ 0``: the loss never increases.

`gradient_flow` integrates the ODE with ``scipy.integrate.solve_ivp`` (LSODA switches between
Adams and BDF as the problem turns stiff, which it does near a minimum with spread curvatures;
RK45 is the explicit Dormand–Prince pair). The right-hand side ``−∇L`` is computed by autograd
through ``loss``, which may be any differentiable float64 function of a flat tensor θ (p,) or of a
dict of named tensors (flattened in insertion order for the solver, unflattened for ``loss``).
With ``hessian=True`` the stiff methods also get the exact Jacobian ``−∇²L`` by autograd.

Gradient dominance (Gatmiry, Saunshi, Reddi, Jegelka, Kumar 2024, Thm 3.4; Polyak–Łojasiewicz):
the landscape satisfies ``‖∇L(θ)‖² ≥ μ (L(θ) − L*)`` on a region; along a flow that stays in it,
``L(t) − L* ≤ e^{−μt} (L(0) − L*)``. `gradient_dominance` measures the best such μ on the
recorded trajectory, ``min_t ‖∇L(θ(t))‖² / (L(θ(t)) − L*)``. For a quadratic
``L = ½ θᵀHθ`` (H ≻ 0, L* = 0) it is ``2 θᵀH²θ / θᵀHθ ≥ 2 λ_min(H)``, approached as θ(t) turns
towards the slowest eigenvector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_F64 = torch.float64
METHODS = ("LSODA", "RK45", "RK23", "DOP853", "Radau", "BDF")
Theta = Tensor | Mapping[str, Tensor]


@dataclass(frozen=True)
class FlowResult:
    """A recorded gradient-flow trajectory, T points.

    ``t`` (T,) times; ``theta_flat`` (T, p) parameters (names and shapes in ``shapes`` when the
    flow started from a dict, else ``None``); ``loss`` (T,) ``L(θ(t))``; ``grad_norm_sq`` (T,)
    ``‖∇L(θ(t))‖²``. Solver statistics: ``method``, ``success``, ``message``, ``nfev`` (loss and
    gradient evaluations by the solver), ``njev`` (Jacobians), ``nlu`` (LU decompositions).
    """

    t: Tensor
    theta_flat: Tensor
    loss: Tensor
    grad_norm_sq: Tensor
    shapes: dict[str, tuple[int, ...]] | None
    method: str
    success: bool
    message: str
    nfev: int
    njev: int
    nlu: int

    @property
    def theta(self) -> Tensor | dict[str, Tensor]:
        """``(T, p)``, or ``{name: (T, *shape)}`` for a flow started from a dict."""
        if self.shapes is None:
            return self.theta_flat
        return _unflatten(self.theta_flat, self.shapes)

    def at(self, index: int) -> Tensor | dict[str, Tensor]:
        """θ at recorded point ``index`` (e.g. -1 for the end), flat or as a dict like θ₀."""
        flat = self.theta_flat[index]
        return flat if self.shapes is None else _unflatten(flat, self.shapes)


def _flatten(theta0: Theta) -> tuple[Tensor, dict[str, tuple[int, ...]] | None]:
    """``(θ flat (p,), shapes or None)``, float64, detached."""
    if isinstance(theta0, Mapping):
        shapes = {k: tuple(torch.as_tensor(v).shape) for k, v in theta0.items()}
        parts = [torch.as_tensor(v, dtype=_F64).detach().reshape(-1) for v in theta0.values()]
        return torch.cat(parts), shapes
    flat = torch.as_tensor(theta0, dtype=_F64).detach()
    if flat.ndim != 1:
        raise ValueError(f"theta0 must be a flat (p,) tensor or a dict; got shape {flat.shape}")
    return flat, None


def _unflatten(flat: Tensor, shapes: dict[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """Views of ``flat`` (..., p) as ``{name: (..., *shape)}``; differentiable."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[..., start : start + size].reshape(*flat.shape[:-1], *shape)
        start += size
    return out


def _objective(loss: Callable, shapes) -> Callable[[Tensor], Tensor]:
    """``θ flat (p,) -> L`` (a 0-dim float64 tensor), checking what ``loss`` returns."""

    def value(flat: Tensor) -> Tensor:
        out = loss(flat if shapes is None else _unflatten(flat, shapes))
        if not isinstance(out, Tensor) or out.ndim != 0:
            raise ValueError(f"loss must return a 0-dim tensor, got {type(out).__name__}")
        return out.to(_F64)

    return value


def _value_and_grad(value: Callable[[Tensor], Tensor], y: np.ndarray) -> tuple[float, Tensor]:
    """``(L(θ), ∇L(θ) (p,))`` at the solver's state ``y``."""
    flat = torch.from_numpy(np.array(y, dtype=np.float64)).requires_grad_(True)
    val = value(flat)
    (grad,) = torch.autograd.grad(val, flat, allow_unused=True)
    return float(val.detach()), torch.zeros_like(flat) if grad is None else grad


def gradient_flow(
    loss: Callable[[Theta], Tensor],
    theta0: Theta,
    t_end: float,
    *,
    t_eval=None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    method: str = "LSODA",
    hessian: bool = False,
    max_step: float = math.inf,
) -> FlowResult:
    """Integrate ``dθ/dt = −∇L(θ)`` from ``θ(0) = θ₀`` to ``t_end`` (see the module docstring).

    Args:
        loss: ``θ -> L(θ)``, a 0-dim float64 tensor differentiable in θ (θ as ``theta0``: a
            flat (p,) tensor, or a dict of tensors with ``theta0``'s names and shapes).
        theta0: the initial point; copied to float64, never modified.
        t_end: final time (> 0); flow time t is ``t / η`` steps of GD with learning rate η.
        t_eval: times (increasing, within [0, t_end]) at which the trajectory is recorded;
            ``None`` records the solver's accepted steps.
        rtol, atol: the solver's relative and absolute local error tolerances (on θ).
        method: a ``solve_ivp`` method, one of `METHODS`; LSODA (stiff-aware) or RK45.
        hessian: give the implicit methods (LSODA, Radau, BDF) the Jacobian ``−∇²L`` by autograd
            (p backward passes) instead of finite differences.
        max_step: largest step the solver may take.

    Returns a `FlowResult` with ``L`` and ``‖∇L‖²`` at every recorded point. A solver failure is
    reported in ``success``/``message`` (the trajectory up to it is kept), not raised.
    """
    from scipy.integrate import solve_ivp  # here: `import icgd.theory` stays light

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not t_end > 0:
        raise ValueError(f"t_end must be > 0, got {t_end}")
    flat0, shapes = _flatten(theta0)
    value = _objective(loss, shapes)

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        return -_value_and_grad(value, y)[1].numpy()

    def jac(_t: float, y: np.ndarray) -> np.ndarray:
        flat = torch.from_numpy(np.array(y, dtype=np.float64))
        return -torch.autograd.functional.hessian(value, flat).numpy()

    kwargs = {"jac": jac} if hessian and method in ("LSODA", "Radau", "BDF") else {}
    t_eval = None if t_eval is None else np.asarray(t_eval, dtype=np.float64)
    sol = solve_ivp(
        rhs, (0.0, float(t_end)), flat0.numpy(), method=method, t_eval=t_eval, rtol=rtol,
        atol=atol, max_step=max_step, **kwargs,
    )  # fmt: skip
    thetas = torch.from_numpy(np.ascontiguousarray(sol.y.T))  # (T, p)
    values, grads = zip(*(_value_and_grad(value, y) for y in sol.y.T), strict=True)
    return FlowResult(
        t=torch.from_numpy(sol.t.copy()),
        theta_flat=thetas,
        loss=torch.tensor(values, dtype=_F64),
        grad_norm_sq=torch.stack([(g * g).sum() for g in grads]).to(_F64),
        shapes=shapes,
        method=method,
        success=bool(sol.success),
        message=str(sol.message),
        nfev=int(sol.nfev),
        njev=int(sol.njev),
        nlu=int(sol.nlu),
    )


def dominance_ratios(
    flow: FlowResult, loss_star: float, *, floor: float | None = None
) -> tuple[Tensor, float]:
    """``(ratio (T,), floor)``: ``‖∇L‖² / (L − L*)`` at each recorded point, NaN where
    ``L − L* ≤ floor``.

    Why a floor: near the minimum ``L − L*`` is a difference of two nearly equal numbers. Its
    rounding error is ~``ε|L*|`` (ε ≈ 2.2e-16) plus whatever error ``L*`` itself carries, and the
    solver's error δ in θ moves ``L`` by ~``‖∇L‖ δ``; once ``L − L*`` is of that order the ratio
    is a quotient of noise, not a property of the landscape. The default floor,
    ``1e-10 · max(|L*|, L(θ₀) − L*)``, keeps ~6 significant digits of ``L − L*`` against float64
    rounding; pass a larger one when ``L*`` is only known to a looser accuracy (e.g. a Monte
    Carlo optimum: its SE). A point with ``L − L* < −floor`` means ``L*`` is not a lower bound on
    the trajectory, and raises ``ValueError``.
    """
    gap = flow.loss - float(loss_star)
    if floor is None:
        floor = 1e-10 * max(abs(float(loss_star)), float(gap[0]))
    if bool((gap < -floor).any()):
        worst = float(gap.min())
        raise ValueError(f"L − L* = {worst:.3e} < −floor = {-floor:.3e}: loss_star is too high")
    ratio = torch.where(gap > floor, flow.grad_norm_sq / gap, torch.nan)
    return ratio, float(floor)


def gradient_dominance(
    flow: FlowResult, loss_star: float, *, floor: float | None = None
) -> tuple[float, float]:
    """``(μ̂, t̂)``: ``μ̂ = min_t ‖∇L(θ(t))‖² / (L(θ(t)) − L*)`` over the recorded points with
    ``L − L* > floor`` (Gatmiry et al.'s gradient dominance constant on this trajectory), and the
    time ``t̂`` where it is attained. Floor and its default: `dominance_ratios`. Raises
    ``ValueError`` when no point is above the floor."""
    ratio, floor = dominance_ratios(flow, loss_star, floor=floor)
    kept = ~torch.isnan(ratio)
    if not bool(kept.any()):
        raise ValueError(f"no recorded point has L − L* > floor = {floor:.3e}")
    idx = int(torch.where(kept, ratio, torch.inf).argmin())
    return float(ratio[idx]), float(flow.t[idx])
