"""The config of `one-step-gd`: the setting, sizes, training recipe and claim tolerances."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig
from icgd.experiments.common import regression_task_config
from icgd.tasks import LinearRegressionConfig, ahn_spectrum
from icgd.training import OptimizerConfig, ScheduleConfig, TrainConfig

DEFAULT_NOISE = {"isotropic_noisy": 0.5, "anisotropic": 0.0, "anisotropic_inverse_prior": 0.0}

# Recipe (measured, seed 0, d = 5, n = 20). Adam, lr 0.1 with a cosine decay to 0 over 4000 steps,
# a fresh batch of 4096 prompts each step, no clipping, init N(0, 0.1²). The hard setting is
# `anisotropic` (w* ~ N(0, I)): Γ* is largest (eigenvalue ≈ 4.3) along Σ's 1/16 direction, where the
# loss curvature is ~10⁻³ of the top one, and Σ's random rotation mixes that direction into every
# entry, so Adam's per-entry normalisation does not help. Adam lr 0.01 halved every 500 steps
# (3000 steps) left ‖Γ − Γ*‖/‖Γ*‖ = 0.61 there (loss 1.3% above Γ*'s); lr 0.05 halved every 600:
# 0.099; lr 0.1 cosine, 3000 steps: 0.043; 4000 steps: 0.026 (the other settings: ≤ 0.004). The
# cosine tail anneals the gradient noise to 0, which keeps the leak ratio ≤ 0.01 (step halving at
# a high lr left it at 0.02-0.04). Init 0.1: Adam's steps are ~lr whatever the gradient's size, so
# the saddle at P = Q = 0 does not stall it (measured: init 1e-4 reaches the optimum's loss within
# 100 steps too); 0.1 is small next to the optimum's entries and keeps the entries that never reach
# ŷ (they keep their init values) visibly small in the heat maps.
DEFAULT_TRAIN = TrainConfig(
    steps=4000,
    batch_size=4096,
    optimizer=OptimizerConfig(kind="adam", lr=0.1),
    schedule=ScheduleConfig(kind="cosine"),
    clip_norm=None,
    resample_every=1,
    eval_every=50,
    eval_batch_size=8192,
    checkpoint_every=1000,
)


class Tolerances(Config):
    """Tolerances of the claims, fixed before any run was looked at (reasons in
    `OneStepGD.claims`)."""

    leak_ratio: NonNegativeFloat = 0.05  # leak ≤ this
    gamma_rel: NonNegativeFloat = 0.05  # ‖Γ − Γ*‖_F ≤ this·‖Γ*‖_F
    loss_rel: NonNegativeFloat = 0.01  # |loss − loss(Γ*)| ≤ this·loss(Γ*), same prompts
    step_rel: NonNegativeFloat = 0.005  # isotropic only: |tr Γ/d − step*| ≤ this·step*
    # ZFB §4.1 (measured risk of the trained layer vs the closed form at Γ*, relative). Fixed
    # before the default run: the squared error's relative SE on 65 536 prompts is ≈ √(2/B)·(1-1.5)
    # ≈ 0.6-0.8% (4 SE ≈ 3%), and Γ̂ − Γ* (≤ 0.5% in the step, `step_rel`) moves R(M) by ≲ 1%
    # (the `*_trained_gamma` metrics show by how much).
    length_risk_rel: NonNegativeFloat = 0.03  # |R̂(M) − R(M)| ≤ this·R(M), each test length M
    # The measured floor is the intercept of a 1/SE²-weighted fit R̂(M) = a + b/M over the test
    # lengths (exact: the risk is affine in 1/M); the extrapolation roughly doubles the SE, and the
    # floor is the most sensitive to Γ̂ − Γ* (Γ* is optimal at M = n, not at M = ∞): ≈ 1.4% of the
    # floor per 0.5% error of the isotropic step.
    floor_rel: NonNegativeFloat = 0.05  # |a − R(∞)| ≤ this·R(∞)
    shift_rel: NonNegativeFloat = 0.03  # inputs × α at M = n: as `length_risk_rel`
    kept_scale_rel: NonNegativeFloat = 0.03  # prediction × M/n: as `length_risk_rel`
    # ZFB Thm 4.1, the gradient flow's end point (`flow.py`). Fixed from the solver, not a run:
    # the end time is `flow.relaxation_times` (100) e-folds of the slowest rate at the limit, so
    # the flow's own distance is ~e⁻¹⁰⁰; what is left is the solver's error at its last steps
    # (local tolerance rtol = 1e-10 relative to θ) amplified by at most the conditioning of the
    # limit (fastest/slowest rate, ≲ 10⁴ in these settings): 1e-10 × 10⁴ = 1e-6. A wrong limit
    # is orders of magnitude away: Γ without the noise term is ~1% off, the saddle at 0 is 100%.
    flow_gamma_rel: NonNegativeFloat = 1e-6  # ‖Γ(T) − Γ_ZFB⁻¹‖_F ≤ this·‖Γ_ZFB⁻¹‖_F


class FlowConfig(Config):
    """The gradient flow of the population loss from ZFB's initialisation (`flow.py`).

    `init_scale` is ZFB's σ (Assumption 3.3: value entry σ, key-query block σΘΘᵀ with
    ‖ΘΘᵀ‖_F = 1; Θ drawn from `derive_seed(seed, "zfb_flow", "theta")`). The flow runs to
    T = `relaxation_times` / λ, λ the closed-form lower bound on the slowest relaxation rate
    at the limit; `rtol`, `atol` are LSODA's local tolerances; `n_records` log-spaced times are
    recorded (for the gradient-dominance minimum and the figure).
    """

    init_scale: PositiveFloat = 0.1
    relaxation_times: Annotated[float, Field(ge=10)] = 100.0
    rtol: Annotated[float, Field(gt=0, le=1e-6)] = 1e-10
    atol: Annotated[float, Field(gt=0, le=1e-6)] = 1e-12
    n_records: Annotated[int, Field(ge=10, le=10_000)] = 120


class OneStepGDConfig(ExperimentConfig):
    """Settings of `one-step-gd`; every one can be overridden with `--set key=value`.

    `noise_std` None means the setting's own σ (0.5 for `isotropic_noisy`, 0 otherwise).
    `eigenvalues` None means Ahn et al.'s spectrum (1, 1, 1/4, 1/16, 1) repeated to length d
    (ours); unused by `isotropic_noisy`.
    """

    setting: Literal["isotropic_noisy", "anisotropic", "anisotropic_inverse_prior"] = (
        "isotropic_noisy"
    )
    d: Annotated[int, Field(gt=0, le=1024)] = 5
    n: Annotated[int, Field(gt=0, le=100_000)] = 20
    noise_std: NonNegativeFloat | None = None
    eigenvalues: tuple[PositiveFloat, ...] | None = None
    n_heads: PositiveInt = 1
    init_std: NonNegativeFloat = 0.1
    train: TrainConfig = DEFAULT_TRAIN
    test_batch_size: Annotated[int, Field(ge=16)] = 65536
    # ZFB §4.1: test lengths M = round(f·n) (≥ 2 distinct, for the floor fit), input scales α
    # (covariate shift, at M = n), and the prompts per measurement.
    test_length_factors: tuple[PositiveFloat, ...] = (0.5, 2.0, 4.0, 16.0)
    shift_alphas: tuple[PositiveFloat, ...] = (0.5, 2.0)
    length_batch_size: Annotated[int, Field(ge=16)] = 65536
    # ZFB Thm 4.1: the population gradient flow from their initialisation (no sampling).
    flow: FlowConfig = FlowConfig()
    tolerances: Tolerances = Tolerances()

    @property
    def sigma_noise(self) -> float:
        return DEFAULT_NOISE[self.setting] if self.noise_std is None else self.noise_std

    @property
    def test_lengths(self) -> tuple[int, ...]:
        """The test lengths M = max(1, round(f·n)), sorted, without repeats."""
        return tuple(sorted({max(1, round(f * self.n)) for f in self.test_length_factors}))

    @model_validator(mode="after")
    def _task_is_valid(self) -> OneStepGDConfig:
        self.task_config()  # raises "eigenvalues: …" at construction, not mid-run
        if len(self.test_lengths) < 2:
            raise ValueError("test_length_factors: need at least 2 distinct lengths round(f·n)")
        return self

    def task_config(self) -> LinearRegressionConfig:
        isotropic = self.setting == "isotropic_noisy"
        eigenvalues = None
        if not isotropic:
            eigenvalues = self.eigenvalues if self.eigenvalues is not None else ahn_spectrum(self.d)
        prior = "inverse_covariance" if self.setting == "anisotropic_inverse_prior" else "identity"
        return regression_task_config(
            d=self.d,
            n=self.n,
            covariance="identity" if isotropic else "rotated",
            eigenvalues=eigenvalues,
            weight_prior=prior,
            noise_std=self.sigma_noise,
        )
