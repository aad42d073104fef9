"""One multi-head softmax attention layer for in-context linear regression (SPEC §2.1).

Prompt (`icgd.core.prompts.build_prompt`): `Z ∈ R^{(d+1)×(n+1)}`, context columns
`z_ℓ = [x_ℓ; y_ℓ]`, query column `z_q = [x_q; 0]`, batched as `(B, d+1, n+1)`. Head h has a
key-query matrix `W_KQ^h ∈ R^{(d+1)×(d+1)}` (the product `W_Kᵀ W_Q`, parametrised directly) and an
output-value matrix `W_OV^h ∈ R^{(d+1)×(d+1)}`. With scores `s^h_{ij} = z_iᵀ W_KQ^h z_j` (key i,
query j) and the attention pattern `A^h = softmax over the allowed keys i of s^h_{·j}`, the layer is

    Z_out = Z + Σ_h W_OV^h Z A^h,    column j:  z_j + Σ_h W_OV^h Σ_{i allowed} z_i A^h_{ij}.

No `1/√d` temperature: it is absorbed into `W_KQ`. Masks (which keys i a query token j sees):

- `context`: every token attends to the n context tokens only, `i ≤ n` (1-based); the query token is
  never a key. This is the ICL-prompt mask; with it the context columns' outputs do not depend on
  the query column at all.
- `causal`: token j attends to tokens `i ≤ j` (the query, the last token, sees every token,
  itself included).

Variants (`kind`):

- `he`: He, Pan, Chen, Yang (2025), "In-context linear regression demystified: training dynamics
  and mechanistic interpretability of multi-head softmax attention". Per head an OV *vector*
  `o_h ∈ R^{d+1}` writes the label slot only: `W_OV^h = [[0], [o_hᵀ]]` (zero except its last row,
  which is `o_hᵀ`). Only the label row of Z moves; with the `context` mask and the prompt's zero
  query label,

      ŷ = Σ_h o_hᵀ Σ_{ℓ≤n} z_ℓ softmax_ℓ(z_ℓᵀ W_KQ^h z_q)                    (form ours, SPEC §2.1)

  Parameters: `KQ` (H, d+1, d+1), `o` (H, d+1).
- `full`: a free `W_OV^h` per head, so every token's residual stream moves and layers can be
  stacked (`layer2(layer1(Z))`). Parameters: `KQ`, `OV` (H, d+1, d+1) each.

Sign convention: `predict(Z) = +[Z_out]_{d+1, n+1}`, the query's label slot of the output, read as
`LinearSelfAttention.predict` reads it but **without** its minus sign (Ahn et al.'s `−` comes from
the GD construction; here the sign lives in `o_h`, as in He et al.'s formula). Do not use
`icgd.core.prompts.read_prediction` (which negates) on this model's output.

Any n works at call time: no parameter depends on the context length, and softmax normalises over
the keys (length generalisation).

Padding (`n_context`, optional (B,) integers ≥ 1): prompt b holds `k_b = n_context[b]` real context
tokens followed by `n − k_b` padding tokens, then the query. Padding columns are hidden as keys from
every query (on top of the mask), so the real tokens' outputs and the prediction equal those of the
unpadded `k_b`-point prompt exactly. Needed because, unlike in linear attention, a zero token is
not inert under softmax: its score is 0, so it gets weight `exp(0)` in the normalisation.

`StackedSoftmaxAttention` applies L independent layers in sequence (`full` or `he`), with the same
`predict` and `n_context` conventions; its hook points are `hook_z.{t}` (t = 0 … L: the input, then
the output of layer t) and layer t's `hook_scores.{t}`, `hook_pattern.{t}` (t = 1 … L).

Hook points (in firing order): `hook_z.0` (B, d+1, n+1) input; `hook_scores` (B, H, n+1, n+1)
pre-softmax scores `s^h_{ij}` (row i = key, column j = query) with `-inf` at masked entries;
`hook_pattern` (B, H, n+1, n+1) the softmax over keys (each column sums to 1, masked entries 0);
`hook_z.1` (B, d+1, n+1) the output. A hook that replaces the scores or the pattern changes the
output accordingly.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import example_regression_prompt, register_normal_parameters
from icgd.models.hooks import (
    HookedMixin,
    HookFn,
    HookPoints,
    NameMatcher,
    NamesFilter,
)
from icgd.models.plugins import MODELS

SoftmaxKind = Literal["he", "full"]
MaskKind = Literal["context", "causal"]

SOFTMAX_HOOK_NAMES = ("hook_z.0", "hook_scores", "hook_pattern", "hook_z.1")


class SoftmaxAttentionConfig(Config):
    """Architecture of one multi-head softmax attention layer (everything needed to rebuild it)."""

    d: PositiveInt = 5
    n_heads: PositiveInt = 1
    kind: SoftmaxKind = "he"
    """`he`: OV vectors writing the label slot only; `full`: free OV matrices (stackable)."""
    mask: MaskKind = "context"
    """`context`: keys are the n context tokens; `causal`: token j sees tokens ≤ j."""
    init_std: float = Field(default=0.02, ge=0.0)
    """Every parameter is drawn from N(0, init_std²) at init."""


class SoftmaxAttention(HookedMixin, nn.Module):
    """One H-head softmax attention layer on the regression prompt; see the module docstring."""

    def __init__(
        self,
        config: SoftmaxAttentionConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        D, H = config.d + 1, config.n_heads
        shapes: dict[str, tuple[int, ...]] = {"KQ": (H, D, D)}
        shapes.update({"o": (H, D)} if config.kind == "he" else {"OV": (H, D, D)})
        register_normal_parameters(
            self, shapes, config.init_std, generator, dtype=dtype, device=device
        )

    # ----------------------------------------------------------------------------- weights

    @property
    def W_KQ(self) -> Tensor:
        """Per-head key-query matrices (H, d+1, d+1): `s_{ij} = z_iᵀ W_KQ^h z_j`."""
        return self.KQ

    @property
    def W_OV(self) -> Tensor:
        """Per-head output-value matrices (H, d+1, d+1). For `he` the last row is `o_hᵀ` and every
        other row is zero (the head writes the label slot only)."""
        if self.config.kind == "full":
            return self.OV
        H, D = self.o.shape
        top = self.o.new_zeros(H, D - 1, D)  # (H, d, d+1): the covariate rows are not written
        return torch.cat([top, self.o.unsqueeze(1)], dim=1)  # (H, d+1, d+1)

    # -------------------------------------------------------------------------------- math

    def _check_input(self, Z: Tensor) -> None:
        D = self.config.d + 1
        if Z.ndim != 3 or Z.shape[1] != D or Z.shape[2] < 2:
            raise ValueError(
                f"Z must have shape (B, d+1, n+1) = (B, {D}, n+1) with n >= 1, got {tuple(Z.shape)}"
            )

    def allowed_keys(
        self, n_tokens: int, device: torch.device | str = "cpu", n_context: Tensor | None = None
    ) -> Tensor:
        """Boolean matrix, entry [i, j] true iff query token j may attend to key i: (n+1, n+1),
        or (B, 1, n+1, n+1) with `n_context` (B,), whose padding keys `k_b ≤ i < n` are hidden."""
        i = torch.arange(n_tokens, device=device)
        if self.config.mask == "context":
            allowed = (i < n_tokens - 1)[:, None].expand(n_tokens, n_tokens)  # context keys only
        else:
            allowed = i[:, None] <= i[None, :]  # causal: key i ≤ query j
        if n_context is None:
            return allowed
        padding = (i >= n_context[:, None]) & (i < n_tokens - 1)  # (B, n+1): context slots ≥ k_b
        return allowed & ~padding[:, None, :, None]  # (B, 1, n+1, n+1): hidden as keys

    def scores(self, Z: Tensor, n_context: Tensor | None = None) -> Tensor:
        """Masked pre-softmax scores (B, H, n+1, n+1): `[b, h, i, j] = z_iᵀ W_KQ^h z_j` for the
        allowed keys i of query j (padding hidden, see the module docstring), `-inf` elsewhere."""
        KZ = torch.einsum("hab,Bbj->Bhaj", self.KQ, Z)  # (B, H, d+1, n+1): W_KQ^h z_j
        S = Z.transpose(1, 2).unsqueeze(1) @ KZ  # (B, H, n+1, n+1): z_iᵀ W_KQ^h z_j
        allowed = self.allowed_keys(Z.shape[2], Z.device, n_context)  # (n+1, n+1) or (B, 1, ·, ·)
        return S.masked_fill(~allowed, float("-inf"))

    def _update(self, Z: Tensor, pattern: Tensor) -> Tensor:
        """`Σ_h W_OV^h Z A^h`: (B, d+1, n+1); `he` computes the label row only."""
        if self.config.kind == "he":
            v = torch.einsum("ha,Bai->Bhi", self.o, Z)  # (B, H, n+1): o_hᵀ z_i
            label = (v.unsqueeze(-2) @ pattern).squeeze(-2).sum(1)  # (B, n+1): Σ_h Σ_i v_i A_ij
            top = Z.new_zeros(Z.shape[0], Z.shape[1] - 1, Z.shape[2])  # (B, d, n+1)
            return torch.cat([top, label.unsqueeze(1)], dim=1)  # (B, d+1, n+1)
        V = torch.einsum("hab,Bbi->Bhai", self.OV, Z)  # (B, H, d+1, n+1): W_OV^h Z
        return (V @ pattern).sum(1)  # (B, d+1, n+1): Σ_h W_OV^h Z A^h

    # --------------------------------------------------------------------------- public API

    def forward(self, Z: Tensor, n_context: Tensor | None = None) -> Tensor:
        """`Z_out = Z + Σ_h W_OV^h Z A^h`: (B, d+1, n+1) from the prompt Z (B, d+1, n+1);
        `n_context` (B,): real context tokens per prompt, the rest is padding (module docstring)."""
        self._check_input(Z)
        hooked = len(self.hook_points) > 0
        if hooked:
            Z = self.hook_points("hook_z.0", Z)
        S = self.scores(Z, n_context)  # (B, H, n+1, n+1)
        if hooked:
            S = self.hook_points("hook_scores", S)
        pattern = torch.softmax(S, dim=-2)  # (B, H, n+1, n+1): softmax over the keys i
        if hooked:
            pattern = self.hook_points("hook_pattern", pattern)
        out = Z + self._update(Z, pattern)
        if hooked:
            out = self.hook_points("hook_z.1", out)
        return out

    def predict(self, Z: Tensor, n_context: Tensor | None = None) -> Tensor:
        """`ŷ = +[Z_out]_{d+1, n+1}`: (B,). Equals He et al.'s ŷ for `he` with the `context` mask
        (the prompt's query label is 0)."""
        return self.forward(Z, n_context)[:, -1, -1]

    def hook_names(self) -> list[str]:
        """The hook names a forward pass fires, in order."""
        return list(SOFTMAX_HOOK_NAMES)

    def run_with_cache(
        self, Z: Tensor, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(Z_out, cache)`: cache maps hook name → detached activation, for names passing the
        filter (None: all; a name; a list of names; a predicate)."""
        return self._run_cached(names_filter, Z)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> SoftmaxAttention:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): `example_config()`, weights
        from seed 0."""
        return cls(example_config(), generator=torch.Generator().manual_seed(0), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(Z,)`: B regression prompts (B, d+1, n+1) of n = 5 standard normal points."""
        return (example_regression_prompt(generator, batch_size, self.config.d, 5, like=self),)

    def extra_repr(self) -> str:
        c = self.config
        return f"d={c.d}, heads={c.n_heads}, kind={c.kind}, mask={c.mask}"


def example_config() -> SoftmaxAttentionConfig:
    """The layer config of the tiny examples: d = 3, two `full` heads, weights N(0, 0.3²) (large
    enough that attention is far from uniform)."""
    return SoftmaxAttentionConfig(d=3, n_heads=2, kind="full", init_std=0.3)


class StackedSoftmaxAttention(HookedMixin, nn.Module):
    """L softmax attention layers applied in sequence, `Z_L = layer_L(… layer_1(Z))`: (B, d+1, n+1).

    Every layer has `config` (its own weights, drawn one layer after the other from `generator`);
    `predict(Z, n_context)` = `+[Z_L]_{d+1, n+1}`, padding hidden in every layer as in
    `SoftmaxAttention`. Hook points (`hook_names`): `hook_z.{t}`, t = 0 … L, (B, d+1, n+1) the
    input and the output of layer t; `hook_scores.{t}`, `hook_pattern.{t}`, t = 1 … L,
    (B, H, n+1, n+1), layer t's `hook_scores` and `hook_pattern` (also reachable on the layer
    itself, `model.layers[t-1].hooks(...)`, under its own names).
    """

    def __init__(
        self,
        config: SoftmaxAttentionConfig,
        n_layers: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.config = config
        self.init_args = {"n_layers": n_layers}  # rebuilt from a checkpoint with these
        self.hook_points = HookPoints()
        if generator is None:
            generator = torch.Generator().manual_seed(0)  # never the global RNG
        self.layers = nn.ModuleList(
            SoftmaxAttention(config, generator=generator, dtype=dtype, device=device)
            for _ in range(n_layers)
        )

    def forward(self, Z: Tensor, n_context: Tensor | None = None) -> Tensor:
        """(B, d+1, n+1) → (B, d+1, n+1) through every layer."""
        if len(self.hook_points) == 0:
            for layer in self.layers:
                Z = layer(Z, n_context)
            return Z
        Z = self.hook_points("hook_z.0", Z)
        for t, layer in enumerate(self.layers, start=1):
            with layer.hook_points.attach(self._relay(t)):
                Z = layer(Z, n_context)
            Z = self.hook_points(f"hook_z.{t}", Z)
        return Z

    def _relay(self, t: int) -> list[tuple[NameMatcher, HookFn]]:
        """A hook for layer t that fires its `hook_scores` / `hook_pattern` as this model's
        `hook_scores.{t}` / `hook_pattern.{t}` (only when some hook wants those names)."""
        names = {"hook_scores": f"hook_scores.{t}", "hook_pattern": f"hook_pattern.{t}"}

        def wanted(name: str) -> bool:
            return name in names and self.hook_points.active(names[name])

        def relay(tensor: Tensor, name: str) -> Tensor:
            return self.hook_points(names[name], tensor)

        return [(wanted, relay)]

    def predict(self, Z: Tensor, n_context: Tensor | None = None) -> Tensor:
        """`ŷ = +[Z_L]_{d+1, n+1}`: (B,)."""
        return self.forward(Z, n_context)[:, -1, -1]

    def hook_names(self) -> list[str]:
        """The hook names a forward pass fires, in order."""
        names = ["hook_z.0"]
        for t in range(1, len(self.layers) + 1):
            names += [f"hook_scores.{t}", f"hook_pattern.{t}", f"hook_z.{t}"]
        return names

    def run_with_cache(
        self, Z: Tensor, n_context: Tensor | None = None, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(Z_L, cache)`: cache maps hook name → detached activation, for names passing the
        filter (None: all; a name; a list of names; a predicate)."""
        return self._run_cached(names_filter, Z, n_context)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> StackedSoftmaxAttention:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): two layers of
        `example_config()`, weights from seed 0."""
        generator = torch.Generator().manual_seed(0)
        return cls(example_config(), 2, generator=generator, dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(Z,)`: B regression prompts (B, d+1, n+1) of n = 5 standard normal points."""
        return (example_regression_prompt(generator, batch_size, self.config.d, 5, like=self),)

    def extra_repr(self) -> str:
        c = self.config
        layers = len(self.layers)
        return f"layers={layers}, d={c.d}, heads={c.n_heads}, kind={c.kind}, mask={c.mask}"


MODELS.register("softmax", StackedSoftmaxAttention)
MODELS.register("softmax-layer", SoftmaxAttention)
