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

**Diverging iterates** (ours). A shared parameter can make an iterate blow up on a few prompts
(Newton where `αλ_max(Ŝ)² > 2`; at α = (1 + √(d/n))⁻⁴, d = 4, n = 20: 3 of 2048 prompts, inf by
k = 12). Where iterate k diverged (`metrics.diverged_rows` against y_q: not finite, or beyond
10³ rms(y_q)) the prompt is masked out of its probe, calibration and SimE, and counted in
`masked`. Masked on more than `MAX_DIVERGED` (1%) of either prompt set, it is not compared:
SimE and probe R² NaN, never a best k (`best_steps` −1 for a layer with nothing to compare).

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
from dataclasses import dataclass
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
from icgd.analysis.identify.metrics import diverged_rows, sime_matrix, too_many_diverged
from icgd.analysis.identify.result import Identification, LayerProbes
from icgd.analysis.identify.views import Prompts, draw_prompts, model_view, prompt_family
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
PROBE_ALGORITHMS: dict[str, tuple[str, ...]] = {"regression": ("gd", "iterative-newton")}
"""Prompt family → the iterates `probe_layers` compares by default (others register theirs)."""


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


def ridge_probe(
    H: Tensor, T: Tensor, H_new: Tensor, ridge: float, keep: Tensor | None = None
) -> Tensor:
    """Fit the ridge probe with intercept (module docstring) on features H (B, D) and targets
    T (B, M); predict on H_new (B', D) → (B', M). float64. keep (B, M) bool: each column with
    masked prompts is fitted on its kept ones only (`_masked_ridge_probe`); the others share
    one solve, bit for bit as without `keep` (columns are independent)."""
    H, T, H_new = H.double(), T.double(), H_new.double()
    clean = T if keep is None else torch.where(keep, T, 0.0)  # no inf in the shared solve
    mu_h, mu_t = H.mean(0), clean.mean(0)
    Hc = H - mu_h
    gram = Hc.T @ Hc  # (D, D)
    scale = torch.trace(gram).item() / gram.shape[0]
    lam = ridge * (scale if scale > 0 else 1.0)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    W = torch.linalg.solve(gram + lam * eye, Hc.T @ (clean - mu_t))  # (D, M)
    pred = (H_new - mu_h) @ W + mu_t
    if keep is not None and not bool(keep.all()):
        partial = ~keep.all(0)  # (M,)
        pred[:, partial] = _masked_ridge_probe(H, T[:, partial], keep[:, partial], H_new, ridge)
    return pred


def _masked_ridge_probe(H: Tensor, T: Tensor, keep: Tensor, H_new: Tensor, ridge: float) -> Tensor:
    """`ridge_probe` of each column of T (B, M) on its own kept prompts keep (B, M): the same
    formula with the sums over `{b : keep[b, m]}`, batched over the M columns (one D × D gram
    each, masked rows zeroed after centring) → (B', M)."""
    w = keep.T.double()  # (M, B): 1 where kept
    count = w.sum(1)  # (M,)
    mu_h = (w @ H) / count[:, None]  # (M, D)
    T0 = torch.where(keep, T, 0.0).T  # (M, B): a diverged target reads 0 (then weight 0)
    mu_t = (w * T0).sum(1) / count  # (M,)
    Hc = (H - mu_h[:, None]) * w[..., None]  # (M, B, D)
    gram = Hc.transpose(1, 2) @ Hc  # (M, D, D)
    scale = torch.diagonal(gram, dim1=1, dim2=2).sum(-1) / gram.shape[-1]  # (M,)
    lam = ridge * torch.where(scale > 0, scale, 1.0)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
    rhs = Hc.transpose(1, 2) @ ((T0 - mu_t[:, None]) * w).unsqueeze(-1)  # (M, D, 1)
    W = torch.linalg.solve(gram + lam[:, None, None] * eye, rhs)  # (M, D, 1)
    return ((H_new - mu_h[:, None]) @ W)[..., 0].T + mu_t  # (B', M)


def _r2_columns(pred: Tensor, T: Tensor, keep: Tensor | None = None) -> Tensor:
    """Held-out R² of every column: (B, M), (B, M) → (M,), NaN for a constant target; with
    keep (B, M), the sums of a column with masked prompts run over its kept ones only."""
    w = torch.ones_like(T) if keep is None else keep.to(T.dtype)
    partial = (w == 0).any(0)  # (M,); the other columns keep the plain sums, bit for bit
    T = torch.where(w > 0, T, 0.0)
    mean = torch.where(partial, (w * T).sum(0) / w.sum(0), T.mean(0))
    total = torch.where(partial, (w * (T - mean)).square().sum(0), (T - mean).square().sum(0))
    resid = torch.where(partial, (w * (pred - T)).square().sum(0), (pred - T).square().sum(0))
    ok = total > 1e-24 * (1 + T.square().sum(0))
    return torch.where(ok, 1 - resid / torch.where(ok, total, 1.0), torch.nan)


def calibrate(
    fit_pred: Tensor, fit_target: Tensor, pred: Tensor, keep: Tensor | None = None
) -> Tensor:
    """Each row's least-squares affine fit to the target: `a_k ŷ_k + c_k` with (a_k, c_k)
    fitted on the fitting prompts (minimum norm for a constant row). fit_pred (K, B),
    fit_target (B,), pred (K, B') → (K, B'). keep (K, B) bool: row k's fit uses its kept prompts
    only (a masked equation is zeroed: it adds nothing to the least squares)."""
    K, B = fit_pred.shape
    ones = torch.ones_like(fit_pred)
    rhs = fit_target.expand(K, B)
    if keep is not None and not bool(keep.all()):  # LAPACK refuses inf: zero those equations
        ones = keep.to(fit_pred.dtype)
        fit_pred, rhs = torch.where(keep, fit_pred, 0.0), torch.where(keep, rhs, 0.0)
    A = torch.stack([fit_pred, ones], dim=-1)  # (K, B, 2)
    coef = torch.linalg.lstsq(A, rhs.unsqueeze(-1), driver="gelsd").solution[..., 0]  # (K, 2)
    return pred * coef[:, :1] + coef[:, 1:]


def _layer_tables(view, fit: Prompts, held: Prompts, targets: tuple, ridge: float, native: bool):
    """Per layer: the probes' held-out R² (L+1, M) and the y_q read-outs (L+1, B'), either the
    probe's or (`native`) the model's own; and the layer names. targets: `_targets`."""
    T_fit, T_held, keep_fit, keep_held = targets
    res_fit, _ = view.residuals(fit.X, fit.y, fit.x_q)
    res_held, own = view.residuals(held.X, held.y, held.x_q, native=native)
    r2, readout = [], []
    for name in res_fit:
        pred = ridge_probe(res_fit[name], T_fit, res_held[name], ridge, keep_fit)  # (B', M)
        r2.append(_r2_columns(pred, T_held, keep_held))
        readout.append(own[name] if own is not None else pred[:, 0])
    return torch.stack(r2), torch.stack(readout), tuple(res_fit)


def _argmax(table: Tensor) -> tuple[int, ...]:
    """The column of the largest entry of each row (NaN counts as −∞; −1 for an all-NaN row)."""
    best = torch.nan_to_num(table, nan=-math.inf).argmax(1)
    return tuple(torch.where(torch.isnan(table).all(1), -1, best).tolist())


def _decoded(r2: Tensor, iterates: Tensor) -> tuple[int, ...]:
    """The k of largest probe R² per layer, r2 (L+1, K+1). Where no iterate decodes better than
    a constant (every R² ≤ 0), the layer holds the starting point: the first constant iterate
    (k = 0 for GD, `w_0 = 0`), or −1 if the algorithm has none. iterates: (K+1, B)."""
    constant = (iterates - iterates[:, :1]).abs().amax(1) == 0  # (K+1,)
    start = int(constant.nonzero()[0]) if constant.any() else -1
    best = torch.nan_to_num(r2, nan=-math.inf)
    return tuple(int(row.argmax()) if row.max() > 0 else start for row in best)


@dataclass(frozen=True)
class _Iterates:
    """One algorithm's iterates k = 0 … K on the fitting (K+1, B) and held-out (K+1, B')
    prompts, and where they are kept (not diverged; bool, same shapes)."""

    fit: Tensor
    held: Tensor
    keep_fit: Tensor
    keep_held: Tensor

    @property
    def usable(self) -> Tensor:
        """(K+1,) bool: compared, masked on few enough prompts of each set (module docstring)."""
        return ~(too_many_diverged(~self.keep_fit) | too_many_diverged(~self.keep_held))

    @property
    def masked(self) -> Tensor:
        """(K+1,) int64: the prompts masked per iterate, fitting plus held-out."""
        return (~self.keep_fit).sum(1) + (~self.keep_held).sum(1)


def _iterates(name: str, fit: Prompts, held: Prompts, K: int, params: Mapping) -> _Iterates:
    """Iterates 0 … K of `name` on both prompt sets, masked where diverged against y_q."""
    pred_fit = iterate_predictions(name, fit.X, fit.y, fit.x_q, K, params)  # (K+1, B)
    pred_held = iterate_predictions(name, held.X, held.y, held.x_q, K, params)  # (K+1, B')
    keep_fit, keep_held = ~diverged_rows(pred_fit, fit.y_q), ~diverged_rows(pred_held, held.y_q)
    return _Iterates(pred_fit, pred_held, keep_fit, keep_held)


def _targets(fit: Prompts, held: Prompts, its: Sequence[_Iterates]) -> tuple[Tensor, ...]:
    """The probes' targets, y_q then every iterate, (B, M) and (B', M) with M = 1 + Σ(K+1), and
    which of their entries are kept (bool, same shapes; y_q always)."""

    def columns(first: Tensor, part: str) -> Tensor:
        return torch.cat([first[:, None]] + [getattr(i, part).T for i in its], dim=1)

    every = [torch.ones_like(p.y_q, dtype=torch.bool) for p in (fit, held)]
    return (
        columns(fit.y_q, "fit"),
        columns(held.y_q, "held"),
        columns(every[0], "keep_fit"),
        columns(every[1], "keep_held"),
    )


def _compare(read: Tensor, it: _Iterates, fit_y: Tensor | None, held_y: Tensor) -> Tensor:
    """SimE (R, K+1) of read-outs (R, B') with the iterates on their kept held-out prompts,
    calibrated to `fit_y` (y_q of the fitting prompts) if given; NaN where not `usable`."""
    compared = it.held
    if fit_y is not None:
        compared = calibrate(it.fit, fit_y, it.held, it.keep_fit)
    table = sime_matrix(read, compared, held_y, it.keep_held)
    return torch.where(it.usable, table, math.nan)


@single_threaded
def probe_layers(
    model: Any,
    task: Any,
    *,
    algorithms: Sequence[str] | None = None,
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

    model, task, prompt, chunk: as in `identify`. algorithms: iterative algorithms (`ITERATES`;
    default the task family's `PROBE_ALGORITHMS`, gd and iterative Newton for regression);
    max_steps: K; parameters: per algorithm, or an `Identification`; readout: the layer's y_q
    read-out compared by SimE, the ridge `probe` or the model's own head (`native`);
    calibrated: pass the iterates through the same affine fit to y_q as the probe (default: for
    the probe read-out); n_prompts / n_heldout: probe fitting / scoring prompts (streams
    `derive_seed(seed, "probe", "fit" / "heldout")`); ridge: the probe's relative λ. The
    prompts masked per iterate (diverged) are counted in `LayerProbes.masked`.
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
    if algorithms is None:
        algorithms = PROBE_ALGORITHMS[prompt_family(task)]
    device = getattr(task, "device", "cpu")
    fit, held = (
        draw_prompts(task, size, make_generator(derive_seed(seed, "probe", name), device))
        for size, name in ((n_prompts, "fit"), (n_heldout, "heldout"))
    )
    K = int(max_steps)
    params = _parameters(algorithms, parameters, fit)
    its = {a: _iterates(a, fit, held, K, params[a]) for a in algorithms}
    targets = _targets(fit, held, [its[a] for a in algorithms])
    r2, read, layers = _layer_tables(view, fit, held, targets, ridge, readout == "native")
    usable = torch.cat([torch.ones(1, dtype=torch.bool)] + [its[a].usable for a in algorithms])
    r2 = torch.where(usable, r2, math.nan)  # (L+1, M): an unusable iterate's probe is not read
    cols = {a: slice(1 + i * (K + 1), 1 + (i + 1) * (K + 1)) for i, a in enumerate(algorithms)}
    fit_y, model_held = fit.y_q if calibrated else None, view.predict(held.X, held.y, held.x_q)
    sime = {a: _compare(read, its[a], fit_y, held.y_q) for a in algorithms}
    return LayerProbes(
        layers=layers,
        steps=tuple(range(K + 1)),
        target_r2=r2[:, 0],
        iterate_r2={a: r2[:, cols[a]] for a in algorithms},
        sime=sime,
        best_steps={a: _argmax(s) for a, s in sime.items()},
        decoded_steps={a: _decoded(r2[:, cols[a]], its[a].held) for a in algorithms},
        output_sime={a: _compare(model_held[None], its[a], None, held.y_q)[0] for a in algorithms},
        parameters={a: {k: _plain_param(v) for k, v in p.items()} for a, p in params.items()},
        readout=readout,
        calibrated=calibrated,
        n_fit=n_prompts,
        n_heldout=n_heldout,
        seed=seed,
        ridge=ridge,
        masked={a: its[a].masked for a in algorithms},
    )


def _plain_param(value: Any) -> Any:
    """A parameter as a float or nested list (for `LayerProbes.parameters`)."""
    if isinstance(value, Tensor):
        return value.item() if value.ndim == 0 else value.tolist()
    return value
