"""Which algorithm does a model run, and with which parameters? (`identify`)

Akyürek et al. 2023 (SPEC §1.4) compare a trained model with reference algorithms whose
parameters are fixed in advance (one-step GD at a line-searched η, ridge on a λ grid). `identify`
instead *fits* every candidate's free parameters to the model itself and then scores the fitted
algorithms on prompts the fit never saw:

1. draw a fitting set and a held-out set of fresh prompts from the task (independent seeded
   streams `derive_seed(seed, "identify", "fit" / "heldout")`);
2. the model's predictions `m_b` at the queries of both (`icgd.analysis.identify.views`);
3. for each candidate `A_θ`, `θ̂ = argmin_θ (1/B) Σ_b (A_θ(D_b)(x_{q,b}) − m_b)²` on the
   fitting set, with the number of steps k scanned (`candidates`, `preconditioned`), and the
   one-step bootstrap of θ̂ and k over R resamples of the fitting prompts (`fitting`);
4. score on the held-out set (`metrics`): SPD (± SE), R², prediction cosine, and, from the
   model's implicit weights on `ilwd_prompts` prompts (`icgd.analysis.implicit_weights` on 2d
   probe queries drawn from the task), ILWD and the weight cosine; the reference predictions
   come from `icgd.algorithms`;
5. rank best first by held-out SPD; fits that match the model to rounding (RMS difference below
   100 ε of the model's dtype, relative) tie, and the one with fewer parameters ranks first
   (one-step GD is also Chebyshev iteration with a one-point interval, and preconditioned GD
   with Γ = ηI).

Candidates (`CANDIDATES`, by their `icgd.algorithms` registry names; `newton` and underscores
are accepted): `gd`, `preconditioned-gd`, `ridge`, `ols`, `iterative-newton`, `chebyshev`,
`debiased-gd`, `gd-beta`, and on request `one-step-gd` (`gd` at k = 1) and
`stacked-preconditioned-gd` (one Γ_l per step, for stacked models). Pass configured
instances (e.g. `GradientDescent(steps=[1, 2])`) to change the steps tried. Other prompt
families register theirs in `CANDIDATE_FAMILIES` (family → (registry, defaults)); the task's
family (`views.prompt_family`) picks the registry, and must be the one the model's view reads
(TD prompts and candidates: `icgd.analysis.identify.td`, `td_candidates`). Fitting runs in
float64 on the CPU; the model runs in its own dtype and device.

Cost (measured on the shared 2-core CPU machine, torch with one thread): a 3-layer float32 LSA
(d = 5, n = 20), 8192 fitting and 8192 held-out prompts, 64 resamples, all 8 candidates: 18 s.
With torch's default two threads while another job held a core, the batched small LAPACK calls
(the pseudo-inverse of `icgd.algorithms.ols`) thrashed: 153 s; use `OMP_NUM_THREADS=1` there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from icgd.analysis.algorithm_distance import ilwd, implicit_weights, linear_weights
from icgd.analysis.identify.candidates import (
    Candidate,
    Chebyshev,
    DebiasedGD,
    GradientDescent,
    IterativeNewton,
    OneStepGD,
    OrdinaryLeastSquares,
    Ridge,
)
from icgd.analysis.identify.fitting import FitData, bootstrap_weights, one_step_bootstrap
from icgd.analysis.identify.gd_beta import GDBeta
from icgd.analysis.identify.metrics import (
    dropped_rows,
    prediction_cosine,
    r_squared,
    spd_with_se,
    weight_cosine,
)
from icgd.analysis.identify.preconditioned import PreconditionedGD, StackedPreconditionedGD
from icgd.analysis.identify.result import AlgorithmFit, Identification, ParameterEstimate
from icgd.analysis.identify.views import (
    ModelView,
    Prompts,
    draw_prompts,
    model_view,
    prompt_family,
)
from icgd.core.rng import derive_seed, make_generator
from icgd.core.threads import single_threaded

CANDIDATES: dict[str, Callable[[], Candidate]] = {
    "gd": GradientDescent,
    "one-step-gd": OneStepGD,
    "preconditioned-gd": PreconditionedGD,
    "stacked-preconditioned-gd": StackedPreconditionedGD,
    "ridge": Ridge,
    "ols": OrdinaryLeastSquares,
    "iterative-newton": IterativeNewton,
    "chebyshev": Chebyshev,
    "debiased-gd": DebiasedGD,
    "gd-beta": GDBeta,
}
# Asked for by name only: one-step-gd is gd at k = 1 (e.g. "nearer ridge than one GD step?"),
# stacked-preconditioned-gd has d²·k parameters (for stacked models).
ON_REQUEST = ("one-step-gd", "stacked-preconditioned-gd")
DEFAULT_ALGORITHMS = tuple(name for name in CANDIDATES if name not in ON_REQUEST)
_ALIASES = {"newton": "iterative-newton"}
CANDIDATE_FAMILIES: dict[str, tuple[dict[str, Callable[[], Candidate]], tuple[str, ...]]] = {
    "regression": (CANDIDATES, DEFAULT_ALGORITHMS)
}
"""Prompt family → (its candidates by name, the default names); module docstring."""


def make_candidates(
    algorithms: Sequence[str | Candidate] | None = None, *, family: str = "regression"
) -> list[Candidate]:
    """Candidates from names (the `family`'s registry, `CANDIDATES` for regression; default
    all its defaults) or configured instances."""
    if family not in CANDIDATE_FAMILIES:
        raise ValueError(f"unknown prompt family {family!r}; known: {sorted(CANDIDATE_FAMILIES)}")
    registry, defaults = CANDIDATE_FAMILIES[family]
    out: list[Candidate] = []
    for item in defaults if algorithms is None else algorithms:
        if isinstance(item, str):
            key = _ALIASES.get(item, item.replace("_", "-"))
            if key not in registry:
                raise ValueError(f"unknown algorithm {item!r}; known: {sorted(registry)}")
            out.append(registry[key]())
        elif isinstance(item, Candidate):
            out.append(item)
        else:
            raise TypeError(f"algorithms: expected names or Candidate instances, got {item!r}")
    names = [c.name for c in out]
    if not out or len(set(names)) != len(names):
        raise ValueError(f"algorithms must be a non-empty list of distinct candidates: {names}")
    return out


def _model_weights(
    view: ModelView, task: Any, held: Prompts, size: int, seed: int
) -> tuple[Prompts, Tensor] | None:
    """The model's implicit weights (P, d) on the first P = `size` held-out prompts, fitted on
    2d probe queries per prompt drawn from the task; None when `size` is 0."""
    size = min(size, len(held))
    if size == 0:
        return None
    d = held.X.shape[2]
    m = 2 * d
    stream = make_generator(derive_seed(seed, "identify", "probes"), getattr(task, "device", "cpu"))
    probes = draw_prompts(task, size * m, stream).x_q.reshape(size, m, d)  # (P, m, d)
    sub = Prompts(held.X[:size], held.y[:size], held.x_q[:size], held.y_q[:size])
    preds = view.predict(
        sub.X.repeat_interleave(m, 0), sub.y.repeat_interleave(m, 0), probes.reshape(-1, d)
    ).reshape(size, m)  # (P, m): prompt b at probe j
    return sub, implicit_weights(probes, preds)


def _estimates(
    candidate: Candidate, fits: list, best: Any, target: Tensor, weights: Tensor, level: float
) -> dict[str, ParameterEstimate]:
    """The fitted parameters and `steps`, each with its one-step bootstrap distribution."""
    choice, theta_r = one_step_bootstrap(fits, target, weights)  # (R,), (R, P)
    value = candidate.parameters(best.theta)
    samples = candidate.parameters(theta_r)
    out = {k: ParameterEstimate.from_samples(value[k], samples[k], level) for k in value}
    if best.steps is not None:
        steps = torch.tensor([float(fits[i].steps) for i in choice.tolist()], dtype=torch.float64)
        out["steps"] = ParameterEstimate.from_samples(
            torch.tensor(float(best.steps), dtype=torch.float64), steps, level
        )
    return out


def _fit_key(fit: Any, exact_tol: float) -> tuple:
    """Least fitting loss first; fits exact to rounding (loss ≤ `exact_tol`) tie and the fewest
    steps win (nested candidates, e.g. k + 1 free Γ_l, fit exactly wherever k do)."""
    loss = fit.loss if math.isfinite(fit.loss) else math.inf
    if loss <= exact_tol and fit.steps is not None:
        return (0, fit.steps, loss)
    return (1, loss, 0)


def _fit_candidate(
    candidate: Candidate,
    data: FitData,
    target: Tensor,
    weights: Tensor,
    held: Prompts,
    model_held: Tensor,
    implicit: tuple[Prompts, Tensor] | None,
    level: float,
    exact_tol: float,
) -> tuple[AlgorithmFit, Tensor]:
    """Fit one candidate, bootstrap it, score it on the held-out prompts: (fit, predictions)."""
    fits = candidate.fit(data, target)
    best = min(fits, key=lambda f: _fit_key(f, exact_tol))
    params = candidate.parameters(best.theta)

    def reference(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        return candidate.reference(X, y, x_q, best.steps, params)

    pred = reference(held.X, held.y, held.x_q)  # (B,)
    spd, spd_se = spd_with_se(model_held, pred)
    dropped = dropped_rows(model_held, pred)
    scores: dict[str, Any] = {}
    if implicit is not None:
        sub, model_w = implicit
        algo_w = linear_weights(reference, sub.X, sub.y)  # (P, d)
        scores = {"ilwd": ilwd(model_w, algo_w), "weight_cosine": weight_cosine(model_w, algo_w)}
    fit = AlgorithmFit(
        name=candidate.name,
        steps=best.steps,
        parameters=_estimates(candidate, fits, best, target, weights, level),
        fit_mse=best.loss,
        spd=spd,
        spd_se=spd_se,
        r2=r_squared(model_held, pred),
        cosine=prediction_cosine(model_held, pred),
        test_mse=(pred - held.y_q).square().mean().item(),
        n_parameters=best.theta.numel() + (best.steps is not None),
        exact=spd <= exact_tol and dropped == 0,
        dropped=dropped,
        **scores,
    )
    return fit, pred


@single_threaded
def identify(
    model: Any,
    task: Any,
    *,
    algorithms: Sequence[str | Candidate] | None = None,
    n_prompts: int = 8192,
    n_heldout: int | None = None,
    seed: int = 0,
    n_bootstrap: int = 64,
    level: float = 0.95,
    ilwd_prompts: int = 512,
    prompt: Callable | None = None,
    chunk: int = 4096,
) -> Identification:
    """Fit every candidate algorithm to `model` on prompts of `task` and rank them (module
    docstring).

    model: an icgd model (`model_view`) or a `ModelView`; task: a `regression` or `next-point`
    task, or one of a registered layout (`draw_prompts`; e.g. `td.TDPromptTask`). algorithms:
    names or `Candidate`s (default: the task family's, `DEFAULT_ALGORITHMS` for regression).
    n_prompts: fitting prompts; n_heldout: scoring prompts (default n_prompts); n_bootstrap:
    resamples R (0: no uncertainty); level: of the percentile intervals; ilwd_prompts: held-out
    prompts for ILWD (0: none); prompt: the prompt builder of a prompt-matrix model (e.g.
    `newton_schulz_prompt`); chunk: prompts per model call (memory only).
    """
    n_heldout = n_prompts if n_heldout is None else n_heldout
    if n_prompts < 2 or n_heldout < 2 or n_bootstrap < 0 or not 0 < level < 1:
        raise ValueError(
            f"need n_prompts, n_heldout >= 2, n_bootstrap >= 0, 0 < level < 1; got {n_prompts}, "
            f"{n_heldout}, {n_bootstrap}, {level}"
        )
    view = model_view(model, prompt=prompt, chunk=chunk)
    family = prompt_family(task)
    if view.family != family:
        raise TypeError(
            f"the model reads {view.family} prompts but the task gives {family} prompts; give a "
            "task of the model's family, or wrap the model in icgd.analysis.identify.ModelView"
        )
    candidates = make_candidates(algorithms, family=family)
    device = getattr(task, "device", "cpu")
    fit_set, held = (
        draw_prompts(task, size, make_generator(derive_seed(seed, "identify", name), device))
        for size, name in ((n_prompts, "fit"), (n_heldout, "heldout"))
    )
    target = view.predict(fit_set.X, fit_set.y, fit_set.x_q)  # (B,) the model on the fit set
    model_held = view.predict(held.X, held.y, held.x_q)
    if not (torch.isfinite(target).all() and torch.isfinite(model_held).all()):
        raise ValueError("identify: the model's predictions are not finite on the task's prompts")
    data = FitData(fit_set.X, fit_set.y, fit_set.x_q)
    weights = bootstrap_weights(
        n_prompts, n_bootstrap, make_generator(derive_seed(seed, "identify", "bootstrap"))
    )
    implicit = _model_weights(view, task, held, ilwd_prompts, seed)
    eps = torch.finfo(view.dtype).eps if view.dtype.is_floating_point else 0.0
    exact_tol = (100 * eps) ** 2 * model_held.square().mean().item()
    fits, predictions = [], {"model": model_held, "target": held.y_q}
    for candidate in candidates:
        fit, pred = _fit_candidate(
            candidate, data, target, weights, held, model_held, implicit, level, exact_tol
        )
        fits.append(fit)
        predictions[candidate.name] = pred
    return Identification(
        ranking=tuple(fits),
        model_mse=(model_held - held.y_q).square().mean().item(),
        n_fit=n_prompts,
        n_heldout=n_heldout,
        n_bootstrap=n_bootstrap,
        level=level,
        seed=seed,
        predictions=predictions,
    )
