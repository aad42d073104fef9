"""The decision-list task of "Provable Gradient-Descent-Based Learning of Decision Lists by
Transformers" (SPEC §3).

Vocabulary `[L] = {0, …, L−1}`; a sequence `s = (s_0, …, s_{n−1}) ∈ [L]^n`. The target is fixed
by two objects, both drawn once from `config.seed`:

- a permutation π of [L], and its matrix P (L × L) with `P e_a = e_{π(a)}`;
- for every token a a decision list `L_a = (a_1, …, a_m)`, 1 ≤ m ≤ M, of distinct tokens that
  ends in the token itself, `a_m = a`.

The label of position j, holding token `a = s_j`, is `π(a_k)` for the smallest k with `a_k ∈ s`
(`a_k` occurs anywhere in the sequence, at any position, j included): `a_k` is the
*label-determining token* of position j. It always exists since `a_m = a = s_j ∈ s`. Positions
holding the same token have the same label.

Layout (other modules rely on these names and shapes; all tensors on `device`):

- `perm` (L,) int64, `perm[a] = π(a)`; `P` (L, L) with `P[π(a), a] = 1`, so `P e_a = e_{π(a)}`
  and `(P X)[:, j] = e_{π(s_j)}`.
- `lists` (L, M) int64: row a is `L_a` followed by −1 padding, `lists[a, lengths[a] − 1] = a`;
  `lengths` (L,) int64.
- sequences `seqs` (B, n) int64; the paper's one-hot matrix `X = [e_{s_0} | … | e_{s_{n−1}}]`
  batched as (B, L, n), one column per position (`one_hot`).
- `labels`, `determining_tokens`, `determining_positions` (B, n) int64;
  `determining_mask` (B, n, n) bool, `[b, j, i]` true iff position i holds the label-determining
  token of position j (several i when the token repeats).

Ours (the paper fixes neither the lists nor the sequence distribution):

- `list_length`: "uniform" — each list's length m is uniform on 1 … M, independently per token;
  "fixed" — every list has length M. The m − 1 entries before a are distinct tokens ≠ a drawn
  uniformly without replacement, in uniformly random order.
- `sequence_sampler`: "iid" — the n tokens iid uniform on [L] (tokens may repeat); "subset" — a
  uniformly random ordered sequence of n distinct tokens (a uniform n-subset in uniform random
  order; needs n ≤ L).

Randomness. The target (π, lengths, lists) is a pure function of `config.seed`: it is drawn on the
CPU from `make_generator(config.seed)` in the order π (`randperm(L)`), then the lengths
(`randint(1, M+1, (L,))`, "uniform" only), then float64 uniforms (L, L) whose row-wise order
(argsort, computed as the M smallest by `topk`) orders the candidate entries; it is then moved
to `device`, so it does not depend on the device.
Sequences come from the `torch.Generator` passed to `sample` (on `device`).

Layout `token-sequence` of the `Task` protocol (`icgd.tasks.api`): a batch is `seqs` (B, n) int64;
the model's input is `one_hot(seqs)` (B, L, n) and the targets are `labels(seqs)` (B, n).
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, StrictInt, model_validator
from torch import Tensor

from icgd.core.config import Config
from icgd.core.rng import make_generator
from icgd.tasks.plugins import TASKS

PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]

ListLength = Literal["uniform", "fixed"]
SequenceSampler = Literal["iid", "subset"]

DEFAULT_MAX_SEQUENCES = 2_000_000


class DecisionListsConfig(Config):
    """The decision-list task (module docstring for the definitions).

    - `L`: vocabulary size (= embedding size d of the paper), ≥ 2.
    - `n`: sequence length, ≥ 1.
    - `M`: maximal list length, 1 ≤ M ≤ L (the paper's M ≪ L).
    - `list_length`: "uniform" (each list's length uniform on 1 … M) or "fixed" (all of length M).
      Ours: the paper does not say how the lists are drawn.
    - `sequence_sampler`: "iid" (tokens iid uniform on [L]) or "subset" (n distinct tokens, a
      uniform random n-subset in uniform random order; needs n ≤ L). Ours: the paper does not fix
      the sequence distribution.
    - `seed`: seed of the target, the permutation π and the lists (not of the sequences, which
      come from the generator passed to `DecisionLists.sample`).
    """

    L: Annotated[StrictInt, Field(ge=2)] = 10
    n: PositiveInt = 4
    M: PositiveInt = 3
    list_length: ListLength = "uniform"
    sequence_sampler: SequenceSampler = "iid"
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _check_sizes(self) -> DecisionListsConfig:
        if self.M > self.L:
            raise ValueError(f"M: must be <= L={self.L}, got {self.M}")
        if self.sequence_sampler == "subset" and self.n > self.L:
            raise ValueError(
                f"n: must be <= L={self.L} when sequence_sampler is 'subset' "
                f"(n distinct tokens), got {self.n}"
            )
        return self


def one_hot(seqs: Tensor, L: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The paper's `X = [e_{s_0} | … | e_{s_{n−1}}]`: seqs (..., n) int64 → X (..., L, n) of `dtype`
    (one column per position, `X[..., a, i] = 1` iff `s_i = a`)."""
    return torch.nn.functional.one_hot(seqs, L).transpose(-1, -2).to(dtype)  # (..., L, n)


def _draw_target(cfg: DecisionListsConfig) -> tuple[Tensor, Tensor, Tensor]:
    """π (L,), lists (L, M) and lengths (L,), int64 on the CPU, from `cfg.seed` (module docstring).

    Row a of the uniforms U (L, L) gets `U[a, a] = +inf`, so its argsort lists the L − 1 tokens ≠ a
    in uniformly random order, then a; the first m − 1 of them are m − 1 distinct tokens ≠ a drawn
    uniformly without replacement, and entry m − 1 is set to a. No loop over tokens; the
    construction holds the (L, L) float64 uniforms, so it costs O(L²) time and memory (L = 4000:
    128 MB, about 0.3 s on one CPU core).
    """
    L, M = cfg.L, cfg.M
    g = make_generator(cfg.seed)
    perm = torch.randperm(L, generator=g)  # (L,) perm[a] = π(a)
    if cfg.list_length == "uniform":
        lengths = torch.randint(1, M + 1, (L,), generator=g)  # (L,)
    else:
        lengths = torch.full((L,), M, dtype=torch.int64)
    noise = torch.rand(L, L, generator=g, dtype=torch.float64)  # (L, L)
    noise.fill_diagonal_(math.inf)  # token a sorts last in its own row
    # (L, M) the M smallest of each row in increasing order (= argsort[:, :M], in O(L²) time):
    # distinct tokens ≠ a, then a itself if M = L
    order = noise.topk(M, dim=1, largest=False, sorted=True).indices
    tokens = torch.arange(L)
    k = torch.arange(M)  # (M,) position in a list
    last = (lengths - 1).unsqueeze(1)  # (L, 1)
    lists = torch.where(k < last, order, tokens.unsqueeze(1))  # (L, M) a at position m − 1
    lists = torch.where(k > last, torch.full_like(lists, -1), lists)  # −1 padding after it
    return perm, lists, lengths


class DecisionLists:
    """The decision-list task: the target (π, P, lists) of `config.seed` and a sequence sampler.

    Attributes (module docstring for the layout): `config`, `L`, `n`, `M`, `perm` (L,) int64,
    `P` (L, L) `dtype`, `lists` (L, M) int64 (−1 padded), `lengths` (L,) int64, `device`, `dtype`.
    A `Task` (`icgd.tasks.api`) of layout `token-sequence`.
    """

    layout: ClassVar[str] = "token-sequence"

    def __init__(
        self,
        config: DecisionListsConfig,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.L, self.n, self.M = config.L, config.n, config.M
        self.device = torch.device(device)
        self.dtype = dtype
        perm, lists, lengths = _draw_target(config)
        self.perm = perm.to(self.device)
        self.lists = lists.to(self.device)
        self.lengths = lengths.to(self.device)
        P = torch.zeros(self.L, self.L, dtype=dtype, device=self.device)
        P[self.perm, torch.arange(self.L, device=self.device)] = 1  # P[π(a), a] = 1
        self.P = P

    @classmethod
    def example(cls) -> DecisionLists:
        """A tiny instance: L = 6 tokens, sequences of n = 4, lists of at most M = 3."""
        return cls(DecisionListsConfig(L=6, n=4, M=3))

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The tensor of `sample(batch_size, g)`: seqs (B, n) int64."""
        return {"seqs": (int(batch_size), self.n)}

    # --- sequences ---------------------------------------------------------------------------

    def sample(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Draw `batch_size` sequences: seqs (B, n) int64 on `device`, all randomness from
        `generator` (on `device`).

        "iid": `randint(0, L, (B, n))`. "subset": float64 uniforms (B, L) whose argsort is a
        uniform random permutation of [L] per row; its first n entries are a uniform n-subset in
        uniform random order.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        B, L, n = int(batch_size), self.L, self.n
        if self.config.sequence_sampler == "iid":
            return torch.randint(0, L, (B, n), generator=generator, device=self.device)
        noise = torch.rand(B, L, generator=generator, device=self.device, dtype=torch.float64)
        return noise.argsort(dim=1)[:, :n]  # (B, n) distinct tokens

    def num_sequences(self) -> int:
        """The number of sequences of positive probability: L^n ("iid"), L!/(L−n)! ("subset")."""
        if self.config.sequence_sampler == "iid":
            return self.L**self.n
        return math.perm(self.L, self.n)

    def enumerate(self, max_sequences: int = DEFAULT_MAX_SEQUENCES) -> tuple[Tensor, Tensor]:
        """Every sequence of positive probability and its exact probability.

        Returns seqs (N, n) int64 in lexicographic order (position 0 most significant) and probs
        (N,) float64 on `device`: N = L^n with probability L^−n each ("iid"), or N = L!/(L−n)!
        ordered sequences of distinct tokens with probability 1/N each ("subset").

        Raises ValueError when N > `max_sequences` (checked before anything is built). Batched:
        row r is the mixed-radix expansion of r (radix L at every position for "iid"; radices
        L, L−1, …, L−n+1 for "subset", whose digit c_i picks the c_i-th smallest token not yet
        used — a loop over the n positions only).
        """
        L, n = self.L, self.n
        N = self.num_sequences()
        if N > max_sequences:
            raise ValueError(
                f"enumerate: {N} sequences (L={L}, n={n}, sequence_sampler="
                f"'{self.config.sequence_sampler}') exceed max_sequences={max_sequences}"
            )
        idx = torch.arange(N, device=self.device)  # (N,)
        if self.config.sequence_sampler == "iid":
            radices = [L] * n
        else:
            radices = [L - i for i in range(n)]
        digits = []  # position i's digit, most significant first
        rest = idx
        for radix in reversed(radices):
            digits.append(rest % radix)
            rest = rest // radix
        digits.reverse()
        if self.config.sequence_sampler == "iid":
            seqs = torch.stack(digits, dim=1)  # (N, n)
        else:
            seqs = torch.empty(N, n, dtype=torch.int64, device=self.device)
            for i in range(n):
                # the c-th smallest unused token: step c past every used token ≤ it, in
                # ascending order of the used tokens
                token = digits[i].clone()  # (N,)
                used = seqs[:, :i].sort(dim=1).values  # (N, i)
                for k in range(i):
                    token += (used[:, k] <= token).long()
                seqs[:, i] = token
        probs = torch.full((N,), 1.0 / N, dtype=torch.float64, device=self.device)
        return seqs, probs

    # --- labels ------------------------------------------------------------------------------

    def _check(self, seqs: Tensor) -> None:
        if seqs.ndim != 2 or seqs.dtype != torch.int64:
            raise ValueError(
                f"seqs must be a (B, n) int64 tensor, got shape {tuple(seqs.shape)}, {seqs.dtype}"
            )
        if seqs.numel() and (seqs.min() < 0 or seqs.max() >= self.L):
            raise ValueError(f"seqs must hold tokens in 0 … {self.L - 1}")

    def determining_positions(self, seqs: Tensor) -> Tensor:
        """(B, n) int64: for each position j, the 0-based index k in `L_{s_j}` of its
        label-determining token, the smallest k with `lists[s_j, k]` in the sequence.

        Batched: presence (B, L+1) of each token in the sequence (column L, always false, stands
        for the −1 padding); membership (B, n, M) = presence of `lists[s_j, k]`; k = the number of
        leading false entries along M.
        """
        self._check(seqs)
        B, n = seqs.shape
        L, M = self.L, self.M
        present = torch.zeros(B, L + 1, dtype=torch.bool, device=seqs.device)  # (B, L+1)
        present.scatter_(1, seqs, True)
        entries = self.lists[seqs]  # (B, n, M)
        entries = torch.where(entries < 0, L, entries)  # padding → the never-present column
        member = torch.gather(present, 1, entries.reshape(B, n * M)).reshape(B, n, M)
        return (member.long().cumsum(dim=-1) == 0).sum(dim=-1)  # (B, n) leading misses

    def determining_tokens(self, seqs: Tensor) -> Tensor:
        """(B, n) int64: the label-determining token `a_k` of each position (module docstring)."""
        k = self.determining_positions(seqs)  # (B, n)
        entries = self.lists[seqs]  # (B, n, M)
        return torch.gather(entries, 2, k.unsqueeze(-1)).squeeze(-1)  # (B, n)

    def labels(self, seqs: Tensor) -> Tensor:
        """(B, n) int64: the label `π(a_k)` of each position, a_k its label-determining token."""
        return self.perm[self.determining_tokens(seqs)]

    def determining_mask(self, seqs: Tensor) -> Tensor:
        """(B, n, n) bool: `[b, j, i]` true iff position i of sequence b holds the
        label-determining token of position j (at least one i per j)."""
        det = self.determining_tokens(seqs)  # (B, n)
        return det.unsqueeze(2) == seqs.unsqueeze(1)  # (B, n_j, n_i)

    def one_hot(self, seqs: Tensor) -> Tensor:
        """`one_hot(seqs, L, dtype)`: X (B, L, n) in the task's dtype."""
        return one_hot(seqs, self.L, self.dtype)


TASKS.register("decision-lists", DecisionLists)
