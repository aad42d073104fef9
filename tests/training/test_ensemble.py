"""The stacked loop equals K single-seed `train` runs: records, weights, per-seed divergence,
resumable seed folders, stop requests, and the fallback when the loss cannot be vmapped; the one
loop has no import circle and its seed threads train through an explicit seat."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from icgd.core.errors import InputError
from icgd.core.rng import make_generator
from icgd.experiments.common import prompt_mse, regression_sampler
from icgd.models import LinearSelfAttention, LSAConfig
from icgd.tasks import LinearRegression, LinearRegressionConfig
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig, interrupt, train
from icgd.training.ensemble import TrainCall, train_stacked
from icgd.training.loop import train_seeds
from icgd.training.rendezvous import Rendezvous
from icgd.training.strategies import slice_optimizer_state, stack_optimizer_states

TASK = LinearRegression(LinearRegressionConfig(d=3, n=6), dtype=torch.float64)
ADAM = TrainConfig(
    steps=24,
    batch_size=32,
    optimizer=OptimizerConfig(kind="adam", lr=0.05, weight_decay=0.01),
    schedule=ScheduleConfig(kind="step_halving", every=10),
    clip_norm=0.05,
    resample_every=3,
    eval_every=8,
    eval_batch_size=32,
    checkpoint_every=8,
)
SGD = ADAM.model_copy(
    update={"optimizer": OptimizerConfig(kind="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)}
)


def make_call(k: int, config: TrainConfig, run_dir=None, sampler=None, loss=prompt_mse):
    model = LinearSelfAttention(
        LSAConfig(d=3, n_layers=2, looped=True, parametrisation="sparse_u", init_std=0.1),
        generator=make_generator(100 + k),
        dtype=torch.float64,
    )
    held_out = TASK.sample(32, make_generator(200 + k))
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    return TrainCall(
        model,
        sampler or regression_sampler(TASK),
        loss,
        config,
        make_generator(k),
        (held_out.prompt(), held_out.y_q),
        run_dir=run_dir,
        on_eval=lambda step, m: {"a_sum": float(m.A.detach().sum())},
    )


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_records_close(a: list[dict], b: list[dict], rtol: float = 1e-10) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and x["step"] == y["step"] and x["kind"] == y["kind"]
        for key, value in y.items():
            if isinstance(value, float):
                assert x[key] == pytest.approx(value, rel=rtol, abs=1e-14), (y["step"], key)


@pytest.mark.parametrize("config", [ADAM, SGD], ids=["adam", "sgd-momentum"])
def test_stacked_equals_single_runs(tmp_path, config):
    stacked = [make_call(k, config, tmp_path / f"e{k}") for k in range(3)]
    outcome = train_stacked(stacked)
    assert outcome.batched, outcome.reason
    for k in range(3):
        single = make_call(k, config, tmp_path / f"s{k}")
        alone = single.run_alone()
        got = outcome.results[k]
        assert got.status == alone.status == "completed" and got.steps_done == config.steps
        assert got.final_eval_loss == pytest.approx(alone.final_eval_loss, rel=1e-10)
        assert_records_close(records(tmp_path / f"e{k}"), records(tmp_path / f"s{k}"))
        for (name, p), q in zip(
            stacked[k].model.named_parameters(), single.model.parameters(), strict=True
        ):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-14, msg=name)


def test_seed_folder_resumes_with_plain_train(tmp_path):
    """The sliced optimizer state is a single run's: resume seed 1's folder with `train`."""
    short = ADAM.model_copy(update={"steps": 16})
    outcome = train_stacked([make_call(k, short, tmp_path / f"e{k}") for k in range(3)])
    assert outcome.batched
    resumed = make_call(1, ADAM, tmp_path / "e1")
    train(
        resumed.model,
        resumed.sample_batch,
        resumed.loss_fn,
        ADAM,
        generator=resumed.generator,
        eval_batch=resumed.eval_batch,
        run_dir=tmp_path / "e1",
        resume=True,
        on_eval=resumed.on_eval,
    )
    full = make_call(1, ADAM, tmp_path / "s1")
    full.run_alone()
    assert_records_close(records(tmp_path / "e1"), records(tmp_path / "s1"))
    torch.testing.assert_close(resumed.model.A, full.model.A, rtol=1e-10, atol=1e-14)


def test_stacked_resume_equals_uninterrupted(tmp_path):
    short = ADAM.model_copy(update={"steps": 16})
    train_stacked([make_call(k, short, tmp_path / f"e{k}") for k in range(3)])
    calls = [make_call(k, ADAM, tmp_path / f"e{k}") for k in range(3)]
    for c in calls:
        c.resume = True
    assert train_stacked(calls).batched
    train_stacked([make_call(k, ADAM, tmp_path / f"u{k}") for k in range(3)])
    for k in range(3):
        assert_records_close(records(tmp_path / f"e{k}"), records(tmp_path / f"u{k}"))


def test_one_seed_diverges_the_others_continue(tmp_path):
    def poisoned(after: int):
        inner, calls = regression_sampler(TASK), [0]

        def sample(batch_size, generator):
            Z, y = inner(batch_size, generator)
            calls[0] += 1
            return Z, (y * float("nan") if calls[0] > after else y)

        return sample

    # seed 1's 4th batch (update 10, resample_every=3) is NaN
    stacked = [
        make_call(k, ADAM, tmp_path / f"e{k}", sampler=poisoned(3) if k == 1 else None)
        for k in range(3)
    ]
    outcome = train_stacked(stacked)
    assert outcome.batched
    assert [r.status for r in outcome.results] == ["completed", "diverged", "completed"]
    single = make_call(1, ADAM, tmp_path / "s1", sampler=poisoned(3)).run_alone()
    got = outcome.results[1]
    assert got.status == "diverged" and got.steps_done == single.steps_done == 9
    assert got.message == single.message and "training loss" in got.message
    assert got.final_eval_loss == pytest.approx(single.final_eval_loss, rel=1e-10)
    assert_records_close(records(tmp_path / "e1"), records(tmp_path / "s1"))
    for k in (0, 2):
        make_call(k, ADAM, tmp_path / f"s{k}").run_alone()
        assert_records_close(records(tmp_path / f"e{k}"), records(tmp_path / f"s{k}"))


def test_divergence_read_late_is_reported_at_its_update(tmp_path, monkeypatch):
    """Off CPU the host reads the seeds' divergence flags only at log/eval/checkpoint steps: a NaN
    at update 10 that the host first sees at step 12 is still reported as seed 1's update 10, with
    the weights of step 9, as a single run (which reads every step on CPU) reports it. Forced here
    on CPU."""
    monkeypatch.setattr("icgd.training.loop.checks_every_step", lambda device: False)

    def poisoned(sample_batch):
        calls = [0]

        def sample(batch_size, generator):
            Z, y = sample_batch(batch_size, generator)
            calls[0] += 1
            return Z, (y * float("nan") if calls[0] > 3 else y)

        return sample

    # 600 steps log every 3 updates; batch 4 (updates 10-12) of seed 1 is NaN
    config = ADAM.model_copy(update={"steps": 600, "eval_every": 300, "checkpoint_every": 300})
    stacked = [
        make_call(k, config, sampler=poisoned(regression_sampler(TASK)) if k == 1 else None)
        for k in range(2)
    ]
    outcome = train_stacked(stacked)
    single_call = make_call(1, config, sampler=poisoned(regression_sampler(TASK)))
    single = single_call.run_alone()
    got = outcome.results[1]
    assert [r.status for r in outcome.results] == ["completed", "diverged"]
    assert got.steps_done == single.steps_done == 9 and got.message == single.message
    assert got.final_eval_loss == pytest.approx(single.final_eval_loss, rel=1e-10)
    for a, b in zip(stacked[1].model.parameters(), single_call.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_unvmappable_loss_falls_back_to_one_after_another():
    def loss_with_item(model, batch):
        value = prompt_mse(model, batch)
        if value.item() < 0:  # data-dependent control flow: vmap cannot batch it
            raise AssertionError
        return value

    config = ADAM.model_copy(update={"steps": 6})
    outcome = train_stacked([make_call(k, config, loss=loss_with_item) for k in range(2)])
    assert not outcome.batched and "vmap" in outcome.reason
    alone = make_call(1, config, loss=loss_with_item).run_alone()
    assert outcome.results[1].final_eval_loss == alone.final_eval_loss


def test_optimizer_state_slices_and_stacks_back():
    params = [torch.randn(3, 2, 2, requires_grad=True), torch.randn(3, 4, requires_grad=True)]
    optimizer = torch.optim.Adam(params, lr=0.1)
    sum(p.square().sum() for p in params).backward()
    optimizer.step()
    state = optimizer.state_dict()
    slices = [slice_optimizer_state(state, params, k) for k in range(3)]
    assert slices[1]["state"][0]["exp_avg"].shape == (2, 2)
    back = stack_optimizer_states(slices, params)
    for index in state["state"]:
        for key, value in state["state"][index].items():
            torch.testing.assert_close(back["state"][index][key], value)


def test_stop_request_checkpoints_every_seed_and_resumes(tmp_path):
    """A signal during a stacked run: every seed's folder gets a checkpoint at the current step
    (mid-window and off the checkpoint grid: step 14), `StopRequested` is raised, and resuming
    the seeds gives the numbers of an uninterrupted run."""
    calls = [make_call(k, ADAM, tmp_path / f"e{k}") for k in range(3)]

    def progress(step, total, record):
        if step == 13:
            interrupt.request_stop(signal.SIGTERM)

    calls[1].progress = progress
    with pytest.raises(interrupt.StopRequested) as info:
        train_stacked(calls)
    assert info.value.signum == signal.SIGTERM and interrupt.pending() is None
    for k in range(3):
        assert records(tmp_path / f"e{k}")[-1]["step"] <= 14
        assert torch.load(tmp_path / f"e{k}" / "training_state.pt")["step"] == 14
    resumed = [make_call(k, ADAM, tmp_path / f"e{k}") for k in range(3)]
    for c in resumed:
        c.resume = True
    assert train_stacked(resumed).batched
    full = [make_call(k, ADAM, tmp_path / f"u{k}") for k in range(3)]
    train_stacked(full)
    for k in range(3):
        assert_records_close(records(tmp_path / f"e{k}"), records(tmp_path / f"u{k}"))
        for a, b in zip(resumed[k].model.parameters(), full[k].model.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_one_seed_is_the_plain_loop(tmp_path):
    """`train_seeds` with one call is `train`: the same records, bit for bit."""
    one = make_call(0, ADAM, tmp_path / "a")
    (result,) = train_seeds([one])
    two = make_call(0, ADAM, tmp_path / "b")
    kw = {"generator": two.generator, "eval_batch": two.eval_batch, "on_eval": two.on_eval}
    alone = train(two.model, two.sample_batch, two.loss_fn, ADAM, run_dir=tmp_path / "b", **kw)
    assert result == alone
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (
        tmp_path / "b" / "metrics.jsonl"
    ).read_text()


def test_seats_train_stacked_and_refuse_compile():
    """Seed threads train through their seat (an explicit trainer, not a thread-local): the
    coordinator stacks the calls; a seat refuses `compile` with a one-line `InputError`."""
    import threading

    config = ADAM.model_copy(update={"steps": 6})
    calls = [make_call(k, config) for k in range(2)]
    rendezvous, results = Rendezvous(2), {}

    def seed(k):
        c = calls[k]
        with rendezvous.seated(k) as trainer:
            kw = {"generator": c.generator, "eval_batch": c.eval_batch}
            results[k] = trainer(c.model, c.sample_batch, c.loss_fn, c.config, **kw)

    threads = [threading.Thread(target=seed, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    rendezvous.serve()
    for t in threads:
        t.join()
    assert rendezvous.batched_calls == [1, 1] and results[1].status == "completed"
    alone = make_call(1, config).run_alone()
    assert results[1].final_eval_loss == pytest.approx(alone.final_eval_loss, rel=1e-10)
    c = calls[0]
    kw = {"generator": c.generator, "eval_batch": c.eval_batch, "compile": True}
    with Rendezvous(1).seated(0) as trainer, pytest.raises(InputError) as info:
        trainer(c.model, c.sample_batch, c.loss_fn, config, **kw)
    assert info.value.field == "compile"


def test_the_loop_imports_no_ensemble_machinery():
    """No import circle: the loop module imports neither the stacking rules nor the rendezvous
    (they import it)."""
    code = (
        "import sys, icgd.training.loop; "
        "print([m for m in ('icgd.training.ensemble', 'icgd.training.rendezvous') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
