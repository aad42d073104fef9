"""`looped-landscape`: where a*·Σ⁻¹ is a saddle of the looped loss, and what the minimiser is.

Gatmiry, Saunshi, Reddi, Jegelka, Kumar (2024) prove that the looped linear transformer's global
minimiser is close to a multiple of Σ⁻¹ for large n. In whitened coordinates the looped loss is
``f(Γ) = E ‖(I − ΓS̃)^L‖_F²`` (`icgd.theory.landscape`); at ``Γ = a*·I`` its curvature along every
antisymmetric direction is one number c(L, n, d) (`icgd.theory.skew`), and c < 0 makes a*·Σ⁻¹ a
saddle. This experiment trains nothing: it maps the sign of c over (L, n, d), finds the minimiser
of f over all d × d matrices from near a*·I along an n-sweep, and checks

- c in closed form (eigenvalue formula, exact over the eigenvectors) against finite differences
  of the population loss on independent draws;
- where c < 0, the minimiser found beats a*·I on fresh draws by more than 4 SE;
- where c > 0, a minimisation started near a*·I returns to it (its antisymmetric part shrinks);
- for L = 2, the n → ∞ constant of ``n·c`` equals −4 (derived in `skew_curvature_limit`).

What we measured (default run, see docs/looped-landscape.md): for L ≥ 2, c > 0 only when n is
small against d, and ``n^{L−1} c → C(L, d) < 0``: the saddle persists as n → ∞, with c → 0. The
minimiser's spectrum is complex (I − ΓS̃ rotates), which a multiple of Σ⁻¹ cannot do.
"""

from __future__ import annotations

import math
from pathlib import Path

from icgd.core.results import Claim, Result, make_claim
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.looped_landscape.config import LoopedLandscapeConfig
from icgd.experiments.looped_landscape.measure import minimiser_sweep, phase_grid

# Tiny sizes for unit tests and the contract suite: seconds on one core.
SMOKE = (
    "loops=[2,3]",
    "ns=[4,64]",
    "ds=[3]",
    "sweep_d=3",
    "sweep_ns=[4,64]",
    "curvature_samples=2000",
    "fd_samples=2000",
    "fit_samples=1000",
    "test_samples=4000",
    "theory_samples=4000",
    "limit_samples=4000",
)


def _signs(metrics: dict, z: float) -> tuple[list[int], list[int]]:
    """Indices of the sweep points where c < −z·SE (saddles) and where c > z·SE (minima)."""
    c, se = metrics["sweep_c"], metrics["sweep_c_se"]
    saddles = [i for i in range(len(c)) if c[i] < -z * se[i]]
    minima = [i for i in range(len(c)) if c[i] > z * se[i]]
    return saddles, minima


class LoopedLandscape:
    name = "looped-landscape"
    paper = "Gatmiry et al. 2024"
    summary = "The looped loss at a*·Σ⁻¹: minimum or saddle over (L, n, d), and the true minimiser"
    Config = LoopedLandscapeConfig
    presets = {"smoke": SMOKE}

    def run(self, config: LoopedLandscapeConfig, ctx: RunContext) -> Outcome:
        metrics = phase_grid(config, ctx.progress)
        sweep, arrays = minimiser_sweep(config, ctx.progress)
        metrics |= sweep
        saddles, minima = _signs(metrics, config.tolerances.z)
        metrics["sweep_saddles"], metrics["sweep_minima"] = len(saddles), len(minima)
        return Outcome(metrics=metrics, arrays=arrays)

    def claims(self, config: LoopedLandscapeConfig, metrics: dict) -> list[Claim]:
        tol, m = config.tolerances, metrics
        z_fd = [
            abs(c - f) / math.hypot(s, t)
            for c, s, f, t in zip(
                m["sweep_c"], m["sweep_c_se"], m["sweep_c_fd"], m["sweep_c_fd_se"], strict=True
            )
        ]
        claims = [
            make_claim(
                "curvature_matches_finite_differences",
                f"c(L={config.sweep_loops}, n, d={config.sweep_d}) in closed form vs finite "
                "differences of the population loss: max |z| over the sweep",
                max(z_fd),
                0.0,
                tol.z,
                "at_most",
            )
        ]
        saddles, minima = _signs(m, tol.z)
        if saddles:
            claims.append(
                make_claim(
                    "saddle_minimiser_beats_symmetric",
                    "where c < 0: the minimiser's loss gap to a*·Σ⁻¹ on fresh draws, in SE "
                    "(largest over those points)",
                    max(m["sweep_gap"][i] / m["sweep_gap_se"][i] for i in saddles),
                    -tol.z,
                    0.0,
                    "at_most",
                )
            )
        if minima:
            claims.append(
                make_claim(
                    "minimum_returns",
                    "where c > 0: antisymmetric share of the minimiser found / that of its start "
                    "near a*·Σ⁻¹ (largest over those points)",
                    max(m["sweep_skew"][i] / m["sweep_start_skew"][i] for i in minima),
                    0.0,
                    tol.returned_fraction,
                    "at_most",
                )
            )
        claims += self._limit_claims(config, m)
        return claims

    @staticmethod
    def _limit_claims(config: LoopedLandscapeConfig, m: dict) -> list[Claim]:
        """L = 2: the Monte Carlo constant of n·c as n → ∞ against the exact −4."""
        z = [
            abs(c + 4.0) / se
            for L, c, se in zip(m["limit_L"], m["limit_C"], m["limit_C_se"], strict=True)
            if L == 2
        ]
        if not z:
            return []
        return [
            make_claim(
                "two_loop_limit",
                "L = 2: lim n·c(2, n, d) = −4 for every d; Monte Carlo of the limit, max |z|",
                max(z),
                0.0,
                config.tolerances.z,
                "at_most",
            )
        ]

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.looped_landscape.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: LoopedLandscapeConfig) -> MemoryEstimate:
        """Peak bytes (float64): a chunk of 8192 draws of G (n, d) and the (S, d, d) pair terms of
        the closed-form c; the fit draws with the L + 2 matrices per draw its gradient keeps; the
        test draws with the L + 1 powers of two matrices the gap compares."""
        n, d = max(max(config.ns), max(config.sweep_ns)), max(max(config.ds), config.sweep_d)
        L, ds = max(max(config.loops), config.sweep_loops), config.sweep_d
        return MemoryEstimate(
            parts={
                "Wishart chunk": 8192 * n * d * 8 * 3,
                "curvature pair terms": config.curvature_samples * d * d * 8 * 8,
                "fit draws": config.fit_samples * ds * ds * 8 * (L + 3),
                "test draws": config.test_samples * ds * ds * 8 * (2 * L + 3),
                "limit draws": min(8192, config.limit_samples) * d * d * 8 * 8,
            },
            fields=("ns", "ds", "sweep_ns", "curvature_samples", "fit_samples", "test_samples"),
        )
