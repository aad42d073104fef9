"""`in-context-td`: claims on synthetic metrics, the batched TD loss against a window-by-window
loop, tiny runs (folder, figures, determinism), bad input at the CLI, and the default run (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.results import read_result
from icgd.core.rng import make_generator
from icgd.experiments.in_context_td import (
    EXPERIMENT,
    InContextTD,
    InContextTDConfig,
    td_loss,
    td_sampler,
)
from icgd.models import TDTransformer, TDTransformerConfig
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment

TINY = list(EXPERIMENT.presets["smoke"])

GOOD = {
    "p_mass": 0.9,
    "q_mass": 0.95,
    "q_pair_cos": -0.97,
    "alpha_fitted": 1.2,
    "relative_msve_model_vs_td": 0.02,
    "context_lengths": [1, 80],
    "construction_msve_drop_z": 12.0,
    "construction_msve_ratio": 0.2,
}
BAD = {
    "p_mass": 0.3,
    "q_mass": 0.4,
    "q_pair_cos": -0.7,
    "relative_msve_model_vs_td": 0.2,
    "construction_msve_drop_z": 2.0,
}


def test_claims_pass_on_good_metrics_and_fail_one_by_one():
    config = InContextTDConfig()
    exp = InContextTD()
    claims = exp.claims(config, GOOD)
    assert [c.name for c in claims] == [
        "P_value_entry_mass",
        "Q_td_block_mass",
        "Q_minus_C_C_pair",
        "values_track_batch_td",
        "construction_error_falls_with_n",
    ]
    assert all(c.passed for c in claims)
    for key, value in BAD.items():
        failed = [c.name for c in exp.claims(config, GOOD | {key: value}) if not c.passed]
        assert len(failed) == 1, (key, failed)
    assert not any(c.passed for c in exp.claims(config, {}))  # missing metrics never pass


def test_batched_td_loss_equals_the_window_by_window_loop():
    """The reference code calls the model once per window and accumulates δ²; one batched call
    over all windows gives the same loss and the same gradients (the stop-gradient included)."""
    config = InContextTDConfig(d=3, s=6, n=5, processes_per_batch=2, processes=2)
    model = TDTransformer(
        TDTransformerConfig(d=3, n_layers=3, looped=True, init_std=0.2),
        generator=make_generator(1),
        dtype=torch.float64,
    )
    prompts, rewards, gamma = td_sampler(config, torch.device("cpu"), torch.float64)(
        7, make_generator(2)
    )
    assert prompts.shape == (2, 8, 7, 6) and rewards.shape == (2, 7)
    batched = td_loss(model, (prompts, rewards, gamma))
    grads = torch.autograd.grad(batched, [model.P, model.Q])

    total = 0.0
    for b in range(2):
        v_now = model.value(prompts[b, :1])
        for t in range(7):
            v_next = model.value(prompts[b, t + 1 : t + 2])
            total = total + (rewards[b, t] + gamma * v_next.detach() - v_now) ** 2
            v_now = v_next
    looped = (total / 14).squeeze()
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=0)
    for g, h in zip(grads, torch.autograd.grad(looped, [model.P, model.Q]), strict=True):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-14)


def run(tmp_path, overrides=(), name="run"):
    config = resolve_config("in-context-td", overrides=TINY + list(overrides))
    run_dir = prepare_run_dir("in-context-td", config, tmp_path / name)
    return config, run_dir, run_experiment("in-context-td", config, run_dir)


def test_tiny_run_writes_a_complete_folder_and_repeats_exactly(tmp_path):
    config, run_dir, result = run(tmp_path)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    m = result.metrics
    assert config.train_config().steps == 24
    assert m["curve_step"][0] == 0 and m["curve_step"][-1] == 24
    assert m["snapshot_steps"] == [0, 12, 24]
    for key in ("p_mass", "q_mass"):
        assert 0 <= m[key] <= 1
    assert -1 <= m["q_pair_cos"] <= 1
    assert m["alpha_fitted"] > 0 and m["relative_msve_model_vs_td"] >= 0
    assert m["construction_vs_td_max_abs"] < 1e-10  # the construction is batch TD
    assert len(m["msve_td_vs_n"]) == len(m["context_lengths"]) == 3
    assert len(m["msve_model_vs_n_train"]) == len(m["model_context_lengths"]) == 2
    assert len(result.claims) == 5
    figures = {p.name for p in draw_figures(run_dir)}
    assert {"PQ_over_training.png", "training.png", "msve_vs_context_length.png"} <= figures
    _, _, again = run(tmp_path, name="again")
    timing = {"train_seconds", "processes_per_second"}
    assert {k: v for k, v in again.metrics.items() if k not in timing} == {
        k: v for k, v in m.items() if k not in timing
    }


def test_several_processes_per_step_and_softmax(tmp_path):
    _, _, result = run(
        tmp_path, ["processes_per_batch=4", "activation=softmax", "looped=false"], name="soft"
    )
    assert result.metrics["curve_step"][-1] == 6  # 12 processes / 4 per step × 2 minibatches
    assert math.isfinite(result.metrics["final_td_loss"])


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("d=0", "d"),
        ("gamma=1", "gamma"),
        ("mrp=grid", "mrp"),
        ("context_lengths=[8,4]", "context_lengths"),
        ("model_context_lengths=[5]", "model_context_lengths"),
        ("curve_rewards=zero", "curve_rewards"),
        ("processes=10", "processes"),
        ("activation=tanh", "activation"),
        ("tolerances.p_mass=2", "p_mass"),
    ],
)
def test_bad_config_is_one_line_exit_2(assert_bad_config, override, field):
    if field == "processes":
        override = "processes=10 processes_per_batch=3"
        with pytest.raises(Exception, match="processes: must be a multiple"):
            resolve_config("in-context-td", overrides=override.split())
        return
    assert_bad_config("in-context-td", override, field)


@pytest.mark.slow
def test_default_run(tmp_path):
    config = resolve_config("in-context-td", overrides=[])
    run_dir = prepare_run_dir("in-context-td", config, tmp_path / "default")
    result = run_experiment("in-context-td", config, run_dir)
    assert result.status == "passed", [c for c in result.claims if not c.passed]


def test_memory_estimate_grows_with_the_sizes():
    """Positive by default; grows with the held-out processes, the context length and the
    training batch."""
    config = InContextTDConfig()
    base = EXPERIMENT.memory(config)
    assert base.total > 0 and {"n", "minibatch", "eval_processes"} <= set(base.fields)
    for update in ({"eval_processes": 2048}, {"minibatch": 256}, {"d": 16}):
        bigger = EXPERIMENT.memory(config.model_copy(update=update))
        assert bigger.total >= 2 * base.total, update
    longer = config.model_copy(update={"n": 120, "model_context_lengths": [5, 480]})
    assert EXPERIMENT.memory(longer).total >= 2 * base.total
    batch = config.model_copy(update={"processes_per_batch": 64})
    assert EXPERIMENT.memory(batch).parts["training batch"] >= 4 * base.parts["training batch"]
