"""The training loop: exact resumption, NaN/inf guard, determinism, metrics records."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from icgd.core.config import Config
from icgd.core.errors import InputError
from icgd.core.rng import make_generator
from icgd.training import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    STATE_FILE,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    load_checkpoint,
    read_checkpoint_metadata,
    read_metrics,
    train,
)
from icgd.training.records import sigint_deferred

D = 3
W_TRUE = torch.tensor([[1.0], [-2.0], [0.5]])


class TinyConfig(Config):
    d: int = D
    hidden: int = 4


class Tiny(nn.Module):
    """y ≈ x W1 W2: two weight matrices, so per-matrix clipping and Adam state are exercised."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.config = TinyConfig()
        g = torch.Generator().manual_seed(seed)
        self.W1 = nn.Parameter(0.5 * torch.randn(D, 4, generator=g))
        self.W2 = nn.Parameter(0.5 * torch.randn(4, 1, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W1 @ self.W2  # (batch, d) -> (batch, 1)


def sample(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy linear regression: x ~ N(0, I_d), y = x w* + 0.1 ε; a whole batch at once."""
    x = torch.randn(batch_size, D, generator=generator)
    y = x @ W_TRUE + 0.1 * torch.randn(batch_size, 1, generator=generator)
    return x, y


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


EVAL = sample(64, make_generator(1))


def config(**overrides) -> TrainConfig:
    base = dict(
        steps=40,
        batch_size=16,
        optimizer=OptimizerConfig(kind="adam", lr=0.05),
        schedule=ScheduleConfig(kind="step_halving", every=7),
        clip_norm=0.5,
        eval_every=5,
        eval_batch_size=64,
        checkpoint_every=20,
    )
    return TrainConfig(**{**base, **overrides})


def weight_norm(step: int, model: nn.Module) -> dict[str, float]:
    return {"w_norm": float(model.W1.detach().norm() * model.W2.detach().norm())}


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("resample_every", [1, 3])
@pytest.mark.parametrize("stop_at", [20, 25])
def test_resume_equals_uninterrupted(tmp_path: Path, resample_every: int, stop_at: int) -> None:
    cfg = config(resample_every=resample_every)
    straight_model = Tiny()
    straight = train(
        straight_model,
        sample,
        mse,
        cfg,
        generator=make_generator(7),
        eval_batch=EVAL,
        run_dir=tmp_path / "a",
        on_eval=weight_norm,
    )
    assert straight.status == "completed" and straight.steps_done == 40

    def interrupt(step: int, total: int, record: dict) -> None:
        if step == stop_at:
            raise KeyboardInterrupt

    run_b = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train(
            Tiny(),
            sample,
            mse,
            cfg,
            generator=make_generator(7),
            eval_batch=EVAL,
            run_dir=run_b,
            on_eval=weight_norm,
            progress=interrupt,
        )
    # The interrupted run left the checkpoint of step 20; metrics may run past it (stop_at 25).
    assert read_checkpoint_metadata(run_b)["step"] == "20"
    assert read_metrics(run_b)[-1]["step"] == stop_at

    # Resume into a differently initialised model with a differently seeded generator: both
    # are overwritten from the checkpoint.
    resumed_model = Tiny(seed=99)
    resumed = train(
        resumed_model,
        sample,
        mse,
        cfg,
        generator=make_generator(12345),
        eval_batch=EVAL,
        run_dir=run_b,
        resume=True,
        on_eval=weight_norm,
    )

    for name, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name
    assert (run_b / METRICS_FILE).read_bytes() == (tmp_path / "a" / METRICS_FILE).read_bytes()
    assert resumed == straight
    # The final checkpoints agree too (compared by content: safetensors' header order varies).
    assert read_checkpoint_metadata(run_b) == read_checkpoint_metadata(tmp_path / "a")
    a, b = load_file(tmp_path / "a" / CHECKPOINT_FILE), load_file(run_b / CHECKPOINT_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_extending_a_run_equals_running_longer(tmp_path: Path) -> None:
    """Resuming a finished run with more steps continues exactly (non-cosine schedules)."""
    long_model = Tiny()
    long = train(
        long_model,
        sample,
        mse,
        config(steps=60, resample_every=3),
        generator=make_generator(3),
        eval_batch=EVAL,
        run_dir=tmp_path / "long",
    )
    train(
        Tiny(),
        sample,
        mse,
        config(steps=40, resample_every=3),
        generator=make_generator(3),
        eval_batch=EVAL,
        run_dir=tmp_path / "short",
    )
    model = Tiny()
    extended = train(
        model,
        sample,
        mse,
        config(steps=60, resample_every=3),
        generator=make_generator(3),
        eval_batch=EVAL,
        run_dir=tmp_path / "short",
        resume=True,
    )
    assert extended == long
    assert torch.equal(model.W1, long_model.W1) and torch.equal(model.W2, long_model.W2)
    assert read_metrics(tmp_path / "short") == read_metrics(tmp_path / "long")


def test_resume_of_a_finished_run_is_a_no_op(tmp_path: Path) -> None:
    first = train(
        Tiny(),
        sample,
        mse,
        config(),
        generator=make_generator(0),
        eval_batch=EVAL,
        run_dir=tmp_path,
    )
    before = (tmp_path / METRICS_FILE).read_bytes()
    again = train(
        Tiny(seed=5),
        sample,
        mse,
        config(),
        generator=make_generator(0),
        eval_batch=EVAL,
        run_dir=tmp_path,
        resume=True,
    )
    assert again == first
    assert (tmp_path / METRICS_FILE).read_bytes() == before


def test_resume_errors(tmp_path: Path) -> None:
    kwargs = dict(generator=make_generator(0), eval_batch=EVAL)
    with pytest.raises(InputError, match="not found") as info:
        train(Tiny(), sample, mse, config(), run_dir=tmp_path, resume=True, **kwargs)
    assert info.value.field == str(tmp_path / CHECKPOINT_FILE)
    with pytest.raises(InputError, match="run folder"):
        train(Tiny(), sample, mse, config(), resume=True, **kwargs)
    train(Tiny(), sample, mse, config(), run_dir=tmp_path, **kwargs)
    with pytest.raises(InputError, match="batch_size was 16, now 32") as info:
        train(Tiny(), sample, mse, config(batch_size=32), run_dir=tmp_path, resume=True, **kwargs)
    assert info.value.field == str(tmp_path / STATE_FILE)
    with pytest.raises(InputError, match="past steps=30"):
        train(Tiny(), sample, mse, config(steps=30), run_dir=tmp_path, resume=True, **kwargs)


def test_same_seed_same_numbers() -> None:
    runs = []
    for seed in (11, 11, 12):
        model = Tiny()
        result = train(
            model,
            sample,
            mse,
            config(resample_every=2),
            generator=make_generator(seed),
            eval_batch=EVAL,
        )
        runs.append((result, weights(model)))
    (a, wa), (b, wb), (c, _) = runs
    assert a == b and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.history != c.history  # a different training stream gives different numbers
    assert a.final_eval_loss < a.history[0]["loss"] / 10  # and it does learn


def test_metrics_records(tmp_path: Path) -> None:
    cfg = config(
        steps=400,
        batch_size=8,
        eval_every=100,
        checkpoint_every=1000,
        clip_norm=None,
        schedule=ScheduleConfig(kind="step_halving", every=100),
    )
    seen_grad_mode: list[bool] = []

    def loss_fn(model: nn.Module, batch: tuple) -> torch.Tensor:
        if batch is EVAL:
            seen_grad_mode.append(torch.is_grad_enabled())
        return mse(model, batch)

    result = train(
        Tiny(),
        sample,
        loss_fn,
        cfg,
        generator=make_generator(0),
        eval_batch=EVAL,
        run_dir=tmp_path,
        on_eval=weight_norm,
    )
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train_records] == list(range(2, 401, 2))  # every 400 // 200 steps
    assert [r["step"] for r in evals] == [0, 100, 200, 300, 400]
    assert evals == result.history and result.final_eval_loss == evals[-1]["loss"]
    assert seen_grad_mode == [False] * 5  # eval ran under no_grad
    for r in train_records:  # the lr the update of step r["step"] (0-based t = step - 1) used
        assert r["lr"] == 0.05 * 0.5 ** ((r["step"] - 1) // 100)
        assert set(r) == {"step", "kind", "loss", "lr", "grad_norm"} and r["grad_norm"] > 0
    for r in evals:  # the lr of the next update
        assert r["lr"] == 0.05 * 0.5 ** (r["step"] // 100)
        assert set(r) == {"step", "kind", "loss", "lr", "w_norm"}
    assert read_checkpoint_metadata(tmp_path)["step"] == "400"  # the final checkpoint
    assert TinyConfig.model_validate_json(read_checkpoint_metadata(tmp_path)["model_config"])


def test_nan_loss_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    captured: dict[int, dict[str, torch.Tensor]] = {}
    files_at_10: dict[str, bytes] = {}
    calls = 0

    def loss_fn(model: nn.Module, batch: tuple) -> torch.Tensor:
        nonlocal calls
        loss = mse(model, batch)
        if torch.is_grad_enabled():  # training calls only
            calls += 1
            if calls == 12:
                return loss * float("nan")
        return loss

    def on_eval(step: int, model: nn.Module) -> dict[str, float]:
        captured[step] = weights(model)
        return {}

    def progress(step: int, total: int, record: dict) -> None:
        if step == 10:
            files_at_10.update(
                {n: (tmp_path / n).read_bytes() for n in (CHECKPOINT_FILE, STATE_FILE)}
            )

    model = Tiny()
    result = train(
        model,
        sample,
        loss_fn,
        config(eval_every=1, checkpoint_every=5),
        generator=make_generator(0),
        eval_batch=EVAL,
        run_dir=tmp_path,
        on_eval=on_eval,
        progress=progress,
    )
    assert result.status == "diverged" and result.steps_done == 11
    assert "step 12" in result.message and "training loss is nan" in result.message
    assert "last checkpoint on disk: step 10" in result.message
    # In memory: the weights of step 11. On disk: the checkpoint of step 10, byte for byte.
    assert all(torch.equal(model.state_dict()[k], v) for k, v in captured[11].items())
    for name, data in files_at_10.items():
        assert (tmp_path / name).read_bytes() == data, name
    reloaded = Tiny(seed=3)
    assert load_checkpoint(tmp_path, reloaded) == 10
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in captured[10].items())
    assert result.history[-1]["step"] == 11
    assert result.final_eval_loss == result.history[-1]["loss"]
    assert read_metrics(tmp_path)[-1]["step"] == 11
    assert all(p.grad is None for p in model.parameters())


def test_nan_gradient_with_finite_loss() -> None:
    calls = 0

    def loss_fn(model: nn.Module, batch: tuple) -> torch.Tensor:
        nonlocal calls
        loss = mse(model, batch)
        if torch.is_grad_enabled():
            calls += 1
            if calls == 4:  # sqrt'(0) = inf, times 0 → a NaN gradient behind a finite loss
                loss = loss + torch.sqrt(model.W1.sum() * 0.0)
        return loss

    result = train(Tiny(), sample, loss_fn, config(), generator=make_generator(0), eval_batch=EVAL)
    assert result.status == "diverged" and result.steps_done == 3
    assert "gradient of 'W1' is non-finite" in result.message


def test_huge_lr_adam_explodes_the_loss() -> None:
    """Adam's step has size ≈ lr: at lr 1e30 the weights stay finite but the loss overflows."""
    seen: dict[int, dict[str, torch.Tensor]] = {}
    model = Tiny()
    result = train(
        model,
        sample,
        mse,
        config(optimizer=OptimizerConfig(lr=1e30), eval_every=1, clip_norm=None),
        generator=make_generator(0),
        eval_batch=EVAL,
        on_eval=lambda step, m: seen.update({step: weights(m)}) or {},
    )
    assert result.status == "diverged", result
    assert result.message.startswith(f"diverged at step {result.steps_done + 1}:")
    assert "non-finite" in result.message or "inf" in result.message
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in seen[result.steps_done].items())


def test_huge_lr_sgd_overflows_the_weights() -> None:
    """SGD at lr 1e38 sends the weights to inf in one update: the update is undone."""
    model = Tiny()
    start = weights(model)
    result = train(
        model,
        sample,
        mse,
        config(optimizer=OptimizerConfig(kind="sgd", lr=1e38), clip_norm=None),
        generator=make_generator(0),
        eval_batch=EVAL,
    )
    assert result.status == "diverged" and result.steps_done == 0
    assert "the update made" in result.message and "non-finite" in result.message
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.items())
    assert result.final_eval_loss == result.history[0]["loss"]


def test_sigint_during_checkpoint_write_is_deferred() -> None:
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background
    done = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("block finished")  # Ctrl-C did not cut the block short
    assert done == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back


@pytest.mark.parametrize("bad", ["loss", "gradient"])
def test_deferred_detection_names_the_bad_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """Off CPU the host reads the divergence flag only at log/eval/checkpoint steps: a NaN at
    update k found at a later step is still reported as step k, with the weights of step k − 1
    and no checkpoint written after it. Forced here on CPU."""
    monkeypatch.setattr("icgd.training.loop.checks_every_step", lambda device: False)
    k = 13  # 1-based update; steps=1000 logs every 5 updates, so it is found at update 15
    calls = 0

    def loss_fn(model: nn.Module, batch: tuple) -> torch.Tensor:
        nonlocal calls
        loss = mse(model, batch)
        if torch.is_grad_enabled():
            calls += 1
            if calls == k:
                loss = (
                    loss * float("nan") if bad == "loss" else loss + torch.sqrt(model.W1.sum() * 0)
                )
        return loss

    seen: dict[int, dict[str, torch.Tensor]] = {}

    def progress(step: int, total: int, record: dict) -> None:
        seen[step] = weights(model)

    model = Tiny()
    result = train(
        model,
        sample,
        loss_fn,
        config(steps=1000, eval_every=100, checkpoint_every=12),
        generator=make_generator(0),
        eval_batch=EVAL,
        run_dir=tmp_path,
        progress=progress,
    )
    assert result.status == "diverged" and result.steps_done == k - 1
    assert result.message.startswith(f"diverged at step {k}: ")
    what = "training loss is nan" if bad == "loss" else "gradient of 'W1' is non-finite"
    assert what in result.message
    assert "last checkpoint on disk: step 12" in result.message
    assert max(seen) == 14  # the loop ran past the bad update before it read the flag
    for step in (k - 1, k, k + 1):  # frozen at the weights of step k − 1 from update k on
        assert all(torch.equal(seen[step][n], v) for n, v in seen[k - 1].items()), step
    assert all(torch.equal(model.state_dict()[n], v) for n, v in seen[k - 1].items())
    assert read_checkpoint_metadata(tmp_path)["step"] == "12"
    assert max(r["step"] for r in read_metrics(tmp_path)) == 10  # nothing logged after the bad step
    assert result.final_eval_loss == pytest.approx(mse(model, EVAL).item())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit warnings on inductor import
def test_compiled_step_gives_the_eager_numbers() -> None:
    """`compile=True` (torch.compile of the loss, forward and backward) changes speed, not the
    trajectory: same records and weights up to float32 reassociation."""
    runs = {}
    for compiled in (False, True):
        model = Tiny()
        result = train(
            model,
            sample,
            mse,
            config(steps=20),
            generator=make_generator(0),
            eval_batch=EVAL,
            compile=compiled,
        )
        runs[compiled] = (result, weights(model))
    (eager, w_eager), (comp, w_comp) = runs[False], runs[True]
    assert comp.status == eager.status == "completed"
    assert [r["step"] for r in comp.history] == [r["step"] for r in eager.history]
    for a, b in zip(eager.history, comp.history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    for name, value in w_eager.items():
        torch.testing.assert_close(w_comp[name], value, rtol=1e-5, atol=1e-6)
