"""`identify`: which algorithm in the library does a model run, with which parameters, and where?

For any model (a saved run's, or a hand-built construction) on fresh prompts of its own task,
`icgd.analysis.identify.identify` fits every candidate algorithm's free parameters to the
model's predictions and ranks the fitted algorithms on held-out prompts (SPD, R², prediction
cosine, ILWD), with bootstrap uncertainty; `probe_layers` reads the query token out at every
layer and maps each layer to the number of iterations of GD and of Newton's method it matches by
SimE (Fu et al. 2024). `icgd identify RUN` is `icgd run identify --set source=RUN`.

Claims exist where the answer is known in advance (`sources.py`): a construction runs its
algorithm exactly with the parameters it was built with; a run's experiment may say what its
model computes (its `known_answer`: `looped-gd`, `one-step-gd`, `which-algorithm`,
`in-context-td`), either an algorithm with its steps and parameters, or "nearer these candidates
than that one" (deep `which-algorithm` models: ridge or OLS against one GD step). For any other
model the run reports, claims nothing, and passes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from icgd.analysis.identify import (
    CANDIDATE_FAMILIES,
    identify,
    make_candidates,
    probe_layers,
    prompt_family,
)
from icgd.core.errors import InputError
from icgd.core.results import Claim, Result, make_claim
from icgd.experiments.api import MemoryEstimate, Outcome, RunContext
from icgd.experiments.identify.config import IdentifyConfig
from icgd.experiments.identify.sources import Expected, resolve

SMOKE = (
    "prompts=256",
    "bootstrap=4",
    "probe_prompts=256",
    "source=construction:gd",
    "algorithms=[gd,preconditioned-gd,ridge,ols,iterative-newton,chebyshev,debiased-gd,gd-beta]",
)


def _relative_error(fitted, built_in) -> float:
    fitted = torch.as_tensor(fitted, dtype=torch.float64)
    built_in = torch.as_tensor(built_in, dtype=torch.float64)
    return float((fitted - built_in).norm() / built_in.norm())


def _expected_metrics(expected: Expected, identification) -> dict[str, float]:
    """`expected_is.<name>` (1.0, names the algorithm), its held-out R², the best R², its fitted
    and expected steps, and `expected_error.<parameter>`: relative error of each parameter; for
    a `nearer … than` answer, `expected_than.<name>` and `expected_nearer.<name>` (1.0, naming
    them), the least held-out SPD among `nearer` and the SPD of `than`; for a trained model,
    `model_mse_over_zero`, its held-out MSE over the zero predictor's (E y_q² on those prompts)."""
    out: dict[str, float] = {"expected_exact": float(expected.exact)}
    if not expected.exact:  # a trained model: did it learn the task at all?
        zero = identification.predictions["target"].square().mean().item()
        out["model_mse_over_zero"] = identification.model_mse / zero
    if expected.algorithm is not None:
        fit = identification[expected.algorithm]
        fitted = float(fit.steps) if fit.steps is not None else float("nan")
        out |= {
            f"expected_is.{expected.algorithm}": 1.0,
            "expected_r2": fit.r2,
            "best_r2": identification.best.r2,
            "expected_steps": float(expected.steps) if expected.steps is not None else math.nan,
            "expected_steps_fitted": fitted,
        }
        for name, value in expected.parameters.items():
            out[f"expected_error.{name}"] = _relative_error(fit.value(name), value)
    if expected.than is not None:
        out |= {f"expected_nearer.{name}": 1.0 for name in expected.nearer}
        out[f"expected_than.{expected.than}"] = 1.0
        out["expected_nearer_spd"] = min(identification[n].spd for n in expected.nearer)
        out["expected_than_spd"] = identification[expected.than].spd
    return out


def _named(metrics: dict, prefix: str) -> list[str]:
    """The names a known answer recorded as `<prefix>.<name>` markers, in order."""
    return [k.split(".", 1)[1] for k in metrics if k.startswith(prefix + ".")]


def _candidates(config: IdentifyConfig, task, expected: Expected | None) -> list[str]:
    """The configured candidates (default: the task family's), plus any a known answer names;
    a one-line error when a name is another family's (e.g. `gd` for a TD model)."""
    family = prompt_family(task)
    names = list(config.algorithms or CANDIDATE_FAMILIES[family][1])
    names += [a for a in (expected.algorithms if expected else ()) if a not in names]
    try:
        make_candidates(names, family=family)
    except ValueError as exc:
        raise InputError("algorithms", f"this is a {family} model: {exc}") from None
    return names


def _algorithm_claims(tol, metrics: dict, name: str) -> list[Claim]:
    """The model runs `name`: its held-out R², no candidate fits better, its fitted steps, and
    each parameter's relative error, at the exact (construction) or trained tolerances."""
    exact = metrics["expected_exact"] == 1.0
    r2_tol = tol.exact_r2 if exact else tol.trained_r2
    claims = [
        make_claim(
            "expected_algorithm_fits",
            f"held-out R² of {name} fitted to the model",
            metrics["expected_r2"],
            1.0,
            r2_tol,
            "at_least",
        ),
        make_claim(
            "nothing_fits_better",
            f"best candidate's R² − {name}'s",
            metrics["best_r2"] - metrics["expected_r2"],
            0.0,
            r2_tol,
            "at_most",
        ),
    ]
    if metrics["expected_steps"] == metrics["expected_steps"]:  # not NaN
        claims.append(
            make_claim(
                "expected_steps",
                f"fitted number of steps of {name}",
                metrics["expected_steps_fitted"],
                metrics["expected_steps"],
                0.0,
                "abs",
            )
        )
    for key in sorted(k for k in metrics if k.startswith("expected_error.")):
        parameter = key.split(".", 1)[1]
        claims.append(
            make_claim(
                f"expected_{parameter}",
                f"relative error of the fitted {parameter} against the known one",
                metrics[key],
                0.0,
                tol.exact_parameter if exact else tol.trained_parameter,
                "at_most",
            )
        )
    return claims


class Identify:
    name = "identify"
    paper = "Akyürek et al. 2023; Fu et al. 2024"
    summary = "Which algorithm (and parameters) a model runs, and at which layer (icgd identify)"
    Config = IdentifyConfig
    presets = {"smoke": SMOKE}

    def run(self, config: IdentifyConfig, ctx: RunContext) -> Outcome:
        # `identify` and `probe_layers` run on one torch thread (icgd.core.threads).
        return self._run(config)

    def _run(self, config: IdentifyConfig) -> Outcome:
        source = resolve(config)
        found = identify(
            source.model,
            source.task,
            algorithms=_candidates(config, source.task, source.expected),
            n_prompts=config.prompts,
            seed=config.seed,
            n_bootstrap=config.bootstrap,
            prompt=source.prompt,
        )
        metrics: dict = found.metrics()
        arrays = {f"identify.{k}": v.detach().cpu() for k, v in found.arrays().items()}
        if config.probes:
            probes = probe_layers(
                source.model,
                source.task,
                max_steps=config.max_steps,
                parameters=found,
                n_prompts=config.probe_prompts,
                seed=config.seed,
                prompt=source.prompt,
            )
            arrays |= {f"probe.{k}": v.detach().cpu() for k, v in probes.arrays().items()}
            metrics["probe_steps"] = [float(k) for k in probes.steps]
            for name, best in probes.best_steps.items():
                metrics[f"layer_map.{name}"] = [float(k) for k in best]
        if source.expected is not None:
            metrics |= _expected_metrics(source.expected, found)
        return Outcome(metrics=metrics, arrays=arrays)

    def claims(self, config: IdentifyConfig, metrics: dict) -> list[Claim]:
        """The known answer's claims (none for a model without one): `_algorithm_claims` for a
        named algorithm, and `nearer_than` for a "nearer these than that" answer."""
        claims = []
        if "model_mse_over_zero" in metrics:
            claims.append(
                make_claim(
                    "model_learned_the_task",
                    "model's held-out MSE / the zero predictor's (a trained model's answer "
                    "presumes it learned)",
                    metrics["model_mse_over_zero"],
                    1.0,
                    0.0,
                    "at_most",
                )
            )
        names = _named(metrics, "expected_is")
        if names:
            claims += _algorithm_claims(config.tolerances, metrics, names[0])
        than = _named(metrics, "expected_than")
        if than:
            nearer = " or ".join(_named(metrics, "expected_nearer"))
            claims.append(
                make_claim(
                    "nearer_than",
                    f"held-out SPD to the nearer of {nearer} / SPD to {than[0]}",
                    metrics["expected_nearer_spd"] / metrics["expected_than_spd"],
                    1.0,
                    0.0,
                    "at_most",
                )
            )
        return claims

    def figures(self, run_dir: Path, result: Result, out: Path) -> list[Path]:
        from icgd.experiments.identify.figures import draw

        return draw(run_dir, result, out)

    def memory(self, config: IdentifyConfig) -> MemoryEstimate:
        """Peak bytes (float64): the fitting and held-out prompts (d ≤ 64, n ≤ 1000 for a
        construction; a run's own sizes otherwise, bounded by the same) and the candidates'
        parameter grids over them (≈ 64 values per prompt), and the probes' cached activations."""
        per_prompt = (2 * config.d + 1) * (config.n + 1) * 8  # TD prompts: (2d+1) rows
        return MemoryEstimate(
            parts={
                "prompts": 2 * config.prompts * per_prompt,
                "candidate grids": 2 * config.prompts * 64 * 8 * 4,
                "probe activations": 2 * config.probe_prompts * per_prompt * 8,
            },
            fields=("prompts", "probe_prompts", "d", "n"),
        )
