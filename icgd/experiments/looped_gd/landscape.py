"""The true minimiser of the looped loss at the run's setting, for `looped-gd`'s loss claim.

a*·Σ⁻¹ is the best *multiple* of Σ⁻¹, and a critical point of the looped loss; where the
antisymmetric curvature c(L, n, d) is negative it is a saddle, and the trained model can beat it
(`icgd.experiments.looped_landscape`). So the loss claim compares the model with the minimiser
found by L-BFGS over the full whitened matrix from near a*·I (`icgd.theory.landscape`), mapped
back by ``Γ = Σ^{−½} Γ̃ Σ^{−½}`` and run on the same held-out prompts as the model. Where c > 0
the minimiser is a*·I itself, up to the Monte Carlo noise of the fit.

Only in Gatmiry's setting (w* ~ N(0, Σ⁻¹), σ = 0) is the whitened loss the population loss;
elsewhere the run keeps comparing with the best multiple of Σ⁻¹ (`loss_theory_held_out`).
"""

from __future__ import annotations

import math

import torch

from icgd.algorithms import preconditioned_gd
from icgd.core.rng import derive_seed, make_generator
from icgd.theory.landscape import loss_gap, minimise_looped_loss, whitened_draws, whitened_loss

START_SHARE = 0.05  # relative size of the random perturbation of a*·I the search starts from


def landscape_minimiser(config, sigma: torch.Tensor, held_out, alpha: float) -> dict[str, float]:
    """Metrics of the minimiser of the looped loss from near ``alpha·I`` (whitened):

    ``loss_landscape_minimiser`` (± ``_se``): its population loss on fresh draws;
    ``loss_landscape_minimiser_held_out``: its loss on the run's held-out prompts;
    ``landscape_gap`` (± ``_se``): its loss minus a*·Σ⁻¹'s, paired on the fresh draws;
    ``landscape_skew``: ‖(Γ̃ − Γ̃ᵀ)/2‖/‖Γ̃‖ of the whitened minimiser.
    """
    L, n, d, seed = config.loops, config.n, config.d, config.seed
    samples = max(2000, config.theory_samples // 20)
    eye = torch.eye(d, dtype=torch.float64)
    direction = torch.randn(d, d, generator=make_generator(derive_seed(seed, "landscape-start")))
    start = alpha * (eye + START_SHARE * math.sqrt(d) * direction.double() / direction.norm())
    fit = whitened_draws(n, d, samples, derive_seed(seed, "landscape-fit"))
    found = minimise_looped_loss(start, L, fit)
    test = whitened_draws(n, d, 2 * samples, derive_seed(seed, "landscape-test"))
    loss, loss_se = whitened_loss(found.gamma, L, test)
    gap, gap_se = loss_gap(found.gamma, alpha * eye, L, test)

    # Back to raw coordinates on the held-out prompts: Γ = Σ^{−½} Γ̃ Σ^{−½}.
    values, vectors = torch.linalg.eigh(sigma.double().cpu())
    inv_root = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    raw = (inv_root @ found.gamma @ inv_root).to(held_out.X)
    prediction = preconditioned_gd(held_out.X, held_out.y, raw.expand(L, d, d)).predict(
        held_out.x_q
    )[-1]
    return {
        "loss_landscape_minimiser": float(loss),
        "loss_landscape_minimiser_se": float(loss_se),
        "loss_landscape_minimiser_held_out": float(((prediction - held_out.y_q) ** 2).mean()),
        "landscape_gap": gap,
        "landscape_gap_se": gap_se,
        "landscape_skew": found.antisymmetric_share,
    }


def saddle_note(metrics: dict) -> str:
    """Why the structural claim is expected to fail where c(L, n, d) < 0 (empty otherwise)."""
    c, se = metrics.get("skew_curvature", float("nan")), metrics.get("skew_curvature_se", 0.0)
    if not c < -4 * se:
        return ""
    return (
        f" — expected to fail here: c(L, n, d) = {c:.3g} ± {se:.2g} < 0 makes a*·Σ⁻¹ a saddle; "
        f"the minimiser has antisymmetric share {metrics.get('landscape_skew', float('nan')):.2f}"
    )
