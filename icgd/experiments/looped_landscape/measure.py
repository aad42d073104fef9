"""What `looped-landscape` measures: the phase diagram of c(L, n, d) and the minimiser sweep.

Phase diagram. For every (n, d) one set of Wishart eigenvalues gives, for each L, the scalar
optimum a* (`optimal_loop_scale` on their power sums) and c(L, n, d) at a* in closed form over
the eigenvectors (`skew_curvature_from_eigenvalues`). The sign boundary in n is interpolated in
log n between the grid points where c changes sign. ``n^{L−1} c`` is compared with its n → ∞
constant C(L, d) (`skew_curvature_limit`).

Minimiser sweep. At (L, n, d) of the sweep: a* and its loss; c both in closed form and by finite
differences of the population loss on independent draws; the full-matrix minimiser of the looped
loss from ``a*·I + δ·P`` (P a random unit matrix, δ = start_share·‖a*·I‖_F) fitted on one set of
draws; and its loss gap to a*·I on fresh draws, with SE. The stacked optimum
(`optimal_layer_scales`) says how much lower a preconditioner per loop could go; the closed
fraction is ``(f(a*·I) − f(Γ_min)) / (f(a*·I) − f_stacked)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.looped_landscape.config import LoopedLandscapeConfig
from icgd.theory import optimal_layer_scales, optimal_loop_scale, skew_curvature
from icgd.theory.landscape import loss_gap, minimise_looped_loss, whitened_draws
from icgd.theory.skew import skew_curvature_from_eigenvalues, skew_curvature_limit
from icgd.theory.wishart import moments_from_eigenvalues, whitened_eigenvalues

Progress = Callable[[str, int, int, dict], None] | None


def phase_grid(config: LoopedLandscapeConfig, progress: Progress = None) -> dict:
    """Lists over the grid points, ordered L-major, then d, then n: ``grid_L/n/d``, ``grid_a``,
    ``grid_c``, ``grid_c_se``; and per (L, d) the limit ``limit_C`` (SE ``limit_C_se``) and the
    sign boundary ``boundary_n`` (NaN where c does not change sign on the grid)."""
    curvature = {}
    pairs = [(n, d) for d in config.ds for n in config.ns]
    for done, (n, d) in enumerate(pairs):
        lam = whitened_eigenvalues(
            n, d, config.curvature_samples, derive_seed(config.seed, "landscape", "grid", n, d)
        )
        moments = moments_from_eigenvalues(lam, n, 2 * max(config.loops))
        for L in config.loops:
            a = optimal_loop_scale(L, n, d, moments=moments).a
            curvature[L, n, d] = (a, skew_curvature_from_eigenvalues(L, a, lam))
        if progress:
            progress("phase diagram", done + 1, len(pairs), {})
    out: dict[str, list] = {k: [] for k in ("grid_L", "grid_n", "grid_d", "grid_a", "grid_c")}
    out |= {"grid_c_se": [], "limit_L": [], "limit_d": [], "limit_C": [], "limit_C_se": []}
    out["boundary_n"] = []
    for L in config.loops:
        for d in config.ds:
            cs = []
            for n in config.ns:
                a, c = curvature[L, n, d]
                out["grid_L"].append(L), out["grid_n"].append(n), out["grid_d"].append(d)
                out["grid_a"].append(a), out["grid_c"].append(c.curvature)
                out["grid_c_se"].append(c.se)
                cs.append(c.curvature)
            limit = skew_curvature_limit(
                L, d, n_samples=config.limit_samples, seed=derive_seed(config.seed, "limit", L, d)
            )
            out["limit_L"].append(L), out["limit_d"].append(d)
            out["limit_C"].append(limit[0]), out["limit_C_se"].append(limit[1])
            out["boundary_n"].append(sign_boundary(config.ns, cs))
    return out


def sign_boundary(ns: tuple[int, ...], cs: list[float]) -> float:
    """The first n where c changes sign, by linear interpolation in log n; NaN if it does not."""
    for k in range(len(ns) - 1):
        (n0, c0), (n1, c1) = (ns[k], cs[k]), (ns[k + 1], cs[k + 1])
        if c0 == 0.0:
            return float(n0)
        if c0 * c1 < 0:
            t = c0 / (c0 - c1)
            return float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return float("nan")


def sweep_point(config: LoopedLandscapeConfig, n: int) -> tuple[dict, torch.Tensor]:
    """The measurements of the module docstring at ``(sweep_loops, n, sweep_d)``: a dict of
    floats and the minimiser Γ (d, d)."""
    L, d, seed = config.sweep_loops, config.sweep_d, config.seed
    optimum = optimal_loop_scale(
        L, n, d, n_samples=config.theory_samples, seed=derive_seed(seed, "sweep", "a", n)
    )
    a = optimum.a
    lam = whitened_eigenvalues(n, d, config.curvature_samples, derive_seed(seed, "sweep", "c", n))
    closed = skew_curvature_from_eigenvalues(L, a, lam)
    fd = skew_curvature(L, n, d, a, n_samples=config.fd_samples, seed=derive_seed(seed, "fd", n))
    eye = torch.eye(d, dtype=torch.float64)
    direction = torch.randn(d, d, generator=make_generator(derive_seed(seed, "start", n)))
    start = a * eye + config.start_share * a * math.sqrt(d) * direction.double() / direction.norm()
    fit = whitened_draws(n, d, config.fit_samples, derive_seed(seed, "sweep", "fit", n))
    found = minimise_looped_loss(start, L, fit, max_iter=config.max_iterations)
    test = whitened_draws(n, d, config.test_samples, derive_seed(seed, "sweep", "test", n))
    gap, gap_se = loss_gap(found.gamma, a * eye, L, test)
    stacked = optimal_layer_scales(
        L, n, d, n_samples=config.theory_samples, seed=derive_seed(seed, "sweep", "stacked", n)
    )
    start_skew = float(torch.linalg.matrix_norm(start - start.T) / 2) / float(start.norm())
    eig = torch.linalg.eigvals(found.gamma)
    return {
        "a": a,
        "loss_a": optimum.loss,
        "loss_a_se": optimum.loss_se,
        "c": closed.curvature,
        "c_se": closed.se,
        "c_fd": fd.curvature,
        "c_fd_se": fd.se,
        "start_skew": start_skew,
        "gain": found.gain,
        "skew": found.antisymmetric_share,
        "off_identity": found.off_identity,
        "rotation": float(eig.angle().abs().mean()),  # mean |arg λ(Γ_min)|: 0 for real spectra
        "gap": gap,
        "gap_se": gap_se,
        "loss_stacked": stacked.loss,
        "closed_fraction": -gap / (optimum.loss - stacked.loss),
        "iterations": found.iterations,
        "grad_norm": found.grad_norm,
        "converged": float(found.success),
    }, found.gamma


def minimiser_sweep(config: LoopedLandscapeConfig, progress: Progress = None) -> tuple[dict, dict]:
    """`sweep_point` at every n of ``sweep_ns``: metrics ``sweep_<key>`` as lists over n, and the
    minimisers as one (N, d, d) array."""
    rows, gammas = [], []
    for done, n in enumerate(config.sweep_ns):
        row, gamma = sweep_point(config, n)
        rows.append(row), gammas.append(gamma)
        if progress:
            progress("minimisers", done + 1, len(config.sweep_ns), {"n": n, "gap": row["gap"]})
    metrics = {"sweep_n": list(config.sweep_ns)}
    metrics |= {f"sweep_{key}": [row[key] for row in rows] for key in rows[0]}
    return metrics, {"minimisers": torch.stack(gammas)}
