"""The trained layer away from its training prompts (Zhang, Frei, Bartlett 2024, JMLR, §4.1).

At test length M the model divides by M (its `1/n` is the prompt's context length), so it predicts
``x_qᵀ Γ (1/M) Σ_{i≤M} y_i x_i`` (plus its small leak paths). The closed forms come from
`icgd.theory.one_layer_risk` (ZFB's R(M) when w* ~ N(0, I); any prior Σ_w otherwise):

- R(M), affine in 1/M, with the floor R(∞) > σ² that does not vanish as M → ∞;
- covariate shift: context and query inputs α x, labels wᵀ(αx) + σε, at M = n;
- the training scale kept: prediction × M/n, on the same prompts as R(M).

Each is evaluated at the setting's Γ* (the claims' expected values) and at the trained Γ̂
(`*_trained_gamma`, leak paths ignored). Every measurement draws fresh prompts from its own
stream, `derive_seed(seed, "test_length", M)` and `derive_seed(seed, "covariate_shift", α)`,
after training and the other test draws, so the pre-existing metrics do not move. Prompts are
processed in chunks of at most `test_batch_size·(n+1)` tokens: the peak stays that of the test
prompts.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from icgd.core.results import Claim, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.theory import one_layer_risk


def _tag(x: float) -> str:
    return f"{x:g}".replace(".", "p")


def _measure(model, task, m: int, config, seed: int, alpha: float = 1.0) -> dict[str, float]:
    """Mean squared error of the model at length `m` on `config.length_batch_size` fresh prompts
    (inputs × `alpha`), and of the same predictions × m/n; with SEs (std/√B)."""
    device = torch.device(config.device)
    gen = make_generator(seed, device)
    total = config.length_batch_size
    chunk = max(1, config.test_batch_size * (config.n + 1) // (m + 1))
    sums = torch.zeros(2, 2, dtype=torch.float64)  # [plain, kept] × [Σ e², Σ e⁴]
    done = 0
    while done < total:
        b = min(chunk, total - done)
        batch = task.sample(b, gen, n=m)
        X, y, x_q, y_q = batch.X, batch.y, batch.x_q, batch.y_q
        if alpha != 1.0:  # y − Xw = σε: same noise, labels of the scaled inputs
            y = y + (alpha - 1) * torch.einsum("bnd,bd->bn", X, batch.w_star)
            y_q = y_q + (alpha - 1) * (x_q * batch.w_star).sum(-1)
            X, x_q = alpha * X, alpha * x_q
        with torch.no_grad():
            pred = model.predict(replace(batch, X=X, y=y, x_q=x_q, y_q=y_q).prompt())
        for row, p in enumerate((pred, pred * (m / config.n))):
            e2 = ((p - y_q) ** 2).double().cpu()
            sums[row] += torch.stack([e2.sum(), (e2**2).sum()])
        done += b
    mean = sums[:, 0] / total
    se = ((sums[:, 1] / total - mean**2).clamp(min=0) / (total - 1)).sqrt()
    return {"plain": float(mean[0]), "plain_se": float(se[0]),
            "kept": float(mean[1]), "kept_se": float(se[1])}  # fmt: skip


def _entries(key: str, value: float, se: float, star: float, hat: float) -> dict[str, float]:
    """`key` (measured), `key_se`, `key_theory` (at Γ*) and `key_trained_gamma` (at Γ̂)."""
    return {key: value, f"{key}_se": se, f"{key}_theory": star, f"{key}_trained_gamma": hat}


def fit_floor(lengths, risks, ses) -> tuple[float, float]:
    """Intercept of the weighted least-squares fit R(M) = a + b/M (weights 1/SE²) and its SE:
    the measured floor. The risk of any one-layer LSA is exactly affine in 1/M (it is a quadratic
    in the context moment (1/M) Σ z_i z_iᵀ), so this extrapolation has no model error."""
    A = torch.tensor([[1.0, 1.0 / m] for m in lengths], dtype=torch.float64)
    r = torch.tensor(risks, dtype=torch.float64)
    w = 1 / torch.tensor(ses, dtype=torch.float64) ** 2
    cov = torch.linalg.inv(A.T @ (w[:, None] * A))
    coef = cov @ (A.T @ (w * r))
    return float(coef[0]), float(cov[0, 0].sqrt())


def length_metrics(config, task, model, gamma_star: torch.Tensor, gamma_hat: torch.Tensor):
    """The new metrics (see the module docstring) and the arrays of the risk-vs-M figure."""
    sigma64 = task.sigma.double().cpu()
    cov_w = task.weight_covariance.double().cpu()
    n, noise = config.n, config.sigma_noise

    def theory(gamma, m, **kw) -> float:
        return one_layer_risk(gamma, sigma64, m, noise, cov_w, **kw)

    metrics: dict[str, float] = {}
    lengths, risks, ses, kept = config.test_lengths, [], [], []
    for m in lengths:
        r = _measure(model, task, m, config, derive_seed(config.seed, "test_length", m))
        risks.append(r["plain"])
        ses.append(r["plain_se"])
        kept.append(r["kept"])
        metrics |= _entries(f"risk_M{m}", r["plain"], r["plain_se"],
                            theory(gamma_star, m), theory(gamma_hat, m))  # fmt: skip
        if m != n:
            metrics |= _entries(f"risk_kept_M{m}", r["kept"], r["kept_se"],
                                theory(gamma_star, m, scale=m / n),
                                theory(gamma_hat, m, scale=m / n))  # fmt: skip
    floor, floor_se = fit_floor(lengths, risks, ses)
    metrics |= _entries("risk_floor_fit", floor, floor_se,
                        theory(gamma_star, math.inf), theory(gamma_hat, math.inf))  # fmt: skip
    for alpha in config.shift_alphas:
        seed = derive_seed(config.seed, "covariate_shift", _tag(alpha))
        r = _measure(model, task, n, config, seed, alpha)
        metrics |= _entries(f"risk_alpha{_tag(alpha)}", r["plain"], r["plain_se"],
                            theory(gamma_star, n, alpha=alpha),
                            theory(gamma_hat, n, alpha=alpha))  # fmt: skip
    return metrics, _curve_arrays(lengths, risks, ses, kept, theory, gamma_star, gamma_hat, n)


def _curve_arrays(lengths, risks, ses, kept, theory, gamma_star, gamma_hat, n):
    """Measured risks at each M (plain and kept scale) and the closed-form curves on a grid."""
    lo, hi = math.log10(min(lengths)), math.log10(4 * max(lengths))
    grid = torch.logspace(lo, hi, 60, dtype=torch.float64)

    def t64(xs) -> torch.Tensor:
        return torch.tensor(xs, dtype=torch.float64)

    return {
        "length_M": t64(lengths),
        "length_risk": t64(risks),
        "length_risk_se": t64(ses),
        "length_risk_kept": t64(kept),
        "length_grid": grid,
        "length_curve_theory": t64([theory(gamma_star, float(m)) for m in grid]),
        "length_curve_trained_gamma": t64([theory(gamma_hat, float(m)) for m in grid]),
        "length_curve_kept_theory": t64(
            [theory(gamma_star, float(m), scale=float(m) / n) for m in grid]
        ),
    }


def length_claims(config, metrics: dict) -> list[Claim]:
    """Measured risks vs ZFB's closed forms at Γ* (tolerances: `Tolerances`, relative)."""
    tol, n = config.tolerances, config.n
    claims = []
    for m in config.test_lengths:
        key = f"risk_M{m}"
        claims.append(
            make_claim(f"risk_at_length_{m}", f"risk at test length M = {m} (n = {n}) vs R(M)",
                       metrics[key], metrics[f"{key}_theory"], tol.length_risk_rel, "rel")
        )  # fmt: skip
    claims.append(
        make_claim("risk_floor", f"floor: intercept of R̂(M) = a + b/M over M ∈ "
                   f"{list(config.test_lengths)} vs lim R(M) as M → ∞", metrics["risk_floor_fit"],
                   metrics["risk_floor_fit_theory"], tol.floor_rel, "rel")
    )  # fmt: skip
    for alpha in config.shift_alphas:
        key = f"risk_alpha{_tag(alpha)}"
        claims.append(
            make_claim(f"covariate_shift_{_tag(alpha)}", f"risk with inputs × {alpha:g} at M = n "
                       "vs its closed form", metrics[key], metrics[f"{key}_theory"],
                       tol.shift_rel, "rel")
        )  # fmt: skip
    for m in config.test_lengths:
        if m == n:
            continue
        key = f"risk_kept_M{m}"
        claims.append(
            make_claim(f"kept_scale_{m}", f"risk at M = {m} with the 1/n scale kept (× M/n) "
                       "vs its closed form", metrics[key], metrics[f"{key}_theory"],
                       tol.kept_scale_rel, "rel")
        )  # fmt: skip
    return claims
