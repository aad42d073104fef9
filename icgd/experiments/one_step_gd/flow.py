"""Gradient flow of one LSA layer from Zhang–Frei–Bartlett's initialisation ends at their Γ⁻¹.

Zhang, Frei, Bartlett (2024, JMLR 25(49), "Trained transformers learn linear models in-context"),
Thm 4.1: gradient flow on the population loss of one linear self-attention layer,
``f(E) = E + W^{PV} E (Eᵀ W^{KQ} E)/N``, ``ŷ = f(E)_{d+1,N+1}``, with ``w ~ N(0, I)``,
``x ~ N(0, Λ)``, started from their Assumption 3.3 (as we read it)

    W^{PV}(0) = σ [[0, 0], [0, 1]],   W^{KQ}(0) = σ [[ΘΘᵀ, 0], [0, 0]],   ‖ΘΘᵀ‖_F = 1, ΘΛ ≠ 0,

(σ below their theorem's bound) converges to ``W^{PV} = [[0, 0], [0, c]]``,
``W^{KQ} = [[c⁻¹Γ⁻¹, 0], [0, 0]]``, ``c = ‖Γ⁻¹‖_F^{1/2}``, i.e. to the predictor
``ŷ = x_qᵀ Γ⁻¹ (1/N) Σ_i y_i x_i`` with ``Γ = (1 + 1/N) Λ + (tr Λ / N) I`` (`icgd.theory.zfb_gamma`;
with label noise σ_ε the population optimum has ``tr Λ + σ_ε²`` in place of ``tr Λ``, SPEC §6 —
the form used here; σ_ε = 0 is theirs).

Why two blocks are their model. With (P, Q) = (W^{PV}, −W^{KQ}) icgd's layer (SPEC §1.1,
``ŷ = −[Z]_{d+1,n+1}``) is theirs, except that icgd's mask keeps the query token out of the keys.
ŷ reads only W^{PV}'s last row ``(vᵀ, c)`` and W^{KQ}'s first d columns ``(U; kᵀ)``; every other
entry has zero gradient and keeps its initial value 0. Split ŷ into its parts odd and even in
(w, ε): at ``v = k = 0`` the even part vanishes, the odd part is stationary in (v, k) (they enter
it only as the product v kᵀ) and the remaining cross term of the gradient is odd in (w, ε), so
the gradient in v and k is 0 there: ``{v = k = 0}`` is invariant (ZFB App. A.2, step three, the
off-diagonal blocks vanish; `test_one_step_gd_flow` checks it on antithetic draws) and the flow
from their init moves only ``A = U`` (d×d) and ``c`` (their ``u_{-1}``):

    P = c·e_{d+1}e_{d+1}ᵀ,  Q = −[[A, 0], [0, 0]]   (`sparse_heads(A)` with P scaled by c),

``ŷ = x_qᵀ (c Aᵀ)(1/n) Xᵀy``: the effective preconditioner (the product that plays Γ⁻¹) is
``c Aᵀ``. On this set the query token adds nothing (its label entry is 0 and v = 0), so the mask
does not matter either. The loss is `population_loss` in closed form (exact, float64, no ½; ZFB's
objective carries ½, so our time t is their 2t; the end point is the same).

Facts used for the run's settings (derived here, not in the paper). L is a convex quadratic in
Γ = cAᵀ whose Hessian is ``δ ↦ 2 Σ δ ΣΓ_Z`` (``E[ŜŜ] + (σ_ε²/n)Σ = ΣΓ_Z``, Γ_Z = ZFB's Γ,
commuting with Σ); the flow keeps ``c² − ‖A‖_F²`` (0 at their init), so at the limit
``c² = ‖A‖_F² = ‖Γ⁻¹‖_F``. Linearised there, Γ moves by ``−(c² I + aaᵀ) ∇_Γ L`` (a = vec Aᵀ), so
it relaxes at rates between ``λ = 2 ‖Γ⁻¹‖_F λ_min(Σ) λ_min(ΣΓ_Z)`` and
``2 ‖Γ⁻¹‖_F · 2 λ_max(Σ) λ_max(ΣΓ_Z)`` (their ratio: `flow_condition_bound`). The flow runs to
``T = relaxation_times / λ``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from icgd.core.results import Claim, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.theory import one_layer_loss, zfb_gamma
from icgd.theory.flow import FlowResult, gradient_dominance, gradient_flow
from icgd.theory.population import GaussianRegression, population_loss, sparse_heads

_F64 = torch.float64


def zfb_heads(params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(P, Q)``, each (1, 1, d+1, d+1), of the ZFB layer with key-query block ``A`` (d, d) and
    value entry ``c`` (1,): ``P = c·e_{d+1}e_{d+1}ᵀ``, ``Q = −[[A, 0], [0, 0]]``; differentiable."""
    P, Q = sparse_heads(params["A"])
    return (params["c"][0] * P)[None, None], Q[None, None]


def zfb_init(d: int, scale: float, generator: torch.Generator) -> dict[str, Tensor]:
    """ZFB's Assumption 3.3: ``A = σ ΘΘᵀ`` with Θ (d, d) Gaussian, scaled to ‖ΘΘᵀ‖_F = 1
    (ΘΛ ≠ 0 almost surely), and ``c = σ``."""
    theta = torch.randn(d, d, generator=generator, dtype=_F64)
    outer = theta @ theta.T
    return {
        "A": scale * outer / torch.linalg.matrix_norm(outer),
        "c": torch.tensor([scale], dtype=_F64),
    }


def preconditioner(params: dict[str, Tensor]) -> Tensor:
    """The effective preconditioner ``c Aᵀ`` (..., d, d) of (batched) ZFB parameters."""
    return params["c"][..., None] * params["A"].transpose(-1, -2)


def rel_distance(gamma: Tensor, target: Tensor) -> Tensor:
    """``‖Γ − target‖_F / ‖target‖_F``, batched over Γ's leading axes."""
    return torch.linalg.matrix_norm(gamma - target) / torch.linalg.matrix_norm(target)


def rate_bounds(sigma: Tensor, n: int, noise_std: float) -> tuple[float, float]:
    """``(λ_slow, κ)``: the lower bound on the slowest relaxation rate of Γ at the flow's limit
    and the bound on fastest/slowest (module docstring), from the eigenvalues of Σ."""
    lam = torch.linalg.eigvalsh(torch.as_tensor(sigma, dtype=_F64))
    e = lam * ((1 + 1 / n) * lam + (lam.sum() + noise_std**2) / n)  # eigenvalues of ΣΓ_Z
    norm = float(torch.linalg.matrix_norm(torch.linalg.inv(zfb_gamma(sigma, n, noise_std))))
    slow = 2 * norm * float(lam.min() * e.min())
    return slow, 2 * float(lam.max() * e.max()) / float(lam.min() * e.min())


def zfb_flow(
    sigma: Tensor, n: int, noise_std: float, config, generator: torch.Generator
) -> tuple[FlowResult, Tensor, float]:
    """Integrate the population gradient flow of the ZFB layer (``config``: `FlowConfig`) on
    ``x ~ N(0, Σ)``, ``w ~ N(0, I)``, noise ``noise_std``, from `zfb_init`.
    Returns ``(flow, target Γ_Z⁻¹ (d, d), λ_slow)``; the flow is recorded at ``t = 0`` and at
    ``config.n_records`` log-spaced times up to ``T``."""
    sigma = torch.as_tensor(sigma, dtype=_F64)
    data = GaussianRegression(sigma=sigma, n=n, noise_std=noise_std)

    def loss(params: dict[str, Tensor]) -> Tensor:
        P, Q = zfb_heads(params)
        return population_loss(P, Q, data, method="closed_form")[0]

    slow, _ = rate_bounds(sigma, n, noise_std)
    t_end = config.relaxation_times / slow
    t_eval = t_end * np.concatenate([[0.0], np.logspace(-4, 0, config.n_records)])
    t_eval[-1] = t_end  # exactly: logspace's last point may round past t_span
    init = zfb_init(sigma.shape[0], config.init_scale, generator)
    flow = gradient_flow(loss, init, t_end, t_eval=t_eval, rtol=config.rtol, atol=config.atol)
    return flow, torch.linalg.inv(zfb_gamma(sigma, n, noise_std)), slow


def flow_metrics(config, sigma: Tensor) -> tuple[dict[str, float], dict[str, Tensor]]:
    """The `flow_*` metrics and the trajectory arrays of the run (`config`: `OneStepGDConfig`).
    ZFB's law, w ~ N(0, I), in every setting; Θ from its own stream."""
    sigma = torch.as_tensor(sigma, dtype=_F64)
    n, noise = config.n, config.sigma_noise
    gen = make_generator(derive_seed(config.seed, "zfb_flow", "theta"))
    flow, target, slow = zfb_flow(sigma, n, noise, config.flow, gen)
    gammas = preconditioner(flow.theta)  # (T, d, d)
    end = flow.at(-1)
    loss_star = one_layer_loss(target, sigma, n, noise_std=noise)
    mu, mu_time = gradient_dominance(flow, loss_star)
    metrics = {
        "flow_gamma_rel_error": float(rel_distance(gammas[-1], target)),
        "flow_gamma_asymmetry": float(rel_distance(gammas[-1], gammas[-1].T)),
        "flow_loss": float(flow.loss[-1]),
        "flow_loss_theory": loss_star,
        "flow_loss_excess": float(flow.loss[-1]) - loss_star,
        "flow_loss_init": float(flow.loss[0]),
        "flow_value_entry": float(end["c"][0]),
        "flow_value_entry_theory": float(torch.linalg.matrix_norm(target)) ** 0.5,
        "flow_balance": float(end["c"][0] ** 2 - end["A"].square().sum()),
        "flow_time": float(flow.t[-1]),
        "flow_rate_bound": slow,
        "flow_condition_bound": rate_bounds(sigma, n, noise)[1],
        "flow_nfev": float(flow.nfev),
        "flow_njev": float(flow.njev),
        "flow_success": float(flow.success),
        "flow_dominance_min": mu,
        "flow_dominance_min_time": mu_time,
    }
    arrays = {
        "flow_t": flow.t,
        "flow_loss": flow.loss,
        "flow_grad_norm_sq": flow.grad_norm_sq,
        "flow_gamma_rel": rel_distance(gammas, target),
        "flow_gamma": gammas[-1].contiguous(),
    }
    return metrics, arrays


def flow_claim(config, metrics: dict) -> Claim:
    """`flow_ends_at_zfb_gamma`: the end point's ``c Aᵀ`` against ZFB's Γ⁻¹ (expected 0 by the
    theorem; tolerance `Tolerances.flow_gamma_rel`, from the solver's tolerances)."""
    noise = config.sigma_noise
    gamma = "(1+1/n)Λ + (tr Λ + σ²)/n I" if noise > 0 else "(1+1/n)Λ + (tr Λ/n) I"
    return make_claim(
        "flow_ends_at_zfb_gamma",
        f"population gradient flow from ZFB's init (σ₀ = {config.flow.init_scale:g}, w ~ N(0, I))"
        f" ends at Γ⁻¹, Γ = {gamma}: ‖cAᵀ − Γ⁻¹‖_F / ‖Γ⁻¹‖_F",
        metrics["flow_gamma_rel_error"],
        0.0,
        config.tolerances.flow_gamma_rel,
        "at_most",
    )
