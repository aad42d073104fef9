"""Linear self-attention (LSA) for in-context linear regression, stacked or looped (SPEC §1.1).

Prompt (`icgd.core.prompts.build_prompt`): `Z ∈ R^{(d+1)×(n+1)}`, context columns
`z_i = [x_i; y_i]`, query column `[x_q; 0]`, batched as `(B, d+1, n+1)`. With the mask
`M = diag(1, …, 1, 0)` (keys and values come from the n context tokens only)
one layer with H heads is

    Z_{l+1} = Z_l + (1/n) Σ_h P_{l,h} Z_l M (Z_lᵀ Q_{l,h} Z_l),        ŷ = −[Z_L]_{d+1, n+1}

(Ahn, Cheng, Daneshmand, Sra 2023, "Transformers learn to implement preconditioned gradient
descent for in-context learning"). A looped model applies one shared set of heads L times, and L can
be changed at call time (Gatmiry, Saunshi, Reddi, Jegelka, Kumar 2024, "Can looped transformers
learn to implement multi-step gradient descent for in-context learning?").

Parametrisations of each head (blocks split as d + 1):

- `full`:     free `P, Q ∈ R^{(d+1)×(d+1)}`.
- `sparse`:   `P = [[0, 0], [0, 1]]`, `Q = −[[A, 0], [0, 0]]` ("GD" form). Only the label row moves
  and, by induction, it holds the residuals `y_i − x_iᵀ w_l` (query: `−x_qᵀ w_l`) with `w_0 = 0`,
  `w_{l+1} = w_l − (Σ_h A_{l,h}ᵀ) ∇R(w_l)`, `∇R(w) = Ŝ w − (1/n) Xᵀ y`: preconditioned GD.
- `sparse_u`: `P = [[0, 0], [uᵀ, 1]]`, `Q = −[[A, 0], [0, 0]]` (Gatmiry's sparse set; they write
  `Z − (1/n) Attn` with `Q = [[A, 0], [0, 0]]`, the same model).
- `relaxed`:  `P = [[B, 0], [0, 1]]`, `Q = −[[A, 0], [0, 0]]` (Ahn §5: covariates move too).

Cost. Linear attention is associative, `P Z M (Zᵀ Q Z) = P (Z M Zᵀ) Q Z`, so `full` and
`relaxed` form the `(d+1)×(d+1)` moment `C = Z M Zᵀ` first: O(n d²) per prompt. `sparse` and
`sparse_u` move the label row only, O(n d) per prompt (see `_label_row_update`). The explicit
`(n+1)×(n+1)` score matrix is built only when the `hook_scores.{t}` hook is requested.

Hook points: `hook_z.{t}`, t = 0..L (t = 0 the input, t the output of layer/loop t), and
`hook_scores.{t}`, t = 1..L, shape (B, H, n+1, n+1): `M Zᵀ Q Z` of layer t computed from `Z_{t-1}`
(row i = key token i, the query's key row is zero). A hook that replaces the scores makes that
layer use them: `Z + (1/n) Σ_h P_h Z S_h`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import example_regression_prompt, layer_steps, register_normal_parameters
from icgd.models.hooks import (
    HookFn,
    HookPoints,
    NameMatcher,
    NamesFilter,
    caching_hook,
    names_filter_to_predicate,
)
from icgd.models.plugins import MODELS

Parametrisation = Literal["full", "sparse", "sparse_u", "relaxed"]


class LSAConfig(Config):
    """Architecture of a linear self-attention model (everything needed to rebuild it)."""

    d: PositiveInt = 5
    n_layers: PositiveInt = 3
    """L: number of stacked layers, or the default loop count of a looped model."""
    looped: bool = False
    """True: one shared set of heads applied `n_layers` times (Gatmiry et al. 2024)."""
    parametrisation: Parametrisation = "sparse"
    n_heads: PositiveInt = 1
    init_std: float = Field(default=1e-4, ge=0.0)
    """Every parameter is drawn from N(0, init_std²) at init."""


def hook_names(n_loops: int) -> list[str]:
    """All hook names of an LSA run with `n_loops` layers/loops, in the order they fire."""
    names = ["hook_z.0"]
    for t in range(1, n_loops + 1):
        names += [f"hook_scores.{t}", f"hook_z.{t}"]
    return names


class LinearSelfAttention(nn.Module):
    """Stacked or looped multi-head linear self-attention; see the module docstring for the math.

    Parameters, with `n_unique = 1 if config.looped else config.n_layers`, `H = config.n_heads`:
    `full`: `P`, `Q` (n_unique, H, d+1, d+1); `sparse`: `A` (n_unique, H, d, d);
    `sparse_u`: `A` and `u` (n_unique, H, d); `relaxed`: `A` and `B` (n_unique, H, d, d).
    """

    def __init__(
        self,
        config: LSAConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        d, H = config.d, config.n_heads
        n_unique = 1 if config.looped else config.n_layers
        all_shapes: dict[str, dict[str, tuple[int, ...]]] = {
            "full": {"P": (n_unique, H, d + 1, d + 1), "Q": (n_unique, H, d + 1, d + 1)},
            "sparse": {"A": (n_unique, H, d, d)},
            "sparse_u": {"A": (n_unique, H, d, d), "u": (n_unique, H, d)},
            "relaxed": {"A": (n_unique, H, d, d), "B": (n_unique, H, d, d)},
        }
        shapes = all_shapes[config.parametrisation]
        register_normal_parameters(
            self, shapes, config.init_std, generator, dtype=dtype, device=device
        )

    # ----------------------------------------------------------------------------------- math

    def layer_matrices(self) -> tuple[Tensor, Tensor]:
        """Effective full `P`, `Q` of every unique layer and head, each (n_unique, H, d+1, d+1)."""
        d = self.config.d
        kind = self.config.parametrisation
        if kind == "full":
            return self.P, self.Q
        A = self.A  # (n_unique, H, d, d)
        Q = A.new_zeros(*A.shape[:2], d + 1, d + 1)
        Q[..., :d, :d] = -A
        P = A.new_zeros(*A.shape[:2], d + 1, d + 1)
        P[..., d, d] = 1.0
        if kind == "sparse_u":
            P[..., d, :d] = self.u
        elif kind == "relaxed":
            P[..., :d, :d] = self.B
        return P, Q

    def _n_steps(self, n_loops: int | None) -> int:
        return layer_steps(n_loops, self.config.n_layers, self.config.looped)

    def _check_input(self, Z: Tensor) -> None:
        d = self.config.d
        if Z.ndim != 3 or Z.shape[1] != d + 1 or Z.shape[2] < 2:
            raise ValueError(
                f"Z must have shape (B, d+1, n+1) = (B, {d + 1}, n+1) with n >= 1, "
                f"got {tuple(Z.shape)}"
            )

    def _label_row_update(self, X_all: Tensor, label: Tensor, layer: int) -> Tensor:
        """`sparse`/`sparse_u`: the change of the label row, (B, n+1), in O(n d) per prompt.

        X_all: (B, n+1, d) covariates of every token (they never move); label: (B, n+1).
        With `P_h`'s last row `(u_hᵀ, 1)` and `z_iᵀ Q_h z_j = −x_iᵀ A_h x_j`,
        `Δ_j = −(1/n) Σ_h Σ_{i≤n} (u_hᵀ x_i + r_i) x_iᵀ A_h x_j = −x_jᵀ Σ_h A_hᵀ v_h`,
        `v_h = (1/n) Xᵀ (r + X u_h)`, for every column j including the query (`u = 0` for sparse).
        Plain (batched) matmuls throughout: einsum's generic path is many times slower here.
        """
        n = X_all.shape[1] - 1
        X = X_all[:, :n]  # (B, n, d) context covariates
        r = label[:, :n]  # (B, n) label row of the context = residuals
        A = self.A[layer]  # (H, d, d)
        H, d = A.shape[0], A.shape[1]
        if self.config.parametrisation == "sparse":
            g = torch.bmm(r.unsqueeze(1), X).squeeze(1) / n  # (B, d) = (1/n) Xᵀ r
            w_step = g @ A.sum(dim=0)  # (B, d) = (Σ_h A_h)ᵀ g
        else:
            values = r.unsqueeze(-1) + X @ self.u[layer].T  # (B, n, H): r + X u_h
            v = torch.bmm(values.transpose(1, 2), X) / n  # (B, H, d) = (1/n) Xᵀ (r + X u_h)
            w_step = v.reshape(-1, H * d) @ A.reshape(H * d, d)  # (B, d) = Σ_h A_hᵀ v_h
        return -torch.bmm(X_all, w_step.unsqueeze(-1)).squeeze(-1)  # (B, n+1): −x_jᵀ w_step

    def _forward_label_rows(self, Z: Tensor, n_steps: int) -> Tensor:
        """Training path of `sparse`/`sparse_u` when no hook is attached: carry the fixed
        covariates (B, n+1, d) and the moving label row (B, n+1) apart, and build Z_L once at the
        end, instead of slicing and re-assembling Z every layer (which dominated the step time)."""
        d = self.config.d
        X_all = Z[:, :d, :].transpose(1, 2).contiguous()  # (B, n+1, d)
        label = Z[:, d, :]  # (B, n+1)
        for t in range(1, n_steps + 1):
            layer = 0 if self.config.looped else t - 1
            label = label + self._label_row_update(X_all, label, layer)
        return torch.cat([Z[:, :d, :], label.unsqueeze(1)], dim=1)  # (B, d+1, n+1)

    def _moment_update(self, Z: Tensor, P: Tensor, Q: Tensor) -> Tensor:
        """`full`/`relaxed`: `(1/n) Σ_h P_h (Z M Zᵀ) Q_h Z`, (B, d+1, n+1); O(n d²) per prompt."""
        n = Z.shape[2] - 1
        Zc = Z[:, :, :n]  # (B, d+1, n) context tokens
        C = torch.bmm(Zc, Zc.transpose(1, 2))  # (B, d+1, d+1) = Z M Zᵀ
        PC = torch.einsum("hab,Bbc->Bhac", P, C)  # (B, H, d+1, d+1)
        W = torch.einsum("Bhac,hcd->Bad", PC, Q)  # (B, d+1, d+1) = Σ_h P_h C Q_h
        return torch.bmm(W, Z) / n

    @staticmethod
    def scores(Z: Tensor, Q: Tensor) -> Tensor:
        """The masked score matrices `M Zᵀ Q_h Z`: (B, H, n+1, n+1), the query's key row zeroed."""
        S = torch.einsum("Bai,hab,Bbj->Bhij", Z, Q, Z)  # (B, H, n+1, n+1), S[i, j] = z_iᵀ Q z_j
        mask = torch.ones(Z.shape[2], dtype=Z.dtype, device=Z.device)
        mask[-1] = 0.0  # M = diag(1, …, 1, 0): the query is not a key
        return S * mask[:, None]

    def _layer(self, Z: Tensor, layer: int, t: int, P: Tensor | None, Q: Tensor | None) -> Tensor:
        """Layer `layer` of the parameters applied as step `t`; `P`, `Q` from `layer_matrices()`
        (needed by `full`/`relaxed` and by the scores hook, None otherwise)."""
        d = self.config.d
        n = Z.shape[2] - 1
        name = f"hook_scores.{t}"
        if P is not None and Q is not None and self.hook_points.active(name):
            # Inspection path: the explicit (n+1)×(n+1) scores, patchable by the hook.
            S = self.scores(Z, Q[layer])
            S_hooked = self.hook_points(name, S)
            if S_hooked is not S:
                return Z + torch.einsum("hab,Bbi,Bhij->Baj", P[layer], Z, S_hooked) / n
        if self.config.parametrisation in ("sparse", "sparse_u"):
            X_all = Z[:, :d, :].transpose(1, 2)  # (B, n+1, d)
            label = Z[:, d, :] + self._label_row_update(X_all, Z[:, d, :], layer)  # (B, n+1)
            return torch.cat([Z[:, :d, :], label.unsqueeze(1)], dim=1)  # (B, d+1, n+1)
        assert P is not None and Q is not None
        return Z + self._moment_update(Z, P[layer], Q[layer])

    # ------------------------------------------------------------------------------- public API

    def forward(self, Z: Tensor, n_loops: int | None = None) -> Tensor:
        """`Z_L` (B, d+1, n+1) from the prompt `Z_0` (B, d+1, n+1).

        `n_loops` (looped models only) overrides the number of loops; a stacked model accepts only
        `None` or `n_layers`.
        """
        self._check_input(Z)
        n_steps = self._n_steps(n_loops)
        if self.config.parametrisation in ("sparse", "sparse_u") and len(self.hook_points) == 0:
            return self._forward_label_rows(Z, n_steps)
        wants_scores = any(
            self.hook_points.active(f"hook_scores.{t}") for t in range(1, n_steps + 1)
        )
        if self.config.parametrisation in ("full", "relaxed") or wants_scores:
            P, Q = self.layer_matrices()  # (n_unique, H, d+1, d+1) each
        else:
            P = Q = None  # the sparse fast paths read `A`, `u` directly
        Z = self.hook_points("hook_z.0", Z)
        for t in range(1, n_steps + 1):
            layer = 0 if self.config.looped else t - 1
            Z = self._layer(Z, layer, t, P, Q)
            Z = self.hook_points(f"hook_z.{t}", Z)
        return Z

    def predict(self, Z: Tensor, n_loops: int | None = None) -> Tensor:
        """`ŷ = −[Z_L]_{d+1, n+1}`: (B,)."""
        return -self.forward(Z, n_loops=n_loops)[:, -1, -1]

    def hook_names(self, n_loops: int | None = None) -> list[str]:
        """The hook names a forward pass with `n_loops` (default: `n_layers`) fires."""
        return hook_names(self._n_steps(n_loops))

    @contextmanager
    def hooks(
        self, fwd_hooks: Sequence[tuple[NameMatcher, HookFn]]
    ) -> Iterator[LinearSelfAttention]:
        """Attach `[(name or predicate, fn(tensor, name) -> tensor | None)]` inside a `with` block.

        The hooks are always removed on exit, also when the block raises.
        """
        with self.hook_points.attach(fwd_hooks):
            yield self

    def run_with_cache(
        self, Z: Tensor, n_loops: int | None = None, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(Z_L, cache)`: cache maps hook name → detached activation, for names passing the filter.

        `names_filter`: None (all), a name, a list of names or a predicate. Scores are computed only
        if a `hook_scores.{t}` name passes the filter.
        """
        cache: dict[str, Tensor] = {}
        with self.hooks([(names_filter_to_predicate(names_filter), caching_hook(cache))]):
            out = self.forward(Z, n_loops=n_loops)
        return out, cache

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> LinearSelfAttention:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): d = 3, two stacked layers
        of two `full` heads, weights N(0, 0.1²) from seed 0."""
        config = LSAConfig(d=3, n_layers=2, parametrisation="full", n_heads=2, init_std=0.1)
        return cls(config, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(Z,)`: B regression prompts (B, d+1, n+1) of n = 5 standard normal points."""
        return (example_regression_prompt(generator, batch_size, self.config.d, 5, like=self),)

    def extra_repr(self) -> str:
        c = self.config
        kind = "looped" if c.looped else "stacked"
        return (
            f"d={c.d}, L={c.n_layers} ({kind}), parametrisation={c.parametrisation}, "
            f"heads={c.n_heads}"
        )


MODELS.register("lsa", LinearSelfAttention)
