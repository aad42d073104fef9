"""A GPT-2-style causal transformer for in-context learning of function classes (SPEC §2.2).

Garg, Tsipras, Liang, Valiant (2022), "What can transformers learn in-context? A case study of
simple function classes". A prompt of k points `(x_i, y_i)`, `x_i ∈ R^d`, becomes 2k tokens of
width d that interleave inputs and labels, the label zero-padded to width d:

    tokens = x_1, [y_1, 0, …, 0], x_2, [y_2, 0, …, 0], …, x_k, [y_k, 0, …, 0]      (B, 2k, d)

then

    h_0 = tokens W_in + b_in + P[0:2k]                 linear read-in, learned positions P
    h_{l+1} = Block_l(h_l)                             l = 0..n_layer−1
    ŷ_i = (LN_f(h_L) W_out + b_out) at token x_i       (B, k)

with pre-LayerNorm blocks `h + Attn(LN1(h))`, `h + MLP(LN2(h))`: causal multi-head attention
(`scaled_dot_product_attention(is_causal=True)`, scale 1/√head_dim) and a 4×-wide GELU MLP.
Prediction i is made at token x_i and sees `x_1, y_1, …, x_{i−1}, y_{i−1}, x_i` only. The
positional table has exactly `2·max_points` rows (no vocabulary table: inputs are continuous).
With k = max_points the last row (position of y_k) never reaches a prediction.

Init (GPT-2) of the transformer: every Linear weight in the blocks and the positional table
N(0, 0.02²), the two residual projections of each block N(0, (0.02/√(2·n_layer))²), biases 0,
LayerNorm (1, 0). The read-in and read-out keep PyTorch's `nn.Linear` init, weight and bias
U(−1/√fan_in, 1/√fan_in), as in Garg et al.'s code, where they sit outside the GPT-2 backbone and
its init. This matters (measured, d = 5, 11 points, tiny model, Adam 1e-3, batch 64, seed 0): with
the read-in at N(0, 0.02²) too, the error at k ≥ d was still 0.83 after 3500 steps (averaging's
0.85); with the uniform read-in/out it was 0.35 after 1500. All drawn from `generator` in float64
and cast, so the same seed gives the same model for every dtype; global RNG state is never
touched.

Hook points: `hook_resid.{l}` (B, 2k, n_embd), l = 0..n_layer: the residual stream after l blocks
(`hook_resid.0` is the embedding h_0). Identity and skipped entirely when no hook is attached.

`Block`, `interleave` and `ReadInOut` are reused by `icgd.models.looped`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import example_normal
from icgd.models.hooks import (
    HookedMixin,
    HookPoints,
    NamesFilter,
)
from icgd.models.plugins import MODELS

GPTSize = Literal["tiny", "small", "standard"]

GPT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_embd": 64, "n_layer": 3, "n_head": 2},
    "small": {"n_embd": 128, "n_layer": 6, "n_head": 4},
    "standard": {"n_embd": 256, "n_layer": 12, "n_head": 8},
}
"""Garg et al.'s model sizes: width, depth, heads."""


def fill_size_preset(data: Any, keys: Sequence[str] = ("n_embd", "n_layer", "n_head")) -> Any:
    """Before-validation: fields of `keys` not given explicitly are taken from `data["size"]`'s
    preset (`GPT_SIZES`); with `size: null` they must all be given."""
    if not isinstance(data, dict):
        return data
    size = data.get("size", "standard")
    if isinstance(size, str) and size in GPT_SIZES:
        preset = GPT_SIZES[size]
        data = {**{k: preset[k] for k in keys if k in preset}, **data}
    return data


class GPTConfig(Config):
    """Architecture of the causal GPT model (everything needed to rebuild it).

    `size` picks a preset of (n_embd, n_layer, n_head) from `GPT_SIZES`; any of the three given
    explicitly overrides the preset. With `size: null` all three are required. The stored config is
    fully resolved (all three fields hold numbers).
    """

    d_in: PositiveInt = 20
    """d: width of x (and of the zero-padded label tokens)."""
    max_points: PositiveInt = 41
    """Largest k accepted; the positional table has 2·max_points rows."""
    size: GPTSize | None = "standard"
    n_embd: PositiveInt
    n_layer: PositiveInt
    n_head: PositiveInt
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on attention weights, attention/MLP outputs and the embedding (training mode)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_from_size(cls, data: Any) -> Any:
        return fill_size_preset(data)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd: must be divisible by n_head={self.n_head}, got {self.n_embd}"
            )
        return self


def interleave(X: Tensor, y: Tensor) -> Tensor:
    """Tokens `x_1, [y_1, 0…0], x_2, …`: X (B, k, d), y (B, k) → (B, 2k, d)."""
    B, k, d = X.shape
    y_tok = torch.cat([y.unsqueeze(-1), X.new_zeros(B, k, d - 1)], dim=-1)  # (B, k, d)
    return torch.stack([X, y_tok], dim=2).reshape(B, 2 * k, d)  # (B, 2k, d)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: fused QKV projection, SDPA, output projection."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
        # (B, T, C) → (B, n_head, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        out = out.transpose(1, 2).reshape(B, T, C)  # (B, n_head, T, hd) → (B, T, C)
        return self.resid_dropout(self.c_proj(out))


class MLP(nn.Module):
    """`Linear(C, 4C) → GELU → Linear(4C, C)`."""

    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: `h + Attn(LN1(h))`, then `h + MLP(LN2(h))`; (B, T, C)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ReadInOut(nn.Module):
    """The continuous-token embedding and head shared by `GPT` and `LoopedTransformer`.

    `embed(X, y)`: read-in of the interleaved tokens plus learned positions, (B, 2k, n_embd).
    `read_out(h)`: final LayerNorm and a linear map to a scalar at the x tokens, (..., k).
    """

    def __init__(self, d_in: int, n_embd: int, max_points: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_in = d_in
        self.max_points = max_points
        self.read_in = nn.Linear(d_in, n_embd)
        self.wpe = nn.Embedding(2 * max_points, n_embd)  # exactly 2·max_points positions
        self.drop = nn.Dropout(dropout)
        self.ln_f = nn.LayerNorm(n_embd)
        self.read_out_head = nn.Linear(n_embd, 1)

    def check_inputs(self, X: Tensor, y: Tensor) -> None:
        """Shape checks only (metadata: no host-device sync)."""
        if X.ndim != 3 or X.shape[-1] != self.d_in:
            raise ValueError(f"X must have shape (B, k, d_in={self.d_in}), got {tuple(X.shape)}")
        if y.shape != X.shape[:2]:
            raise ValueError(
                f"y must have shape (B, k) = {tuple(X.shape[:2])}, got {tuple(y.shape)}"
            )
        if not 1 <= X.shape[1] <= self.max_points:
            raise ValueError(f"k must be in 1..max_points={self.max_points}, got {X.shape[1]}")

    def embed(self, X: Tensor, y: Tensor) -> Tensor:
        tokens = interleave(X, y)  # (B, 2k, d_in)
        positions = torch.arange(tokens.shape[1], device=X.device)  # (2k,)
        return self.drop(self.read_in(tokens) + self.wpe(positions))  # (B, 2k, n_embd)

    def read_out(self, h: Tensor, final_norm: bool = True) -> Tensor:
        """(..., 2k, n_embd) → (..., k): the prediction at every x token (even positions)."""
        h = h[..., ::2, :]  # (..., k, n_embd): the x tokens
        if final_norm:
            h = self.ln_f(h)  # per token, so reading out first and normalising commute
        return self.read_out_head(h).squeeze(-1)


def init_gpt_weights(
    module: nn.Module, n_residual_layers: int, generator: torch.Generator, std: float = 0.02
) -> None:
    """GPT-2 init in place (read-in/out: nn.Linear's uniform init), drawn from `generator` in
    float64 then cast (see the module docstring).

    `n_residual_layers`: the number of blocks on the residual path, scaling the residual
    projections `*.c_proj.weight` to `std/√(2·n_residual_layers)`.
    """
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            if isinstance(owner, nn.LayerNorm):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif ".read_in." in f".{name}" or ".read_out_head." in f".{name}":
                bound = 1.0 / math.sqrt(owner.in_features)  # nn.Linear's default: U(±1/√fan_in)
                draw = torch.rand(
                    p.shape, generator=generator, dtype=torch.float64, device=generator.device
                )
                p.copy_(((2 * draw - 1) * bound).to(device=p.device, dtype=p.dtype))
            elif leaf == "bias":
                p.zero_()
            else:
                scale = std / math.sqrt(2 * n_residual_layers) if "c_proj" in name else std
                draw = torch.randn(
                    p.shape, generator=generator, dtype=torch.float64, device=generator.device
                )
                p.copy_((draw * scale).to(device=p.device, dtype=p.dtype))


def build_io_and_blocks(
    module: nn.Module,
    config: Any,
    n_blocks: int,
    generator: torch.Generator | None,
    device: str | torch.device,
    dtype: torch.dtype,
) -> None:
    """Give `module` its `io` (`ReadInOut`) and `blocks` (n_blocks `Block`s) from `config`'s
    d_in, n_embd, n_head, max_points, dropout, GPT-2-initialised from `generator` (default seed 0).
    Shared by `GPT` and `icgd.models.looped.LoopedTransformer`."""
    c = config
    # nn.Linear's default init draws from the global RNG: restore its state afterwards (every
    # weight is then redrawn from `generator`). Not the meta device: its first `to_empty` costs
    # ~2 s of one-time imports in torch 2.13 (measured), a lot for a tiny model.
    with torch.random.fork_rng(devices=[]):
        module.io = ReadInOut(c.d_in, c.n_embd, c.max_points, c.dropout)
        module.blocks = nn.ModuleList(Block(c.n_embd, c.n_head, c.dropout) for _ in range(n_blocks))
    module.to(device=device, dtype=dtype)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    init_gpt_weights(module, n_blocks, generator)


def resid_hook_names(n_layer: int) -> list[str]:
    """`hook_resid.0`, …, `hook_resid.{n_layer}`: the hooks a GPT forward fires, in order."""
    return [f"hook_resid.{layer}" for layer in range(n_layer + 1)]


class GPT(HookedMixin, nn.Module):
    """Garg et al.'s causal transformer on continuous tokens; see the module docstring.

    `forward(X (B, k, d_in), y (B, k)) -> (B, k)`: prediction i made at token x_i.
    Parameters: `io` (read-in, positions, final LN, read-out) and `blocks` (n_layer `Block`s).
    """

    def __init__(
        self,
        config: GPTConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        build_io_and_blocks(self, config, config.n_layer, generator, device, dtype)

    def forward(self, X: Tensor, y: Tensor) -> Tensor:
        """Predictions (B, k) from inputs X (B, k, d_in) and labels y (B, k)."""
        self.io.check_inputs(X, y)
        hooked = len(self.hook_points) > 0
        h = self.io.embed(X, y)  # (B, 2k, n_embd)
        if hooked:
            h = self.hook_points("hook_resid.0", h)
        for layer, block in enumerate(self.blocks, start=1):
            h = block(h)
            if hooked:
                h = self.hook_points(f"hook_resid.{layer}", h)
        return self.io.read_out(h)  # (B, k)

    def hook_names(self) -> list[str]:
        return resid_hook_names(self.config.n_layer)

    def run_with_cache(
        self, X: Tensor, y: Tensor, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(predictions, cache)`: cache maps hook name → detached activation."""
        return self._run_cached(names_filter, X, y)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> GPT:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): d_in = 3, up to 6 points,
        width 16, 2 blocks of 2 heads, GPT-2 init from seed 0."""
        config = GPTConfig(d_in=3, max_points=6, size=None, n_embd=16, n_layer=2, n_head=2)
        return cls(config, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """`(X, y)`: standard normal X (B, k, d_in), y (B, k), k = `max_points`."""
        B, k, d = int(batch_size), self.config.max_points, self.config.d_in
        X = example_normal(generator, B, k, d, like=self)  # (B, k, d_in)
        return X, example_normal(generator, B, k, like=self)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"d_in={c.d_in}, max_points={c.max_points}, n_embd={c.n_embd}, "
            f"n_layer={c.n_layer}, n_head={c.n_head}"
        )


MODELS.register("gpt", GPT)
