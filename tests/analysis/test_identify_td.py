"""`identify` and `probe_layers` on TD transformers and Markov-reward prompts (the TD family):
the hand-built TD(0) transformer is named TD(0) with its step and loop count, the packed prompts
are the TD prompts, fitted candidates agree with `icgd.algorithms.td`, and a trained
in-context-td model runs end to end through its experiment's `task` hook."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.analysis.identify import (
    TD_PROBE_ALGORITHMS,
    TDPromptTask,
    draw_prompts,
    identify,
    model_view,
    probe_layers,
    prompt_family,
)
from icgd.analysis.identify.fitting import FitData
from icgd.analysis.identify.td_candidates import TD_CANDIDATES
from icgd.constructions import lsa_from_gd_step, transformer_from_residual_gradient
from icgd.core.td_prompts import build_td_prompt
from icgd.experiments.api import task_for
from icgd.experiments.in_context_td import EXPERIMENT
from icgd.experiments.in_context_td.known import (
    TD0_LAYERS,
    TD0_STEP,
    known_answer,
    td0_construction,
)
from icgd.tasks import LinearRegression, LinearRegressionConfig, MarkovReward, MarkovRewardConfig

F64 = torch.float64
D, N = 4, 20


def _task(d: int = D, n: int = N) -> TDPromptTask:
    return TDPromptTask(MarkovReward(MarkovRewardConfig(s=10, d=d, gamma=0.9)), n)


@pytest.fixture(scope="module")
def construction_result():
    """Every TD candidate fitted to the hand-built TD(0) transformer of `identify`'s source."""
    model, task, _ = td0_construction(D, N)
    return identify(model, task, n_prompts=1024, n_bootstrap=16, ilwd_prompts=64)


def test_td0_transformer_is_identified_as_td0_with_its_step_and_loops(construction_result):
    best = construction_result.best
    assert best.name == "td0" and best.steps == TD0_LAYERS and best.exact
    assert best.value("alpha") == pytest.approx(TD0_STEP, rel=1e-6)
    assert best.r2 >= 1 - 1e-6 and best.ilwd < 1e-20
    assert best.parameters["steps"].sd.item() == 0.0 and best.parameters["alpha"].sd < 1e-9
    # preconditioned TD(0) fits too, with C = αI: it ties and loses on its d² parameters
    ptd = construction_result["preconditioned-td0"]
    assert ptd.exact and ptd.steps == TD0_LAYERS
    eye = TD0_STEP * torch.eye(D, dtype=F64)
    torch.testing.assert_close(ptd.value("C"), eye, rtol=0, atol=1e-8)
    assert construction_result.names[:2] == ("td0", "preconditioned-td0")
    for name in ("residual-gradient", "lstd"):  # the baselines do not fit
        assert not construction_result[name].exact and construction_result[name].r2 < 0.9


def test_residual_gradient_transformer_is_not_td0():
    model = transformer_from_residual_gradient(3, 2, alpha=0.4, dtype=F64)
    result = identify(model, _task(3, 12), n_prompts=512, n_bootstrap=4, ilwd_prompts=0)
    assert result.best.name == "residual-gradient" and result.best.steps == 2
    assert result.best.value("alpha") == pytest.approx(0.4, rel=1e-6)
    assert not result["td0"].exact


def test_packed_prompts_are_the_td_prompts_and_the_view_is_the_model():
    task = _task(3, 7)
    prompts = draw_prompts(task, 32, torch.Generator().manual_seed(0))
    batch = task.sample(32, torch.Generator().manual_seed(0))  # the same draws
    Z = build_td_prompt(batch.phi, batch.phi_next, batch.rewards, batch.phi_q, batch.gamma)
    model = td0_construction(3, 7)[0]
    view = model_view(model, chunk=10)  # several chunks
    assert view.family == prompt_family(task) == "td"
    assert torch.equal(view.predict(prompts.X, prompts.y, prompts.x_q), model.value(Z))
    assert torch.equal(prompts.y_q, batch.v_q)
    states, own = view.residuals(prompts.X, prompts.y, prompts.x_q, native=True)
    assert list(states) == [f"hook_z.{t}" for t in range(TD0_LAYERS + 1)]
    torch.testing.assert_close(own[f"hook_z.{TD0_LAYERS}"], model.value(Z), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TD_CANDIDATES))
def test_fitted_predictions_match_the_reference_algorithms(name):
    """Each candidate's fitting predictions at its fit equal its `icgd.algorithms` reference."""
    prompts = draw_prompts(_task(3, 9), 256, torch.Generator().manual_seed(1))
    data = FitData(prompts.X, prompts.y, prompts.x_q)
    target = 0.5 * prompts.y_q  # anything: only fit ↔ reference agreement is tested
    candidate = TD_CANDIDATES[name]()
    for fit in candidate.fit(data, target):
        params = candidate.parameters(fit.theta)
        with torch.no_grad():
            mine = fit.predict(fit.theta)
        ref = candidate.reference(prompts.X, prompts.y, prompts.x_q, fit.steps, params)
        torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-10)


def test_probe_layers_maps_each_loop_to_one_td0_step(construction_result):
    model, task, _ = td0_construction(D, N)
    probes = probe_layers(
        model, task, algorithms=TD_PROBE_ALGORITHMS, parameters=construction_result,
        n_prompts=512, max_steps=5,
    )  # fmt: skip
    assert probes.parameters["td0"] == {"alpha": pytest.approx(TD0_STEP, rel=1e-6)}
    assert probes.best_steps["td0"] == tuple(range(TD0_LAYERS + 1))
    assert probes.decoded_steps["td0"] == tuple(range(TD0_LAYERS + 1))
    default = probe_layers(model, task, algorithms=["td0"], n_prompts=256, max_steps=3)
    assert all(math.isfinite(v) for v in default.output_sime["td0"][1:].tolist())


def test_trained_in_context_td_model_runs_end_to_end():
    """A few Adam steps of in-context-td, then identify and probe through the `task` hook."""
    from icgd.experiments.in_context_td.experiment import td_loss, td_sampler
    from icgd.models import TDTransformer, TDTransformerConfig
    from icgd.runs.runner import resolve_config

    config = resolve_config("in-context-td", overrides=list(EXPERIMENT.presets["smoke"]))
    model = TDTransformer(
        TDTransformerConfig(d=config.d, n_layers=config.n_layers, looped=True, init_std=0.1),
        generator=torch.Generator().manual_seed(0),
    )
    sample, opt = td_sampler(config, torch.device("cpu"), torch.float32), None
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):  # enough to move off the initialisation; not to learn TD
        opt.zero_grad()
        td_loss(model, sample(8, g)).backward()
        opt.step()
    task = task_for(EXPERIMENT, config)
    assert isinstance(task, TDPromptTask) and task.n == config.n
    result = identify(model, task, n_prompts=256, n_bootstrap=4, ilwd_prompts=16)
    assert set(result.names) == set(TD_CANDIDATES)
    for fit in result.ranking:
        assert math.isfinite(fit.spd) and math.isfinite(fit.r2) and fit.ilwd is not None
    probes = probe_layers(model, task, algorithms=TD_PROBE_ALGORITHMS, parameters=result,
                          n_prompts=128, max_steps=3)  # fmt: skip
    assert len(probes.layers) == config.n_layers + 1
    answer = known_answer(config, {"alpha_fitted": 0.3})
    assert answer["algorithm"] in result.names and answer["steps"] == config.n_layers
    assert answer["parameters"] == {} and not answer["exact"]
    assert known_answer(config, {"alpha_fitted": 0.3}, with_alpha=True)["parameters"] == {
        "alpha": 0.3
    }
    assert known_answer(config.model_copy(update={"activation": "softmax"}), {}) is None


def test_mismatched_families_and_bad_tasks_are_refused():
    model = td0_construction(2, 5)[0]
    regression = LinearRegression(LinearRegressionConfig(d=4, n=5), dtype=F64)
    with pytest.raises(TypeError, match="ModelView"):
        identify(model, regression, n_prompts=16)
    with pytest.raises(TypeError, match="ModelView"):
        identify(lsa_from_gd_step(4, 0.5), _task(2, 5), n_prompts=16)
    with pytest.raises(ValueError, match="TDPromptTask"):
        identify(model, MarkovReward.example(), n_prompts=16)
    with pytest.raises(ValueError, match="unknown algorithm"):
        identify(model, _task(2, 5), algorithms=["gd"], n_prompts=16)
    with pytest.raises(ValueError, match="n must be"):
        TDPromptTask(MarkovReward.example(), 0)


def test_a_quickly_trained_d4_model_runs_three_td0_steps(tmp_path):
    """≈ 3 s of in-context-td training (d = 4, 3 loops) through the run folder: TD(0) with k = 3
    fits far better than the baselines, and the loops map to TD(0) steps 0, 1, 2, 3."""
    from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment
    from icgd.training.checkpoint import CHECKPOINT_FILE, build_from_checkpoint

    overrides = list(EXPERIMENT.presets["smoke"]) + [
        "d=4", "s=10", "n=20", "n_layers=3", "processes=4000", "processes_per_batch=8",
        "lr=0.003", "eval_every=500",
    ]  # fmt: skip
    config = resolve_config("in-context-td", overrides=overrides)
    run_dir = prepare_run_dir("in-context-td", config, tmp_path / "td")
    run_experiment("in-context-td", config, run_dir)
    model = build_from_checkpoint(run_dir / CHECKPOINT_FILE)
    task = task_for(EXPERIMENT, config)
    result = identify(model, task, n_prompts=2048, n_bootstrap=16, ilwd_prompts=64)
    td0 = result["td0"]
    assert td0.steps == 3 and td0.r2 > 0.8
    assert result.names.index("td0") < result.names.index("residual-gradient")
    assert result["residual-gradient"].r2 < td0.r2 - 0.2 and result["lstd"].r2 < 0
    probes = probe_layers(model, task, algorithms=TD_PROBE_ALGORITHMS, parameters=result,
                          n_prompts=1024, max_steps=6)  # fmt: skip
    assert probes.best_steps["td0"] == (0, 1, 2, 3)
