"""The baselines of `stacked-gd` on one set of held-out prompts: L-step GD and Σ⁻¹-PGD with
line-searched steps, and the theory-optimal per-layer PGD a_l*·Σ⁻¹."""

from __future__ import annotations

import torch

from icgd.algorithms import best_step_size, gradient_descent, preconditioned_gd
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.stacked_gd.config import StackedGDConfig
from icgd.theory import optimal_layer_scales


def sq_err(pred: torch.Tensor, y_q: torch.Tensor) -> torch.Tensor:
    return (pred - y_q) ** 2


def baselines(config: StackedGDConfig, task, test, L: int, moments) -> dict:
    """L-step GD / Σ⁻¹-PGD (line-searched on separate prompts) and the theory-optimal
    per-layer PGD a_l*·Σ⁻¹ on the held-out prompts `test`; the population optimum."""
    X, y, x_q, y_q = test.X, test.y, test.x_q, test.y_q
    d, sigma_inv = config.d, task.sigma_inv
    tune = task.sample(
        min(4096, config.test_batch_size),
        make_generator(derive_seed(config.seed, "line-search", task.n), X.device),
    )
    eta_gd = best_step_size(tune.X, tune.y, tune.x_q, tune.y_q, L)
    eta_pgd = best_step_size(tune.X, tune.y, tune.x_q, tune.y_q, L, preconditioner=sigma_inv)
    gd = gradient_descent(X, y, eta_gd, L).predict(x_q)[-1]
    pgd = preconditioned_gd(X, y, (eta_pgd * sigma_inv).expand(L, d, d)).predict(x_q)[-1]
    opt = optimal_layer_scales(L, task.n, d, moments=moments)

    # The per-layer steps a_l*·Σ⁻¹ commute (all are polynomials in Σ⁻¹Ŝ), so the order only
    # matters through rounding; we pick the order with the lower loss on the tuning prompts
    # (ascending or descending) and report the gap between them.
    def precond(order: tuple[float, ...]) -> torch.Tensor:
        return torch.stack([a * sigma_inv for a in order])

    orders = {"ascending": opt.scales, "descending": tuple(reversed(opt.scales))}
    tuned = {
        name: float(
            sq_err(
                preconditioned_gd(tune.X, tune.y, precond(o)).predict(tune.x_q)[-1], tune.y_q
            ).mean()
        )
        for name, o in orders.items()
    }
    best = min(tuned, key=tuned.get)
    optimal = preconditioned_gd(X, y, precond(orders[best])).predict(x_q)[-1]
    return {
        "loss_gd": float(sq_err(gd, y_q).mean()),
        "loss_pgd": float(sq_err(pgd, y_q).mean()),
        "step_gd": eta_gd,
        "step_pgd": eta_pgd,
        "alphas_theory": list(opt.scales),
        "loss_theory": opt.loss,
        "loss_theory_se": opt.loss_se,
        "loss_theory_held_out": float(sq_err(optimal, y_q).mean()),
        "theory_order_descending": int(best == "descending"),  # 0: ascending
        "theory_order_gap": abs(tuned["ascending"] - tuned["descending"]),
    }
