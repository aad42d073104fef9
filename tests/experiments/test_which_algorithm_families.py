"""`which-algorithm` over the model families: the prefix predictions it compares are the model
run on each truncated prompt (float64, 1e-10), the family's recipe and validation, and tiny runs
end to end with a softmax and a GPT model."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.cli import main
from icgd.core.prompts import build_prompt
from icgd.core.results import read_result
from icgd.experiments.common import regression_task_config
from icgd.experiments.which_algorithm import DEFAULT_TRAIN, FAMILY_TRAIN
from icgd.experiments.which_algorithm.prefixes import (
    CausalPrefixes,
    causal_predict,
    prefix_protocol,
)
from icgd.models import LSASpec, build_model, model_spec
from icgd.runs.figures import draw_figures
from icgd.runs.runner import prepare_run_dir, resolve_config, run_experiment
from icgd.tasks import LinearRegression

B, N, D, M = 3, 5, 2, 4  # prompts, n_max, d, probes


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(B, N, D, generator=g, dtype=torch.float64), torch.randn(B, N, generator=g)
    return (
        X,
        y.double(),
        torch.randn(B, D, generator=g, dtype=torch.float64),  # x_q
        torch.randn(B, M, D, generator=g, dtype=torch.float64),  # probes
    )


def make(kind: str, depth: int = 2, **fields):
    spec = model_spec(kind=kind, **fields)
    g = torch.Generator().manual_seed(1)
    model = build_model(spec, d=D, n_max=N, depth=depth, generator=g, dtype=torch.float64)
    return spec, model


def alone(kind: str, model, X, y, query) -> torch.Tensor:
    """The model on one unpadded prompt of k = X.shape[1] points and `query` (B, d): (B,)."""
    if kind == "softmax":
        with torch.no_grad():
            return model.predict(build_prompt(X, y, query))
    Xs = torch.cat([X, query[:, None]], 1)  # (B, k+1, d): the query is the next x token
    with torch.no_grad():
        return causal_predict(model, Xs, torch.cat([y, torch.zeros_like(y[:, :1])], 1))[:, -1]


FAMILIES = [
    ("softmax", {"init_std": 0.5}),  # large weights: attention far from uniform
    ("softmax", {"mask": "causal", "softmax_kind": "he", "n_heads": 2, "init_std": 0.5}),
    ("gpt", {}),
    ("looped", {"n_heads": 4}),
]


@pytest.mark.parametrize(("kind", "fields"), FAMILIES)
def test_prefix_predictions_are_the_model_on_each_truncated_prompt(kind, fields, data):
    X, y, x_q, probes = data
    spec, model = make(kind, **fields)
    prefixes = prefix_protocol(spec, depth=2)
    pred = prefixes.predict(model, X, y, x_q, chunk=2)  # (B, n); chunks of 2: memory only
    probe_pred = prefixes.predict_probes(model, X, y, probes, chunk=7)  # (B, m, n)
    queries = prefixes.queries(X, x_q)  # (B, d) or (B, n, d)
    assert pred.shape == (B, N) and probe_pred.shape == (B, M, N)
    for k in range(1, N + 1):
        query = queries if queries.ndim == 2 else queries[:, k - 1]
        expected = alone(kind, model, X[:, :k], y[:, :k], query)
        torch.testing.assert_close(pred[:, k - 1], expected, atol=1e-10, rtol=0)
        for j in range(M):
            expected = alone(kind, model, X[:, :k], y[:, :k], probes[:, j])
            torch.testing.assert_close(probe_pred[:, j, k - 1], expected, atol=1e-10, rtol=0)


def test_softmax_padding_would_matter_without_the_mask(data):
    # Why the mask: zero tokens are not inert under softmax (each gets weight exp(0)).
    X, y, x_q, _ = data
    _, model = make("softmax", init_std=0.5)
    k = 2
    padded = build_prompt(
        torch.cat([X[:, :k], torch.zeros_like(X[:, k:])], 1),
        torch.cat([y[:, :k], torch.zeros_like(y[:, k:])], 1),
        x_q,
    )
    with torch.no_grad():
        hidden = model.predict(padded, torch.full((B,), k))
        seen = model.predict(padded)
    unpadded = alone("softmax", model, X[:, :k], y[:, :k], x_q)
    torch.testing.assert_close(hidden, unpadded, atol=1e-12, rtol=0)
    assert (seen - unpadded).abs().max() > 1e-3


def test_causal_queries_and_targets_are_the_next_point(data):
    X, y, x_q, _ = data
    y_q = torch.arange(B, dtype=torch.float64)
    view = CausalPrefixes()
    torch.testing.assert_close(view.queries(X, x_q)[:, : N - 1], X[:, 1:])
    torch.testing.assert_close(view.queries(X, x_q)[:, -1], x_q)
    torch.testing.assert_close(view.targets(y, y_q), torch.cat([y[:, 1:], y_q[:, None]], 1))


@pytest.mark.parametrize("kind", ["softmax", "gpt", "looped"])
def test_training_loss_reads_every_prefix(kind):
    # The sampler and loss the trainer gets: finite, differentiable, positions 1 … n only.
    spec, model = make(kind)
    task = LinearRegression(regression_task_config(d=D, n=N), dtype=torch.float64)
    prefixes = prefix_protocol(spec, depth=2)
    batch = prefixes.sampler(task)(16, torch.Generator().manual_seed(2))
    loss = prefixes.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


# --- config -------------------------------------------------------------------------------------


def test_each_family_trains_with_its_recipe_and_explicit_fields_win():
    lsa = resolve_config("which-algorithm")
    assert lsa.model == LSASpec() and lsa.train == DEFAULT_TRAIN
    gpt = resolve_config("which-algorithm", overrides=["model.kind=gpt", "train.steps=50"])
    assert gpt.train == FAMILY_TRAIN["gpt"].model_copy(update={"steps": 50})
    soft = resolve_config(
        "which-algorithm", overrides=["model.kind=softmax", "train.optimizer.lr=0.02"]
    )
    assert soft.train.optimizer.kind == "adam" and soft.train.optimizer.lr == 0.02
    assert soft.train.steps == FAMILY_TRAIN["softmax"].steps


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.kind=rnn", "model"),
        ("model.parametrisation=bad", "model.parametrisation"),
        ("model.n_heads=0", "model.n_heads"),
    ],
)
def test_bad_model_values_give_one_line_errors(override, field, assert_bad_config):
    assert_bad_config("which-algorithm", override, field)


def test_a_field_of_another_family_is_an_error(tmp_path, capsys):
    code = main(
        ["run", "which-algorithm", "--set", "model.kind=gpt", "--set", "model.init_std=0.1",
         "--out", str(tmp_path / "x")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: model.init_std") and len(err.splitlines()) == 1


# --- tiny runs end to end -----------------------------------------------------------------------

TINY = [
    "d=2",
    "n_max=4",
    "depths=[1,2]",
    "noise_levels=[0.5]",
    "train.steps=4",
    "train.batch_size=32",
    "train.eval_batch_size=32",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "test_batch_size=64",
    "tune_batch_size=64",
    "ilwd_batch_size=16",
]


@pytest.mark.parametrize("kind", ["softmax", "gpt"])
def test_tiny_run_of_another_family(kind, tmp_path):
    config = resolve_config("which-algorithm", overrides=[*TINY, f"model.kind={kind}"])
    run_dir = prepare_run_dir("which-algorithm", config, tmp_path / kind)
    result = run_experiment("which-algorithm", config, run_dir)
    assert result.status in ("passed", "failed")
    assert read_result(run_dir / "result.json") == result
    assert result.config["model"]["kind"] == kind
    m = result.metrics
    assert m["models_diverged"] == 0 and m["n_max"] == 4
    for key in ("spd_gd_s0.5", "spd_bayes_s0.5", "ilwd_ols_s0.5", "loss_model_s0.5"):
        assert len(m[key]) == 2 and all(math.isfinite(v) for v in m[key]), key
    assert {"depth1_closest_to_gd_s0.5", "closest_ridge_is_bayes_s0.5"} <= {
        c.name for c in result.claims
    }
    assert (run_dir / "models" / "L2-s0.5" / "checkpoint.safetensors").is_file()
    assert len(draw_figures(run_dir)) == 4
