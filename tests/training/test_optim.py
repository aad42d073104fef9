"""Optimizer/schedule configs, exact learning rates of each schedule, per-matrix clipping."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.training import (
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    clip_per_matrix_,
    make_optimizer,
    make_scheduler,
)


def lrs(schedule: ScheduleConfig, total: int, n: int, base: float = 0.01) -> list[float]:
    """The lr used by updates t = 0..n-1 (read before each scheduler step)."""
    w = torch.nn.Parameter(torch.zeros(2))
    opt = make_optimizer([w], OptimizerConfig(lr=base))
    sched = make_scheduler(opt, schedule, total)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_schedule() -> None:
    assert lrs(ScheduleConfig(), 10, 12) == [0.01] * 12


def test_step_halving_exact() -> None:
    got = lrs(ScheduleConfig(kind="step_halving", every=3), 100, 10)
    # lr · 0.5^⌊t/3⌋; halving is exact in binary floating point.
    assert got == [0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025, 0.0025, 0.00125]


def test_cosine_values() -> None:
    total, floor, base = 10, 0.1, 0.02
    got = lrs(ScheduleConfig(kind="cosine", min_lr_ratio=floor), total, 13, base=base)
    assert got[0] == pytest.approx(base, rel=1e-15)
    assert got[5] == pytest.approx(base * (0.1 + 0.9 * 0.5), rel=1e-12)  # halfway: mid of range
    assert got[10] == pytest.approx(base * floor, rel=1e-12)  # t = T: the floor
    assert got[12] == pytest.approx(base * floor, rel=1e-12)  # held at the floor past T
    for t in range(11):
        expected = base * (floor + (1 - floor) * (1 + math.cos(math.pi * t / total)) / 2)
        assert got[t] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_make_optimizer_kinds(kind: str) -> None:
    w = torch.nn.Parameter(torch.ones(3))
    cfg = OptimizerConfig(
        kind=kind, lr=0.1, weight_decay=0.01, momentum=0.5 if kind == "sgd" else 0
    )
    opt = make_optimizer([w], cfg)
    expected = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[kind]
    assert type(opt) is expected
    group = opt.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01
    if kind == "sgd":
        assert group["momentum"] == 0.5
    else:
        assert group["betas"] == (0.9, 0.999)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"optimizer": {"betas": [0.9, 1.0]}}, "optimizer.betas.1"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr"),
        ({"optimizer": {"kind": "adam", "momentum": 0.9}}, "optimizer"),
        ({"optimizer": {"kind": "rmsprop"}}, "optimizer.kind"),
        ({"schedule": {"min_lr_ratio": 1.5}}, "schedule.min_lr_ratio"),
        ({"clip_norm": -1.0}, "clip_norm"),
        ({"resample_every": 0}, "resample_every"),
        ({"lr": 0.1}, "lr"),
    ],
)
def test_config_rejects_bad_values(data: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        validate_config(TrainConfig, data)
    assert info.value.field == field


def test_sgd_momentum_accepted() -> None:
    cfg = validate_config(TrainConfig, {"optimizer": {"kind": "sgd", "momentum": 0.9}})
    assert cfg.optimizer.momentum == 0.9


def test_clip_per_matrix() -> None:
    g = torch.Generator().manual_seed(0)
    big = torch.nn.Parameter(torch.zeros(4, 3))
    small = torch.nn.Parameter(torch.zeros(5))
    zero = torch.nn.Parameter(torch.zeros(2, 2))
    no_grad = torch.nn.Parameter(torch.zeros(2))
    big.grad = 10.0 * torch.randn(4, 3, generator=g)
    small.grad = 1e-3 * torch.randn(5, generator=g)
    zero.grad = torch.zeros(2, 2)
    before = [big.grad.clone(), small.grad.clone()]
    c = 0.01
    norms = clip_per_matrix_([big, small, zero, no_grad], c)
    torch.testing.assert_close(
        norms, torch.stack([before[0].norm(), before[1].norm(), torch.tensor(0.0)])
    )
    assert no_grad.grad is None
    # Each matrix separately: the big one is capped at c, direction unchanged ...
    assert big.grad.norm() <= c * (1 + 1e-6)
    torch.testing.assert_close(big.grad.norm(), torch.tensor(c))
    torch.testing.assert_close(big.grad, before[0] * (c / before[0].norm()))
    cosine = torch.nn.functional.cosine_similarity(big.grad.flatten(), before[0].flatten(), dim=0)
    torch.testing.assert_close(cosine, torch.tensor(1.0))
    # ... the small one (norm < c) is untouched, bit for bit, and a zero gradient stays zero.
    assert torch.equal(small.grad, before[1])
    assert torch.equal(zero.grad, torch.zeros(2, 2))
