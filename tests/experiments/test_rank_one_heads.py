"""`rank-one-heads`: the drop detector on synthetic curves, the model against its formula in
float64, the plateau levels against the exact one-layer loss and Monte Carlo, the claims, and the
smoke run through the public API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import icgd
from icgd.core.prompts import build_prompt
from icgd.experiments.rank_one_heads import EXPERIMENT, RankOneHeads, RankOneHeadsConfig
from icgd.experiments.rank_one_heads.drops import detect_drops, plateau_indices
from icgd.experiments.rank_one_heads.experiment import amplitudes, principal_axes
from icgd.experiments.rank_one_heads.theory import (
    component_gains,
    component_reductions,
    plateau_losses,
)
from icgd.models.plugins import MODELS
from icgd.models.rank_one_attention import RankOneAttention, RankOneAttentionConfig
from icgd.runs.figures import draw_figures
from icgd.tasks import LinearRegression, LinearRegressionConfig
from icgd.theory import ahn_optimal_preconditioner, one_layer_loss

# --- the drop detector ----------------------------------------------------------------------


def staircase(steps, centres, sizes, width=0.05, start=8.0):
    """A loss curve with drops of log-size `sizes` at the steps `centres`: log L falls by a
    logistic step in log-time at each centre."""
    x = np.log(np.maximum(steps, 1e-12))
    log_loss = math.log(start) - sum(
        s / (1 + np.exp(-(x - math.log(c)) / width)) for c, s in zip(centres, sizes, strict=True)
    )
    return np.exp(log_loss)


STEPS = np.arange(0, 4001, 5, dtype=np.float64)


def test_detector_finds_known_drops_at_their_steps():
    centres, sizes = (40.0, 300.0, 2000.0), (0.7, 0.5, 0.3)
    found = detect_drops(STEPS, staircase(STEPS, centres, sizes))
    assert len(found) == 3
    for drop, centre, size in zip(found.drops, centres, sizes, strict=True):
        assert abs(math.log(STEPS[drop.peak] / centre)) < 0.15, (STEPS[drop.peak], centre)
        # The fall across the segment above threshold: most of the step, never more (the
        # logistic's tails beyond the threshold crossings lie on the plateaus).
        assert 0.85 * size < drop.size < size
        assert STEPS[drop.start] < centre < STEPS[drop.end]
    # One plateau before, between and after the drops, each bounded by the drops' ends.
    assert len(found.plateaus) == 4
    assert found.plateaus[0][0] == 0 and found.plateaus[-1][1] == STEPS.size - 1
    assert [p[1] for p in found.plateaus[:-1]] == [d.start for d in found.drops]
    assert [p[0] for p in found.plateaus[1:]] == [d.end for d in found.drops]
    assert np.isnan(found.rate[0])  # step 0 has no log-time


def test_detector_sees_no_drop_in_a_flat_or_slowly_decaying_curve():
    for losses in (np.full(STEPS.shape, 3.0), (1.0 + STEPS) ** -0.1):
        found = detect_drops(STEPS, losses)
        assert len(found) == 0 and found.plateaus == ((0, STEPS.size - 1),)
        assert np.nanmax(found.rate) < 0.3


def test_detector_ignores_drops_below_min_drop_and_survives_noise():
    tiny = staircase(STEPS, (100.0,), (0.02,))
    assert len(detect_drops(STEPS, tiny)) == 0
    assert len(detect_drops(STEPS, tiny, min_drop=0.01)) == 0  # its rate stays below 0.3
    assert len(detect_drops(STEPS, tiny, min_drop=0.01, rate_threshold=0.05)) == 1
    # 2% multiplicative noise on every evaluation (SGD-like jitter): still exactly the 3 drops.
    noise = np.exp(0.02 * np.random.default_rng(0).standard_normal(STEPS.size))
    noisy = staircase(STEPS, (40.0, 300.0, 2000.0), (0.7, 0.5, 0.3)) * noise
    assert len(detect_drops(STEPS, noisy)) == 3
    # Without smoothing the same noise makes spurious drops where evaluations are dense.
    assert len(detect_drops(STEPS, noisy, smoothing=0.0)) > 3


def test_detector_rejects_bad_curves():
    with pytest.raises(ValueError, match="increase"):
        detect_drops([0, 2, 1], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        detect_drops([0, 1, 2], [1.0, 0.0, 1.0])


def test_plateau_points_are_the_middle_third_in_log_time():
    steps = 10.0 * 2.0 ** np.arange(8)  # log-evenly spaced: thirds at 2.33 and 4.67 doublings
    assert plateau_indices(steps, (0, 7)).tolist() == [3, 4]
    assert plateau_indices(steps, (2, 7)).tolist() == [4, 5]
    assert plateau_indices(steps, (6, 7)).tolist() == [7]  # nothing inside: the last point


# --- the model --------------------------------------------------------------------------------


def random_model(d=3, H=4, seed=0) -> RankOneAttention:
    config = RankOneAttentionConfig(d=d, n_heads=H, init_std=0.7)
    return RankOneAttention(
        config, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_forward_equals_the_formula_in_float64():
    torch.manual_seed(0)  # only this test's data; the model takes its own generator
    model, B, n, d = random_model(), 3, 6, 3
    X, y, x_q = (
        torch.randn(B, n, d, dtype=torch.float64),
        torch.randn(B, n, dtype=torch.float64),
        torch.randn(B, d, dtype=torch.float64),
    )
    Z = build_prompt(X, y, x_q)
    v, k, q = (p.detach() for p in (model.v, model.k, model.q))
    direct = torch.zeros(B, dtype=torch.float64)
    for b in range(B):  # ŷ = Σ_h (1/n) Σ_i (v_h y_i)(k_hᵀ x_i)(q_hᵀ x_q), term by term
        for h in range(model.config.n_heads):
            for i in range(n):
                direct[b] += v[h] * y[b, i] * (k[h] @ X[b, i]) * (q[h] @ x_q[b]) / n
    with torch.no_grad():
        torch.testing.assert_close(model(Z), direct, atol=1e-12, rtol=0)
        # ŷ = x_qᵀ Γ (1/n) Xᵀ y with Γ = Σ_h v_h q_h k_hᵀ
        gamma = model.preconditioner()
        step = torch.einsum("bi,ij,bnj,bn->b", x_q, gamma, X, y) / n
        torch.testing.assert_close(model(Z), step, atol=1e-12, rtol=0)
        # The hooked (token by token) path computes the same function; heads sum to ŷ.
        out, cache = model.run_with_cache(Z)
        torch.testing.assert_close(out, direct, atol=1e-12, rtol=0)
        torch.testing.assert_close(cache["hook_heads"].sum(-1), direct, atol=1e-12, rtol=0)
        assert cache["hook_keys"].shape == (B, n, 4) and cache["hook_queries"].shape == (B, 4)
        assert torch.linalg.matrix_rank(model.W_KQ[0]) == 1
        # The query column's label entry is ignored.
        Z2 = Z.clone()
        Z2[:, d, n] = 5.0
        torch.testing.assert_close(model(Z2), model(Z), atol=0, rtol=0)
    assert model(Z).dtype == torch.float64


def test_model_is_registered_and_keeps_the_component_contract():
    """The component contract suite (tests/test_contracts_components.py), run here on this model
    by name, whatever the order in which the registries were filled."""
    import tests.test_contracts_components as contract

    assert MODELS.get("rank-one-attention") is RankOneAttention
    for check in (
        contract.test_model_keeps_the_protocol,
        contract.test_model_runs_in_float64,
        contract.test_run_with_cache_caches_every_hook_point,
        contract.test_hooks_see_every_name_and_can_patch,
    ):
        check("rank-one-attention")


def test_same_generator_same_init_in_every_dtype():
    a = random_model(seed=3)
    b = RankOneAttention(a.config, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    torch.testing.assert_close(a.k.float(), b.k, atol=0, rtol=0)


# --- the plateau levels -----------------------------------------------------------------------

LAMBDA = (4.0, 2.0, 1.0, 0.5)


def gamma_k(axes: torch.Tensor, gains: torch.Tensor, k: int) -> torch.Tensor:
    """Γ_k = Σ_{j≤k} γ*_j u_j u_jᵀ."""
    kept = torch.cat([gains[:k], torch.zeros(gains.numel() - k, dtype=torch.float64)])
    return axes @ torch.diag(kept) @ axes.T


@pytest.mark.parametrize("noise_std", [0.0, 0.5])
def test_plateau_losses_equal_the_exact_one_layer_loss(noise_std):
    n = 32
    sigma = LinearRegression(
        LinearRegressionConfig(d=4, n=n, covariance="rotated", eigenvalues=LAMBDA),
        rotation_seed=7,
        dtype=torch.float64,
    ).sigma
    values, axes = principal_axes(sigma)
    torch.testing.assert_close(values, torch.tensor(LAMBDA, dtype=torch.float64))
    gains = component_gains(values, n, noise_std)
    theory = plateau_losses(LAMBDA[::-1], n, noise_std)  # any order in, sorted inside
    for k in range(5):
        exact = one_layer_loss(gamma_k(axes, gains, k), sigma, n, noise_std=noise_std)
        assert theory[k].item() == pytest.approx(exact, rel=1e-12, abs=1e-12), k
    # All learned: Ahn et al.'s optimum; the drops are the Δ_j, largest first.
    star = ahn_optimal_preconditioner(sigma, n, noise_std)
    assert theory[-1].item() == pytest.approx(one_layer_loss(star, sigma, n, noise_std), rel=1e-12)
    torch.testing.assert_close(theory[:-1] - theory[1:], component_reductions(LAMBDA, n, noise_std))
    assert torch.all(component_reductions(LAMBDA, n, noise_std).diff() < 0)
    torch.testing.assert_close(amplitudes(star, axes, gains), torch.ones(4, dtype=torch.float64))


def test_plateau_losses_are_the_lowest_of_their_rank():
    """Eckart–Young (theory.py): no Γ of rank k beats L_k; the k-th plateau's Γ_k attains it."""
    n, sigma = 32, torch.diag(torch.tensor(LAMBDA, dtype=torch.float64))
    theory = plateau_losses(LAMBDA, n)
    gen = torch.Generator().manual_seed(0)
    star = ahn_optimal_preconditioner(sigma, n)
    for k in (1, 2, 3):
        for _ in range(200):
            A = torch.randn(4, k, generator=gen, dtype=torch.float64)
            B = torch.randn(k, 4, generator=gen, dtype=torch.float64)
            # near the optimum too: Γ* truncated to rank k in a random basis, perturbed
            low_rank = A @ B * 0.1 if _ % 2 else _truncate(star + 0.05 * A @ B, k)
            assert one_layer_loss(low_rank, sigma, n) >= theory[k].item() - 1e-12


def _truncate(M: torch.Tensor, k: int) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(M)
    return U[:, :k] @ torch.diag(S[:k]) @ Vh[:k]


def test_plateau_loss_matches_monte_carlo_within_4_se():
    n, noise = 32, 0.3
    task = LinearRegression(
        LinearRegressionConfig(d=4, n=n, covariance="rotated", eigenvalues=LAMBDA, noise_std=noise),
        rotation_seed=3,
        dtype=torch.float64,
    )
    values, axes = principal_axes(task.sigma)
    gains = component_gains(values, n, noise)
    batch = task.sample(200_000, torch.Generator().manual_seed(11))
    h = torch.bmm(batch.y.unsqueeze(1), batch.X).squeeze(1) / n
    theory = plateau_losses(LAMBDA, n, noise)
    for k in (1, 3):
        errors = (
            torch.einsum("bi,ij,bj->b", batch.x_q, gamma_k(axes, gains, k), h) - batch.y_q
        ) ** 2
        se = float(errors.std() / errors.numel() ** 0.5)
        assert abs(float(errors.mean()) - theory[k].item()) < 4 * se, (k, se)


# --- config, claims, the smoke run ------------------------------------------------------------


def test_config_wants_distinct_eigenvalues(assert_bad_config):
    assert RankOneHeadsConfig(eigenvalues=(3.0, 1.0)).d == 2
    assert RankOneHeadsConfig(n_heads=2).expected_drops == 2
    assert_bad_config("rank-one-heads", "eigenvalues=[1.0,1.0,0.5]", "eigenvalues")


IDEAL = {
    "n_drops": 4,
    "order_matches": 4,
    "plateau_losses": [7.5, 3.83, 2.09, 1.30, 0.965],
    "plateau_losses_theory": [7.5, 3.8297, 2.0883, 1.2981, 0.9648],
}


def test_claims_pass_on_ideal_metrics_and_fail_one_by_one():
    config = RankOneHeadsConfig()
    claims = RankOneHeads().claims(config, IDEAL)
    assert [c.name for c in claims] == [
        "one_drop_per_component",
        "drops_in_eigenvalue_order",
        "plateau_1_loss",
        "plateau_2_loss",
        "plateau_3_loss",
        "plateau_4_loss",
    ]
    assert all(c.passed for c in claims)
    for key, value in {
        "n_drops": 3,
        "order_matches": 3,
        "plateau_losses": [7.5, 3.83, 2.09, 1.10, 0.965],  # plateau 3 at the wrong level
    }.items():
        failed = [
            c.name for c in RankOneHeads().claims(config, IDEAL | {key: value}) if not c.passed
        ]
        assert len(failed) == 1, (key, failed)
    # A missing plateau (fewer drops found) fails its claim instead of raising.
    short = IDEAL | {"n_drops": 3, "plateau_losses": IDEAL["plateau_losses"][:4]}
    assert [c.name for c in RankOneHeads().claims(config, short) if not c.passed] == [
        "one_drop_per_component",
        "plateau_4_loss",
    ]


def test_smoke_run_writes_curves_claims_and_figures(tmp_path):
    run = icgd.run("rank-one-heads", preset="smoke", out=tmp_path / "run")
    assert run.status in ("passed", "failed"), run.result.message
    m = run.metrics
    assert len(run.claims) == 2 + m["expected_drops"] == 6
    assert len(m["plateau_losses"]) == m["n_drops"] + 1 == len(m["plateau_losses_se"])
    assert len(m["learned_order"]) == m["n_drops"]
    arrays = run.arrays
    T = arrays["steps"].numel()
    assert arrays["amplitudes"].shape == (T, 4) and arrays["loss"].shape == (T,)
    assert arrays["head_preconditioners"].shape == (16, 4, 4)
    torch.testing.assert_close(arrays["head_preconditioners"].sum(0), arrays["gamma"])
    names = {p.name for p in draw_figures(run.path)}
    assert names == {"loss_drops.png", "component_amplitudes.png"}
    assert all((run.path / "figures" / name).is_file() for name in names)
    assert EXPERIMENT.memory(run.config).total > 0


def test_a_tiny_run_learns_the_larger_eigenvalue_first(tmp_path):
    """The dynamics claim end to end at a size of seconds: Σ = diag(1, 4) (the larger eigenvalue
    on the second axis), four heads. Two drops, the first learning e_2 (u_1, λ = 4), the second
    e_1; every claim passes, and on the last plateau both amplitudes are near 1."""
    overrides = [
        "eigenvalues=[1.0,4.0]",
        "covariance=eigenvalues",
        "n=16",
        "n_heads=4",
        "train.steps=700",
        "train.batch_size=1024",
        "train.eval_batch_size=2048",
        "train.eval_every=4",
        "train.checkpoint_every=700",
        "test_batch_size=8192",
    ]
    run = icgd.run("rank-one-heads", overrides, out=tmp_path / "run")
    m = run.metrics
    assert m["eigenvalues"] == [4.0, 1.0]
    assert m["n_drops"] == 2 and m["learned_order"] == [1, 2], m
    assert run.status == "passed", [c for c in run.claims if not c.passed]
    # u_1 is the second coordinate axis (up to sign).
    assert abs(run.arrays["eigenvectors"][1, 0]) == pytest.approx(1.0)
    first, middle, last = (m["plateau_amplitudes"][2 * k : 2 * k + 2] for k in range(3))
    assert max(first) < 0.1  # nothing learned before drop 1
    assert middle[0] > 0.8 and middle[1] < 0.1  # drop 1 learned u_1 only
    assert all(abs(a - 1) < 0.15 for a in last), last
