"""The transformer of in-context TD learning, stacked or looped (SPEC §5; Wang, Blaser, Daneshmand,
Zhang 2025, "Transformers learn temporal difference methods for in-context reinforcement
learning").

Prompt (`icgd.core.td_prompts.build_td_prompt`, kind ``"td"``): `Z ∈ R^{D×(n+1)}`, `D = 2d+1`,
context column i `[φ_i; γφ'_i; r_i]`, query column `[φ_q; 0; 0]`, batched as `(B, D, n+1)`.
One layer with H heads (H = 1 by default) is

    Z ← Z + (1/n) Σ_h P_h Z M σ(Zᵀ Q_h Z),         v̂(φ_q) = −Z_L[D, n+1],

with P_h, Q_h ∈ R^{D×D}. `S = Zᵀ Q Z` is the (n+1)×(n+1) score matrix, `S[k, j] = z_kᵀ Q z_j`
(row k = key token, column j = the token being updated), and M is a fixed mask:

- ``mask="td0"``: `M = diag(1, …, 1, 0)`: only the n context tokens act as keys/values.
- ``mask="td_lambda"``: `M[i, k] = β^{i−k}` for `k ≤ i < n` (β = `trace_decay`, lower
  triangular over the context block), 0 in the query's row and column. Then
  `(Z M)[:, k] = Σ_{i≥k} β^{i−k} z_i`, so the value of token i reaches the score of every key
  k ≤ i with weight β^{i−k}: with TD weights the layer takes a step along the eligibility traces
  `e_i = Σ_{k≤i} β^{i−k} φ_k` (`icgd.constructions.td`). β = 0 is the td0 mask. This is SPEC's
  `λ^{row−col}` mask, as in the paper's reference code, i.e. β = λ (no γ factor; textbook TD(λ)
  would be β = γλ — see `icgd.algorithms.td`).

Activation σ on the scores (ours where the paper's code leaves it implicit):

- ``"linear"``: σ(S) = S (the paper's linear transformer; the TD constructions need it).
- ``"relu"``: σ(S) = max(S, 0) elementwise, same 1/n prefactor.
- ``"softmax"``: `σ(S)[k, j] = n · softmax_{k ≤ n}(S[k, j])`: a softmax over the n context keys
  of each column j (the query is never a key), scaled by n so that `(1/n) σ(S)` is a
  column-stochastic average over keys and the 1/n prefactor is shared by all activations.

Kind ``"average_reward"`` (ours: SPEC's "extra r̄ row, two heads"; the paper's exact prompt was not
available to us) widens the prompt to `D = 2d+4` rows (`build_average_reward_prompt`):

    context column i: [φ_i; φ'_i; r_i; 1; r̄_0; r_i − r̄_0],     query: [φ_q; 0; 0; 0; 0; 0],

rows `φ` (0…d−1), `φ'` (d…2d−1, undiscounted), reward `r` (2d), context flag `1` (2d+1), the
reward-rate estimate `r̄` (2d+2, the same in every context column) and the TD-error/value row (2d+3,
the last). The value is again `−Z_L[D, n+1]` and `read_average_reward(Z)` reads `r̄` from the
first context column. The construction uses two heads (`n_heads=2`).

Parameters, with `D` as above, `H = n_heads`: `P`, `Q` of shape `(L, D, D)` (stacked) or `(D, D)`
(looped) when H = 1, and `(L, H, D, D)` / `(H, D, D)` when H > 1. `layer_matrices()` returns
both as `(n_unique, H, D, D)` whatever the layout. Init: every entry i.i.d. `N(0, init_std²)`
(the reference code trains from a small random init: xavier-normal with gain 0.1, i.e. std
`0.1/√D` ≈ 0.033 at d = 4, and gain 0.1/L per layer when stacked; the default 0.03 is that scale).

Cost. For σ = linear and no score/pattern hook attached, associativity gives
`P Z M (Zᵀ Q Z) = P (Z M Zᵀ) Q Z`: O(n D² + n² D) per prompt and no (n+1)×(n+1) matrix per head.
Otherwise the explicit scores are built.

Hook points: `hook_z.{t}`, t = 0..L (t = 0 the input, t the output of layer/loop t);
`hook_scores.{t}` and `hook_pattern.{t}`, t = 1..L, shape `(B, n+1, n+1)` (H = 1) or
`(B, H, n+1, n+1)`: the raw scores `Zᵀ Q Z` of layer t computed from `Z_{t−1}` and the mixing
matrix `A = M σ(S)` (so the update is `(1/n) Σ_h P_h Z A_h`). A hook that replaces the scores or the
pattern makes that layer use the replacement.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.core.td_prompts import build_td_prompt
from icgd.models.api import example_normal, layer_steps, register_normal_parameters
from icgd.models.hooks import HookedMixin, HookPoints, NamesFilter
from icgd.models.plugins import MODELS

Activation = Literal["linear", "softmax", "relu"]
MaskKind = Literal["td0", "td_lambda"]
PromptKind = Literal["td", "average_reward"]


class TDTransformerConfig(Config):
    """Architecture of an in-context TD transformer (everything needed to rebuild it)."""

    d: PositiveInt = 4
    """Feature dimension; the prompt has `2d+1` rows (`2d+4` for kind="average_reward")."""
    n_layers: PositiveInt = 3
    """L: number of stacked layers, or the default loop count of a looped model."""
    looped: bool = False
    """True: one shared layer (P, Q) applied `n_layers` times."""
    kind: PromptKind = "td"
    """`td`: the prompt of `icgd.core.td_prompts`; `average_reward`: that of
    `build_average_reward_prompt` (module docstring)."""
    n_heads: PositiveInt = 1
    activation: Activation = "linear"
    mask: MaskKind = "td0"
    trace_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    """β of the `td_lambda` mask `M[i, k] = β^{i−k}`; must stay 0 with mask="td0"."""
    init_std: float = Field(default=0.03, ge=0.0)
    """Every entry of P and Q is drawn from N(0, init_std²) at init."""

    @model_validator(mode="after")
    def _decay_needs_td_lambda(self) -> TDTransformerConfig:
        if self.mask == "td0" and self.trace_decay != 0.0:
            raise ValueError(
                f"trace_decay: {self.trace_decay} is only used with mask='td_lambda' (mask='td0')"
            )
        return self

    @property
    def width(self) -> int:
        """D: rows of the prompt."""
        return 2 * self.d + (4 if self.kind == "average_reward" else 1)


def hook_names(n_loops: int) -> list[str]:
    """All hook names of a run with `n_loops` layers/loops, in the order they fire."""
    names = ["hook_z.0"]
    for t in range(1, n_loops + 1):
        names += [f"hook_scores.{t}", f"hook_pattern.{t}", f"hook_z.{t}"]
    return names


def td_mask(
    n: int,
    kind: MaskKind = "td0",
    trace_decay: float = 0.0,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> Tensor:
    """The mask M: (n+1, n+1). `td0`: diag(1, …, 1, 0); `td_lambda`: `M[i, k] = β^{i−k}` for
    k ≤ i < n, zero above the diagonal and in the query's row and column (module docstring)."""
    beta = 0.0 if kind == "td0" else float(trace_decay)
    idx = torch.arange(n + 1, device=device)
    lag = idx[:, None] - idx[None, :]  # (n+1, n+1): i − k
    base = torch.tensor(beta, dtype=dtype, device=device)
    M = torch.where(lag >= 0, torch.pow(base, lag.clamp_min(0)), torch.zeros_like(base))
    M[n, :] = 0.0  # the query is neither a value ...
    M[:, n] = 0.0  # ... nor a key
    return M


class TDTransformer(HookedMixin, nn.Module):
    """Stacked or looped linear (or relu/softmax) attention on TD prompts; module docstring."""

    def __init__(
        self,
        config: TDTransformerConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        D, H = config.width, config.n_heads
        shape = (() if config.looped else (config.n_layers,)) + ((H,) if H > 1 else ()) + (D, D)
        register_normal_parameters(
            self, {"P": shape, "Q": shape}, config.init_std, generator, dtype=dtype, device=device
        )

    # ---------------------------------------------------------------------------------- weights

    def layer_matrices(self) -> tuple[Tensor, Tensor]:
        """`P`, `Q` of every unique layer and head, each (n_unique, H, D, D) (views, with grad)."""
        P, Q = self.P, self.Q
        if self.config.n_heads == 1:
            P, Q = P.unsqueeze(-3), Q.unsqueeze(-3)  # add the head axis
        if self.config.looped:
            P, Q = P.unsqueeze(0), Q.unsqueeze(0)  # add the layer axis
        return P, Q

    # ------------------------------------------------------------------------------------- math

    def _n_steps(self, n_loops: int | None) -> int:
        return layer_steps(n_loops, self.config.n_layers, self.config.looped)

    def _check_input(self, Z: Tensor) -> None:
        D = self.config.width
        if Z.ndim != 3 or Z.shape[1] != D or Z.shape[2] < 2:
            raise ValueError(
                f"Z must have shape (B, D, n+1) = (B, {D}, n+1) with n >= 1 "
                f"(kind={self.config.kind!r}, d={self.config.d}), got {tuple(Z.shape)}"
            )

    def mask(self, n: int, like: Tensor) -> Tensor:
        """This model's mask M for n context tokens: (n+1, n+1) in like's dtype/device."""
        c = self.config
        return td_mask(n, c.mask, c.trace_decay, dtype=like.dtype, device=like.device)

    def _activate(self, S: Tensor) -> Tensor:
        """σ(S) on scores (B, H, n+1, n+1), keys along dim −2 (module docstring)."""
        kind = self.config.activation
        if kind == "linear":
            return S
        if kind == "relu":
            return torch.relu(S)
        n = S.shape[-1] - 1
        keys = S[..., :n, :]  # (B, H, n, n+1): the context keys of every column
        weights = n * torch.softmax(keys, dim=-2)
        return torch.cat([weights, torch.zeros_like(S[..., n:, :])], dim=-2)  # query key row 0

    def _layer(self, Z: Tensor, P: Tensor, Q: Tensor, M: Tensor, t: int) -> Tensor:
        """One layer `Z + (1/n) Σ_h P_h Z M σ(Zᵀ Q_h Z)`: Z (B, D, n+1), P, Q (H, D, D)."""
        n = Z.shape[2] - 1
        heads = self.config.n_heads
        s_name, a_name = f"hook_scores.{t}", f"hook_pattern.{t}"
        explicit = self.hook_points.active(s_name) or self.hook_points.active(a_name)
        if self.config.activation == "linear" and not explicit:
            if self.config.mask == "td0":  # M = diag(1, …, 1, 0): Z M Zᵀ sums the context only
                context = Z[:, :, :n]  # (B, D, n)
                K = torch.bmm(context, context.transpose(1, 2))  # (B, D, D) = Z M Zᵀ
            else:
                K = torch.bmm(Z @ M, Z.transpose(1, 2))  # (B, D, D) = Z M Zᵀ
            if heads == 1:
                W = P[0] @ K @ Q[0]  # (B, D, D)
            else:
                W = torch.einsum("hab,Bbc,hcd->Bad", P, K, Q)  # (B, D, D) = Σ_h P_h K Q_h
            return Z + torch.bmm(W, Z) / n
        S = torch.einsum("Bak,hab,Bbj->Bhkj", Z, Q, Z)  # (B, H, n+1, n+1): z_kᵀ Q_h z_j
        if heads == 1:
            S = self.hook_points(s_name, S.squeeze(1)).unsqueeze(1)
        else:
            S = self.hook_points(s_name, S)
        A = torch.einsum("ik,Bhkj->Bhij", M, self._activate(S))  # (B, H, n+1, n+1) = M σ(S)
        if heads == 1:
            A = self.hook_points(a_name, A.squeeze(1)).unsqueeze(1)
        else:
            A = self.hook_points(a_name, A)
        return Z + torch.einsum("hab,Bbi,Bhij->Baj", P, Z, A) / n  # (B, D, n+1)

    # -------------------------------------------------------------------------------- public API

    def forward(self, Z: Tensor, n_loops: int | None = None) -> Tensor:
        """`Z_L` (B, D, n+1) from the prompt `Z_0` (B, D, n+1).

        `n_loops` (looped models only) overrides the number of loops; a stacked model accepts only
        `None` or `n_layers`.
        """
        self._check_input(Z)
        n_steps = self._n_steps(n_loops)
        P, Q = self.layer_matrices()  # (n_unique, H, D, D) each
        M = self.mask(Z.shape[2] - 1, Z)  # (n+1, n+1)
        Z = self.hook_points("hook_z.0", Z)
        for t in range(1, n_steps + 1):
            layer = 0 if self.config.looped else t - 1
            Z = self._layer(Z, P[layer], Q[layer], M, t)
            Z = self.hook_points(f"hook_z.{t}", Z)
        return Z

    def value(self, Z: Tensor, n_loops: int | None = None) -> Tensor:
        """`v̂(φ_q) = −Z_L[D, n+1]`: (B,)."""
        return -self.forward(Z, n_loops=n_loops)[:, -1, -1]

    def hook_names(self, n_loops: int | None = None) -> list[str]:
        """The hook names a forward pass with `n_loops` (default: `n_layers`) fires."""
        return hook_names(self._n_steps(n_loops))

    def run_with_cache(
        self, Z: Tensor, n_loops: int | None = None, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(Z_L, cache)`: cache maps hook name → detached activation, for names passing the filter
        (None: all; a name; a list of names; a predicate). Scores and patterns are computed (the
        explicit path) only when a `hook_scores.{t}`/`hook_pattern.{t}` name passes the filter."""
        return self._run_cached(names_filter, Z, n_loops=n_loops)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> TDTransformer:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): d = 2, two stacked linear
        layers, weights N(0, 0.1²) from seed 0."""
        config = TDTransformerConfig(d=2, n_layers=2, init_std=0.1)
        return cls(config, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(Z,)`: B TD prompts (B, 2d+1, n+1) (`build_td_prompt`, γ = 0.9; "average_reward"
        models: `build_average_reward_prompt`, r̄ = 0) of n = 5 standard normal transitions."""
        B, n, d = int(batch_size), 5, self.config.d
        phi = example_normal(generator, B, n + 1, d, like=self)  # (B, n+1, d) φ(s_0 … s_n)
        rewards = example_normal(generator, B, n, like=self)  # (B, n)
        if self.config.kind == "average_reward":
            return (build_average_reward_prompt(phi[:, :-1], phi[:, 1:], rewards, phi[:, -1]),)
        return (build_td_prompt(phi[:, :-1], phi[:, 1:], rewards, phi[:, -1], 0.9),)

    def extra_repr(self) -> str:
        c = self.config
        kind = "looped" if c.looped else "stacked"
        mask = c.mask if c.mask == "td0" else f"td_lambda(β={c.trace_decay})"
        return (
            f"d={c.d}, L={c.n_layers} ({kind}), kind={c.kind}, heads={c.n_heads}, "
            f"activation={c.activation}, mask={mask}"
        )


# ------------------------------------------------------------------ average-reward prompt layout


def average_reward_rows(d: int) -> dict[str, int | slice]:
    """Row indices of the average-reward prompt (module docstring): D = 2d+4."""
    return {
        "phi": slice(0, d),
        "phi_next": slice(d, 2 * d),
        "reward": 2 * d,
        "flag": 2 * d + 1,
        "rbar": 2 * d + 2,
        "td": 2 * d + 3,
    }


def build_average_reward_prompt(
    phi: Tensor, phi_next: Tensor, rewards: Tensor, phi_q: Tensor, *, rbar0: float | Tensor = 0.0
) -> Tensor:
    """The average-reward TD prompt: Z (B, 2d+4, n+1) with context column i
    `[φ_i; φ'_i; r_i; 1; r̄_0; r_i − r̄_0]` and query `[φ_q; 0; 0; 0; 0; 0]` (the TD errors of
    `w_0 = 0`, `r̄_0`). phi, phi_next: (B, n, d); rewards: (B, n); phi_q: (B, d); rbar0: a number
    or (B,)."""
    B, n, d = phi.shape
    rows = average_reward_rows(d)
    rbar = torch.as_tensor(rbar0, dtype=phi.dtype, device=phi.device).expand(B)  # (B,)
    Z = phi.new_zeros(B, 2 * d + 4, n + 1)
    Z[:, rows["phi"], :n] = phi.transpose(1, 2)  # (B, d, n)
    Z[:, rows["phi_next"], :n] = phi_next.transpose(1, 2)
    Z[:, rows["reward"], :n] = rewards
    Z[:, rows["flag"], :n] = 1.0
    Z[:, rows["rbar"], :n] = rbar[:, None]
    Z[:, rows["td"], :n] = rewards - rbar[:, None]
    Z[:, rows["phi"], n] = phi_q
    return Z


def read_average_reward(Z: Tensor) -> Tensor:
    """The reward-rate estimate r̄ held in the first context column of an average-reward prompt
    (B, 2d+4, n+1) → (B,)."""
    d = (Z.shape[1] - 4) // 2
    return Z[:, average_reward_rows(d)["rbar"], 0]


MODELS.register("td-transformer", TDTransformer)
