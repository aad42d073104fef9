"""Tests of the per-prompt 2-layer ReLU-net baseline (Garg et al. 2022), in float64."""

from __future__ import annotations

import pytest
import torch

from icgd.algorithms import (
    ReLUNetFit,
    fit_relu_nets,
    init_relu_nets,
    prefix_averaging,
    prefix_relu_net,
)
from icgd.tasks.function_classes import FunctionClass, FunctionClassConfig

F64 = torch.float64


def relu_data(B, n, d, hidden=20, seed=0):
    cfg = FunctionClassConfig(kind="relu_net", d=d, n_points=n + 1, hidden=hidden)
    s = FunctionClass(cfg, dtype=F64).sample(B, torch.Generator().manual_seed(seed))
    return s.X[:, :-1], s.y[:, :-1], s.x_q[:, 1:], s.y_q[:, 1:]


def test_equals_torch_adam_on_garg_network():
    """One problem: our vmapped Adam equals torch.optim.Adam on nn.Sequential (Garg's net)."""
    X, y, _, _ = relu_data(1, 12, 5)
    init = init_relu_nets((1,), 5, 100, torch.Generator().manual_seed(3), dtype=F64)
    net = torch.nn.Sequential(torch.nn.Linear(5, 100), torch.nn.ReLU(), torch.nn.Linear(100, 1))
    net = net.double()
    with torch.no_grad():
        for layer, pre in ((net[0], "hidden"), (net[2], "out")):
            layer.weight.copy_(init[f"{pre}.weight"][0])
            layer.bias.copy_(init[f"{pre}.bias"][0])
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(X[0])[:, 0], y[0]).backward()
        opt.step()
    fit = fit_relu_nets(X, y, init=init)
    xt = torch.randn(1, 7, 5, dtype=F64, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(fit.predict(xt)[0], net(xt[0])[:, 0].detach(), rtol=0, atol=1e-12)


def test_training_decreases_loss_and_beats_averaging():
    """Labels from 2-layer ReLU nets of the same width (h = 100): 40 training points, 200
    held-out points of the same functions."""
    B, n, d = 16, 40, 5
    cfg = FunctionClassConfig(kind="relu_net", d=d, n_points=n + 200, hidden=100)
    s = FunctionClass(cfg, dtype=F64).sample(B, torch.Generator().manual_seed(1))
    X, y, xs, ys = s.X[:, :n], s.y[:, :n], s.X[:, n:], s.y[:, n:]
    fit = fit_relu_nets(X, y, generator=torch.Generator().manual_seed(0), steps=300)
    assert isinstance(fit, ReLUNetFit) and fit.losses.shape == (301, B)
    assert (fit.losses[-1] < 0.2 * fit.losses[0]).all()
    assert fit.losses.mean(-1)[::50].diff().lt(0).all()  # the mean loss keeps decreasing
    err_net = (fit.predict(xs) - ys).square().mean()
    avg = torch.einsum("bnd,bn->bd", X, y) / n  # averaging fitted on all n points
    err_avg = (torch.einsum("bmd,bd->bm", xs, avg) - ys).square().mean()
    torch.testing.assert_close(prefix_averaging(X, y, xs[:, 0])[:, -1], (xs[:, 0] * avg).sum(-1))
    assert err_net < 0.7 * err_avg, (float(err_net), float(err_avg))


@pytest.mark.parametrize("queries", ["one", "per_prefix"])
def test_prefix_equals_single_problem_on_each_prefix(queries):
    B, n, d, h = 3, 7, 4, 16
    X, y, xq, _ = relu_data(B, n, d, seed=2)
    x_q = xq[:, 0] if queries == "one" else xq
    init = init_relu_nets((B, n), d, h, torch.Generator().manual_seed(1), dtype=F64)
    pred = prefix_relu_net(X, y, x_q, init=init, steps=30, chunk_size=2)
    assert pred.shape == (B, n) and pred.dtype == F64
    for k in range(1, n + 1):
        fit = fit_relu_nets(
            X[:, :k], y[:, :k], init={a: v[:, k - 1] for a, v in init.items()}, steps=30
        )
        q = x_q if queries == "one" else x_q[:, k - 1]
        torch.testing.assert_close(
            pred[:, k - 1], fit.predict(q[:, None])[:, 0], rtol=0, atol=1e-10
        )
    # the mask: training on the first k of n points equals training on X[:, :k]
    mask = torch.arange(n) < 3
    full = fit_relu_nets(
        X, y, mask.expand(B, n), init={a: v[:, 2] for a, v in init.items()}, steps=30
    )
    torch.testing.assert_close(
        full.predict(x_q[:, None] if queries == "one" else x_q[:, 2:3]),
        pred[:, 2:3],
        rtol=0,
        atol=1e-10,
    )


def test_determinism_from_the_generator_and_chunks():
    X, y, xq, _ = relu_data(5, 6, 3, seed=3)

    def run(seed, chunk):
        g = torch.Generator().manual_seed(seed)
        return prefix_relu_net(X, y, xq, generator=g, hidden=8, steps=10, chunk_size=chunk)

    a = run(0, 2)
    assert torch.equal(a, run(0, 2))
    torch.testing.assert_close(a, run(0, None), rtol=0, atol=1e-12)
    assert not torch.allclose(a, run(1, 2))


def test_k1_and_float32():
    X, y, xq, _ = relu_data(2, 5, 3, seed=4)
    pred = prefix_relu_net(
        X.float(),
        y.float(),
        xq.float(),
        generator=torch.Generator().manual_seed(0),
        hidden=10,
        steps=200,
        lr=2e-2,
    )
    assert pred.dtype == torch.float32 and torch.isfinite(pred).all()


def test_bad_inputs_raise():
    X, y, xq, _ = relu_data(2, 5, 3)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError):
        prefix_relu_net(X, y[:, :4], xq, generator=g)
    with pytest.raises(ValueError):
        prefix_relu_net(X, y, xq[:, :, :2], generator=g)
    with pytest.raises(ValueError):
        prefix_relu_net(X, y, xq)  # neither generator nor init
    with pytest.raises(ValueError):
        prefix_relu_net(X, y, xq, generator=g, init=init_relu_nets((2, 5), 3, 4, g))
    with pytest.raises(ValueError):
        prefix_relu_net(X, y, xq, init=init_relu_nets((2, 4), 3, 4, g))  # wrong batch shape
    with pytest.raises(ValueError):
        prefix_relu_net(X, y, xq, generator=g, steps=-1)
    with pytest.raises(ValueError):
        fit_relu_nets(X, y, torch.zeros(2, 5, dtype=torch.bool), generator=g)  # empty mask
    with pytest.raises(ValueError):
        fit_relu_nets(X[0], y[0], generator=g)
