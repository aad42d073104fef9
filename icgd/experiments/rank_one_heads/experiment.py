"""`rank-one-heads`: linear attention with rank-one heads learns the principal components of its
inputs one at a time, the largest eigenvalue first.

Zhang, Singh, Latham, Saxe (2025), "Training dynamics of in-context learning in linear attention"
(the separate key-query parametrisation): H heads, each with its own key vector k_h, query vector
q_h and value v_h (`icgd.models.rank_one_attention`), so the model predicts
`ŷ = x_qᵀ Γ (1/n) Xᵀ y` with `Γ = Σ_h v_h q_h k_hᵀ`. Trained by gradient descent from a small
initialisation on in-context linear regression with `x ~ N(0, Σ)`, `Σ = U diag(λ) Uᵀ` of distinct
eigenvalues and `w* ~ N(0, I)`, the loss shows saddle-to-saddle dynamics: a plateau, then a drop,
once per principal direction u_j of Σ, in decreasing order of λ_j. Between drops the model sits at
`Γ_k = Σ_{j≤k} γ*_j u_j u_jᵀ` (principal-component regression in context on the top k directions),
whose loss `L_k` is a closed form (`theory.py`).

The run trains the model with plain SGD on large fresh batches (close to gradient flow) and
records, densely, the held-out loss and each component's learned amplitude
`a_j = u_jᵀ Γ u_j / γ*_j` (0: not learned, 1: learned optimally). The analysis then

1. detects the drops on the held-out loss curve (peaks of −d log L / d log t; `drops.py`);
2. reads each plateau's level (the mean loss over the middle third of the plateau in log-time) and
   the amplitudes there; the component a drop learned is the one whose amplitude grew most across
   it;
3. checks: (a) as many drops as Γ can hold components, min(H, d); (b) drop i learned u_i; (c) the
   loss at the plateau after drop k equals L_k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icgd.core.results import Claim, Result, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.common import fit_model, prompt_mse, regression_sampler
from icgd.experiments.rank_one_heads.config import RankOneHeadsConfig
from icgd.experiments.rank_one_heads.drops import detect_drops, plateau_indices
from icgd.experiments.rank_one_heads.theory import component_gains, plateau_losses
from icgd.models.rank_one_attention import RankOneAttention, RankOneAttentionConfig
from icgd.tasks import LinearRegression
from icgd.theory import one_layer_loss

# Tiny sizes for unit tests and the contract suite: seconds on one core.
SMOKE = (
    "train.steps=60",
    "train.batch_size=256",
    "train.eval_batch_size=512",
    "train.eval_every=5",
    "train.checkpoint_every=60",
    "test_batch_size=1024",
)


def principal_axes(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (d,) in decreasing order and the eigenvectors as columns (d, d), float64."""
    values, vectors = torch.linalg.eigh(sigma.double().cpu())  # ascending
    return values.flip(0), vectors.flip(1)


def amplitudes(gamma: torch.Tensor, axes: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """`a_j = u_jᵀ Γ u_j / γ*_j` (d,): 0 for a component not learned, 1 for one learned
    optimally."""
    return torch.einsum("aj,ab,bj->j", axes, gamma.double().cpu(), axes) / gains


def _plateau_loss(gammas: torch.Tensor, test) -> tuple[float, float]:
    """The mean squared error on the `test` prompts of the predictors `x_qᵀ Γ_t (1/n) Xᵀ y` of a
    plateau's points t (`gammas` (m, d, d); the model's exact function, `RankOneAttention`),
    averaged over the points, and its standard error over the prompts."""
    n = test.X.shape[1]
    h = torch.bmm(test.y.unsqueeze(1), test.X).squeeze(1) / n  # (B, d) = (1/n) Xᵀ y
    errors = torch.zeros_like(test.y_q, dtype=torch.float64)  # (B,)
    for gamma in gammas:  # one plateau point at a time: (B,) per point, not (m, B)
        prediction = torch.einsum("bi,ij,bj->b", test.x_q, gamma, h)
        errors += ((prediction - test.y_q) ** 2).double()
    errors /= gammas.shape[0]
    return float(errors.mean()), float(errors.std() / errors.numel() ** 0.5)


class RankOneHeads:
    name = "rank-one-heads"
    paper = "Zhang, Singh, Latham, Saxe 2025"
    summary = (
        "Zhang et al. 2025: rank-one attention heads learn principal components one drop at a "
        "time, largest eigenvalue first"
    )
    Config = RankOneHeadsConfig
    presets = {"smoke": SMOKE}

    def run(self, config: RankOneHeadsConfig, ctx: RunContext) -> Outcome:
        device, dtype = torch.device(config.device), config.torch_dtype
        task = LinearRegression(
            config.task_config(),
            rotation_seed=derive_seed(config.seed, "rotation"),
            device=device,
            dtype=dtype,
        )
        sigma64, d = task.sigma.double().cpu(), config.d
        eigenvalues, axes = principal_axes(sigma64)
        gains = component_gains(eigenvalues, config.n, config.noise_std)
        held_out = task.sample(
            config.train.eval_batch_size, make_generator(derive_seed(config.seed, "eval"), device)
        )
        eval_batch = (held_out.prompt(), held_out.y_q)

        def track(step: int, model: RankOneAttention) -> dict[str, float]:
            """The amplitude of every component and the exact population loss of Γ."""
            gamma = model.preconditioner().detach().double().cpu()
            record = {
                f"amplitude_{j + 1}": float(a) for j, a in enumerate(amplitudes(gamma, axes, gains))
            }
            record["population_loss"] = one_layer_loss(
                gamma, sigma64, config.n, noise_std=config.noise_std
            )
            # Γ itself, so that the plateaus can be measured afterwards on fresh prompts.
            record |= {f"gamma_{i}_{j}": float(gamma[i, j]) for i in range(d) for j in range(d)}
            return record

        model_config = RankOneAttentionConfig(
            d=config.d, n_heads=config.n_heads, init_std=config.init_std
        )
        init = make_generator(derive_seed(config.seed, "init"), "cpu")
        model = RankOneAttention(model_config, generator=init, dtype=dtype).to(device)
        outcome = fit_model(
            model,
            regression_sampler(task),
            prompt_mse,
            config.train,
            seed=config.seed,
            label=None,
            eval_batch=eval_batch,
            ctx=ctx,
            device=device,
            on_eval=track,
        )
        if outcome.status == "diverged":
            return Outcome(
                metrics={"diverged_at": outcome.steps_done}, diverged=True, message=outcome.message
            )
        # The plateau levels are measured on fresh prompts drawn after training (their own stream).
        test = task.sample(
            config.test_batch_size, make_generator(derive_seed(config.seed, "test"), device)
        )
        metrics, arrays = self._analyse(config, outcome.history, eigenvalues, gains, test)
        gamma = model.preconditioner().detach().double().cpu()
        gamma_star = axes @ torch.diag(gains) @ axes.T
        with torch.no_grad():
            errors = (model.predict(eval_batch[0]) - eval_batch[1]) ** 2
        metrics |= {
            "final_loss_se": float(errors.std() / errors.numel() ** 0.5),
            "gamma_rel_error": float(
                torch.linalg.matrix_norm(gamma - gamma_star) / torch.linalg.matrix_norm(gamma_star)
            ),
        }
        arrays |= {
            "sigma": sigma64,
            "eigenvectors": axes,
            "gamma": gamma,
            "gamma_star": gamma_star,
            "head_preconditioners": model.head_preconditioners().detach().double().cpu(),
        }
        return Outcome(metrics=metrics, arrays=arrays)

    def _analyse(
        self,
        config: RankOneHeadsConfig,
        history: list[dict],
        eigenvalues: torch.Tensor,
        gains: torch.Tensor,
        test,
    ) -> tuple[dict, dict]:
        """Drops, plateaus and the component each drop learned, from the eval records; each
        plateau's loss on the `test` prompts."""
        d = config.d
        steps = np.array([r["step"] for r in history], dtype=np.float64)  # (T,)
        loss = np.array([r["loss"] for r in history], dtype=np.float64)  # (T,)
        population = np.array([r["population_loss"] for r in history], dtype=np.float64)
        amps = np.array(
            [[r[f"amplitude_{j + 1}"] for j in range(d)] for r in history], dtype=np.float64
        )  # (T, d)
        found = detect_drops(steps, loss, **config.detector.model_dump())
        windows = [plateau_indices(steps, w) for w in found.plateaus]
        plateau_amps = np.stack([amps[idx].mean(axis=0) for idx in windows])  # (drops+1, d)
        # The component a drop learned: the one whose amplitude grew most across it (1-based).
        learned = [
            int(np.argmax(plateau_amps[i + 1] - plateau_amps[i])) + 1 for i in range(len(found))
        ]
        theory = plateau_losses(eigenvalues, config.n, config.noise_std)  # (d+1,)
        gammas = torch.tensor(
            [[[r[f"gamma_{i}_{j}"] for j in range(d)] for i in range(d)] for r in history],
            dtype=test.X.dtype,
            device=test.X.device,
        )  # (T, d, d)
        levels = [_plateau_loss(gammas[torch.as_tensor(idx)], test) for idx in windows]
        metrics: dict = {
            "eigenvalues": eigenvalues.tolist(),
            "expected_drops": config.expected_drops,
            "n_drops": len(found),
            "drop_steps": [float(steps[x.peak]) for x in found.drops],
            "drop_sizes": [x.size for x in found.drops],  # fall of log L across each drop
            "drop_sizes_theory": (theory[:-1].log() - theory[1:].log()).tolist(),
            "learned_order": learned,
            "order_matches": sum(c == i + 1 for i, c in enumerate(learned)),
            "plateau_steps": [float(np.median(steps[idx])) for idx in windows],
            "plateau_losses": [level for level, _ in levels],
            "plateau_losses_se": [se for _, se in levels],
            "plateau_losses_curve": [float(loss[idx].mean()) for idx in windows],
            "plateau_population_losses": [float(population[idx].mean()) for idx in windows],
            "plateau_losses_theory": theory.tolist(),
            "plateau_amplitudes": plateau_amps.ravel().tolist(),  # (drops+1) rows of d
            "final_loss": float(loss[-1]),
            "final_population_loss": float(population[-1]),
            "final_amplitudes": amps[-1].tolist(),
            "component_gains": gains.tolist(),
        }
        arrays = {
            "steps": torch.from_numpy(steps),
            "loss": torch.from_numpy(loss),
            "population_loss": torch.from_numpy(population),
            "rate": torch.from_numpy(found.rate),
            "amplitudes": torch.from_numpy(amps),
        }
        return metrics, arrays

    def claims(self, config: RankOneHeadsConfig, metrics: dict) -> list[Claim]:
        """The claims, with tolerances chosen before the default run:

        - drop count: exact. Γ is a sum of H rank-one heads, so it can hold min(H, d) components;
          each costs one escape from a saddle.
        - order: exact; drop i must raise the amplitude of u_i (the i-th largest λ) the most.
        - plateau k (k = 1 … min(H, d)): the loss on fresh prompts of the Γ's of the plateau's
          middle third, within 5% of L_k. On 65 536 prompts the relative standard error is
          ≈ 0.8% (the squared error's relative spread is ≈ 2: `plateau_losses_se`), so 4 SE
          ≈ 3.3%, and SGD's jitter around the saddle lifts a plateau by ≈ 1% at the default rate
          and batch (`plateau_population_losses`, exact, shows it). Consecutive levels differ by
          ≥ 25% at the default, so 5% still tells each plateau from its neighbours.
        """
        expected = config.expected_drops
        claims = [
            make_claim(
                "one_drop_per_component",
                f"number of loss drops (−d log L/d log t > {config.detector.rate_threshold:g}) "
                "vs min(H, d)",
                metrics["n_drops"],
                expected,
                0.0,
                "abs",
            ),
            make_claim(
                "drops_in_eigenvalue_order",
                "drops i = 1, 2, … whose amplitude gain is largest on u_i, the i-th largest "
                "eigen-direction of Σ",
                metrics["order_matches"],
                expected,
                0.0,
                "at_least",
            ),
        ]
        measured = metrics["plateau_losses"]
        theory = metrics["plateau_losses_theory"]
        for k in range(1, expected + 1):
            value = measured[k] if k < len(measured) and measured[k] is not None else float("nan")
            claims.append(
                make_claim(
                    f"plateau_{k}_loss",
                    f"loss on fresh prompts at the plateau after drop {k} vs L_{k}, the top "
                    f"{k} components learned optimally",
                    value,
                    theory[k],
                    config.tolerances.plateau_rel,
                    "rel",
                )
            )
        return claims

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.rank_one_heads.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: RankOneHeadsConfig) -> MemoryEstimate:
        """Peak bytes, at `size` = 4 (float32) or 8 (float64) bytes per entry. A prompt takes
        P = (d+1)(n+1) entries; a forward pass keeps the keys, values and their product,
        3·n·H entries per prompt:

        - training batch: `train.batch_size · size · (3P + 6nH)`: the sampled (X, y), the
          prompt, the activations kept for the backward pass and their gradients;
        - evaluation batch: `train.eval_batch_size · size · (2P + 3nH)` (kept for the whole run,
          plus one forward pass);
        - test prompts: `test_batch_size · size · (2P + 4d + 8)`: (X, y, x_q, y_q), the
          moment h = (1/n) Xᵀy, a prediction and the float64 errors;
        - the eval records and the drop detector: a few float64 arrays of T = steps /
          eval_every + 1 evaluations, (d² + d + 8) numbers each.
        """
        size = 8 if config.dtype == "float64" else 4
        tokens = (config.d + 1) * (config.n + 1)
        heads = config.n * config.n_heads
        evaluations = config.train.steps // config.train.eval_every + 2
        return MemoryEstimate(
            parts={
                "training batch": config.train.batch_size * size * (3 * tokens + 6 * heads),
                "evaluation batch": config.train.eval_batch_size * size * (2 * tokens + 3 * heads),
                "test prompts": config.test_batch_size * size * (2 * tokens + 4 * config.d + 8),
                "evaluation records": evaluations * (config.d**2 + config.d + 8) * 8 * 4,
            },
            fields=(
                "eigenvalues",
                "n",
                "n_heads",
                "train.batch_size",
                "train.eval_batch_size",
                "train.steps",
                "test_batch_size",
            ),
        )
