"""Layer by layer: linear read-out probes of the query token and the layer ↔ iteration map.

For every layer (or loop) ℓ = 0 … L of a model, `h_ℓ(D) ∈ R^D` is the query token's
representation after ℓ layers (`icgd.analysis.identify.views`; ℓ = 0 is the input). A *probe* is a
ridge regression with intercept, fitted on a fitting set of prompts and scored on a held-out set:

    (W, c) = argmin Σ_b ‖Wᵀ h_b + c − t_b‖² + λ ‖W‖_F²,   λ = ridge · tr(H_cᵀ H_c) / D,
    W = (H_cᵀ H_c + λ I)⁻¹ H_cᵀ T_c,   c = t̄ − Wᵀ h̄,

with `H_c`, `T_c` the fitting features and targets centred by their fitting means (closed form,
all targets at once). The targets are (a) `y_q`, and (b) every iterative algorithm's k-th
iterate prediction `x_qᵀ w_k`, k = 0 … K (`iterate_predictions`); each probe is scored by its
held-out R² (NaN for a constant target, e.g. `w_0 = 0`).

**Layer ↔ iteration map** (Fu, Chen, Jia, Sharan 2024, SPEC §6): the layer's read-out of y_q on
the held-out prompts, `ŷ^ℓ`, is compared with each iterate `ŷ_k` of an algorithm by SimE, the
cosine between their error vectors over prompts (`icgd.analysis.identify.metrics.sime_matrix`);
the full (L+1) × (K+1) matrix is returned with its argmax over k for each layer (`best_steps`).
An L-layer model that runs k = ℓ steps by layer ℓ gives the diagonal.

The read-out is the y_q probe (default) or the model's own head applied to the layer
(`readout="native"`). *Calibration* (ours, default with the probe): a probe fitted to y_q also
rescales what it reads — a layer holding a shrunk iterate `ŷ_ℓ` is read as `a ŷ_ℓ + …` with
`a > 1`, whose errors look like those of a *later* iterate (measured on a 3-layer GD
construction, d = 4, n = 20, η = 0.3: map (0, 6, 7, 8) instead of (0, 1, 2, 3)). So each
iterate gets the same freedom: it is replaced by its least-squares affine fit to y_q on the
fitting prompts, `a_k ŷ_k + c_k` (`calibrate`), before SimE; then the same construction maps
to the diagonal. A second map needs no read-out at all: `decoded_steps`, the k whose iterate
the layer's probe decodes best (largest held-out R²; a layer from which nothing decodes better
than a constant is mapped to the algorithm's constant starting iterate, e.g. k = 0 for GD).

Iterates (`ITERATES`), their parameters by name (an `Identification` passed as `parameters` gives
each algorithm it fitted its fitted values), and their defaults (ours):

- `gd`: `eta`; default the one-step line search on the fitting prompts (`best_step_size`);
- `iterative-newton`: `alpha`; default `1/‖Ŝ‖₂²` per prompt (`icgd.algorithms.newton_alpha`);
- `richardson`: `omega`; default `2/(λ_lo + λ_hi)` per prompt;
- `chebyshev`: `lam_lo`, `lam_hi`; default the spectral interval per prompt;
- `debiased-gd`: `step`; default the one-step line search on the centred covariates;
- `preconditioned-gd`: `gamma` (d, d), required.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from icgd.algorithms import (
    best_step_size,
    chebyshev_iteration,
    debiased_gd,
    gradient_descent,
    iterative_newton,
    preconditioned_gd,
    richardson_iteration,
)
from icgd.analysis.identify.metrics import sime_matrix
from icgd.analysis.identify.result import Identification, LayerProbes
from icgd.analysis.identify.views import Prompts, draw_prompts, model_view
from icgd.core.rng import derive_seed, make_generator
from icgd.core.threads import single_threaded


def _gd(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]):
    return gradient_descent(X, y, float(p["eta"]), K)


def _newton(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]):
    alpha = p.get("alpha")
    return iterative_newton(X, y, K, alpha=None if alpha is None else float(alpha))


def _richardson(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]):
    omega = p.get("omega")
    return richardson_iteration(X, y, K, omega=None if omega is None else float(omega))


def _chebyshev(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]):
    given = p.get("lam_lo") is not None and p.get("lam_hi") is not None
    interval = (float(p["lam_lo"]), float(p["lam_hi"])) if given else None
    return chebyshev_iteration(X, y, K, interval=interval)


def _debiased(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]):
    return debiased_gd(X, y, float(p["step"]), K)


def _pgd(X: Tensor, y: Tensor, K: int, p: Mapping[str, Any]):
    gamma = torch.as_tensor(p["gamma"], dtype=X.dtype)
    return preconditioned_gd(X, y, gamma.expand(K, *gamma.shape))


ITERATES: dict[str, Callable] = {
    "gd": _gd,
    "iterative-newton": _newton,
    "richardson": _richardson,
    "chebyshev": _chebyshev,
    "debiased-gd": _debiased,
    "preconditioned-gd": _pgd,
}


def iterate_predictions(
    name: str, X: Tensor, y: Tensor, x_q: Tensor, max_steps: int, params: Mapping[str, Any]
) -> Tensor:
    """Predictions `x_qᵀ w_k` of iterates k = 0 … K of algorithm `name` (`ITERATES`):
    X (B, n, d), y (B, n), x_q (B, d) → (K+1, B)."""
    if name not in ITERATES:
        raise ValueError(f"unknown iterative algorithm {name!r}; known: {sorted(ITERATES)}")
    return ITERATES[name](X, y, max_steps, params).predict(x_q)


def _default_parameters(name: str, fit: Prompts) -> dict[str, Any]:
    """The documented defaults (module docstring) of one algorithm on the fitting prompts."""
    if name == "gd":
        return {"eta": best_step_size(fit.X, fit.y, fit.x_q, fit.y_q, 1)}
    if name == "debiased-gd":
        X_c = fit.X - fit.X.mean(dim=1, keepdim=True)
        return {"step": best_step_size(X_c, fit.y, fit.x_q, fit.y_q, 1)}
    if name == "preconditioned-gd":
        raise ValueError("probe_layers: preconditioned-gd needs parameters {'gamma': (d, d)}")
    return {}


def _parameters(
    names: Sequence[str], given: Mapping[str, Mapping[str, Any]] | Identification | None, fit
) -> dict[str, dict[str, Any]]:
    """Each algorithm's parameters: given, fitted by an Identification, or the defaults."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if isinstance(given, Identification) and name in given.names:
            out[name] = dict(given[name].values())
        elif isinstance(given, Mapping) and name in given:
            out[name] = dict(given[name])
        else:
            out[name] = _default_parameters(name, fit)
    return out


def ridge_probe(H: Tensor, T: Tensor, H_new: Tensor, ridge: float) -> Tensor:
    """Fit the ridge probe with intercept (module docstring) on features H (B, D) and targets
    T (B, M); predict on H_new (B', D) → (B', M). float64."""
    H, T, H_new = H.double(), T.double(), H_new.double()
    mu_h, mu_t = H.mean(0), T.mean(0)
    Hc = H - mu_h
    gram = Hc.T @ Hc  # (D, D)
    scale = torch.trace(gram).item() / gram.shape[0]
    lam = ridge * (scale if scale > 0 else 1.0)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    W = torch.linalg.solve(gram + lam * eye, Hc.T @ (T - mu_t))  # (D, M)
    return (H_new - mu_h) @ W + mu_t


def _r2_columns(pred: Tensor, T: Tensor) -> Tensor:
    """Held-out R² of every column: (B, M), (B, M) → (M,), NaN for a constant target."""
    total = (T - T.mean(0)).square().sum(0)
    resid = (pred - T).square().sum(0)
    ok = total > 1e-24 * (1 + T.square().sum(0))
    return torch.where(ok, 1 - resid / torch.where(ok, total, 1.0), torch.nan)


def calibrate(fit_pred: Tensor, fit_target: Tensor, pred: Tensor) -> Tensor:
    """Each row's least-squares affine fit to the target: `a_k ŷ_k + c_k` with (a_k, c_k)
    fitted on the fitting prompts (minimum norm for a constant row). fit_pred (K, B),
    fit_target (B,), pred (K, B') → (K, B')."""
    K, B = fit_pred.shape
    A = torch.stack([fit_pred, torch.ones_like(fit_pred)], dim=-1)  # (K, B, 2)
    rhs = fit_target.expand(K, B).unsqueeze(-1)  # (K, B, 1)
    coef = torch.linalg.lstsq(A, rhs, driver="gelsd").solution[..., 0]  # (K, 2)
    return pred * coef[:, :1] + coef[:, 1:]


def _layer_tables(view, fit: Prompts, held: Prompts, targets: tuple, ridge: float, native: bool):
    """Per layer: the probes' held-out R² (L+1, M) and the y_q read-outs (L+1, B'), either the
    probe's or (`native`) the model's own; and the layer names."""
    T_fit, T_held = targets
    res_fit, _ = view.residuals(fit.X, fit.y, fit.x_q)
    res_held, own = view.residuals(held.X, held.y, held.x_q, native=native)
    r2, readout = [], []
    for name in res_fit:
        pred = ridge_probe(res_fit[name], T_fit, res_held[name], ridge)  # (B', M)
        r2.append(_r2_columns(pred, T_held))
        readout.append(own[name] if own is not None else pred[:, 0])
    return torch.stack(r2), torch.stack(readout), tuple(res_fit)


def _argmax(table: Tensor) -> tuple[int, ...]:
    """The column of the largest entry of each row (NaN counts as −∞)."""
    return tuple(torch.nan_to_num(table, nan=-math.inf).argmax(1).tolist())


def _decoded(r2: Tensor, iterates: Tensor) -> tuple[int, ...]:
    """The k of largest probe R² per layer, r2 (L+1, K+1). Where no iterate decodes better than
    a constant (every R² ≤ 0), the layer holds the starting point: the first constant iterate
    (k = 0 for GD, `w_0 = 0`), or −1 if the algorithm has none. iterates: (K+1, B)."""
    constant = (iterates - iterates[:, :1]).abs().amax(1) == 0  # (K+1,)
    start = int(constant.nonzero()[0]) if constant.any() else -1
    best = torch.nan_to_num(r2, nan=-math.inf)
    return tuple(int(row.argmax()) if row.max() > 0 else start for row in best)


@single_threaded
def probe_layers(
    model: Any,
    task: Any,
    *,
    algorithms: Sequence[str] = ("gd", "iterative-newton"),
    max_steps: int = 8,
    parameters: Mapping[str, Mapping[str, Any]] | Identification | None = None,
    readout: Literal["probe", "native"] = "probe",
    calibrated: bool | None = None,
    n_prompts: int = 4096,
    n_heldout: int | None = None,
    seed: int = 0,
    ridge: float = 1e-8,
    prompt: Callable | None = None,
    chunk: int = 4096,
) -> LayerProbes:
    """Linear probes of every layer and the layer ↔ iteration map (module docstring).

    model, task, prompt, chunk: as in `identify`. algorithms: iterative algorithms (`ITERATES`);
    max_steps: K; parameters: per algorithm, or an `Identification`; readout: the layer's y_q
    read-out compared by SimE, the ridge `probe` or the model's own head (`native`);
    calibrated: pass the iterates through the same affine fit to y_q as the probe (default: for
    the probe read-out); n_prompts / n_heldout: probe fitting / scoring prompts (streams
    `derive_seed(seed, "probe", "fit" / "heldout")`); ridge: the probe's relative λ.
    """
    n_heldout = n_prompts if n_heldout is None else n_heldout
    if n_prompts < 2 or n_heldout < 2 or ridge < 0 or max_steps < 0:
        raise ValueError(
            f"need n_prompts, n_heldout >= 2, ridge >= 0 and max_steps >= 0, got "
            f"{n_prompts}, {n_heldout}, {ridge}, {max_steps}"
        )
    if readout not in ("probe", "native"):
        raise ValueError(f"readout must be 'probe' or 'native', got {readout!r}")
    calibrated = readout == "probe" if calibrated is None else calibrated
    view = model_view(model, prompt=prompt, chunk=chunk)
    device = getattr(task, "device", "cpu")
    fit, held = (
        draw_prompts(task, size, make_generator(derive_seed(seed, "probe", name), device))
        for size, name in ((n_prompts, "fit"), (n_heldout, "heldout"))
    )
    K = int(max_steps)
    params = _parameters(algorithms, parameters, fit)
    it_fit = {a: iterate_predictions(a, fit.X, fit.y, fit.x_q, K, params[a]) for a in algorithms}
    it_held = {
        a: iterate_predictions(a, held.X, held.y, held.x_q, K, params[a]) for a in algorithms
    }
    targets = tuple(
        torch.cat([p.y_q[:, None]] + [its[a].T for a in algorithms], dim=1)  # (B, M)
        for p, its in ((fit, it_fit), (held, it_held))
    )
    r2, read, layers = _layer_tables(view, fit, held, targets, ridge, readout == "native")
    compared = {
        a: calibrate(it_fit[a], fit.y_q, it_held[a]) if calibrated else it_held[a]
        for a in algorithms
    }
    sime = {a: sime_matrix(read, compared[a], held.y_q) for a in algorithms}
    model_held = view.predict(held.X, held.y, held.x_q)
    cols = {a: slice(1 + i * (K + 1), 1 + (i + 1) * (K + 1)) for i, a in enumerate(algorithms)}
    return LayerProbes(
        layers=layers,
        steps=tuple(range(K + 1)),
        target_r2=r2[:, 0],
        iterate_r2={a: r2[:, cols[a]] for a in algorithms},
        sime=sime,
        best_steps={a: _argmax(s) for a, s in sime.items()},
        decoded_steps={a: _decoded(r2[:, cols[a]], it_held[a]) for a in algorithms},
        output_sime={a: sime_matrix(model_held[None], it_held[a], held.y_q)[0] for a in algorithms},
        parameters={a: {k: _plain_param(v) for k, v in p.items()} for a, p in params.items()},
        readout=readout,
        calibrated=calibrated,
        n_fit=n_prompts,
        n_heldout=n_heldout,
        seed=seed,
        ridge=ridge,
    )


def _plain_param(value: Any) -> Any:
    """A parameter as a float or nested list (for `LayerProbes.parameters`)."""
    if isinstance(value, Tensor):
        return value.item() if value.ndim == 0 else value.tolist()
    return value
