"""Linear attention whose heads have separate rank-one keys and queries (Zhang, Singh, Latham, Saxe
2025, "Training dynamics of in-context learning in linear attention", the separate-KQ model).

Prompt (`icgd.core.prompts.build_prompt`): `Z ∈ R^{(d+1)×(n+1)}`, context columns
`z_i = [x_i; y_i]`, query column `[x_q; 0]`, batched as `(B, d+1, n+1)`. Head h has a key vector
`k_h ∈ R^d`, a query vector `q_h ∈ R^d` and a value `v_h ∈ R`; its key-query product
`W_KQ^h = k_h q_hᵀ` has rank one.
Keys and values come from the n context tokens, the query from the query token:

    ŷ = Σ_h (1/n) Σ_{i≤n} (v_h y_i) (k_hᵀ x_i) (q_hᵀ x_q)
      = x_qᵀ Γ (1/n) Xᵀ y,        Γ = Σ_h v_h q_h k_hᵀ  ∈ R^{d×d}.

So the model is one step of preconditioned GD from w = 0 with preconditioner Γ, a sum of H rank-one
matrices, each the product of three factors (v_h, q_h, k_h). That product structure is what makes
gradient descent from a small initialisation learn Γ one principal direction of the input
covariance at a time (a plateau, then a drop, per direction; `rank-one-heads`).

The reduction (ours): in the paper a head's key, query and value read whole tokens `[x; y]`. We keep
one path that carries the regression signal: the value reads the label `y_i`, the key and the
query read the covariates. The terms we drop are of three kinds. Terms even in the labels (e.g.
`(v_xᵀ x_i)(k_xᵀ x_i)`) are uncorrelated with `y_q` when `w* ~ N(0, I)` (flip w* → −w*), so
they only add loss. Terms through the query's label entry never reach ŷ, since that entry is 0.
The mixed term, with the value reading `x_i` and the key reading `y_i`, has our form again:
`x_qᵀ (k_{h,y} q_h v_{h,x}ᵀ) (1/n) Xᵀ y`, a second rank-one term with the roles of key and value
swapped. We keep one such term per head.

Shapes: parameters `v` (H,), `k` (H, d), `q` (H, d), each drawn N(0, init_std²) (in float64 from
the generator, then cast: the same seed gives the same initial point in every dtype). Cost: without
hooks the context is summed first, `h = (1/n) Xᵀ y`, O(B n d + B d H) per batch; with a hook
attached every token's key and value is formed, O(B n d H) (the same function; the contract suite
checks the two paths agree).

Hook points, in firing order: `hook_keys` (B, n, H) `k_hᵀ x_i`; `hook_values` (B, n, H) `v_h y_i`;
`hook_queries` (B, H) `q_hᵀ x_q`; `hook_heads` (B, H) each head's share of ŷ, which sums over
heads to the output. A hook that replaces one of them changes the prediction accordingly.

Sign convention: `forward(Z) = predict(Z) = ŷ` (B,), with no minus sign (unlike
`LinearSelfAttention.predict`, the sign lives in `v_h`). The query column's label entry is ignored.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import example_regression_prompt, register_normal_parameters
from icgd.models.hooks import HookedMixin, HookPoints, NamesFilter
from icgd.models.plugins import MODELS

RANK_ONE_HOOK_NAMES = ("hook_keys", "hook_values", "hook_queries", "hook_heads")


class RankOneAttentionConfig(Config):
    """Architecture of a rank-one-head linear attention layer (everything needed to rebuild it)."""

    d: PositiveInt = 4
    n_heads: PositiveInt = 8
    init_std: float = Field(default=0.02, ge=0.0)
    """Every parameter is drawn from N(0, init_std²) at init."""


class RankOneAttention(HookedMixin, nn.Module):
    """H heads with separate rank-one key `k_h`, query `q_h` and scalar value `v_h`; see the module
    docstring for the math. Parameters: `v` (H,), `k` (H, d), `q` (H, d)."""

    def __init__(
        self,
        config: RankOneAttentionConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        d, H = config.d, config.n_heads
        shapes = {"v": (H,), "k": (H, d), "q": (H, d)}
        register_normal_parameters(
            self, shapes, config.init_std, generator, dtype=dtype, device=device
        )

    # ----------------------------------------------------------------------------- weights

    @property
    def W_KQ(self) -> Tensor:
        """Per-head key-query products (H, d, d), rank one each: `x_iᵀ W_KQ^h x_q` is head h's
        score between context token i and the query."""
        return self.k.unsqueeze(-1) * self.q.unsqueeze(-2)  # (H, d, d): k_h q_hᵀ

    def head_preconditioners(self) -> Tensor:
        """Each head's share of Γ, `v_h q_h k_hᵀ`: (H, d, d)."""
        return self.v[:, None, None] * self.q.unsqueeze(-1) * self.k.unsqueeze(-2)

    def preconditioner(self) -> Tensor:
        """`Γ = Σ_h v_h q_h k_hᵀ` (d, d): the model predicts `ŷ = x_qᵀ Γ (1/n) Xᵀ y`."""
        return self.head_preconditioners().sum(0)

    # --------------------------------------------------------------------------------- math

    def _check_input(self, Z: Tensor) -> None:
        d = self.config.d
        if Z.ndim != 3 or Z.shape[1] != d + 1 or Z.shape[2] < 2:
            raise ValueError(
                f"Z must have shape (B, d+1, n+1) = (B, {d + 1}, n+1) with n >= 1, "
                f"got {tuple(Z.shape)}"
            )

    def forward(self, Z: Tensor) -> Tensor:
        """`ŷ` (B,) from the prompt Z (B, d+1, n+1)."""
        self._check_input(Z)
        d, n = self.config.d, Z.shape[2] - 1
        queries = Z[:, :d, n] @ self.q.T  # (B, H): q_hᵀ x_q
        if len(self.hook_points) == 0:
            # Training path: sum over the context first, h = (1/n) Xᵀ y, O(B n d + B d H).
            h = torch.bmm(Z[:, :d, :n], Z[:, d, :n].unsqueeze(-1)).squeeze(-1) / n  # (B, d)
            return ((h @ self.k.T) * self.v * queries).sum(-1)  # (B,): Σ_h v_h (k_hᵀh)(q_hᵀx_q)
        # Inspection path: every token's key and value, O(B n d H), each through its hook.
        X = Z[:, :d, :n].transpose(1, 2)  # (B, n, d) context covariates
        keys = self.hook_points("hook_keys", X @ self.k.T)  # (B, n, H): k_hᵀ x_i
        values = self.hook_points("hook_values", Z[:, d, :n].unsqueeze(-1) * self.v)  # (B, n, H)
        queries = self.hook_points("hook_queries", queries)
        heads = (values * keys).sum(1) / n * queries  # (B, H)
        return self.hook_points("hook_heads", heads).sum(-1)  # (B,)

    def predict(self, Z: Tensor) -> Tensor:
        """`ŷ` (B,): the same as `forward` (the name the regression losses call)."""
        return self.forward(Z)

    # --------------------------------------------------------------------------- public API

    def hook_names(self) -> list[str]:
        """The hook names a forward pass fires, in order."""
        return list(RANK_ONE_HOOK_NAMES)

    def run_with_cache(
        self, Z: Tensor, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(ŷ, cache)`: cache maps hook name → detached activation, for names passing the filter
        (None: all; a name; a list of names; a predicate)."""
        return self._run_cached(names_filter, Z)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> RankOneAttention:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): d = 3, four heads, weights
        N(0, 0.5²) from seed 0."""
        config = RankOneAttentionConfig(d=3, n_heads=4, init_std=0.5)
        return cls(config, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(Z,)`: B regression prompts (B, d+1, n+1) of n = 5 standard normal points."""
        return (example_regression_prompt(generator, batch_size, self.config.d, 5, like=self),)

    def extra_repr(self) -> str:
        return f"d={self.config.d}, heads={self.config.n_heads} (rank-one key and query each)"


MODELS.register("rank-one-attention", RankOneAttention)
