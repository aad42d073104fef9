"""`stacked-gd`: an L-layer (non-looped) linear transformer learns per-layer preconditioned GD.

Ahn, Cheng, Daneshmand, Sra (2023), "Transformers learn to implement preconditioned gradient
descent for in-context learning", Thm 3 (§4.3, sparse set) and Thm 4 (§5.1, relaxed set / GD++).
Setting: x ~ N(0, Σ) with Σ rotated (`ahn_spectrum`), w* ~ N(0, Σ⁻¹), σ = 0.

Sparse set: layer l applies Γ_l = A_lᵀ to the empirical gradient, so L layers are L steps of
preconditioned GD with one preconditioner per layer. The theory says the set {Γ_l = a_l Σ⁻¹}
holds the optimum, with the a_l the reciprocals of the roots of the Christoffel–Darboux polynomial
of the whitened Wishart spectrum (`icgd.theory.optimal_layer_scales`); the layers commute, so only
the *sorted* scales are identifiable.

Relaxed set (`parametrisation="relaxed"`): P_l = [[B_l, 0], [0, 1]] moves the covariates too
(x ← x + (1/n) B_l X Xᵀ A_l x, GD++-like). Ahn Thm 4: critical points with A_l = a_l Σ⁻¹ and
B_l = b_l I. We check Dist(B_l, I) on the raw B_l (B = b·I is the same matrix in whitened
coordinates, Σ^{-½}(bI)Σ^{½} = bI) for layers l < L only: B_L moves covariates after the last read
of the label row, gets no gradient and stays at its random init. The per-layer scales of the
relaxed optimum are not those of the sparse one (no closed form here), so the relaxed run has no
`alphas_are_optimal` claim, and its loss claim is one-sided: no worse than the sparse optimum.
Measured (default recipe, seed 0, `--set parametrisation=relaxed sweep=none`): the relaxed model
beats the sparse optimum by far (held-out loss 0.087 ± 0.078, heavy-tailed; 0.009 on the training
curve's held-out batch, vs 0.149) but lands *outside* the Thm-4 set: max_l Dist(Σ^½Γ_lΣ^½, I) =
0.45, Dist(B_l, I) = (0.43, 0.61) for l < L, b_l = tr(B_l)/d = (0.74, 0.59). Thm 4 says critical
points exist in that set, not that training reaches them; the claims fail honestly.

What is trained vs computed (`sweep`): the main model (L = `layers`, n = `n`) is trained with
`train`. With `sweep="depth"` (default) one extra model per L in `sweep_layers` (≠ `layers`) is
trained with the shorter `sweep_train`; `"depth_and_n"` also trains one per n in `sweep_contexts`
at L = `layers`. For every point of a sweep the same held-out prompts give L-step GD and
Σ⁻¹-PGD (line-searched), the theory-optimal per-layer PGD (a_l*·Σ⁻¹), and the population optimum.
"""

from __future__ import annotations

from pathlib import Path

import torch

from icgd.analysis import distance_to_identity, effective_preconditioners, identity_scale, whiten
from icgd.analysis.preconditioner import matrix_sqrt
from icgd.core.errors import InputError
from icgd.core.results import Claim, Result, make_claim
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.common import fit_lsa
from icgd.experiments.stacked_gd.baselines import baselines, sq_err
from icgd.experiments.stacked_gd.config import StackedGDConfig
from icgd.experiments.stacked_gd.known import context_length, known_answer
from icgd.models import LSAConfig
from icgd.tasks import LinearRegression
from icgd.theory import whitened_wishart_moments
from icgd.training import TrainConfig

# Tiny sizes for unit tests and the contract suite: seconds on one core.
SMOKE = (
    "train.steps=20",
    "train.batch_size=256",
    "train.eval_batch_size=256",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "sweep_train.steps=5",
    "sweep_train.batch_size=128",
    "sweep_train.eval_batch_size=128",
    "sweep_train.eval_every=5",
    "sweep_train.checkpoint_every=5",
    "theory_samples=2000",
    "test_batch_size=1024",
)


def _preconditioners(model) -> torch.Tensor:
    """Γ_l of every layer, (L, d, d) (Γ_l = A_lᵀ summed over heads)."""
    return effective_preconditioners(*model.layer_matrices()).detach()


class StackedGD:
    name = "stacked-gd"
    paper = "Ahn et al. 2023 (Thm 3, 4)"
    summary = "Ahn et al. 2023 Thm 3/4: L stacked linear-attention layers learn per-layer PGD"
    Config = StackedGDConfig
    presets = {"smoke": SMOKE}
    known_answer = staticmethod(known_answer)  # for icgd identify (`known.py`)

    def task(self, config: StackedGDConfig, sub: str = "") -> LinearRegression:
        """The task of the model in `sub`: "" (main), "sweep/L{k}" or "sweep/n{n}"."""
        n = context_length(config, sub)
        if n is None:
            raise InputError("model", "stacked-gd's models are '', sweep/L{k} and sweep/n{n}")
        return self._task(config, n, torch.device(config.device), config.torch_dtype)

    # ------------------------------------------------------------------------------- helpers

    def _task(self, config: StackedGDConfig, n: int, device, dtype) -> LinearRegression:
        # The same rotation seed for every n: one Σ across the context-length sweep.
        return LinearRegression(
            config.task_config(n),
            rotation_seed=derive_seed(config.seed, "rotation"),
            device=device,
            dtype=dtype,
        )

    def _fit(self, config, task, L: int, train_config: TrainConfig, ctx, sub: str, label: str):
        device = task.device
        sigma = task.sigma
        held_out = task.sample(
            train_config.eval_batch_size, make_generator(derive_seed(config.seed, "eval"), device)
        )
        eval_batch = (held_out.prompt(), held_out.y_q)

        def track(step: int, model) -> dict[str, float]:
            whitened = whiten(_preconditioners(model), sigma)
            alphas = sorted(identity_scale(whitened).tolist())
            record = {f"alpha_{i}": a for i, a in enumerate(alphas)}
            record["max_dist_whitened"] = float(distance_to_identity(whitened).max())
            return record

        model_config = LSAConfig(
            d=config.d,
            n_layers=L,
            looped=False,
            parametrisation=config.parametrisation,
            n_heads=config.n_heads,
            init_std=config.init_std,
        )
        model, outcome = fit_lsa(
            model_config,
            train_config,
            task,
            seed=config.seed,
            label=label,
            eval_batch=eval_batch,
            ctx=ctx,
            sub=sub,
            on_eval=track,
        )
        return model, outcome

    # ----------------------------------------------------------------------------------- run

    def run(self, config: StackedGDConfig, ctx: RunContext) -> Outcome:
        device, dtype, L = torch.device(config.device), config.torch_dtype, config.layers
        task = self._task(config, config.n, device, dtype)
        model, outcome = self._fit(config, task, L, config.train, ctx, "", "stacked")
        if outcome.status == "diverged":
            return Outcome(
                metrics={"diverged_at": outcome.steps_done}, diverged=True, message=outcome.message
            )

        max_L = max([L, *(config.sweep_layers if config.sweep != "none" else ())])
        moments = whitened_wishart_moments(
            config.n, config.d, 2 * max_L, n_samples=config.theory_samples, seed=config.seed
        )
        test = task.sample(
            config.test_batch_size, make_generator(derive_seed(config.seed, "test"), device)
        )
        metrics, arrays = self._analyse(config, task, test, model, moments)

        if config.sweep != "none":
            metrics |= self._sweep_depth(config, task, test, model, moments, ctx)
        if config.sweep == "depth_and_n":
            metrics |= self._sweep_contexts(config, model, ctx, device, dtype)
        arrays["sigma"] = task.sigma
        return Outcome(metrics=metrics, arrays=arrays)

    def _analyse(self, config: StackedGDConfig, task, test, model, moments) -> tuple[dict, dict]:
        L, sigma, sigma_inv = config.layers, task.sigma, task.sigma_inv
        gammas = _preconditioners(model)  # (L, d, d), layer order
        whitened = whiten(gammas, sigma)
        with torch.no_grad():
            errors = sq_err(model.predict(test.prompt()), test.y_q)
        dist_raw = distance_to_identity(gammas)
        dist_raw_theory = float(distance_to_identity(sigma_inv))
        metrics: dict = {
            "loss": float(errors.mean()),
            "loss_se": float(errors.std() / errors.numel() ** 0.5),
            "loss_zero": float((test.y_q**2).mean()),
            "alphas_by_layer": identity_scale(whitened).tolist(),
            "alphas": sorted(identity_scale(whitened).tolist()),
            "dist_whitened": distance_to_identity(whitened).tolist(),
            "dist_raw": dist_raw.tolist(),
            "dist_raw_theory": dist_raw_theory,
            "max_dist_whitened": float(distance_to_identity(whitened).max()),
            "max_dist_raw_gap": float((dist_raw - dist_raw_theory).abs().max()),
        }
        metrics |= baselines(config, task, test, L, moments)
        alphas = torch.tensor(metrics["alphas"], dtype=torch.float64)
        theory = torch.tensor(metrics["alphas_theory"], dtype=torch.float64)
        metrics["max_alpha_rel_err"] = float(((alphas - theory).abs() / theory).max())
        metrics["loss_ratio"] = metrics["loss"] / metrics["loss_theory_held_out"]
        arrays = {"preconditioners": gammas, "whitened": whitened}
        if config.parametrisation == "relaxed":
            B = model.B.detach().sum(dim=1)  # (L, d, d): heads add
            metrics["dist_B"] = distance_to_identity(B).tolist()
            metrics["b_scales"] = identity_scale(B).tolist()
            # The same distance in whitened coordinates (x̃ = Σ^{-½}x sees Σ^{-½}BΣ^{½}); a metric
            # only: both vanish exactly when B ∝ I.
            root = matrix_sqrt(sigma.to(B.dtype))
            inv_root = matrix_sqrt(sigma.to(B.dtype), -0.5)
            metrics["dist_B_whitened"] = distance_to_identity(inv_root @ B @ root).tolist()
            metrics["max_dist_B"] = float(distance_to_identity(B[:-1]).max()) if L > 1 else 0.0
            arrays["B"] = B
        return metrics, arrays

    @staticmethod
    def _held_out_loss(model, test, run) -> float:
        """Mean squared error on `test`; NaN if the model's training diverged."""
        if run is not None and run.status != "completed":
            return float("nan")
        with torch.no_grad():
            return float(sq_err(model.predict(test.prompt()), test.y_q).mean())

    def _sweep_depth(self, config, task, test, model, moments, ctx) -> dict:
        out: dict[str, list] = {
            k: []
            for k in ("loss_trained", "loss_gd", "loss_pgd", "loss_optimal_pgd", "loss_theory")
        }
        for L in config.sweep_layers:
            if L == config.layers:
                trained, run = model, None
            else:
                trained, run = self._fit(
                    config, task, L, config.sweep_train, ctx, f"sweep/L{L}", f"L={L}"
                )
            loss = self._held_out_loss(trained, test, run)
            base = baselines(config, task, test, L, moments)
            out["loss_trained"].append(loss)
            out["loss_gd"].append(base["loss_gd"])
            out["loss_pgd"].append(base["loss_pgd"])
            out["loss_optimal_pgd"].append(base["loss_theory_held_out"])
            out["loss_theory"].append(base["loss_theory"])
        return {"sweep_layers": list(config.sweep_layers)} | {
            f"sweep_L_{k}": v for k, v in out.items()
        }

    def _sweep_contexts(self, config, model, ctx, device, dtype) -> dict:
        L = config.layers
        out: dict[str, list] = {
            k: []
            for k in ("loss_trained", "loss_gd", "loss_pgd", "loss_optimal_pgd", "loss_theory")
        }
        for n in config.sweep_contexts:
            task = self._task(config, n, device, dtype)
            test = task.sample(
                config.test_batch_size, make_generator(derive_seed(config.seed, "test", n), device)
            )
            if n == config.n:
                trained, run = model, None
            else:
                trained, run = self._fit(
                    config, task, L, config.sweep_train, ctx, f"sweep/n{n}", f"n={n}"
                )
            moments = whitened_wishart_moments(
                n, config.d, 2 * L, n_samples=config.theory_samples // 4, seed=config.seed
            )
            loss = self._held_out_loss(trained, test, run)
            base = baselines(config, task, test, L, moments)
            out["loss_trained"].append(loss)
            out["loss_gd"].append(base["loss_gd"])
            out["loss_pgd"].append(base["loss_pgd"])
            out["loss_optimal_pgd"].append(base["loss_theory_held_out"])
            out["loss_theory"].append(base["loss_theory"])
        return {"sweep_contexts": list(config.sweep_contexts)} | {
            f"sweep_n_{k}": v for k, v in out.items()
        }

    # --------------------------------------------------------------------------------- claims

    def claims(self, config: StackedGDConfig, metrics: dict) -> list[Claim]:
        tol, L = config.tolerances, config.layers
        relaxed = config.parametrisation == "relaxed"
        claims = [
            make_claim(
                "whitened_is_identity",
                "every layer Σ^½Γ_lΣ^½ ∝ I: max_l Dist(Σ^½Γ_lΣ^½, I)",
                metrics["max_dist_whitened"],
                0.0,
                tol.dist_whitened,
                "at_most",
            ),
            make_claim(
                "raw_is_inverse_covariance",
                "every Γ_l ∝ Σ⁻¹, not I: max_l |Dist(Γ_l, I) − Dist(Σ⁻¹, I)|",
                metrics["max_dist_raw_gap"],
                0.0,
                tol.dist_raw,
                "at_most",
            ),
        ]
        if not relaxed:
            claims.append(
                make_claim(
                    "alphas_are_optimal",
                    f"sorted α_l = tr(Σ^½Γ_lΣ^½)/d vs a_l*(L={L}): max_l |α_l − a_l*|/a_l*",
                    metrics["max_alpha_rel_err"],
                    0.0,
                    tol.alpha_rel,
                    "at_most",
                )
            )
            claims.append(
                make_claim(
                    "loss_is_optimal",
                    "held-out loss / loss of a_l*·Σ⁻¹ PGD on the same prompts",
                    metrics["loss_ratio"],
                    1.0,
                    tol.loss_rel,
                    "rel",
                )
            )
        else:
            claims.append(
                make_claim(
                    "loss_at_most_sparse_optimum",
                    "held-out loss / loss of the sparse optimum a_l*·Σ⁻¹ on the same prompts",
                    metrics["loss_ratio"],
                    1.0,
                    tol.loss_rel,
                    "at_most",
                )
            )
            claims.append(
                make_claim(
                    "B_is_identity",
                    f"B_l ∝ I (Ahn Thm 4): max_(l<{L}) Dist(B_l, I), raw B_l",
                    metrics["max_dist_B"],
                    0.0,
                    tol.dist_B,
                    "at_most",
                )
            )
        return claims

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.stacked_gd.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: StackedGDConfig) -> MemoryEstimate:
        """Peak bytes, at `size` = 4 (float32) or 8 (float64) bytes per entry. A prompt of n
        context points has P(n) = (d+1)(n+1) entries; one of its L layers keeps, for the
        backward pass, l(n) = 2(n+1) + 2d entries (sparse: the label row and the (d,) step) or
        2P(n) + (H+2)(d+1)² (relaxed: the layer's output and its moment products).

        - training batch: `train.batch_size · size · (4P + 2L·l)` (sampled tokens, the prompt,
          the covariates apart and the output; every layer's activations and their gradients);
        - evaluation batch: `train.eval_batch_size · size · 2P` (kept for the whole run);
        - sweep training batch (`sweep` ≠ none): the same formula with `sweep_train.batch_size`,
          the largest of `sweep_layers` and, with `depth_and_n`, the largest of
          `sweep_contexts`;
        - test prompts: `test_batch_size · size · (4P + L·l + 4(L+1)(d+1))` at the largest n
          run (tokens, prompt, one forward pass, every iterate of the GD / PGD baselines);
        - theory: float64 draws of a chunk of 8192 Wishart matrices, 8192·(n·d + 2d²)·8, and
          the kept power sums, `theory_samples · (2L+1) · 8`."""
        size = 8 if config.dtype == "float64" else 4
        d, H, L = config.d, config.n_heads, config.layers
        sweeping = config.sweep != "none"
        n_max = max([config.n, *(config.sweep_contexts if config.sweep == "depth_and_n" else ())])
        L_max = max([L, *(config.sweep_layers if sweeping else ())])

        def tokens(n: int) -> int:
            return (d + 1) * (n + 1)

        def layer(n: int) -> int:
            if config.parametrisation == "relaxed":
                return 2 * tokens(n) + (H + 2) * (d + 1) ** 2
            return 2 * (n + 1) + 2 * d

        def train(batch: int, n: int, layers: int) -> int:
            return batch * size * (4 * tokens(n) + 2 * layers * layer(n))

        test = tokens(n_max) * 4 + L_max * layer(n_max) + 4 * (L_max + 1) * (d + 1)
        parts = {
            "training batch": train(config.train.batch_size, config.n, L),
            "evaluation batch": config.train.eval_batch_size * size * 2 * tokens(config.n),
            "test prompts": config.test_batch_size * size * test,
            "theory draws": min(8192, config.theory_samples) * (n_max * d + 2 * d**2) * 8
            + config.theory_samples * (2 * L_max + 1) * 8,
        }
        if sweeping:
            parts["sweep training batch"] = train(config.sweep_train.batch_size, n_max, L_max)
        return MemoryEstimate(
            parts=parts,
            fields=(
                "d",
                "n",
                "layers",
                "train.batch_size",
                "train.eval_batch_size",
                "sweep_train.batch_size",
                "sweep_layers",
                "sweep_contexts",
                "test_batch_size",
                "theory_samples",
            ),
        )
