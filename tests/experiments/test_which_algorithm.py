"""`which-algorithm`: the claims logic on synthetic metrics, config validation, padded prefixes,
the baselines' line search, and a tiny run end to end (folder, figures, determinism)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.cli import main
from icgd.core.prompts import build_prompt
from icgd.core.results import read_result
from icgd.experiments.which_algorithm import (
    EXPERIMENT,
    PRESETS,
    SMOKE,
    WhichAlgorithm,
    WhichAlgorithmConfig,
)
from icgd.experiments.which_algorithm.prefixes import line_search_gd, prefix_prompts, summed_gd
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = list(SMOKE)  # the smoke preset: d = 3, depths 1 and 2, σ ∈ {0, 0.5}, a few steps


def run(tmp_path, name: str, overrides=()):
    config = resolve_config("which-algorithm", overrides=TINY + list(overrides))
    run_dir = prepare_run_dir("which-algorithm", config, tmp_path / name)
    return config, run_dir, run_experiment("which-algorithm", config, run_dir)


# --- claims on synthetic metrics ----------------------------------------------------------------


def metrics_for(depths, noises, good: bool) -> dict:
    """Metrics of a sweep that behaves as the paper says (good) or the opposite way."""
    D = len(depths)
    m: dict = {}
    for s in noises:
        t = f"s{s:g}"
        if s > 0:
            m[f"ridge_best_offset_{t}"] = 0 if good else 2
        ramp = [i / max(D - 1, 1) for i in range(D)]  # 0 … 1 from shallow to deep
        spd_gd = [0.01 + 2 * r for r in ramp]
        spd_bayes = [2.0 - 1.9 * r for r in ramp]
        if not good:
            spd_gd, spd_bayes = spd_bayes, spd_gd
        m[f"spd_gd_{t}"] = spd_gd
        m[f"spd_bayes_{t}"] = spd_bayes
        m[f"spd_ols_{t}"] = [v + 5 * s for v in spd_bayes]  # OLS far when noisy
        bayes = s**2 if s > 0 else 1e-3
        m[f"closest_ridge_lambda_{t}"] = [16.0] * (D - 1) + [bayes if good else bayes * 8]
    return m


def claim_names(depths, noises):
    config = WhichAlgorithmConfig(depths=depths, noise_levels=noises)
    return [c.name for c in WhichAlgorithm().claims(config, metrics_for(depths, noises, True))]


def test_claims_pass_for_the_paper_and_fail_for_the_opposite():
    depths, noises = (1, 2, 4, 8), (0.0, 0.25, 0.5)
    config = WhichAlgorithmConfig(depths=depths, noise_levels=noises)
    good = WhichAlgorithm().claims(config, metrics_for(depths, noises, True))
    bad = WhichAlgorithm().claims(config, metrics_for(depths, noises, False))
    assert [c.name for c in good] == [c.name for c in bad]
    assert all(c.passed for c in good), [c.name for c in good if not c.passed]
    assert not any(c.passed for c in bad), [c.name for c in bad if c.passed]
    names = [c.name for c in good]
    # (a) and (e) only for σ > 0; (b)–(d) for every σ.
    assert "ridge_optimum_is_bayes_s0" not in names and "closest_ridge_is_bayes_s0" not in names
    assert {"ridge_optimum_is_bayes_s0.25", "closest_ridge_is_bayes_s0.5"} <= set(names)
    assert len(names) == 3 * 4 + 2 * 2


def test_claims_are_defined_for_any_sweep():
    # One depth of 1 layer: only (a) and (b); one deep depth: (a), (c), (e); no depth-1 claim.
    assert claim_names((1,), (0.5,)) == ["ridge_optimum_is_bayes_s0.5", "depth1_closest_to_gd_s0.5"]
    assert claim_names((4,), (0.5,)) == [
        "ridge_optimum_is_bayes_s0.5",
        "deepest_closer_to_ridge_ols_s0.5",
        "closest_ridge_is_bayes_s0.5",
    ]
    assert claim_names((2, 4), (0.0,)) == [
        "deepest_closer_to_ridge_ols_s0",
        "spd_gd_grows_with_depth_s0",
        "spd_bayes_shrinks_with_depth_s0",
    ]


def test_claims_edge_values():
    config = WhichAlgorithmConfig(depths=(1, 8), noise_levels=(0.5,))
    m = metrics_for((1, 8), (0.5,), True)
    # λ within a factor 2 passes (tolerance log2 2 = 1), a factor 4 fails.
    for factor, passes in ((2.0, True), (0.5, True), (4.0, False)):
        m["closest_ridge_lambda_s0.5"] = [16.0, 0.25 * factor]
        claim = {c.name: c for c in WhichAlgorithm().claims(config, m)}[
            "closest_ridge_is_bayes_s0.5"
        ]
        assert claim.passed is passes, factor
    # A missing/NaN metric (e.g. a diverged model) never passes.
    m["spd_gd_s0.5"] = [None, 1.0]
    claims = {c.name: c for c in WhichAlgorithm().claims(config, m)}
    assert not claims["depth1_closest_to_gd_s0.5"].passed
    assert not claims["spd_gd_grows_with_depth_s0.5"].passed


# --- config -------------------------------------------------------------------------------------


def test_presets_choose_the_sweep_and_nested_overrides_work():
    full = resolve_config("which-algorithm")
    assert full.preset == "full" and full.resolved_depths == PRESETS["full"]["depths"]
    assert full.resolved_noise == (0.0, 0.25, 0.5) and full.context == 16 and full.probes == 16
    quick = resolve_config("which-algorithm", overrides=["preset=quick"])
    assert quick.resolved_depths == (1, 8) and quick.resolved_noise == (0.0, 0.5)
    # An explicit sweep wins over the preset's; nested training keys can be set.
    cfg = resolve_config(
        "which-algorithm", overrides=["preset=quick", "depths=[4,2]", "train.optimizer.lr=0.005"]
    )
    assert cfg.resolved_depths == (2, 4) and cfg.train.optimizer.lr == 0.005
    # The grid always holds the Bayes λ of every σ > 0, and the default grid is powers of 2.
    odd = resolve_config("which-algorithm", overrides=["noise_levels=[0.3]", "lambda_grid=[1,2]"])
    assert odd.grid == (0.09, 1.0, 2.0)
    assert 0.0625 in full.grid and 0.25 in full.grid and full.grid[0] == 2.0**-10


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("depths=[0]", "depths"),
        ("depths=[2,2]", "depths"),
        ("noise_levels=[-0.1]", "noise_levels"),
        ("noise_levels=[0.1,0.1000000001]", "noise_levels"),
        ("lambda_grid=[0]", "lambda_grid"),
        ("preset=huge", "preset"),
        ("ilwd_probes=3", "ilwd_probes"),
        ("train.steps=0", "train.steps"),
    ],
)
def test_invalid_values_give_one_line_errors_at_the_cli(override, field, tmp_path, capsys):
    code = main(["run", "which-algorithm", "--out", str(tmp_path / "x"), "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_memory_estimate_is_positive_and_grows_with_the_sizes():
    config = WhichAlgorithmConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and all(v > 0 for v in base.parts.values()), base.parts
    train = config.train.model_copy(update={"batch_size": 4 * config.train.batch_size})
    for field, bigger, part, factor in (
        ("test_batch_size", config.model_copy(update={"test_batch_size": 32768}), "baselines", 2),
        ("train.batch_size", config.model_copy(update={"train": train}), "training batch", 2),
        ("eval_chunk", config.model_copy(update={"eval_chunk": 8192}), "model predictions", 2),
        ("depths", config.model_copy(update={"depths": (1, 16)}), "training batch", 1.5),  # ×2
    ):
        assert field in base.fields
        grown = EXPERIMENT.memory(bigger)
        assert grown.parts[part] >= factor * base.parts[part], field
        assert grown.total > base.total, field
    # The test prompts dominate at the default sizes: ×4 of them is ≥ ×2 of the whole estimate.
    many = config.model_copy(update={"test_batch_size": 4 * config.test_batch_size})
    assert EXPERIMENT.memory(many).total >= 2 * base.total
    for kind in ("softmax", "gpt", "looped"):
        family = resolve_config("which-algorithm", overrides=[f"model.kind={kind}"])
        wide = resolve_config(
            "which-algorithm", overrides=[f"model.kind={kind}", "train.batch_size=4096"]
        )
        small, large = EXPERIMENT.memory(family), EXPERIMENT.memory(wide)
        assert large.parts["training batch"] >= 2 * small.parts["training batch"] > 0, kind


# --- prompts and baselines ----------------------------------------------------------------------


def test_padded_prefix_is_the_model_on_k_points_with_normalisation_1_over_n_max():
    # A zero token is inert in linear attention: the padded prompt of the first k points gives
    # the prediction of the k-point prompt run through the layers with 1/n_max (not 1/k).
    g = torch.Generator().manual_seed(0)
    B, n, d, k = 5, 6, 3, 4
    X = torch.randn(B, n, d, generator=g, dtype=torch.float64)
    y = torch.randn(B, n, generator=g, dtype=torch.float64)
    x_q = torch.randn(B, d, generator=g, dtype=torch.float64)
    Z = prefix_prompts(X, y, x_q)  # (B·n, d+1, n+1)
    assert Z.shape == (B * n, d + 1, n + 1)
    row = Z[2 * n + k - 1]  # prompt 2, first k points
    torch.testing.assert_close(row[:d, :k], X[2, :k].T)
    assert torch.all(row[:, k:n] == 0) and torch.equal(row[:d, n], x_q[2])
    model = LinearSelfAttention(
        LSAConfig(d=d, n_layers=3, parametrisation="relaxed", init_std=0.3),
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    with torch.no_grad():
        padded = model.predict(Z).reshape(B, n)[:, k - 1]
        P, Q = model.layer_matrices()  # (L, 1, d+1, d+1)
        Zt = build_prompt(X[:, :k], y[:, :k], x_q)  # (B, d+1, k+1): no padding
        for layer in range(3):  # SPEC §1.1 layer with 1/n_max
            C = Zt[:, :, :k] @ Zt[:, :, :k].transpose(1, 2)  # Z M Zᵀ
            Zt = Zt + P[layer, 0] @ C @ Q[layer, 0] @ Zt / n
    torch.testing.assert_close(padded, -Zt[:, d, k], atol=1e-12, rtol=0)


def test_gd_line_search_is_exact_and_matches_one_layer_gd():
    g = torch.Generator().manual_seed(3)
    B, n, d = 400, 6, 3
    X = torch.randn(B, n, d, generator=g, dtype=torch.float64)
    w = torch.randn(B, d, generator=g, dtype=torch.float64)
    y = (X * w[:, None]).sum(-1)
    x_q = torch.randn(B, d, generator=g, dtype=torch.float64)
    y_q = (x_q * w).sum(-1)
    eta = line_search_gd(X, y, x_q, y_q)

    def loss(step):
        return (summed_gd(X, y, x_q, step) - y_q[:, None]).square().sum().item()

    assert loss(eta) <= min(loss(eta * 1.01), loss(eta * 0.99))
    # summed_gd at k = n is x_qᵀ η Xᵀ y.
    torch.testing.assert_close(
        summed_gd(X, y, x_q, eta)[:, -1], eta * ((X * y[..., None]).sum(1) * x_q).sum(-1)
    )


# --- a tiny run end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return run(tmp_path_factory.mktemp("wa"), "run")


def test_tiny_run_writes_claims_arrays_and_figures(tiny):
    config, run_dir, result = tiny
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    names = {c.name for c in result.claims}
    assert names == {
        "ridge_optimum_is_bayes_s0.5",
        *(f"{c}_{t}" for t in ("s0", "s0.5") for c in (
            "depth1_closest_to_gd",
            "deepest_closer_to_ridge_ols",
            "spd_gd_grows_with_depth",
            "spd_bayes_shrinks_with_depth",
        )),
        "closest_ridge_is_bayes_s0.5",
    }  # fmt: skip
    m = result.metrics
    assert m["depths"] == [1, 2] and m["n_max"] == 6 and m["models_diverged"] == 0
    assert len(m["spd_gd_s0.5"]) == 2 and all(math.isfinite(v) for v in m["spd_gd_s0.5"])
    # At σ = 0 the Bayes predictor is min-norm OLS itself.
    assert m["spd_bayes_s0"] == pytest.approx(m["spd_ols_s0"], rel=1e-9)
    assert m["bayes_lambda"] == [0.0, 0.25]
    for t in ("s0", "s0.5"):
        for lam in m[f"closest_ridge_lambda_{t}"]:
            assert lam in m["lambda_grid"]
    for i in (0, 1):
        assert (run_dir / "models" / f"L{i + 1}-s0.5" / "checkpoint.safetensors").is_file()
    assert (run_dir / "arrays.safetensors").is_file()
    paths = draw_figures(run_dir)
    for name in ("spd_heatmap", "spd_vs_k", "loss_vs_k", "closest_lambda"):
        assert (run_dir / "figures" / f"{name}.png") in paths, name


def test_same_seed_same_metrics(tiny, tmp_path):
    _, _, first = tiny
    _, _, again = run(tmp_path, "again")
    assert again.metrics == first.metrics


def test_interrupted_run_resumes_to_the_same_metrics(tiny, tmp_path):
    _, _, first = tiny
    config = resolve_config("which-algorithm", overrides=TINY)
    run_dir = prepare_run_dir("which-algorithm", config, tmp_path / "cut")

    def progress(task, step, total, record):
        if task == "L2-s0" and step == 6:  # just after its step-6 checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment("which-algorithm", config, run_dir, progress=progress)
    assert read_result(run_dir / "result.json").status == "interrupted"
    resumed = run_experiment("which-algorithm", config, run_dir, resume=True)
    assert resumed.metrics == first.metrics
