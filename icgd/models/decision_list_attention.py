"""One softmax attention layer on one-hot tokens, the decision-list learner (SPEC §3).

Model of "Provable Gradient-Descent-Based Learning of Decision Lists by Transformers". The
vocabulary size L is the embedding size; a sequence `s = (s_1, …, s_n) ∈ [L]^n` (0-based token ids
here) is the one-hot matrix `X = [e_{s_1} | … | e_{s_n}] ∈ R^{L×n}`, batched as (B, L, n). With
`W, V ∈ R^{L×L}` and σ the softmax over each **column**,

    f_{W,V}(X) = σ(V X σ(Xᵀ W X)) ∈ R^{L×n}.

Written out: scores `S = Xᵀ W X ∈ R^{n×n}`, `S_{ij} = e_{s_i}ᵀ W e_{s_j} = W[s_i, s_j]` (row i = key
position, column j = query position); attention `A = σ(S)`, column j a distribution over the key
positions i; logits `Z = V X A ∈ R^{L×n}`, column j = `Σ_i A_{ij} V[:, s_i]`; class probabilities
`f = σ(Z)`, column j a distribution over the L classes for position j. Every position is a query and
every position (itself included) is a key: no mask. No temperature: it is absorbed into W.

Loss of one sequence with labels `y ∈ [L]^n`: `ℓ(s, y) = (1/n) Σ_j −log f(X)_{y_j, j}`. `loss`
averages ℓ over a batch, or with `weights` (B,) returns `Σ_b w_b ℓ(s_b, y_b)`: with the batch being
every sequence and `w_b` its probability, that is the exact population loss.

Parametrisations (`parametrisation`):

- `full`: W a free L×L matrix, the paper's model. Parameters `W` (L, L), `V` (L, L).
- `factored`: `W = W_Kᵀ W_Q` with `W_K, W_Q ∈ R^{r×L}` (rank r, default L), as in a standard
  attention head; gradient descent on (W_K, W_Q) is a different dynamics from GD on W, which is
  the point of offering it. Parameters `W_K`, `W_Q` (r, L), `V` (L, L).

`W_eff` is W (or `W_Kᵀ W_Q`) in both cases. Training modes that fix `V = cP` (SPEC §3, claim 1)
call `set_weights(V=c * P)` and freeze V (`model.V.requires_grad_(False)`).

Two forward paths that agree to float64 round-off (tested): `forward(seqs)` works on token ids by
indexing (`S = W[s_i, s_j]`, `V X = V[:, s]`), O(B n² + B n L) work, no one-hot product; and
`forward_onehot(X)` is the literal matrix formula, for tests and for soft (non one-hot) inputs.

Hook points (in firing order, both paths): `hook_scores` (B, n, n) the scores `S_{ij}` (row i =
key, column j = query); `hook_attention` (B, n, n) the attention A (each column sums to 1);
`hook_logits` (B, L, n) the logits Z. A hook that replaces one changes everything downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import register_normal_parameters
from icgd.models.hooks import (
    HookedMixin,
    HookPoints,
    NamesFilter,
)
from icgd.models.plugins import MODELS

DecisionListParametrisation = Literal["full", "factored"]
DecisionListInit = Literal["zero", "normal"]

DECISION_LIST_HOOK_NAMES = ("hook_scores", "hook_attention", "hook_logits")


class DecisionListAttentionConfig(Config):
    """Architecture and initialisation of the decision-list attention layer (module docstring)."""

    L: PositiveInt = 8
    """Vocabulary size = embedding size = number of classes."""
    parametrisation: DecisionListParametrisation = "full"
    """`full`: a free W (the paper's model); `factored`: W = W_Kᵀ W_Q of rank ≤ `rank`."""
    rank: PositiveInt | None = None
    """r, the rows of W_K and W_Q (`factored` only); None: L."""
    init: DecisionListInit = "zero"
    """`zero`: every parameter 0 (the paper's W₀ = 0); `normal`: N(0, init_std²) entries."""
    init_std: float = Field(default=0.02, ge=0.0)
    """Standard deviation of the `normal` init (ignored by `zero`)."""

    @model_validator(mode="after")
    def _consistent(self) -> DecisionListAttentionConfig:
        if self.rank is not None and self.parametrisation != "factored":
            raise ValueError("rank: used by parametrisation 'factored' only")
        if self.parametrisation == "factored" and self.init == "zero":
            # W_K = W_Q = 0 is a saddle: ∂/∂W_K ∝ W_Q and ∂/∂W_Q ∝ W_K, so GD never leaves it.
            raise ValueError(
                "init: 'zero' with parametrisation 'factored' is a saddle that gradient descent "
                "never leaves (W_K = W_Q = 0 get zero gradient); use init 'normal'"
            )
        return self

    @property
    def r(self) -> int:
        """The rank of the factorisation (`factored`), L when `rank` is None."""
        return self.L if self.rank is None else self.rank


def sequence_loss(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Cross-entropy of column-softmax logits: a scalar.

    logits Z (B, L, n), labels y (B, n) integers in [0, L). Per sequence
    `ℓ_b = (1/n) Σ_j −log σ(Z_b)_{y_bj, j}` (σ over the L classes, computed with log_softmax);
    returns `mean_b ℓ_b`, or `Σ_b w_b ℓ_b` with `weights` (B,) (pass a probability vector for a
    population loss; it is not renormalised).
    """
    if labels.shape != (logits.shape[0], logits.shape[2]):
        raise ValueError(
            f"labels must have shape (B, n) = {(logits.shape[0], logits.shape[2])}, "
            f"got {tuple(labels.shape)}"
        )
    log_f = torch.log_softmax(logits, dim=1)  # (B, L, n): log-probabilities over classes
    picked = log_f.gather(1, labels.unsqueeze(1)).squeeze(1)  # (B, n): log f_{y_j, j}
    per_sequence = -picked.mean(dim=1)  # (B,): ℓ_b
    if weights is None:
        return per_sequence.mean()
    if weights.shape != per_sequence.shape:
        raise ValueError(
            f"weights must have shape (B,) = ({logits.shape[0]},), got {tuple(weights.shape)}"
        )
    return (weights.to(per_sequence.dtype) * per_sequence).sum()


class DecisionListAttention(HookedMixin, nn.Module):
    """`f_{W,V}(X) = σ(V X σ(Xᵀ W X))` on token sequences; see the module docstring."""

    def __init__(
        self,
        config: DecisionListAttentionConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        L = config.L
        shapes: dict[str, tuple[int, ...]] = (
            {"W": (L, L)}
            if config.parametrisation == "full"
            else {"W_K": (config.r, L), "W_Q": (config.r, L)}
        )
        shapes["V"] = (L, L)
        if config.init == "zero":
            for name, shape in shapes.items():
                zeros = torch.zeros(shape, dtype=dtype, device=device)
                self.register_parameter(name, nn.Parameter(zeros))
        else:
            register_normal_parameters(
                self, shapes, config.init_std, generator, dtype=dtype, device=device
            )

    # ----------------------------------------------------------------------------- weights

    @property
    def W_eff(self) -> Tensor:
        """The key-query matrix (L, L): W (`full`) or `W_Kᵀ W_Q` (`factored`)."""
        if self.config.parametrisation == "full":
            return self.W
        return self.W_K.T @ self.W_Q  # (L, r) @ (r, L) → (L, L)

    @torch.no_grad()
    def set_weights(
        self,
        *,
        W: Tensor | None = None,
        V: Tensor | None = None,
        W_K: Tensor | None = None,
        W_Q: Tensor | None = None,
    ) -> DecisionListAttention:
        """Copy the given matrices into the parameters in place (others unchanged); returns self.

        `W` for `full` only; `W_K`, `W_Q` (r, L) for `factored` only. Values are cast to the
        parameters' dtype and device; `requires_grad` is left as it is (freeze V yourself).
        """
        full = self.config.parametrisation == "full"
        given = {"W": W, "V": V, "W_K": W_K, "W_Q": W_Q}
        for name, value in given.items():
            if value is None:
                continue
            if name == "W" and not full or name in ("W_K", "W_Q") and full:
                raise ValueError(
                    f"{name}: not a parameter of parametrisation {self.config.parametrisation!r}"
                )
            param: nn.Parameter = getattr(self, name)
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(
                    f"{name} must have shape {tuple(param.shape)}, got {tuple(value.shape)}"
                )
            param.copy_(value.to(dtype=param.dtype, device=param.device))
        return self

    # -------------------------------------------------------------------------------- math

    def _check_seqs(self, seqs: Tensor) -> None:
        if seqs.ndim != 2 or seqs.dtype != torch.int64:
            raise ValueError(
                f"seqs must be an int64 tensor of shape (B, n), got {seqs.dtype} "
                f"of shape {tuple(seqs.shape)}"
            )
        # Negative ids would index from the end silently, so range-check before indexing.
        if seqs.numel() and (int(seqs.min()) < 0 or int(seqs.max()) >= self.config.L):
            raise ValueError(f"seqs must hold token ids in [0, {self.config.L}), got ids outside")

    def scores(self, seqs: Tensor) -> Tensor:
        """`S_{ij} = W[s_i, s_j]`: (B, n, n) from seqs (B, n), row i = key, column j = query."""
        self._check_seqs(seqs)
        if self.config.parametrisation == "full":
            return self.W[seqs.unsqueeze(2), seqs.unsqueeze(1)]  # (B, n, n): W[s_i, s_j]
        K = self.W_K.T[seqs]  # (B, n, r): row i = W_K e_{s_i}
        Q = self.W_Q.T[seqs]  # (B, n, r): row j = W_Q e_{s_j}
        return K @ Q.transpose(1, 2)  # (B, n, n): (W_K e_{s_i})ᵀ (W_Q e_{s_j})

    def _head(self, S: Tensor, VX: Tensor) -> Tensor:
        """From scores S (B, n, n) and values `V X` (B, L, n) to logits `Z = V X σ(S)` (B, L, n),
        firing the hooks."""
        hooked = len(self.hook_points) > 0
        if hooked:
            S = self.hook_points("hook_scores", S)
        A = torch.softmax(S, dim=-2)  # (B, n, n): softmax over the keys i of each column j
        if hooked:
            A = self.hook_points("hook_attention", A)
        Z = VX @ A  # (B, L, n): column j = Σ_i A_ij V[:, s_i]
        if hooked:
            Z = self.hook_points("hook_logits", Z)
        return Z

    # --------------------------------------------------------------------------- public API

    def forward(self, seqs: Tensor) -> Tensor:
        """Logits `Z = V X σ(Xᵀ W X)`: (B, L, n) from token ids seqs (B, n), by indexing."""
        S = self.scores(seqs)  # (B, n, n)
        VX = self.V.T[seqs].transpose(1, 2)  # (B, n, L) → (B, L, n): column i = V[:, s_i]
        return self._head(S, VX)

    def forward_onehot(self, X: Tensor) -> Tensor:
        """Logits `Z = V X σ(Xᵀ W X)`: (B, L, n) from X (B, L, n), the literal matrix formula
        (X need not be one-hot)."""
        L = self.config.L
        if X.ndim != 3 or X.shape[1] != L:
            raise ValueError(f"X must have shape (B, L, n) = (B, {L}, n), got {tuple(X.shape)}")
        S = X.transpose(1, 2) @ self.W_eff @ X  # (B, n, L) @ (L, L) @ (B, L, n) → (B, n, n)
        return self._head(S, self.V @ X)  # V X: (B, L, n)

    def attention(self, seqs: Tensor) -> Tensor:
        """`A = σ(Xᵀ W X)`: (B, n, n), column j (query position) a distribution over key
        positions i. Hooks on `hook_scores` apply; `hook_attention` is not fired here."""
        S = self.scores(seqs)
        if len(self.hook_points) > 0:
            S = self.hook_points("hook_scores", S)
        return torch.softmax(S, dim=-2)

    def probs(self, seqs: Tensor) -> Tensor:
        """`f = σ(Z)`: (B, L, n), column j the class distribution of position j."""
        return torch.softmax(self.forward(seqs), dim=1)

    def predict(self, seqs: Tensor) -> Tensor:
        """The predicted class of every position, `argmax_c f_{c, j}`: (B, n) int64."""
        return self.forward(seqs).argmax(dim=1)

    def loss(self, seqs: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
        """`mean_b ℓ(s_b, y_b)`, or `Σ_b w_b ℓ(s_b, y_b)` with weights (B,) (e.g. sequence
        probabilities: the exact population loss); labels (B, n). See `sequence_loss`."""
        return sequence_loss(self.forward(seqs), labels, weights)

    def loss_fn(
        self, seqs: Tensor, labels: Tensor, weights: Tensor | None = None
    ) -> Callable[[Mapping[str, Tensor]], Tensor]:
        """The loss as a pure function of a parameter dict (for `torch.func`, e.g. Hessians).

        `fn({"W": W, "V": V})` evaluates `loss(seqs, labels, weights)` at those values; parameters
        left out of the dict keep the module's current values (e.g. a fixed V).
        """

        def fn(params: Mapping[str, Tensor]) -> Tensor:
            logits = torch.func.functional_call(self, dict(params), (seqs,), strict=False)
            return sequence_loss(logits, labels, weights)

        return fn

    def hook_names(self) -> list[str]:
        """The hook names a forward pass fires, in order."""
        return list(DECISION_LIST_HOOK_NAMES)

    def run_with_cache(
        self, seqs: Tensor, names_filter: NamesFilter = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(logits, cache)`: cache maps hook name → detached activation, for names passing the
        filter (None: all; a name; a list of names; a predicate)."""
        return self._run_cached(names_filter, seqs)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> DecisionListAttention:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): L = 5, a free W, weights
        N(0, 0.5²) from seed 0 (not the paper's W₀ = 0, so that attention is not uniform)."""
        config = DecisionListAttentionConfig(L=5, init="normal", init_std=0.5)
        return cls(config, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
        """`(seqs,)`: B sequences (B, 4) of iid uniform tokens, int64 on the model's device."""
        seqs = torch.randint(0, self.config.L, (int(batch_size), 4), generator=generator,
                             device=generator.device)  # fmt: skip
        return (seqs.to(self.V.device),)

    def extra_repr(self) -> str:
        c = self.config
        rank = f", rank={c.r}" if c.parametrisation == "factored" else ""
        return f"L={c.L}, parametrisation={c.parametrisation}{rank}, init={c.init}"


MODELS.register("decision-list-attention", DecisionListAttention)
