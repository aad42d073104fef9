"""Softmax attention with a sink token over two point clouds, for entropic OT (SPEC §4).

Daneshmand (2024), "Provable optimal transport with transformers": a transformer with fixed
weights and an engineered prompt runs one step of (adaptive) gradient ascent on the entropic-OT
semi-dual per layer. The paper's exact prompt and weights were not available to us; this module is
the model *family* (architecture, prompt layout, hook points, read-outs) and
`icgd.constructions.ot_dual_ascent` sets its weights. Everything below is ours unless cited.

Prompt: one token per point, stored as rows, `Z ∈ R^{B × T × D}`, `D = d + 9` (`OTLayout`):

| slot (index)      | x-token `x_i`   | y-token `y_j`   | sink token | written by                 |
|-------------------|-----------------|-----------------|------------|----------------------------|
| `pos` (0 … d−1)   | `x_i`           | `y_j`           | 0          | prompt only                |
| `sq` (d)          | `‖x_i‖²`        | `‖y_j‖²`        | 0          | prompt only                |
| `flag_x` (d+1)    | 1               | 0               | 0          | prompt only                |
| `flag_y` (d+2)    | 0               | 1               | 0          | prompt only                |
| `flag_sink` (d+3) | 0               | 0               | 1          | prompt only                |
| `g` (d+4)         | 0               | dual `g_j`      | 0          | linear sublayer            |
| `psi` (d+5)       | `ψ_i` (log-sum) | 0               | 0          | FFN                        |
| `u` (d+6)         | scratch         | 0               | 0          | head `xy`, reset by linear |
| `w` (d+7)         | scratch         | 0               | 0          | head `xy`, reset by linear |
| `v` (d+8)         | 0               | scratch         | 0          | head `yx`, reset by linear |

Tokens may come in any order; a token's type (x, y or sink) is read from its one-hot flags in the
*input* prompt (each token must have exactly one flag equal to 1, the others 0) and kept for every
layer. Any numbers of x- and y-tokens work: no parameter depends on them.

Layer l (weights of layer l; the construction uses the same weights in every layer), on rows z:

1. head `xy` (cross-attention: queries = x-tokens, keys = y-tokens and the sink):
   scores `S[k, q] = z_kᵀ W_KQ z_q` (key k, query q), pattern `A = softmax over the allowed keys k`,
   `z_q ← z_q + Σ_k A[k, q] W_OV z_k` for every x-token q; other tokens are not queries and are
   left unchanged (as in encoder–decoder cross-attention).
2. FFN on every token: `z ← z + W_out log(W_in z)`, elementwise `log` activation (ours; the
   construction keeps `W_in z > 0`; generic weights can make it NaN — this family exists for
   constructions, not for training from scratch).
3. head `yx` (queries = y-tokens, keys = x-tokens and the sink), as in 1.
4. linear sublayer on every token: `z ← z + M z`.

No `1/√D` temperature (absorbed into `W_KQ`), no layer norm.

Parameters (L = `n_layers`, H = `hidden`): `KQ`, `OV` (L, 2, D, D) (head 0 = `xy`, head 1 =
`yx`), `W_in` (L, H, D), `W_out` (L, D, H), `M` (L, D, D).

Read-outs (need every prompt of the batch to have the same token types in the same order):

- `duals(Z)`: the y-tokens' `g` slot after every layer, (B, L+1, n_y), entry 0 the prompt's g₀.
- `plan(Z)`: `P = π / n_y` (B, n_x, n_y) from the last layer's head `xy` applied to the final prompt
  with the sink key removed: `π[i, ·] = softmax over the y-keys j of S[y_j, x_i]`. With the
  construction's weights `S[y_j, x_i] = (g_j − C_ij)/ε`, so `π = π(g_L)`.

Hook points (in firing order, l = 0 … L−1): `hook_z.{l}` (B, T, D) the input of layer l;
`hook_scores_xy.{l}`, `hook_pattern_xy.{l}` (B, T, T), row = key, column = query, `-inf` / 0 at
disallowed entries (every column of a non-query token is 0 in the pattern);
`hook_psi.{l}` (B, T) the `psi` slot after the FFN; `hook_scores_yx.{l}`, `hook_pattern_yx.{l}`;
`hook_g.{l+1}` (B, T) the `g` slot after the linear sublayer (0 off the y-tokens); finally
`hook_z.{L}` the output. `hook_g.0` fires on the input before layer 0. A hook returning a tensor
replaces the activation (the `psi` and `g` hooks write their slot back into the stream).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import example_normal, register_normal_parameters
from icgd.models.hooks import (
    HookedMixin,
    HookPoints,
    NamesFilter,
)
from icgd.models.plugins import MODELS

HEAD_XY, HEAD_YX = 0, 1


@dataclass(frozen=True)
class OTLayout:
    """Slot indices of a token of width `D = d + 9` (table in the module docstring)."""

    d: int

    @property
    def pos(self) -> slice:
        return slice(0, self.d)

    @property
    def sq(self) -> int:
        return self.d

    @property
    def flag_x(self) -> int:
        return self.d + 1

    @property
    def flag_y(self) -> int:
        return self.d + 2

    @property
    def flag_sink(self) -> int:
        return self.d + 3

    @property
    def g(self) -> int:
        return self.d + 4

    @property
    def psi(self) -> int:
        return self.d + 5

    @property
    def u(self) -> int:
        return self.d + 6

    @property
    def w(self) -> int:
        return self.d + 7

    @property
    def v(self) -> int:
        return self.d + 8

    @property
    def width(self) -> int:
        return self.d + 9

    @property
    def flags(self) -> slice:
        return slice(self.d + 1, self.d + 4)


class OTAttentionConfig(Config):
    """Architecture of the OT attention family (everything needed to rebuild it)."""

    d: PositiveInt = 1
    """Dimension of the points; the token width is `d + 9`."""
    n_layers: PositiveInt = 1
    hidden: PositiveInt = 2
    """Hidden units of the elementwise-log FFN."""
    init_std: float = Field(default=0.0, ge=0.0)
    """Parameters are drawn from N(0, init_std²) at init (0: zeros; constructions set them)."""


class OTAttention(HookedMixin, nn.Module):
    """L layers of (head `xy`, log-FFN, head `yx`, linear) on the OT prompt; module docstring."""

    def __init__(
        self,
        config: OTAttentionConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.layout = OTLayout(config.d)
        self.hook_points = HookPoints()
        L, D, H = config.n_layers, self.layout.width, config.hidden
        shapes = {"KQ": (L, 2, D, D), "OV": (L, 2, D, D), "W_in": (L, H, D), "W_out": (L, D, H)}
        shapes["M"] = (L, D, D)
        register_normal_parameters(
            self, shapes, config.init_std, generator, dtype=dtype, device=device
        )

    # ----------------------------------------------------------------------------- weights

    @property
    def W_KQ(self) -> Tensor:
        """Key-query matrices (L, 2, D, D): `S[k, q] = z_kᵀ W_KQ z_q`; head 0 `xy`, 1 `yx`."""
        return self.KQ

    @property
    def W_OV(self) -> Tensor:
        """Output-value matrices (L, 2, D, D): head output `Σ_k A[k, q] W_OV z_k`."""
        return self.OV

    # -------------------------------------------------------------------------------- types

    def token_types(self, Z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Boolean masks `(is_x, is_y, is_sink)`, each (B, T), from the one-hot flags of Z."""
        lay = self.layout
        if Z.ndim != 3 or Z.shape[-1] != lay.width:
            raise ValueError(
                f"Z must have shape (B, T, d+9) = (B, T, {lay.width}), got {tuple(Z.shape)}"
            )
        flags = Z[..., lay.flags]  # (B, T, 3)
        one_hot = ((flags == 0) | (flags == 1)).all(-1) & (flags.sum(-1) == 1)
        if not bool(one_hot.all()):
            raise ValueError("every token needs exactly one flag (x, y, sink) equal to 1")
        return flags[..., 0] == 1, flags[..., 1] == 1, flags[..., 2] == 1

    def _indices(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Token indices of the x- and y-tokens, shared by every prompt of the batch."""
        is_x, is_y, _ = self.token_types(Z)
        if not (bool((is_x == is_x[:1]).all()) and bool((is_y == is_y[:1]).all())):
            raise ValueError("read-outs need the same token types in the same order in the batch")
        return is_x[0].nonzero().squeeze(-1), is_y[0].nonzero().squeeze(-1)

    # -------------------------------------------------------------------------------- math

    def _scores(self, Z: Tensor, layer: int, head: int, allowed: Tensor) -> Tensor:
        """(B, T, T): `S[k, q] = z_kᵀ W_KQ z_q`, `-inf` where key k is not allowed for query q."""
        S = Z @ self.KQ[layer, head] @ Z.transpose(1, 2)  # (B, T, T), row = key, column = query
        return S.masked_fill(~allowed, float("-inf"))

    @staticmethod
    def _pattern(S: Tensor, queries: Tensor, allowed: Tensor) -> Tensor:
        """Softmax over the allowed keys of each query column; columns of non-queries are 0."""
        S = S.masked_fill(~queries[:, None, :], 0.0)  # (B, T, T) dummy finite non-query columns
        return torch.softmax(S, dim=-2).masked_fill(~allowed, 0.0)

    def _attend(
        self, Z: Tensor, layer: int, head: int, queries: Tensor, keys: Tensor, tag: str
    ) -> Tensor:
        """One cross-attention head: `z_q + Σ_k A[k, q] W_OV z_k` for the query tokens."""
        hooked = len(self.hook_points) > 0
        allowed = keys[:, :, None] & queries[:, None, :]  # (B, T, T) [key, query]
        S = self._scores(Z, layer, head, allowed)
        if hooked:
            S = self.hook_points(f"hook_scores_{tag}.{layer}", S)
        A = self._pattern(S, queries, allowed)  # (B, T, T)
        if hooked:
            A = self.hook_points(f"hook_pattern_{tag}.{layer}", A)
        V = Z @ self.OV[layer, head].transpose(0, 1)  # (B, T, D): row k is W_OV z_k
        return Z + A.transpose(1, 2) @ V  # (B, T, D): row q gains Σ_k A[k, q] W_OV z_k

    def _slot_hook(self, Z: Tensor, slot: int, name: str) -> Tensor:
        """Pass slot `slot` (B, T) through hook `name`; write a replacement back into Z."""
        value = Z[..., slot]
        out = self.hook_points(name, value)
        if out is value:
            return Z
        Z = Z.clone()
        Z[..., slot] = out
        return Z

    def layer(self, Z: Tensor, l: int, types: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """Layer l on Z (B, T, D) given the token types `(is_x, is_y, is_sink)`."""
        is_x, is_y, is_sink = types
        hooked = len(self.hook_points) > 0
        Z = self._attend(Z, l, HEAD_XY, is_x, is_y | is_sink, "xy")
        Z = Z + torch.log(Z @ self.W_in[l].T) @ self.W_out[l].T  # (B, T, H) → (B, T, D)
        if hooked:
            Z = self._slot_hook(Z, self.layout.psi, f"hook_psi.{l}")
        Z = self._attend(Z, l, HEAD_YX, is_y, is_x | is_sink, "yx")
        Z = Z + Z @ self.M[l].T  # (B, T, D)
        if hooked:
            Z = self._slot_hook(Z, self.layout.g, f"hook_g.{l + 1}")
        return Z

    # --------------------------------------------------------------------------- public API

    def forward(self, Z: Tensor) -> Tensor:
        """The final prompt (B, T, D) from the prompt Z (B, T, D = d + 9)."""
        types = self.token_types(Z)
        hooked = len(self.hook_points) > 0
        if hooked:
            Z = self._slot_hook(Z, self.layout.g, "hook_g.0")
        for l in range(self.config.n_layers):
            if hooked:
                Z = self.hook_points(f"hook_z.{l}", Z)
            Z = self.layer(Z, l, types)
        if hooked:
            Z = self.hook_points(f"hook_z.{self.config.n_layers}", Z)
        return Z

    def duals(self, Z: Tensor) -> Tensor:
        """The y-tokens' dual variables after every layer: (B, L+1, n_y), `[:, 0]` from the
        prompt, `[:, l]` after layer l (y-tokens in prompt order)."""
        _, y_idx = self._indices(Z)
        _, cache = self.run_with_cache(Z, lambda name: name.startswith("hook_g."))
        g = torch.stack([cache[f"hook_g.{l}"] for l in range(self.config.n_layers + 1)], 1)
        return g[:, :, y_idx]  # (B, L+1, n_y)

    def plan_from_output(self, Z_out: Tensor) -> Tensor:
        """`P = π / n_y` (B, n_x, n_y) from the last layer's head `xy` on the final prompt, the
        sink key removed: `π[i, ·] = softmax_j S[y_j, x_i]` (rows in prompt order)."""
        x_idx, y_idx = self._indices(Z_out)
        S = Z_out @ self.KQ[-1, HEAD_XY] @ Z_out.transpose(1, 2)  # (B, T, T) [key, query]
        S_xy = S[:, y_idx][:, :, x_idx].transpose(1, 2)  # (B, n_x, n_y): [x-query i, y-key j]
        return torch.softmax(S_xy, dim=-1) / len(y_idx)

    def plan(self, Z: Tensor) -> Tensor:
        """`plan_from_output(forward(Z))`: (B, n_x, n_y)."""
        return self.plan_from_output(self.forward(Z))

    def hook_names(self) -> list[str]:
        """The hook names a forward pass fires, in order."""
        names = ["hook_g.0"]
        for l in range(self.config.n_layers):
            names += [f"hook_z.{l}", f"hook_scores_xy.{l}", f"hook_pattern_xy.{l}"]
            names += [f"hook_psi.{l}", f"hook_scores_yx.{l}", f"hook_pattern_yx.{l}"]
            names += [f"hook_g.{l + 1}"]
        return [*names, f"hook_z.{self.config.n_layers}"]

    def run_with_cache(
        self, Z: Tensor, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(Z_out, cache)`: cache maps hook name → detached activation, for names passing the
        filter (None: all; a name; a list of names; a predicate)."""
        return self._run_cached(names_filter, Z)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> OTAttention:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): d = 2, two layers of 2
        hidden units, weights N(0, 0.01²) from seed 0, plus 1 on `W_in`'s flag columns so that
        the FFN's `log(W_in z)` stays finite (`W_in z ≈ 1` on every token)."""
        config = OTAttentionConfig(d=2, n_layers=2, hidden=2, init_std=0.01)
        model = cls(config, generator=torch.Generator().manual_seed(0), dtype=dtype)
        with torch.no_grad():
            model.W_in[..., model.layout.flags] += 1.0
        return model

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(Z,)`: B prompts (B, 2n+1, d+9) of n = 3 standard normal x- and y-points, duals
        g = 0, x-tokens first, then y-tokens, then the sink (module docstring)."""
        lay, n = self.layout, 3
        points = example_normal(generator, int(batch_size), 2 * n, lay.d, like=self)  # (B, 2n, d)
        Z = points.new_zeros(int(batch_size), 2 * n + 1, lay.width)
        Z[:, : 2 * n, lay.pos] = points
        Z[:, : 2 * n, lay.sq] = points.square().sum(-1)
        Z[:, :n, lay.flag_x] = 1.0
        Z[:, n : 2 * n, lay.flag_y] = 1.0
        Z[:, 2 * n, lay.flag_sink] = 1.0
        return (Z,)

    def extra_repr(self) -> str:
        c = self.config
        return f"d={c.d}, layers={c.n_layers}, width={self.layout.width}, hidden={c.hidden}"


MODELS.register("ot-attention", OTAttention)
