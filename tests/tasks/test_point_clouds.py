"""Point clouds for entropic OT and sorting problems (SPEC §4)."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.tasks import (
    PointClouds,
    PointCloudsConfig,
    sorted_targets,
    sorting_grid,
    sorting_problem,
    sorting_ranks,
)

F64 = torch.float64
KINDS = ["gaussian", "uniform", "mixture"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_mean(samples: torch.Tensor, expected: float, what: str) -> None:
    """|mean − expected| < 4 SE, the SE estimated from the same sample."""
    mean = samples.mean().item()
    se = samples.std().item() / math.sqrt(samples.numel())
    assert abs(mean - expected) < 4 * se, f"{what}: {mean:.4f} vs {expected:.4f}, SE {se:.4f}"


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtype_and_n_override(kind):
    sampler = PointClouds(PointCloudsConfig(kind=kind, d=3, n=7), dtype=F64)
    X, Y = sampler.sample(5, gen(0))
    assert X.shape == Y.shape == (5, 7, 3) and X.dtype == Y.dtype == F64
    X, Y = sampler.sample(2, gen(0), n=11)
    assert X.shape == Y.shape == (2, 11, 3)
    assert torch.isfinite(X).all() and torch.isfinite(Y).all()


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_clouds_other_seed_other_clouds(kind):
    sampler = PointClouds(PointCloudsConfig(kind=kind, d=2, n=9), dtype=F64)
    X1, Y1 = sampler.sample(4, gen(3))
    X2, Y2 = sampler.sample(4, gen(3))
    X3, _ = sampler.sample(4, gen(4))
    assert torch.equal(X1, X2) and torch.equal(Y1, Y2)
    assert not torch.equal(X1, X3)
    assert not torch.equal(X1, Y1)  # the two clouds are independent draws


@pytest.mark.parametrize("kind", KINDS)
def test_shift_translates_y_only(kind):
    base = PointClouds(PointCloudsConfig(kind=kind, d=4, n=6), dtype=F64)
    shifted = PointClouds(PointCloudsConfig(kind=kind, d=4, n=6, shift=1.5), dtype=F64)
    X0, Y0 = base.sample(3, gen(1))
    X1, Y1 = shifted.sample(3, gen(1))
    assert torch.equal(X0, X1)
    delta = Y1 - Y0  # every coordinate moves by shift/√d: a translation of norm |shift|
    torch.testing.assert_close(delta, torch.full_like(delta, 1.5 / 2), rtol=0, atol=1e-14)


def test_uniform_and_gaussian_moments():
    X, Y = PointClouds(PointCloudsConfig(kind="uniform", d=2, n=50), dtype=F64).sample(200, gen(0))
    assert X.min() >= 0 and X.max() <= 1 and Y.min() >= 0 and Y.max() <= 1
    assert_mean(X, 0.5, "uniform mean")
    X, Y = PointClouds(PointCloudsConfig(kind="gaussian", d=2, n=50), dtype=F64).sample(200, gen(0))
    assert_mean(Y, 0.0, "gaussian mean")
    assert_mean(X.square(), 1.0, "gaussian second moment")


def test_mixture_points_cluster_around_shared_means():
    cfg = PointCloudsConfig(
        kind="mixture", d=2, n=40, n_components=2, mixture_spread=50.0, mixture_std=0.1
    )
    g = gen(5)
    X, Y = PointClouds(cfg, dtype=F64).sample(8, g)
    # replay the draw order: the first draw is the means (B, k, d)
    means = 50.0 * torch.randn(8, 2, 2, generator=gen(5), dtype=F64)
    for cloud in (X, Y):
        dist = (cloud[:, :, None, :] - means[:, None, :, :]).norm(dim=-1).min(-1).values
        assert dist.max() < 0.1 * 6  # every point within 6 σ of one of its prompt's means


def test_sorting_grid_and_problem():
    torch.testing.assert_close(
        sorting_grid(4, dtype=F64), torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=F64)
    )
    x, y = sorting_problem(3, 5, gen(0), dtype=F64)
    assert x.shape == y.shape == (3, 5, 1) and x.dtype == F64
    assert (x >= 0).all() and (x <= 1).all()
    expected = ((torch.arange(5, dtype=F64) + 0.5) / 5).expand(3, 5).unsqueeze(-1)
    assert torch.equal(y, expected)
    x2, _ = sorting_problem(3, 5, gen(0), dtype=F64)
    assert torch.equal(x, x2)
    assert not torch.equal(x, sorting_problem(3, 5, gen(1), dtype=F64)[0])


def test_ranks_and_sorted_targets():
    x = torch.tensor([[[0.7], [0.1], [0.4]], [[0.2], [0.9], [0.5]]], dtype=F64)
    assert torch.equal(sorting_ranks(x), torch.tensor([[2, 0, 1], [0, 2, 1]]))
    assert torch.equal(sorting_ranks(x[..., 0]), sorting_ranks(x))
    targets = sorted_targets(x)
    assert torch.equal(targets[0, :, 0], torch.tensor([5 / 6, 1 / 6, 0.5], dtype=F64))
    # on random problems: the targets are a permutation of the grid, in the order of x
    x, y = sorting_problem(4, 9, gen(2), dtype=F64)
    t = sorted_targets(x)
    assert torch.equal(t.sort(1).values, y)
    order = x[..., 0].argsort(-1)  # (B, n)
    assert (t[..., 0].gather(1, order).diff(dim=-1) > 0).all()  # increasing along sorted x


def test_config_is_closed_and_validated():
    with pytest.raises(InputError):
        validate_config(PointCloudsConfig, {"kind": "cauchy"})
    with pytest.raises(InputError):
        validate_config(PointCloudsConfig, {"n": 0})
    with pytest.raises(InputError):
        validate_config(PointCloudsConfig, {"colour": 1})
    with pytest.raises(ValueError):
        PointClouds(PointCloudsConfig()).sample(0, gen(0))
