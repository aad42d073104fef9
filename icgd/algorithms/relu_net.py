"""The 2-layer ReLU-network baseline of Garg et al. 2022, trained per prompt, batched.

Garg, Tsipras, Liang, Valiant 2022 ("What can transformers learn in-context? A case study of
simple function classes") compare their transformer on 2-layer ReLU-net functions with a network of
the same shape trained *on each prompt's context points* by Adam. For one problem with points
`x_1 … x_m` (rows of X (m, d)), labels y (m,) and active points `M ⊆ {1 … m}` (a mask):

    f_θ(x) = w_2ᵀ ReLU(W_1 x + b_1) + b_2,   θ = (W_1 (h, d), b_1 (h,), w_2 (1, h), b_2 (1,)),
    L(θ) = (1/|M|) Σ_{i ∈ M} (f_θ(x_i) − y_i)²   (the masked mean squared error),

θ_0 drawn as PyTorch's `nn.Linear` default init (every entry of a layer with fan-in `f` uniform on
`[−1/√f, 1/√f]`, so W_1, b_1 on `±1/√d` and w_2, b_2 on `±1/√h`), then `steps` full-batch Adam
steps (Kingma & Ba 2015; exactly `torch.optim.Adam`'s update: moments `m ← β₁m + (1−β₁)g`,
`v ← β₂v + (1−β₂)g²`, `θ ← θ − lr · (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`). The prediction at a query
is `f_θ(x_q)` with the final θ.

What we follow from Garg et al.'s code (`src/models.py`, `GDModel` with `NeuralNetwork`, and
`get_relevant_baselines("relu_2nn_regression")`): hidden width h = 100, the same
Linear–ReLU–Linear network with biases and `nn.Linear` init, Adam with lr 5e-3 (default β, ε),
100 steps, the MSE loss. Their mini-batch size is 100 points drawn without replacement, i.e. the
whole context for their n ≤ 41: we always use the whole (masked) context — identical for n ≤ 100.
Ours: their `ParallelNetworks` averages the MSE over the prompts too, which rescales each prompt's
gradient by 1/B; Adam is invariant to that except through ε, so we use each problem's own mean
(the problems are then exactly independent: a problem gives the same result in any batch).
Their empty prefix predicts 0; ours has no empty prefix (k = 1 … n).

Batching: the P problems are P independent parameter sets stacked along a leading axis; one
`torch.func.grad` of the single-problem loss (written with `functional_call` on one module) is
`vmap`-ped over them. For the prefixes of B prompts the problems are the B·n pairs (prompt b,
prefix k), all on the same (B, n, d) data with the mask `i ≤ k`: a `vmap` over k (data shared)
inside a `vmap` over b — every prefix in one computation, cost O(B n · n h d) per step. The only
Python loops are over the Adam steps and over chunks of prompts (`chunk_size`, to bound memory).

Randomness: only the initial parameters, from the `torch.Generator` argument, drawn by
`init_relu_nets` in the order W_1, b_1, w_2, b_2, each of shape (*batch, …).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from icgd.algorithms.plugins import ALGORITHMS
from icgd.algorithms.prefix import check_prefix_inputs

PARAM_NAMES = ("hidden.weight", "hidden.bias", "out.weight", "out.bias")


class _TwoLayerReLU(nn.Module):
    """`x ↦ w_2ᵀ ReLU(W_1 x + b_1) + b_2`: x (..., d) → (...,). Garg et al.'s `NeuralNetwork`
    (out_size 1). Used only as a template for `functional_call` (its own weights are unused)."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d, hidden, device="meta")
        self.out = nn.Linear(hidden, 1, device="meta")

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden(x))).squeeze(-1)


@dataclass(frozen=True)
class ReLUNetFit:
    """P independently trained 2-layer ReLU nets (stacked along the leading axes `batch`).

    params: {"hidden.weight" (*batch, h, d), "hidden.bias" (*batch, h), "out.weight"
    (*batch, 1, h), "out.bias" (*batch, 1)} the final θ; losses: (steps + 1, *batch) the training
    loss L(θ_t) before each step t = 0 … steps−1 and after the last one.
    """

    params: dict[str, Tensor]
    losses: Tensor

    def predict(self, x: Tensor) -> Tensor:
        """`f_θ(x)` of each net: x (*batch, m, d) → (*batch, m)."""
        W1, b1 = self.params["hidden.weight"], self.params["hidden.bias"]
        w2, b2 = self.params["out.weight"], self.params["out.bias"]
        hid = torch.relu(x @ W1.transpose(-1, -2) + b1.unsqueeze(-2))  # (*batch, m, h)
        return (hid @ w2.transpose(-1, -2)).squeeze(-1) + b2  # (*batch, m)


def init_relu_nets(
    batch: tuple[int, ...],
    d: int,
    hidden: int,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """`nn.Linear`'s default init for a stack of nets: every entry of a layer with fan-in f is
    uniform on [−1/√f, 1/√f]. Returns the dict of `ReLUNetFit.params` with leading shape `batch`,
    drawn from `generator` in the order W_1 (h, d), b_1 (h,), w_2 (1, h), b_2 (1,)."""
    batch = tuple(int(b) for b in batch)
    if d < 1 or hidden < 1:
        raise ValueError(f"d and hidden must be >= 1, got {d} and {hidden}")
    kw = {"generator": generator, "dtype": dtype, "device": device}
    shapes = [((hidden, d), d), ((hidden,), d), ((1, hidden), hidden), ((1,), hidden)]
    return {
        name: (2 * torch.rand(*batch, *shape, **kw) - 1) / math.sqrt(fan_in)
        for name, (shape, fan_in) in zip(PARAM_NAMES, shapes, strict=True)
    }


def _check_init(init: dict[str, Tensor], batch: tuple[int, ...], d: int) -> int:
    """Validate a stack of parameters with leading shape `batch`; return the width h."""
    if set(init) != set(PARAM_NAMES):
        raise ValueError(f"init must have the keys {PARAM_NAMES}, got {sorted(init)}")
    h = init["hidden.bias"].shape[-1]
    expected = {
        "hidden.weight": (h, d),
        "hidden.bias": (h,),
        "out.weight": (1, h),
        "out.bias": (1,),
    }
    for name, shape in expected.items():
        if tuple(init[name].shape) != batch + shape:
            raise ValueError(
                f"init[{name!r}] must have shape {batch + shape}, got {tuple(init[name].shape)}"
            )
    return h


def _train(
    init: dict[str, Tensor],
    X: Tensor,
    y: Tensor,
    mask: Tensor,
    *,
    prefix: bool,
    steps: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
) -> tuple[dict[str, Tensor], Tensor]:
    """Adam on every problem at once (module docstring).

    prefix False: init (P, …), X (P, m, d), y (P, m), mask (P, m) — one problem per row.
    prefix True: init (B, n, …), X (B, n, d), y (B, n), mask (n, n) with row k−1 the points of
    prefix k — problem (b, k) uses X[b], y[b] and mask[k−1].
    Returns the final params and the losses (steps + 1, *batch).
    """
    d, h = X.shape[-1], init["hidden.bias"].shape[-1]
    net = _TwoLayerReLU(d, h)

    def loss(params: dict[str, Tensor], x: Tensor, t: Tensor, m: Tensor) -> Tensor:
        # one problem: x (m, d), t (m,), m (m,) bool
        r = functional_call(net, params, (x,)) - t  # (m,)
        return (r.square() * m).sum() / m.sum()

    value_and_grad = grad_and_value(loss)  # (params, x, t, m) → (∇_θ L, L)
    if prefix:  # inner: over the prefixes k (data shared); outer: over the prompts b
        inner = vmap(value_and_grad, in_dims=(0, None, None, 0))
        fn = vmap(inner, in_dims=(0, 0, 0, None))
        evaluate = vmap(vmap(loss, in_dims=(0, None, None, 0)), in_dims=(0, 0, 0, None))
    else:
        fn = vmap(value_and_grad, in_dims=(0, 0, 0, 0))
        evaluate = vmap(loss, in_dims=(0, 0, 0, 0))
    mask = mask.to(X.dtype)
    beta1, beta2 = betas
    params = {k: v.clone() for k, v in init.items()}
    m1 = {k: torch.zeros_like(v) for k, v in params.items()}
    m2 = {k: torch.zeros_like(v) for k, v in params.items()}
    losses = []
    for t in range(1, steps + 1):
        g, value = fn(params, X, y, mask)
        losses.append(value)
        bc1, bc2 = 1 - beta1**t, 1 - beta2**t
        for k in PARAM_NAMES:  # torch.optim.Adam's update (no weight decay, no amsgrad)
            m1[k].mul_(beta1).add_(g[k], alpha=1 - beta1)
            m2[k].mul_(beta2).addcmul_(g[k], g[k], value=1 - beta2)
            denom = (m2[k].sqrt() / math.sqrt(bc2)).add_(eps)
            params[k].addcdiv_(m1[k], denom, value=-lr / bc1)
    losses.append(evaluate(params, X, y, mask))
    return params, torch.stack(losses)


def _check_hyper(steps: int, lr: float, chunk_size: int | None) -> None:
    if steps < 0 or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")


def _initial(
    init: dict[str, Tensor] | None,
    generator: torch.Generator | None,
    batch: tuple[int, ...],
    X: Tensor,
    hidden: int,
) -> dict[str, Tensor]:
    if (init is None) == (generator is None):
        raise ValueError("pass exactly one of generator (a random init) and init (parameters)")
    if init is None:
        return init_relu_nets(batch, X.shape[-1], hidden, generator, dtype=X.dtype, device=X.device)
    _check_init(init, batch, X.shape[-1])
    return {k: v.to(X.dtype) for k, v in init.items()}


def fit_relu_nets(
    X: Tensor,
    y: Tensor,
    mask: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    init: dict[str, Tensor] | None = None,
    hidden: int = 100,
    steps: int = 100,
    lr: float = 5e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> ReLUNetFit:
    """Train one 2-layer ReLU net per problem on its own points (module docstring).

    X: (P, m, d), y: (P, m), mask: (P, m) bool, the points each problem trains on (default all;
    each row needs at least one). Exactly one of `generator` (θ_0 by `init_relu_nets`, width
    `hidden`) or `init` (a dict as `ReLUNetFit.params` with leading shape (P,)). steps, lr, betas,
    eps: Adam's (defaults: Garg et al.'s 100 steps at lr 5e-3, torch's β and ε).
    Returns a `ReLUNetFit` with params (P, …) and losses (steps + 1, P). Computed in X's dtype.
    """
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(
            f"expected X (P, m, d) and y (P, m), got {tuple(X.shape)} and {tuple(y.shape)}"
        )
    _check_hyper(steps, lr, None)
    mask = torch.ones_like(y, dtype=torch.bool) if mask is None else mask
    if mask.shape != y.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(y.shape)}")
    if not mask.any(-1).all():
        raise ValueError("every problem needs at least one active point in mask")
    params = _initial(init, generator, (X.shape[0],), X, hidden)
    params, losses = _train(
        params, X, y.to(X.dtype), mask, prefix=False, steps=steps, lr=lr, betas=betas, eps=eps
    )
    return ReLUNetFit(params, losses)


def prefix_relu_net(
    X: Tensor,
    y: Tensor,
    x_q: Tensor,
    *,
    generator: torch.Generator | None = None,
    init: dict[str, Tensor] | None = None,
    hidden: int = 100,
    steps: int = 100,
    lr: float = 5e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    chunk_size: int | None = 16,
) -> Tensor:
    """Garg et al.'s ReLU-net baseline on every prefix: a net trained on `(x_1, y_1) … (x_k, y_k)`
    for each prompt and each k = 1 … n, evaluated at the query of the prefix.

    X: (B, n, d), y: (B, n), x_q: (B, d) (one query for every prefix) or (B, n, d) (`x_q[:, k−1]`
    for prefix k), the conventions of `icgd.algorithms.prefix` → (B, n).
    Exactly one of `generator` (θ_0 of all B·n nets by `init_relu_nets((B, n), …)`) or `init`
    (a dict as `ReLUNetFit.params` with leading shape (B, n): the net of prompt b, prefix k starts
    from entry [b, k−1]). Net (b, k) is the one `fit_relu_nets` trains on `X[b, :k]` from the same
    θ_0. hidden, steps, lr, betas, eps: as `fit_relu_nets`. chunk_size: prompts per chunk (memory
    O(chunk · n² h) per step; None: all at once). Computed in X's dtype.
    """
    Xq = check_prefix_inputs(X, y, x_q)  # (B, r, d), r = 1 or n
    _check_hyper(steps, lr, chunk_size)
    B, n, d = X.shape
    params = _initial(init, generator, (B, n), X, hidden)
    y = y.to(X.dtype)
    idx = torch.arange(n, device=X.device)
    mask = idx[None, :] <= idx[:, None]  # (n, n): [k−1, i] = point i in prefix k
    step = B if chunk_size is None else chunk_size
    preds = []
    for s in range(0, B, step):  # chunks of prompts, each a single vmapped batch
        sl = slice(s, s + step)
        p0 = {k: v[sl] for k, v in params.items()}
        p, _ = _train(p0, X[sl], y[sl], mask, prefix=True, steps=steps, lr=lr, betas=betas, eps=eps)
        q = Xq[sl].unsqueeze(-2).expand(-1, n, 1, d)  # (b, n, 1, d): net k's query
        preds.append(ReLUNetFit(p, torch.empty(0)).predict(q).squeeze(-1))  # (b, n)
    return torch.cat(preds, 0)


ALGORITHMS.register("relu-net", prefix_relu_net)
