"""The layer ↔ iteration maps of `higher-order` and the fits its claims read.

`matched_steps` turns a SimE table (layers × iterations) into the iteration each layer matches;
`layer_fits` fits, over the layers whose probe reads y_q well, the matched Newton iterations
against the layer index (a line) and the log-ratio of matched GD steps to Newton iterations
(a line in log₂). Both work on plain lists too, so `claims` recomputes them from result.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MIN_FIT_LAYERS = 3  # a line through two points always fits: at least three layers are fitted


def matched_steps(sime: Tensor, tie_tol: float) -> list[int]:
    """Per layer (row of sime (L+1, K+1)), the fewest iterations k whose SimE is within `tie_tol`
    of the row's largest (NaN counts as −∞; an all-NaN row gives 0).

    Why not the plain argmax (`LayerProbes.best_steps`): once an iteration has converged, its
    later iterates are the same predictor up to rounding (Newton in ≈ 10 steps at d = 4, GD
    in a few hundred), and the argmax among SimE values equal to ~1e−15 is decided by rounding,
    e.g. k = 17 for a layer that matches the converged k = 9. The fewest steps that reach the
    best match is the number of iterations the layer is worth.
    """
    table = torch.nan_to_num(sime.double(), nan=-math.inf)  # (L+1, K+1)
    best = table.max(dim=1, keepdim=True).values  # (L+1, 1)
    reached = table >= best - tie_tol  # (L+1, K+1); an all-−∞ row is all True
    return [int(i) for i in reached.to(torch.int8).argmax(dim=1).tolist()]


def line_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line `y ≈ a + b x`: (slope b, intercept a, R² of the fit); R² is NaN when y
    is constant, everything NaN with fewer than two distinct x."""
    xs = torch.tensor([float(v) for v in x], dtype=torch.float64)
    ys = torch.tensor([float(v) for v in y], dtype=torch.float64)
    if xs.numel() < 2 or float(xs.var()) == 0:
        return math.nan, math.nan, math.nan
    xc, yc = xs - xs.mean(), ys - ys.mean()
    slope = float((xc * yc).sum() / xc.square().sum())
    intercept = float(ys.mean()) - slope * float(xs.mean())
    total = float(yc.square().sum())
    resid = float((yc - slope * xc).square().sum())
    r2 = 1.0 - resid / total if total > 0 else math.nan
    return slope, intercept, r2


def fitted_layers(probe_r2: Sequence[float | None], r2_min: float) -> list[int]:
    """Layers ℓ ≥ 1 (not the embedding) whose y_q probe has held-out R² ≥ `r2_min` (None, i.e.
    NaN in result.json, never)."""
    return [
        layer
        for layer in range(1, len(probe_r2))
        if probe_r2[layer] is not None and math.isfinite(probe_r2[layer])
        if probe_r2[layer] >= r2_min
    ]


def layer_fits(
    probe_r2: Sequence[float | None] | None,
    newton: Sequence[float] | None,
    gd: Sequence[float] | None,
    r2_min: float,
    gd_cap: int | None = None,
) -> dict[str, float]:
    """The fits the claims read, over the layers of `fitted_layers` (NaN with fewer than
    `MIN_FIT_LAYERS`, or when a map is missing):

    - `newton.slope`, `newton.intercept`, `newton.fit_r2`: the line k_N(ℓ) ≈ a + bℓ;
    - `gd.log2_slope`: slope of log₂(k_GD + 1) against ℓ (1 a layer: GD steps double a layer);
    - `ratio.log2_slope`: slope of log₂((k_GD + 1)/(k_N + 1)) against ℓ; positive when GD needs
      ever more steps per Newton iteration (+1: a layer can match k = 0);
    - `fit_layers`, `first_fit_layer`: how many layers, and the first; `gd.capped`: fitted
      layers whose GD match is the last step compared (`gd_cap`), where the true match may lie
      beyond it (the ratio slope is then an underestimate).
    """
    nan = math.nan
    out = {
        "fit_layers": 0.0,
        "first_fit_layer": nan,
        "newton.slope": nan,
        "newton.intercept": nan,
        "newton.fit_r2": nan,
        "gd.log2_slope": nan,
        "ratio.log2_slope": nan,
        "gd.capped": nan,
    }
    if probe_r2 is None or newton is None or gd is None:
        return out
    layers = fitted_layers(probe_r2, r2_min)
    out["fit_layers"] = float(len(layers))
    if len(layers) < MIN_FIT_LAYERS or max(layers) >= min(len(newton), len(gd)):
        return out
    k_n = [_float(newton[layer]) for layer in layers]
    k_g = [_float(gd[layer]) for layer in layers]
    slope, intercept, r2 = line_fit(layers, k_n)
    out |= {
        "first_fit_layer": float(layers[0]),
        "newton.slope": slope,
        "newton.intercept": intercept,
        "newton.fit_r2": r2,
        "gd.log2_slope": line_fit(layers, [math.log2(g + 1) for g in k_g])[0],
        "ratio.log2_slope": line_fit(
            layers, [math.log2((g + 1) / (n + 1)) for g, n in zip(k_g, k_n, strict=True)]
        )[0],
        "gd.capped": float(sum(g >= gd_cap for g in k_g)) if gd_cap is not None else nan,
    }
    return out


def _float(value: float | None) -> float:
    """None (NaN in result.json) as NaN."""
    return math.nan if value is None else float(value)
