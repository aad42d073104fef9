"""What `gd-vs-transformer` measures: paired test errors and their standard errors, the
gauge-aligned GD construction and the interpolation path to it, the deep model against GD and GD++
(with the GD++ weight pattern), and the out-of-distribution sweep: parts 1–4 of the docstring of
`icgd.experiments.gd_vs_transformer.experiment`."""

from __future__ import annotations

import math

import torch

from icgd.algorithms import gd_plus_plus_steps, gradient_descent
from icgd.analysis import compare, gd_prediction_fn, lsa_prediction_fn
from icgd.constructions import lsa_from_gd_step
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.gd_vs_transformer.config import GDvsTransformerConfig
from icgd.models import LinearSelfAttention
from icgd.tasks import LinearRegression

# ------------------------------------------------------------------------------------ helpers


def mean_se(errors: torch.Tensor) -> tuple[float, float]:
    """Mean of the per-prompt squared errors (B,) and its standard error."""
    e = errors.double()
    return float(e.mean()), float(e.std() / math.sqrt(e.numel()))


def squared_errors(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction.double() - target.double()).square()


def gd_step_aligned(model: LinearSelfAttention, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-step GD construction `(c P_GD, Q_GD / c)`, P and Q (1, 1, d+1, d+1) like the model's.

    `c` minimises `‖Q_GD / c − Q_trained‖_F`: `1/c = ⟨Q_GD, Q_trained⟩ / ‖Q_GD‖²` (any c ≠ 0 gives
    the same function; this one puts the construction next to the trained weights).
    """
    construction = lsa_from_gd_step(model.config.d, eta, dtype=model.P.dtype)
    P_gd, Q_gd = (m.detach().to(model.P.device) for m in construction.layer_matrices())
    P_t, Q_t = (m.detach() for m in model.layer_matrices())
    inverse_c = float((Q_gd * Q_t).sum() / Q_gd.square().sum())
    if not math.isfinite(inverse_c) or abs(inverse_c) < 1e-12:  # orthogonal: no alignment
        inverse_c = 1.0
    return P_gd / inverse_c, Q_gd * inverse_c


def with_weights(model: LinearSelfAttention, P: torch.Tensor, Q: torch.Tensor):
    """A new one-head `full` model with the config of `model` and the given P, Q (L, 1, ·, ·)."""
    clone = LinearSelfAttention(model.config.model_copy(update={"init_std": 0.0}), dtype=P.dtype)
    clone = clone.to(P.device)
    with torch.no_grad():
        clone.P.copy_(P)
        clone.Q.copy_(Q)
    return clone


def off_pattern_ratio(P: torch.Tensor, Q: torch.Tensor) -> list[float]:
    """Per layer, `‖off-pattern entries of (P_l, Q_l)‖_F / ‖(P_l, Q_l)‖_F` for the GD++ pattern.

    A GD++ layer (`lsa_from_gd_plus_plus_steps`, up to the rescaling symmetry) has only the
    diagonal of the x-blocks `P[:d, :d]`, `Q[:d, :d]` and the label entry `P[d, d]`; 0 means the
    layer has exactly that structure (with any diagonal values). P, Q: (L, d+1, d+1) → L floats.
    """
    d = P.shape[-1] - 1
    eye = torch.eye(d + 1, dtype=torch.bool, device=P.device)
    mask_P, mask_Q = eye.clone(), eye.clone()
    mask_Q[d, d] = False
    off = (P * ~mask_P).square().sum((-2, -1)) + (Q * ~mask_Q).square().sum((-2, -1))
    total = P.square().sum((-2, -1)) + Q.square().sum((-2, -1))
    return (off / total).sqrt().tolist()


def comparison(prefix: str, fn_a, fn_b, batch) -> dict[str, float]:
    """`compare` (prediction difference, RMSE, model cosine, model difference) as named metrics."""
    return {f"{prefix}_{k}": v for k, v in compare(fn_a, fn_b, batch.X, batch.y, batch.x_q).items()}


def gd_plus_plus_fn(etas: torch.Tensor, gammas: torch.Tensor):
    """`fn(X, y, x_q) = ` GD++ with the fitted per-step (η_l, γ_l), in the batch's dtype."""

    def fn(X, y, x_q):
        return gd_plus_plus_steps(X, y, x_q, etas.to(X.dtype), gammas.to(X.dtype))[-1]

    return fn


def task_at(config: GDvsTransformerConfig, scale: float) -> LinearRegression:
    """The regression task with inputs of range `scale` (α), on the run's device and dtype."""
    device, dtype = torch.device(config.device), config.torch_dtype
    return LinearRegression(config.task_config(scale), device=device, dtype=dtype)


def draw(config: GDvsTransformerConfig, task: LinearRegression, size: int, *stream):
    """`size` prompts of `task` from the stream `derive_seed(config.seed, *stream)`."""
    device = torch.device(config.device)
    return task.sample(size, make_generator(derive_seed(config.seed, *stream), device))


def predictions(model: LinearSelfAttention, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.predict(batch.prompt())


def gd(batch, step: float, steps: int) -> torch.Tensor:
    X, y, x_q = (t.double() for t in (batch.X, batch.y, batch.x_q))
    return gradient_descent(X, y, step, steps).predict(x_q)[-1]


def gd_pp(gdpp, batch) -> torch.Tensor:
    return gdpp(*(t.double() for t in (batch.X, batch.y, batch.x_q)))


# ------------------------------------------------------------------------------ the four parts


def one_layer_metrics(config, task, one, eta: float, test, compare_batch) -> dict:
    """1. The one-layer model against one line-searched GD step on the test prompts."""
    err_one = squared_errors(predictions(one, test), test.y_q)
    err_gd = squared_errors(gd(test, eta, 1), test.y_q)
    P1, Q1 = (m.detach()[0, 0] for m in one.layer_matrices())
    d = config.d
    metrics: dict = {
        "eta_gd": eta,
        # the trained model's own step: −P[d,d]·tr(Q[:d,:d])/d (its GD block, SPEC §1.3)
        "eta_one_layer": float(-P1[d, d] * torch.trace(Q1[:d, :d]) / d),
        "loss_zero": task.population_loss_of_zero(),
    }
    metrics["loss_one_layer"], metrics["loss_one_layer_se"] = mean_se(err_one)
    metrics["loss_gd"], metrics["loss_gd_se"] = mean_se(err_gd)
    metrics["loss_one_layer_minus_gd_se"] = mean_se(err_one - err_gd)[1]
    metrics |= comparison(
        "one_layer_vs_gd", lsa_prediction_fn(one), gd_prediction_fn(eta, 1), compare_batch
    )
    return metrics


def interpolation_metrics(config, one, eta: float, test) -> dict:
    """2. The loss along `θ(t) = (1 − t) θ_trained + t θ_GD` (the construction gauge-aligned)."""
    P_gd, Q_gd = gd_step_aligned(one, eta)
    P_t, Q_t = (m.detach() for m in (one.P, one.Q))
    ts = torch.linspace(0, 1, config.interpolation_points, dtype=torch.float64)
    path = []
    for t in ts.tolist():  # a loop over a handful of models, not over data
        model_t = with_weights(one, (1 - t) * P_t + t * P_gd, (1 - t) * Q_t + t * Q_gd)
        path.append(mean_se(squared_errors(predictions(model_t, test), test.y_q))[0])
    return {
        "interpolation_t": ts.tolist(),
        "interpolation_loss": path,
        "interpolation_max_ratio": max(path) / max(path[0], path[-1]),
    }


def deep_metrics(config, deep, eta_steps: float, gdpp, test, compare_batch) -> dict:
    """3. The `depth`-layer model against `depth` GD steps and `depth` steps of fitted GD++."""
    L = config.depth
    err_deep = squared_errors(predictions(deep, test), test.y_q)
    err_steps = squared_errors(gd(test, eta_steps, L), test.y_q)
    err_pp = squared_errors(gd_pp(gdpp, test), test.y_q)
    metrics: dict = {}
    metrics["loss_deep"], metrics["loss_deep_se"] = mean_se(err_deep)
    metrics["loss_gd_steps"], metrics["loss_gd_steps_se"] = mean_se(err_steps)
    metrics["loss_gdpp"], metrics["loss_gdpp_se"] = mean_se(err_pp)
    metrics["loss_deep_minus_gdpp_se"] = mean_se(err_deep - err_pp)[1]
    metrics["loss_deep_minus_gd_steps_se"] = mean_se(err_deep - err_steps)[1]
    metrics |= comparison(
        "deep_vs_gd", lsa_prediction_fn(deep), gd_prediction_fn(eta_steps, L), compare_batch
    )
    metrics |= comparison("deep_vs_gdpp", lsa_prediction_fn(deep), gdpp, compare_batch)

    P_deep, Q_deep = (m.detach()[:, 0] for m in deep.layer_matrices())  # (L, d+1, d+1)
    metrics["deep_off_pattern_ratio"] = off_pattern_ratio(P_deep, Q_deep)
    return metrics


def ood_metrics(config, one, deep, eta: float, eta_steps: float, gdpp) -> dict:
    """4. Every predictor on fresh test prompts with inputs `x ~ U(−α, α)^d`, α in `ood_scales`."""
    L = config.depth
    ood = {k: [] for k in ("one_layer", "gd", "deep", "gd_steps", "gdpp")}
    for i, scale in enumerate(config.ood_scales):
        batch = draw(config, task_at(config, scale), config.test_batch_size, "ood", i)
        for name, pred in (
            ("one_layer", predictions(one, batch)),
            ("gd", gd(batch, eta, 1)),
            ("deep", predictions(deep, batch)),
            ("gd_steps", gd(batch, eta_steps, L)),
            ("gdpp", gd_pp(gdpp, batch)),
        ):
            ood[name].append(mean_se(squared_errors(pred, batch.y_q))[0])
    metrics: dict = {"ood_scales": list(config.ood_scales)}
    metrics |= {f"ood_loss_{k}": v for k, v in ood.items()}
    metrics["ood_max_rel_one_layer"] = max(
        abs(a / b - 1) for a, b in zip(ood["one_layer"], ood["gd"], strict=True)
    )
    metrics["ood_max_rel_deep"] = max(
        abs(a / b - 1) for a, b in zip(ood["deep"], ood["gdpp"], strict=True)
    )
    return metrics
