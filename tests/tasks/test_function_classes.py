"""Tests of Garg et al.'s function classes, curriculum and test-time shifts (SPEC §2.2)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.tasks import (
    Curriculum,
    CurriculumConfig,
    FunctionClass,
    FunctionClassConfig,
    ShiftConfig,
    evaluate_function,
    haar_orthogonal,
    skewed_spectrum,
)

F64 = torch.float64
KINDS = ["linear", "sparse_linear", "noisy_linear", "quadratic", "relu_net", "decision_tree"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sampler(kind="linear", dtype=F64, **kw) -> FunctionClass:
    return FunctionClass(FunctionClassConfig(kind=kind, **kw), dtype=dtype)


def assert_mean(samples: torch.Tensor, expected: float, what: str) -> None:
    """|mean − expected| < 4 SE, the SE estimated from the same sample."""
    mean = samples.mean().item()
    se = samples.std().item() / math.sqrt(samples.numel())
    assert abs(mean - expected) < 4 * se, f"{what}: {mean:.4f} vs {expected:.4f}, SE {se:.4f}"


# --- shapes, dtypes, determinism -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_shapes_dtypes_and_defaults(kind, dtype):
    task = sampler(kind, dtype, d=6, n_points=9)
    b = task.sample(4, gen(0))
    assert b.X.shape == (4, 9, 6) and b.y.shape == (4, 9)
    assert b.x_q.shape == (4, 9, 6) and b.y_q.shape == (4, 9)
    assert b.X.dtype == b.y.dtype == dtype and b.d_active == 6
    assert b.x_q is b.X and b.y_q is b.y  # no shift: the next-point queries are the points
    b = task.sample(3, gen(0), n=5, d_active=3)
    assert b.X.shape == (3, 5, 6) and b.d_active == 3
    assert (b.X[..., 3:] == 0).all() and (b.X[..., :3] != 0).all()
    cfg = FunctionClassConfig()
    assert (cfg.kind, cfg.d, cfg.n_points, cfg.sparsity, cfg.hidden, cfg.depth) == (
        "linear",
        20,
        41,
        3,
        100,
        4,
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shift", ["none", "orthogonal_query", "skewed_covariance", "noisy_y"])
def test_same_generator_state_same_batch(kind, shift):
    task = FunctionClass(FunctionClassConfig(kind=kind, d=5, n_points=7, shift={"kind": shift}))
    a, b, c = (task.sample(3, gen(s)) for s in (1, 1, 2))
    for name in ("X", "y", "x_q", "y_q"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.X, c.X)
    for key in a.params:
        assert torch.equal(a.params[key], b.params[key])


def test_bad_sample_arguments():
    task = sampler("sparse_linear", d=6)
    with pytest.raises(ValueError, match="d_active"):
        task.sample(2, gen(0), d_active=7)
    with pytest.raises(ValueError, match="sparsity"):
        task.sample(2, gen(0), d_active=2)
    with pytest.raises(ValueError, match="batch_size"):
        task.sample(0, gen(0))


# --- each class ----------------------------------------------------------------------------------


def test_linear_noiseless_labels_are_exactly_Xw():
    b = sampler("linear", d=7, n_points=11).sample(5, gen(3))
    w = b.params["w"]
    assert w.shape == (5, 7)
    torch.testing.assert_close(b.y, (b.X * w.unsqueeze(1)).sum(-1), rtol=0, atol=1e-13)


def test_sparse_linear_has_exactly_k_nonzeros_on_active_coordinates():
    task = sampler("sparse_linear", d=10, sparsity=3)
    b = task.sample(2000, gen(4), d_active=6)
    w = b.params["w"]
    assert ((w != 0).sum(-1) == 3).all()
    assert (w[:, 6:] == 0).all()
    torch.testing.assert_close(b.y, torch.einsum("bnd,bd->bn", b.X, w), rtol=0, atol=1e-12)
    # the support is uniform over the active coordinates: each is in it with probability 3/6
    hits = (w[:, :6] != 0).double()
    for j in range(6):
        assert_mean(hits[:, j], 0.5, f"P(coordinate {j} in the support)")


def test_noisy_linear_noise_has_the_configured_std():
    b = sampler("noisy_linear", d=4, n_points=50, noise_std=0.5).sample(400, gen(5))
    resid = b.y - torch.einsum("bnd,bd->bn", b.X, b.params["w"])
    assert_mean(resid.square().flatten(), 0.25, "noise variance")


def test_quadratic_matches_the_formula_and_has_linear_scale():
    b = sampler("quadratic", d=5, n_points=20).sample(4000, gen(6))
    ref = (b.X.square() * b.params["w"].unsqueeze(1)).sum(-1) / math.sqrt(3)
    torch.testing.assert_close(b.y, ref, rtol=0, atol=1e-12)
    assert_mean(b.y[:, 0].square(), 5.0, "E f(x)^2")  # one point per prompt: independent


def relu_reference(W1, a, X):
    """Per prompt and per point, in Python: √(2/h) Σ_j a_j max(w_jᵀ x, 0)."""
    B, n, d = X.shape
    h = a.shape[-1]
    out = torch.empty(B, n, dtype=X.dtype)
    for p in range(B):
        for i in range(n):
            pre = [float(sum(W1[p, k, j] * X[p, i, k] for k in range(d))) for j in range(h)]
            out[p, i] = math.sqrt(2 / h) * sum(
                float(a[p, j]) * max(v, 0.0) for j, v in enumerate(pre)
            )
    return out


def test_relu_net_matches_a_per_prompt_reference():
    b = sampler("relu_net", d=3, n_points=4, hidden=7).sample(3, gen(7))
    assert b.params["W1"].shape == (3, 3, 7) and b.params["a"].shape == (3, 7)
    torch.testing.assert_close(b.y, relu_reference(b.params["W1"], b.params["a"], b.X))
    big = sampler("relu_net", d=4, n_points=2).sample(4000, gen(8))  # h = 100
    assert big.params["W1"].shape == (4000, 4, 100)
    assert_mean(big.y[:, 0].square(), 4.0, "E f(x)^2 (Garg's √(2/h) scaling)")


def tree_reference(coords, leaves, X):
    """Per prompt and point, in Python: from the root, go right iff x[c_v] > 0, depth times."""
    B, n, _ = X.shape
    n_internal = coords.shape[-1]
    out = torch.empty(B, n, dtype=X.dtype)
    for p in range(B):
        for i in range(n):
            v = 0
            while v < n_internal:
                v = 2 * v + 2 if X[p, i, int(coords[p, v])] > 0 else 2 * v + 1
            out[p, i] = leaves[p, v - n_internal]
    return out


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_decision_tree_matches_a_per_prompt_reference(depth):
    task = sampler("decision_tree", d=6, n_points=30, depth=depth)
    b = task.sample(8, gen(9), d_active=4)
    coords, leaves = b.params["coords"], b.params["leaves"]
    assert coords.shape == (8, 2**depth - 1) and coords.dtype == torch.int64
    assert leaves.shape == (8, 2**depth)
    assert coords.min() >= 0 and coords.max() < 4  # split on active coordinates only
    assert torch.equal(b.y, tree_reference(coords, leaves, b.X))


def test_decision_tree_outputs_take_at_most_16_values_per_prompt():
    b = sampler("decision_tree", d=20, n_points=200).sample(50, gen(10))
    for p in range(50):
        values = torch.unique(b.y[p])
        assert values.numel() <= 16
        assert torch.isin(values, b.params["leaves"][p]).all()
    # the leaves are N(0, 1), so E f(x)^2 = 1 (no normalisation, as Garg et al.)
    b = sampler("decision_tree", d=5, n_points=1).sample(4000, gen(11))
    assert_mean(b.y[:, 0].square(), 1.0, "E f(x)^2 of a tree")


# --- curriculum ----------------------------------------------------------------------------------


def test_garg_curriculum_schedule():
    cur = Curriculum()
    assert cur.at(0) == (5, 11)
    assert cur.at(1999) == (5, 11)
    assert cur.at(2000) == (6, 13)
    assert cur.at(4001) == (7, 15)
    assert cur.at(15 * 2000) == (20, 41)
    assert cur.at(10**7) == (20, 41)
    custom = Curriculum(
        CurriculumConfig(
            dims={"start": 2, "end": 4, "inc": 1, "interval": 10},
            points={"start": 3, "end": 8, "inc": 3, "interval": 5},
        )
    )
    assert [custom.at(t) for t in (0, 4, 5, 9, 10, 30)] == [
        (2, 3),
        (2, 3),
        (2, 6),
        (2, 6),
        (3, 8),
        (4, 8),
    ]
    with pytest.raises(ValueError, match="step"):
        cur.at(-1)


def test_curriculum_drives_the_sampler():
    task = sampler("linear", d=20)
    d_active, n = Curriculum().at(2000)
    b = task.sample(2, gen(0), n=n, d_active=d_active)
    assert b.X.shape == (2, 13, 20) and (b.X[..., 6:] == 0).all()


# --- shifts --------------------------------------------------------------------------------------


def shifted(kind="linear", d=5, n=8, shift=None):
    cfg = FunctionClassConfig(kind=kind, d=d, n_points=n, shift=shift or {})
    return FunctionClass(cfg, dtype=F64)


def test_skewed_covariance():
    s = skewed_spectrum(6)
    torch.testing.assert_close(s.sum(), torch.tensor(6.0, dtype=F64))
    torch.testing.assert_close(s / s[0], 1 / torch.arange(1, 7, dtype=F64) ** 2)
    task = shifted(d=6, n=4, kind="linear", shift={"kind": "skewed_covariance", "rotation_seed": 3})
    root = task.skew_map(6)
    U = haar_orthogonal(6, 3)
    sigma = (U * s) @ U.T
    torch.testing.assert_close(root @ root, sigma)
    torch.testing.assert_close(torch.trace(root @ root), torch.tensor(6.0, dtype=F64))
    b = task.sample(5000, gen(12))
    x = b.X.reshape(-1, 6)  # 20,000 independent rows
    for i, j in ((0, 0), (1, 1), (0, 1), (2, 4)):
        assert_mean(x[:, i] * x[:, j], sigma[i, j].item(), f"Σ[{i},{j}]")
    torch.testing.assert_close(b.y, torch.einsum("bnd,bd->bn", b.X, b.params["w"]))


@pytest.mark.parametrize("kind", ["linear", "decision_tree"])
def test_orthogonal_query_is_orthogonal_to_the_context_span(kind):
    d, n = 5, 8
    task = shifted(kind=kind, d=d, n=n, shift={"kind": "orthogonal_query"})
    b = task.sample(6, gen(13))
    plain = shifted(kind=kind, d=d, n=n).sample(6, gen(13))
    assert torch.equal(b.X, plain.X) and torch.equal(b.y, plain.y)  # the context is unchanged
    for i in range(1, d):
        inner = torch.einsum("bjd,bd->bj", b.X[:, :i], b.x_q[:, i])  # (B, i)
        assert inner.abs().max() < 1e-12 * b.X.norm(dim=-1).max() ** 2
    torch.testing.assert_close(b.x_q[:, :d].norm(dim=-1), b.X[:, :d].norm(dim=-1))
    torch.testing.assert_close(b.x_q[:, 0], b.X[:, 0])  # nothing to be orthogonal to
    assert (b.x_q[:, d:] == 0).all()  # i ≥ d: the span is everything, the query is 0
    torch.testing.assert_close(b.y_q, evaluate_function(kind, b.params, b.x_q))
    # with d_active < d the query lives in the active coordinates
    b = task.sample(4, gen(14), d_active=3)
    assert (b.x_q[..., 3:] == 0).all() and (b.x_q[:, 3:] == 0).all()
    inner = torch.einsum("bjd,bd->bj", b.X[:, :2], b.x_q[:, 2])
    assert inner.abs().max() < 1e-12 * b.X.norm(dim=-1).max() ** 2


@pytest.mark.parametrize("kind", ["linear", "relu_net", "decision_tree"])
def test_scale_x_and_scale_y(kind):
    plain = shifted(kind=kind).sample(4, gen(15))
    bx = shifted(kind=kind, shift={"kind": "scale_x", "factor": 3.0}).sample(4, gen(15))
    torch.testing.assert_close(bx.X, 3 * plain.X, rtol=0, atol=0)
    torch.testing.assert_close(bx.y, evaluate_function(kind, bx.params, 3 * plain.X))
    by = shifted(kind=kind, shift={"kind": "scale_y", "factor": 0.5}).sample(4, gen(15))
    assert torch.equal(by.X, plain.X)
    torch.testing.assert_close(by.y, 0.5 * plain.y)


def test_noisy_y_adds_label_noise():
    plain = shifted(kind="quadratic", n=50).sample(200, gen(16))
    noisy = shifted(kind="quadratic", n=50, shift={"kind": "noisy_y", "noise_std": 0.3}).sample(
        200, gen(16)
    )
    assert torch.equal(noisy.X, plain.X)
    assert_mean((noisy.y - plain.y).square().flatten(), 0.09, "added noise variance")
    # on top of noisy_linear's own noise: variances add
    both = shifted(kind="noisy_linear", n=50, shift={"kind": "noisy_y", "noise_std": 0.3})
    both = FunctionClass(both.config.model_copy(update={"noise_std": 0.4}), dtype=F64)
    b = both.sample(200, gen(17))
    resid = b.y - torch.einsum("bnd,bd->bn", b.X, b.params["w"])
    assert_mean(resid.square().flatten(), 0.25, "total noise variance 0.4² + 0.3²")


# --- config errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,data,field",
    [
        (FunctionClassConfig, {"kind": "cubic"}, "kind"),
        (FunctionClassConfig, {"d": 0}, "d"),
        (FunctionClassConfig, {"n_points": 2.5}, "n_points"),
        (FunctionClassConfig, {"kind": "sparse_linear", "d": 2}, "sparsity"),
        (FunctionClassConfig, {"noise_std": -1.0}, "noise_std"),
        (FunctionClassConfig, {"depth": 13}, "depth"),
        (FunctionClassConfig, {"hidden": True}, "hidden"),
        (FunctionClassConfig, {"shift": {"kind": "rotate"}}, "shift.kind"),
        (FunctionClassConfig, {"shift": {"factor": 0.0}}, "shift.factor"),
        (FunctionClassConfig, {"shift": {"scale": 2}}, "shift.scale"),
        (FunctionClassConfig, {"widths": 3}, "widths"),
        (CurriculumConfig, {"dims": {"start": 5, "end": 3}}, "dims.end"),
        (CurriculumConfig, {"points": {"start": 11, "end": 41, "interval": 0}}, "points.interval"),
        (CurriculumConfig, {"points": {"end": 41}}, "points.start"),
    ],
)
def test_config_errors_name_the_field(cls, data, field):
    with pytest.raises(InputError) as info:
        validate_config(cls, data)
    assert info.value.field == field, str(info.value)


def test_shift_config_defaults():
    s = ShiftConfig()
    assert (s.kind, s.factor, s.noise_std, s.rotation_seed) == ("none", 2.0, 1.0, 0)
