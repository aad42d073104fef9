"""Candidate algorithms for `identify`: what each one's free parameters are and how to fit them.

A candidate (the `Candidate` protocol) fits its free parameters θ to a model's predictions on the
fitting prompts (one `StepFit` per number of steps k tried, `icgd.analysis.identify.fitting`),
names them (`parameters`), and predicts on new prompts with the *reference* implementation in
`icgd.algorithms` (`reference`), so a fitted candidate is scored by the same code every other
part of icgd trusts; a test checks that fitting predictions and reference agree at 1e-10.

The candidates linear in the query whose iterate is a filter `h(Ŝ) b` of the normal equations
(`icgd.analysis.identify.spectral`) are fitted in closed form over whole parameter grids:

| name               | free parameters (search coordinates)       | steps k tried (default) |
|--------------------|--------------------------------------------|-------------------------|
| `gd`               | step η (log η)                             | 1 … 8                   |
| `debiased-gd`      | step m (log m), centred covariates         | 1 … 8                   |
| `iterative-newton` | α of `M_0 = αŜ` (log α)                    | 0 … 6                   |
| `chebyshev`        | shared interval (log λ_hi, log(λ_lo/λ_hi)) | 1 … 8                   |
| `ridge`            | λ of `‖Xw − y‖² + λ‖w‖²` (log λ)           | —                       |
| `ols`              | none                                       | —                       |

`preconditioned-gd` (a full d×d Γ) lives in `icgd.analysis.identify.preconditioned`, `gd-beta`
(GD from a fitted start β) in `icgd.analysis.identify.gd_beta`.

Grids (ours): with `c̄` the mean over prompts of `tr Ŝ / d` (the mean curvature), η and m on
`[10⁻⁴, 10]/c̄`, α on `[10⁻⁴, 10]/mean λ_max(Ŝ)²`, λ on `[10⁻⁸, 10⁴]·n c̄`, λ_hi on
`[0.1, 30]·c̄` and λ_lo/λ_hi on `[10⁻⁴, 1]`, log-spaced. Only the `n_polish` (default 3) values of
k with the least loss after zooming are polished; the bootstrap chooses among them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from icgd.algorithms import (
    chebyshev_iteration,
    debiased_gd,
    gradient_descent,
    iterative_newton,
    ols,
    ridge,
)
from icgd.analysis.identify.fitting import (
    ELEMENT_BUDGET,
    FitData,
    StepFit,
    chunked_loss,
    product_grid,
    zoom_and_polish,
)
from icgd.analysis.identify.spectral import (
    Spectrum,
    chebyshev_filter,
    chebyshev_interval,
    chebyshev_predictions,
    gd_filter,
    newton_filter,
    ols_filter,
    ridge_filter,
)


@runtime_checkable
class Candidate(Protocol):
    """A candidate algorithm for `identify` (module docstring)."""

    name: str
    parameter_names: tuple[str, ...]

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        """Fit θ to `target` (B,) on `data`: one StepFit per k tried (at least one)."""
        ...

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        """Named natural-scale parameters of search coordinates θ (..., P)."""
        ...

    def reference(
        self, X: Tensor, y: Tensor, x_q: Tensor, steps: int | None, params: dict[str, Tensor]
    ) -> Tensor:
        """Predictions (B,) of the reference algorithm with these parameters."""
        ...


def _check_steps(steps: Sequence[int], least: int) -> tuple[int, ...]:
    out = tuple(int(k) for k in steps)
    if not out or any(k < least for k in out) or len(set(out)) != len(out):
        raise ValueError(f"steps must be distinct integers >= {least}, got {list(steps)}")
    return out


def _log_axis(center: float, lo: float, hi: float, points: int) -> Tensor:
    """`log center + linspace(log lo, log hi, points)`: a log-spaced axis in search coordinates."""
    return math.log(center) + torch.linspace(math.log(lo), math.log(hi), points).double()


class SpectralCandidate:
    """Base of the closed-form candidates: coarse grid over every k, a zoom per k, then polish
    the `n_polish` best k (module docstring). Subclasses give `axes`, `filters`, `parameters`,
    `reference`, and the class attributes below."""

    name: ClassVar[str]
    parameter_names: ClassVar[tuple[str, ...]]
    centred: ClassVar[bool] = False
    least_steps: ClassVar[int] = 1
    n_zoom: ClassVar[int | None] = None  # zoom only the n_zoom best k of the coarse grid
    zoom_rounds: ClassVar[int] = 6
    zoom_points: ClassVar[int] = 9
    default_steps: ClassVar[tuple[int, ...] | None] = tuple(range(1, 9))  # None: not iterative
    upper: ClassVar[tuple[float, ...] | None] = None  # upper bounds of the search coordinates

    def __init__(self, steps: Sequence[int] | None = None, *, n_polish: int = 3) -> None:
        if self.default_steps is None and steps is not None:
            raise ValueError(f"{self.name} is not iterative: it takes no steps")
        steps = self.default_steps if steps is None else steps
        self.steps = None if steps is None else _check_steps(steps, self.least_steps)
        if n_polish < 1:
            raise ValueError(f"n_polish must be >= 1, got {n_polish}")
        self.n_polish = n_polish

    def axes(self, spec: Spectrum) -> list[Tensor]:
        raise NotImplementedError

    def filters(self, spec: Spectrum, theta: Tensor, k: int | None) -> Tensor:
        """Filter values (Q, B, d) at search coordinates θ (Q, P) and k steps."""
        raise NotImplementedError

    def _grid_predictions(self, spec: Spectrum, k: int | None, theta: Tensor) -> Tensor:
        return spec.predict(self.filters(spec, theta, k))  # (Q, B)

    def _predict_one(self, spec: Spectrum, k: int | None, theta: Tensor) -> Tensor:
        return self._grid_predictions(spec, k, theta.unsqueeze(0))[0]  # (B,)

    def coarse(self, spec: Spectrum, grid: Tensor, target: Tensor) -> Tensor:
        """Losses (K, Q) of every k tried at every grid point θ (Q, P)."""
        d = spec.s.shape[-1]
        ks = self.steps or (None,)
        return torch.stack(
            [chunked_loss(partial(self._grid_predictions, spec, k), target, d)(grid) for k in ks]
        )

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        """A coarse grid over every k, a zoom for each (or the `n_zoom` best) k, then the
        least-squares polish of the `n_polish` best (`icgd.analysis.identify.fitting`)."""
        spec = data.centred if self.centred else data.spectrum
        axes = self.axes(spec)
        grid = product_grid(axes)  # (Q, P)
        spacing = torch.tensor([(a[-1] - a[0]).item() / (len(a) - 1) for a in axes]).double()
        coarse = self.coarse(spec, grid, target)  # (K, Q)
        upper = None if self.upper is None else torch.tensor(self.upper).double()
        d = spec.s.shape[-1]
        # Zoom every k by default: the coarse grid alone can rank the k of a sharp fit (Newton,
        # whose loss moves with α^(2^k)) below others (tested).
        return zoom_and_polish(
            self.steps or (None,),
            coarse,
            grid,
            spacing,
            lambda k: chunked_loss(partial(self._grid_predictions, spec, k), target, d),
            lambda k: partial(self._predict_one, spec, k),
            target,
            n_polish=self.n_polish,
            n_zoom=self.n_zoom,
            rounds=self.zoom_rounds,
            points=self.zoom_points,
            upper=upper,
        )


class GradientDescent(SpectralCandidate):
    """k steps of GD from 0 with one step size η (`icgd.algorithms.gradient_descent`)."""

    name = "gd"
    parameter_names = ("eta",)

    def axes(self, spec: Spectrum) -> list[Tensor]:
        curvature = spec.s.mean().item()  # c̄ = mean tr(Ŝ)/d
        return [_log_axis(1.0 / max(curvature, 1e-300), 1e-4, 10.0, 57)]

    def filters(self, spec: Spectrum, theta: Tensor, k: int | None) -> Tensor:
        return gd_filter(spec.s, theta[:, 0].exp(), int(k))

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        return {"eta": theta[..., 0].exp()}

    def reference(self, X, y, x_q, steps, params):
        return gradient_descent(X, y, float(params["eta"]), steps).predict(x_q)[-1]


class OneStepGD(GradientDescent):
    """One GD step from 0, ``ŵ = η Xᵀy/n``, η fitted: the one-layer reference of von Oswald et
    al. 2023 and Akyürek et al. 2023, which deeper models are said to leave behind."""

    name = "one-step-gd"
    default_steps = (1,)


class DebiasedGD(GradientDescent):
    """k steps of debiased GD (centred covariates, raw query) with step m
    (`icgd.algorithms.debiased_gd`, He et al. 2025)."""

    name = "debiased-gd"
    parameter_names = ("step",)
    centred = True

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        return {"step": theta[..., 0].exp()}

    def reference(self, X, y, x_q, steps, params):
        return debiased_gd(X, y, float(params["step"]), steps).predict(x_q)[-1]


class IterativeNewton(SpectralCandidate):
    """k Newton–Schulz steps from `M_0 = αŜ` with one α (`icgd.algorithms.iterative_newton`)."""

    name = "iterative-newton"
    parameter_names = ("alpha",)
    least_steps = 0
    default_steps = tuple(range(0, 7))

    def axes(self, spec: Spectrum) -> list[Tensor]:
        scale = spec.s[:, -1].square().mean().item()  # mean λ_max(Ŝ)²
        return [_log_axis(1.0 / max(scale, 1e-300), 1e-4, 10.0, 57)]

    def filters(self, spec: Spectrum, theta: Tensor, k: int | None) -> Tensor:
        return newton_filter(spec.s, theta[:, 0].exp(), int(k))

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        return {"alpha": theta[..., 0].exp()}

    def reference(self, X, y, x_q, steps, params):
        return iterative_newton(X, y, steps, alpha=float(params["alpha"])).predict(x_q)[-1]


class Ridge(SpectralCandidate):
    """Ridge regression `(XᵀX + λI)⁻¹Xᵀy` with one λ (`icgd.algorithms.ridge`)."""

    name = "ridge"
    parameter_names = ("lam",)
    default_steps = None

    def axes(self, spec: Spectrum) -> list[Tensor]:
        scale = spec.n * spec.s.mean().item()  # n c̄ = mean tr(XᵀX)/d
        return [_log_axis(max(scale, 1e-300), 1e-8, 1e4, 61)]

    def filters(self, spec: Spectrum, theta: Tensor, k: int | None) -> Tensor:
        return ridge_filter(spec.s, theta[:, 0].exp(), spec.n)

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        return {"lam": theta[..., 0].exp()}

    def reference(self, X, y, x_q, steps, params):
        return (ridge(X, y, float(params["lam"])) * x_q).sum(-1)


class Chebyshev(SpectralCandidate):
    """k steps of Chebyshev iteration on one shared interval `[λ_lo, λ_hi]`
    (`icgd.algorithms.chebyshev_iteration`); search coordinates `(log λ_hi, log(λ_lo/λ_hi))`."""

    name = "chebyshev"
    parameter_names = ("lam_lo", "lam_hi")
    upper = (math.inf, 0.0)
    n_zoom = 4  # a 2-D zoom per k costs a recurrence per point: only the 4 best k
    zoom_rounds = 5
    zoom_points = 7

    def axes(self, spec: Spectrum) -> list[Tensor]:
        curvature = max(spec.s.mean().item(), 1e-300)
        ratio = torch.linspace(math.log(1e-4), 0.0, 13).double()
        return [_log_axis(curvature, 0.1, 30.0, 17), ratio]

    def filters(self, spec: Spectrum, theta: Tensor, k: int | None) -> Tensor:
        lo, hi = chebyshev_interval(theta)
        return chebyshev_filter(spec.s, lo, hi, int(k))

    def coarse(self, spec: Spectrum, grid: Tensor, target: Tensor) -> Tensor:
        """One pass of the recurrence gives every k (`chebyshev_predictions`)."""
        assert self.steps is not None
        k_max = max(self.steps)
        chunk = max(1, ELEMENT_BUDGET // (target.shape[0] * spec.s.shape[-1]))
        losses = []
        with torch.no_grad():
            for i in range(0, grid.shape[0], chunk):  # memory only: each chunk is batched
                interval = chebyshev_interval(grid[i : i + chunk])
                preds = chebyshev_predictions(spec, *interval, k_max)  # (k_max+1, q, B)
                err = (preds - target).square().mean(-1)  # (k_max+1, q)
                losses.append(torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf)))
        return torch.cat(losses, dim=1)[list(self.steps)]  # (K, Q)

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        hi = theta[..., 0].exp()
        return {"lam_lo": hi * theta[..., 1].clamp_max(0).exp(), "lam_hi": hi}

    def reference(self, X, y, x_q, steps, params):
        interval = (float(params["lam_lo"]), float(params["lam_hi"]))
        return chebyshev_iteration(X, y, steps, interval=interval).predict(x_q)[-1]


class FixedCandidate:
    """Base of the candidates with nothing to fit: one StepFit of `predictions(data)`."""

    name: ClassVar[str]
    parameter_names: tuple[str, ...] = ()

    def predictions(self, data: FitData) -> Tensor:
        """The algorithm's predictions (B,) on the fitting prompts."""
        raise NotImplementedError

    def fit(self, data: FitData, target: Tensor) -> list[StepFit]:
        pred = self.predictions(data)
        loss = (pred - target).square().mean().item()
        theta = torch.zeros(0, dtype=torch.float64)
        return [StepFit(steps=None, theta=theta, loss=loss, predict=lambda z: pred)]

    def parameters(self, theta: Tensor) -> dict[str, Tensor]:
        return {}


class OrdinaryLeastSquares(FixedCandidate):
    """Minimum-norm least squares `X⁺y` (`icgd.algorithms.ols`): nothing to fit."""

    name = "ols"

    def predictions(self, data: FitData) -> Tensor:
        spec = data.spectrum
        return spec.predict(ols_filter(spec.s, spec.n).unsqueeze(0))[0]  # (B,)

    def reference(self, X, y, x_q, steps, params):
        return (ols(X, y) * x_q).sum(-1)
