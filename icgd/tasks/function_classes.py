"""The function classes of Garg, Tsipras, Liang, Valiant 2022 ("What can transformers learn
in-context? A case study of simple function classes"), their curriculum and test-time shifts
(SPEC §2.2).

A prompt is `n` points `x_0 … x_{n−1}` and labels `y_i = f(x_i) + σ ε_i` of one random function f:

    x_i ~ N(0, I_d), with the coordinates beyond `d_active` set to 0 (Garg's curriculum),
    ε_i ~ N(0, 1).

The classes (`kind`), each as in Garg et al.'s code (`src/tasks.py`, github.com/dtsip/
in-context-learning), normalised so that `E[f(x)²] = d` for the regression classes:

- "linear": `f(x) = wᵀx`, `w ~ N(0, I_d)`.
- "sparse_linear": `f(x) = wᵀx`, w has exactly `sparsity` (default 3) non-zeros, N(0, 1), on a
  uniformly random support. Ours: the support is drawn among the `d_active` active coordinates;
  Garg's code draws it among all d, so during the curriculum some of its non-zeros multiply a zero
  coordinate.
- "noisy_linear": "linear" with label noise `σ = noise_std` (default 1, the value of Garg's
  noisy-linear evaluation; we do not renormalise y as its `renormalize_ys` option does).
- "quadratic": `f(x) = (x ⊙ x)ᵀ w / √3`, `w ~ N(0, I_d)`, ⊙ elementwise: Garg's "renormalise to
  linear-regression scale", since `E[x_j⁴] = 3` gives `E[f(x)²] = d`.
- "relu_net": `f(x) = √(2/h) Σ_{j ≤ h} a_j ReLU(w_jᵀ x)`, `w_j ~ N(0, I_d)`, `a_j ~ N(0, 1)`,
  h = `hidden` (default 100): Garg's `√(2/h)` scaling, under which `E[f(x)² | x] = ‖x‖²` (each
  `E ReLU(w_jᵀx)² = ‖x‖²/2`).
- "decision_tree": a complete binary tree of depth `depth` (default 4) in heap layout: internal
  node `v` (0 … 2^depth − 2, children `2v+1`, `2v+2`) tests coordinate `c_v` (uniform on the
  active coordinates; Garg's code draws it on all d) and goes to the right child iff `x_{c_v} > 0`
  (threshold 0), the left otherwise; leaf ℓ (node `2^depth − 1 + ℓ`) holds a value `N(0, 1)`. As in
  Garg et al., the outputs are not normalised (`E[f(x)²] = 1`). Depth 4: 15 internal nodes,
  16 leaves, so at most 16 distinct outputs per prompt. (Garg's code stores one coordinate and one
  value per node of the whole 31-node tree and uses only the relevant ones; we store only those.)

Queries. `x_q[:, i]` is the input at which the prediction of position i is scored, after seeing
the prefix `x_0 … x_{i−1}` (Garg's "next point" evaluation: `x_q = X`, `y_q = y`, unless the
shift is "orthogonal_query"). For a prefix baseline of `icgd.algorithms.prefix` (convention (b)),
`prefix_ols(X[:, :-1], y[:, :-1], x_q[:, 1:])` predicts positions 1 … n−1.

Test-time shifts (`shift.kind`, following Garg et al.'s `src/eval.py` `build_evals`):

- "skewed_covariance": `x ~ N(0, Σ)` on the active coordinates, `Σ = U diag(s) Uᵀ`,
  `s_i ∝ 1/i²` (i = 1 … d_active) normalised so `tr Σ = d_active`, U Haar-random fixed by
  `shift.rotation_seed`: Garg's "skewed" (`x = z T`, `T = U diag(1/i) Uᵀ √(d/Σ_i i⁻²)`).
- "orthogonal_query": `x_q[:, i]` is the component of `x_i` orthogonal to
  `span(x_0 … x_{i−1})`, rescaled to the norm of `x_i`, and `y_q[:, i]` its label (the context is
  unchanged): Garg's "orthogonal_train_test". Once `i ≥ d_active` the span is the whole active
  space and no such direction exists: then `x_q[:, i] = 0` (Garg's code leaves those queries 0 too)
  and `y_q[:, i] = f(0) + noise` (f(0) = 0 except for trees).
- "scale_x": every input multiplied by `shift.factor` (context and queries): `y = f(c x)`.
- "scale_y": every output multiplied by `shift.factor`: `y = c f(x)` (for linear classes, w → c w;
  Garg's task `scale`).
- "noisy_y": independent `N(0, shift.noise_std²)` noise added to every label (on top of the
  class's own noise; one draw with the combined standard deviation).

Randomness: all of it comes from the `torch.Generator` passed to `sample`, in the order inputs
z (B, n, d), the function's parameters (per kind, documented in `sample`), label noise ε (B, n)
(always drawn, so inputs and functions do not depend on σ). The skewed rotation is a pure function
of `shift.rotation_seed`.

Layout `next-point` of the `Task` protocol (`icgd.tasks.api`): a batch is a `FunctionClassBatch`,
X (B, n, d), y (B, n), the queries x_q (B, n, d), y_q (B, n) scored after each prefix, and the
function's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, FiniteFloat, StrictInt, model_validator
from torch import Tensor

from icgd.core.config import Config
from icgd.tasks.linear_regression import haar_orthogonal
from icgd.tasks.plugins import TASKS

PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
NonNegativeFiniteFloat = Annotated[FiniteFloat, Field(ge=0)]
PositiveFiniteFloat = Annotated[FiniteFloat, Field(gt=0)]

FunctionKind = Literal[
    "linear", "sparse_linear", "noisy_linear", "quadratic", "relu_net", "decision_tree"
]
ShiftKind = Literal[
    "none", "skewed_covariance", "orthogonal_query", "scale_x", "scale_y", "noisy_y"
]


class ShiftConfig(Config):
    """A test-time distribution shift (module docstring).

    - `kind`: "none", "skewed_covariance", "orthogonal_query", "scale_x", "scale_y", "noisy_y".
    - `factor`: c > 0 for "scale_x" / "scale_y" (Garg et al. use 1/3, 1/2, 2, 3).
    - `noise_std`: the added label-noise std for "noisy_y" (Garg et al. use 1).
    - `rotation_seed`: the seed of the Haar rotation U of "skewed_covariance".
    Each field is used only by the kinds named.
    """

    kind: ShiftKind = "none"
    factor: PositiveFiniteFloat = 2.0
    noise_std: NonNegativeFiniteFloat = 1.0
    rotation_seed: NonNegativeInt = 0


class FunctionClassConfig(Config):
    """Distribution of prompts of one function class (module docstring for the definitions).

    - `kind`: the class; `d`: input dimension; `n_points`: points per prompt.
    - `sparsity`: non-zeros of w, 1 ≤ sparsity ≤ d ("sparse_linear" only).
    - `noise_std`: label-noise std σ ≥ 0 ("noisy_linear" only).
    - `hidden`: hidden units h ("relu_net" only); `depth`: tree depth, 1 … 12 ("decision_tree").
    - `shift`: a test-time shift (`ShiftConfig`), "none" for training.
    """

    kind: FunctionKind = "linear"
    d: PositiveInt = 20
    n_points: PositiveInt = 41
    sparsity: PositiveInt = 3
    noise_std: NonNegativeFiniteFloat = 1.0
    hidden: PositiveInt = 100
    depth: Annotated[StrictInt, Field(ge=1, le=12)] = 4
    shift: ShiftConfig = ShiftConfig()

    @model_validator(mode="after")
    def _check_sparsity(self) -> FunctionClassConfig:
        if self.kind == "sparse_linear" and self.sparsity > self.d:
            raise ValueError(f"sparsity: must be <= d={self.d}, got {self.sparsity}")
        return self


class ScheduleConfig(Config):
    """One curriculum variable: `start` at step 0, `+inc` every `interval` steps, capped at
    `end`."""

    start: PositiveInt
    end: PositiveInt
    inc: NonNegativeInt = 1
    interval: PositiveInt = 2000

    @model_validator(mode="after")
    def _check_end(self) -> ScheduleConfig:
        if self.end < self.start:
            raise ValueError(f"end: must be >= start={self.start}, got {self.end}")
        return self

    def at(self, step: int) -> int:
        """`min(start + ⌊step / interval⌋ · inc, end)`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return min(self.start + (int(step) // self.interval) * self.inc, self.end)


class CurriculumConfig(Config):
    """Garg et al.'s curriculum: `dims` is d_active (5 → 20, +1 every 2000 steps), `points` is
    n_points (11 → 41, +2 every 2000 steps); their `conf/*.yaml` defaults."""

    dims: ScheduleConfig = ScheduleConfig(start=5, end=20, inc=1, interval=2000)
    points: ScheduleConfig = ScheduleConfig(start=11, end=41, inc=2, interval=2000)


class Curriculum:
    """`at(step) → (d_active, n_points)` at a training step (0-based).

    Garg et al.'s `Curriculum.update` adds `inc` each time the step count reaches a multiple of
    `interval` and caps at `end`: the value at step t is `min(start + ⌊t/interval⌋·inc, end)`
    (their `get_final_var`). The inactive coordinates `d_active … d−1` of every x are zero
    (`FunctionClass.sample(..., d_active=...)`).
    """

    def __init__(self, config: CurriculumConfig | None = None) -> None:
        self.config = CurriculumConfig() if config is None else config

    def at(self, step: int) -> tuple[int, int]:
        return self.config.dims.at(step), self.config.points.at(step)


@dataclass(frozen=True)
class FunctionClassBatch:
    """A batch of B prompts of n points in dimension d.

    X: (B, n, d) inputs (zero beyond `d_active`), y: (B, n) labels; x_q: (B, n, d) and y_q: (B, n)
    the query scored at position i (after the prefix x_0 … x_{i−1}): X and y themselves unless the
    shift is "orthogonal_query". params: the function of each prompt, by kind: "w" (B, d) for the
    linear classes and "quadratic"; "W1" (B, d, h), "a" (B, h) for "relu_net"; "coords" (B, 2^D−1)
    int64 and "leaves" (B, 2^D) for "decision_tree". d_active: the active coordinates.
    """

    X: Tensor
    y: Tensor
    x_q: Tensor
    y_q: Tensor
    params: dict[str, Tensor] = field(repr=False)
    d_active: int


def evaluate_function(kind: str, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """The noiseless `f(x)` of each prompt's function: x (B, m, d) → (B, m) (module docstring).

    Batched over prompts and points; a decision tree is walked level by level with index
    arithmetic on the heap layout (node v → 2v+1+[x_{c_v} > 0]), a loop over the depth only.
    """
    if kind in ("linear", "sparse_linear", "noisy_linear"):
        return torch.einsum("bmd,bd->bm", x, params["w"])
    if kind == "quadratic":
        return torch.einsum("bmd,bd->bm", x.square(), params["w"]) / math.sqrt(3)
    if kind == "relu_net":
        W1, a = params["W1"], params["a"]  # (B, d, h), (B, h)
        hidden = torch.relu(x @ W1)  # (B, m, h)
        return math.sqrt(2 / a.shape[-1]) * torch.einsum("bmh,bh->bm", hidden, a)
    if kind == "decision_tree":
        coords, leaves = params["coords"], params["leaves"]  # (B, 2^D − 1), (B, 2^D)
        n_internal = coords.shape[-1]
        depth = int(math.log2(n_internal + 1))
        node = torch.zeros(x.shape[:2], dtype=torch.int64, device=x.device)  # (B, m) at the root
        for _ in range(depth):
            c = torch.gather(coords, 1, node)  # (B, m) coordinate tested at each point's node
            right = torch.gather(x, 2, c.unsqueeze(-1)).squeeze(-1) > 0  # (B, m) x_c > 0
            node = 2 * node + 1 + right.long()
        return torch.gather(leaves, 1, node - n_internal)  # (B, m) the leaf values
    raise ValueError(f"unknown function kind {kind!r}")


def skewed_spectrum(d: int) -> Tensor:
    """Garg et al.'s skewed spectrum `s_i = d · i⁻² / Σ_j j⁻²`, i = 1 … d (float64, sums to d)."""
    s = torch.arange(1, d + 1, dtype=torch.float64).pow(-2)
    return d * s / s.sum()


def orthogonal_queries(X: Tensor, d_active: int) -> Tensor:
    """`q_i = ‖x_i‖ · (x_i − P_{i} x_i) / ‖x_i − P_{i} x_i‖`, P_i the projection on
    `span(x_0 … x_{i−1})`, for i < d_active, and `q_i = 0` for i ≥ d_active: X (B, n, d) →
    (B, n, d).

    One reduced QR per prompt of the active block `X_aᵀ = QR` (d_active × n): Gram–Schmidt on the
    columns x_0, x_1, … gives `x_i − P_i x_i = R_ii Q_i`, so `q_i = sign(R_ii) ‖x_i‖ Q_i`.
    """
    B, n, d = X.shape
    s = min(n, d_active)
    Q, R = torch.linalg.qr(X[..., :d_active].transpose(1, 2)[..., :s])  # (B, d_a, s), (B, s, s)
    signs = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))  # (B, s)
    norms = X[:, :s].norm(dim=-1)  # (B, s)
    out = torch.zeros_like(X)
    out[:, :s, :d_active] = (Q * (signs * norms).unsqueeze(1)).transpose(1, 2)  # (B, s, d_a)
    return out


class FunctionClass:
    """Sampler of prompts of one function class (see the module docstring for the definitions).

    `sample(batch_size, generator, n=None, d_active=None)`; with a curriculum,
    `d_active, n = curriculum.at(step)` then `sample(B, g, n=n, d_active=d_active)`. A `Task`
    (`icgd.tasks.api`) of layout `next-point`.
    """

    layout: ClassVar[str] = "next-point"

    def __init__(
        self,
        config: FunctionClassConfig,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.kind = config.kind
        self.d = config.d
        self.n = config.n_points
        self.device = torch.device(device)
        self.dtype = dtype
        self._skew_maps: dict[int, Tensor] = {}

    @classmethod
    def example(cls) -> FunctionClass:
        """A tiny instance: 2-layer ReLU nets of 4 hidden units on d = 3, 6 points a prompt."""
        return cls(FunctionClassConfig(kind="relu_net", d=3, n_points=6, hidden=4))

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The tensors of `sample(batch_size, g)`: X, x_q (B, n, d), y, y_q (B, n), and the
        parameters `params.<name>` of the kind (`FunctionClassBatch`)."""
        B, n, d, cfg = int(batch_size), self.n, self.d, self.config
        if self.kind == "relu_net":
            params = {"params.W1": (B, d, cfg.hidden), "params.a": (B, cfg.hidden)}
        elif self.kind == "decision_tree":
            leaves = 2**cfg.depth
            params = {"params.coords": (B, leaves - 1), "params.leaves": (B, leaves)}
        else:
            params = {"params.w": (B, d)}
        return {"X": (B, n, d), "y": (B, n), "x_q": (B, n, d), "y_q": (B, n), **params}

    def skew_map(self, d_active: int) -> Tensor:
        """Σ^{1/2} = U diag(√s) Uᵀ (d_active, d_active) of the skewed shift (cached)."""
        if d_active not in self._skew_maps:
            U = haar_orthogonal(d_active, self.config.shift.rotation_seed)  # float64, CPU
            root = (U * skewed_spectrum(d_active).sqrt()) @ U.T
            self._skew_maps[d_active] = root.to(device=self.device, dtype=self.dtype)
        return self._skew_maps[d_active]

    def _draw_params(self, B: int, d_active: int, kw: dict) -> dict[str, Tensor]:
        cfg, d = self.config, self.d
        if self.kind in ("linear", "noisy_linear", "quadratic"):
            return {"w": torch.randn(B, d, **kw)}
        if self.kind == "sparse_linear":
            if cfg.sparsity > d_active:
                raise ValueError(f"sparsity={cfg.sparsity} exceeds d_active={d_active}")
            w = torch.randn(B, d, **kw)
            order = torch.rand(B, d_active, **kw).argsort(-1)  # (B, d_a) a random permutation
            mask = torch.zeros(B, d, dtype=torch.bool, device=self.device)
            mask.scatter_(1, order[:, : cfg.sparsity], True)
            return {"w": w * mask}
        if self.kind == "relu_net":
            return {
                "W1": torch.randn(B, d, cfg.hidden, **kw),
                "a": torch.randn(B, cfg.hidden, **kw),
            }
        # decision_tree
        n_internal = 2**cfg.depth - 1
        coords = torch.randint(
            0, d_active, (B, n_internal), generator=kw["generator"], device=self.device
        )
        return {"coords": coords, "leaves": torch.randn(B, n_internal + 1, **kw)}

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator,
        n: int | None = None,
        d_active: int | None = None,
    ) -> FunctionClassBatch:
        """Draw `batch_size` prompts of `n` points (default `config.n_points`) with the first
        `d_active` coordinates active (default d).

        All randomness comes from `generator` (on `self.device`). Draw order: z (B, n, d); then
        the parameters: "w" (B, d) for linear / noisy / quadratic; "w" (B, d) then uniforms
        (B, d_active) whose argsort picks the support for sparse; "W1" (B, d, h) then "a" (B, h)
        for the ReLU net; "coords" (B, 2^D − 1) then "leaves" (B, 2^D) for trees; then ε (B, n).
        """
        n = self.n if n is None else int(n)
        d_active = self.d if d_active is None else int(d_active)
        if batch_size < 1 or n < 1:
            raise ValueError(f"batch_size and n must be >= 1, got {batch_size} and {n}")
        if not 1 <= d_active <= self.d:
            raise ValueError(f"d_active must be in 1 … d={self.d}, got {d_active}")
        B, d, shift = int(batch_size), self.d, self.config.shift
        kw = {"generator": generator, "device": self.device, "dtype": self.dtype}

        X = torch.randn(B, n, d, **kw)  # (B, n, d) z
        X[..., d_active:] = 0  # the curriculum's inactive coordinates
        if shift.kind == "skewed_covariance":
            X[..., :d_active] = X[..., :d_active] @ self.skew_map(d_active)  # rows Σ^{1/2} z
        elif shift.kind == "scale_x":
            X = shift.factor * X
        params = self._draw_params(B, d_active, kw)
        eps = torch.randn(B, n, **kw)  # (B, n)

        sigma = self.config.noise_std if self.kind == "noisy_linear" else 0.0
        if shift.kind == "noisy_y":
            sigma = math.hypot(sigma, shift.noise_std)
        out_scale = shift.factor if shift.kind == "scale_y" else 1.0

        def label(inputs: Tensor) -> Tensor:
            return out_scale * evaluate_function(self.kind, params, inputs) + sigma * eps

        y = label(X)
        if shift.kind == "orthogonal_query":
            x_q = orthogonal_queries(X, d_active)
            y_q = label(x_q)
        else:
            x_q, y_q = X, y
        return FunctionClassBatch(X=X, y=y, x_q=x_q, y_q=y_q, params=params, d_active=d_active)


TASKS.register("function-classes", FunctionClass)
