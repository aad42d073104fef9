"""`toy-mean`: a one-weight model μ̂ = w·x̄, trained on prompts of n samples x_i ~ N(μ, σ²) of a
mean μ ~ N(0, τ²), learns the Bayes shrinkage weight n τ²/(n τ² + σ²) and the Bayes risk. The task,
model and baseline it uses are in `icgd_toy.task`, `icgd_toy.model` and `icgd_toy.baseline`."""

from pathlib import Path

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat

from icgd.core.figures import read_metrics, save
from icgd.core.results import make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import ExperimentConfig, MemoryEstimate, Outcome
from icgd.experiments.common import fit_model
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig
from icgd_toy.baseline import bayes_risk, posterior_mean, shrinkage_weight
from icgd_toy.model import ShrinkageConfig, ShrinkageMean
from icgd_toy.task import MeanTask, MeanTaskConfig

SMOKE = ["train.steps=20", "train.batch_size=256", "train.eval_batch_size=256"]
SMOKE += ["train.eval_every=10", "train.checkpoint_every=10", "test_batch_size=1024"]
WEIGHT = ("weight_is_bayes", "learned w vs the Bayes weight n τ²/(n τ² + σ²)")
LOSS = ("loss_is_bayes", "held-out loss vs the posterior mean's on the same prompts")
HALVING = ScheduleConfig(kind="step_halving", every=100)
TRAIN = TrainConfig(steps=400, optimizer=OptimizerConfig(lr=0.05), schedule=HALVING, eval_every=20)


class ToyMeanConfig(ExperimentConfig):
    """The sizes, the training recipe and the claims' tolerances (`--set key=value`)."""

    n: int = Field(default=8, gt=0, le=100_000)
    prior_std: PositiveFloat = 1.0  # τ
    noise_std: PositiveFloat = 2.0  # σ
    train: TrainConfig = TRAIN
    test_batch_size: int = Field(default=65536, ge=16)
    weight_tol: NonNegativeFloat = 0.01  # |w − c| ≤ this (w's spread over seeds here: ≈ 0.0013)
    loss_rel_tol: NonNegativeFloat = 0.001  # |loss − Bayes loss| ≤ this · Bayes loss


def mse(model: ShrinkageMean, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, mu = batch  # (B, n), (B,)
    return ((model(x) - mu) ** 2).mean()


class ToyMean:
    name = "toy-mean"
    paper = "textbook (conjugate normal prior)"
    summary = "toy plugin: a one-weight model learns the Bayes shrinkage n τ²/(n τ² + σ²)"
    Config = ToyMeanConfig
    presets = {"smoke": SMOKE}

    def run(self, config: ToyMeanConfig, ctx) -> Outcome:
        n, tau, sigma, dev = config.n, config.prior_std, config.noise_std, config.device
        task_config = MeanTaskConfig(n=n, prior_std=tau, noise_std=sigma)
        task = MeanTask(task_config, device=dev, dtype=config.torch_dtype)
        stream = lambda name: make_generator(derive_seed(config.seed, name), dev)  # noqa: E731
        held_out = task.sample(config.train.eval_batch_size, stream("eval"))
        model = ShrinkageMean(ShrinkageConfig(), dtype=config.torch_dtype).to(dev)
        track = lambda step, model: {"weight": float(model.w.detach())}  # noqa: E731
        kw = dict(seed=config.seed, label=None, eval_batch=held_out, ctx=ctx, device=dev)
        fit = fit_model(model, task.sample, mse, config.train, on_eval=track, **kw)
        if fit.status == "diverged":
            return Outcome({"diverged_at": fit.steps_done}, diverged=True, message=fit.message)
        x, mu = task.sample(config.test_batch_size, stream("test"))  # fresh prompts
        with torch.no_grad():
            metrics = {"weight": float(model.w.detach()), "loss": float(mse(model, (x, mu)))}
        metrics["weight_bayes"] = shrinkage_weight(n, tau, sigma)
        metrics["bayes_risk"] = bayes_risk(n, tau, sigma)
        metrics["loss_bayes"] = float(((posterior_mean(x, tau, sigma) - mu) ** 2).mean())
        metrics["loss_sample_mean"] = float(((x.mean(-1) - mu) ** 2).mean())
        return Outcome(metrics)

    def claims(self, config: ToyMeanConfig, m: dict) -> list:
        return [
            make_claim(*WEIGHT, m["weight"], m["weight_bayes"], config.weight_tol, "abs"),
            make_claim(*LOSS, m["loss"], m["loss_bayes"], config.loss_rel_tol, "rel"),
        ]

    def figures(self, run_dir: Path, result, out: Path) -> list[Path]:
        import matplotlib.pyplot as plt

        evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "eval"]
        steps, m = [r["step"] for r in evals], result.metrics
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        left.plot(steps, [r["weight"] for r in evals], label="learned w")
        left.axhline(m["weight_bayes"], color="k", ls="--", label="Bayes weight")
        left.set(xlabel="step", ylabel="w", title="shrinkage weight")
        right.plot(steps, [r["loss"] for r in evals], label="held-out MSE")
        right.axhline(m["bayes_risk"], color="k", ls="--", label="Bayes risk")
        right.set(xlabel="step", ylabel="MSE", yscale="log", title="loss")
        left.legend(), right.legend()
        return [save(fig, out / "weight_and_loss.png")]

    def memory(self, config: ToyMeanConfig) -> MemoryEstimate:
        # Peak bytes: a prompt is n + 1 numbers, kept ≈ 3 times over (forward, backward, errors).
        b = 3 * (config.n + 1) * (8 if config.dtype == "float64" else 4)
        t, parts = config.train, {"test prompts": config.test_batch_size * b}
        parts |= {"training batch": t.batch_size * b, "evaluation batch": t.eval_batch_size * b}
        return MemoryEstimate(parts, ("n", "train.batch_size", "test_batch_size"))
