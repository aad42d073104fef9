"""Looped transformer with input injection (SPEC §2.2).

Yang, Lee, Nowak, Papailiopoulos (2024), "Looped transformers are better at learning learning
algorithms". The read-in, positions and read-out of `icgd.models.gpt.GPT`; in between, a few
(`n_blocks`, usually 1) GPT `Block`s forming one map f, applied b times with the prompt's
embedding injected at every loop:

    e = tokens W_in + b_in + P[0:2k]                 (B, 2k, n_embd), the read-in with positions
    z_0 = 0,    z_{t+1} = f(z_t + e),    t = 0..b−1
    ŷ^{(t)} = read_out(LN_f(z_t))                    (B, k) at the x tokens, t = 1..b

Training (their recipe): the first b − T loops run under `torch.no_grad()`, and the loss is the
mean over the last T loops of the mean squared error of ŷ^{(t)}; b follows a curriculum and can be
any number at call time (test-time looping past b).

`final_norm` (ours, configurable): `"readout"` (default) applies LN_f in the read-out only, as
above; `"in_loop"` makes LN_f part of f, `z_{t+1} = LN_f(Blocks(z_t + e))`, which is what
building f from a HuggingFace-style `GPT2Model` backbone (positions added and ln_f applied inside
every call) gives, as in the authors' code.

Hook points: `hook_embed` (B, 2k, n_embd) the injection e; `hook_z.{t}` (B, 2k, n_embd),
t = 0..b, the state after t loops (`hook_z.0` = 0).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

from icgd.core.config import Config
from icgd.models.api import example_normal
from icgd.models.gpt import build_io_and_blocks, fill_size_preset
from icgd.models.hooks import (
    HookedMixin,
    HookPoints,
    NamesFilter,
)
from icgd.models.plugins import MODELS

FinalNorm = Literal["readout", "in_loop"]


class LoopedConfig(Config):
    """Architecture of a looped transformer (everything needed to rebuild it).

    `size` fills `n_embd`/`n_head` from `icgd.models.gpt.GPT_SIZES` when not given explicitly (its
    depth is not used: the loop body has `n_blocks` blocks). Defaults: Yang et al.'s linear
    regression recipe, width 256, 8 heads, 1 block, b = 30 loops, loss over the last T = 15.
    """

    d_in: PositiveInt = 20
    max_points: PositiveInt = 41
    size: Literal["tiny", "small", "standard"] | None = "standard"
    n_embd: PositiveInt
    n_head: PositiveInt
    n_blocks: PositiveInt = 1
    """Blocks in the loop body f."""
    n_loops: PositiveInt = 30
    """b: the default number of loops (overridable at call time)."""
    grad_last: PositiveInt = 15
    """T: the default number of final loops that carry gradient and enter the loss."""
    final_norm: FinalNorm = "readout"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_size(cls, data: Any) -> Any:
        return fill_size_preset(data, keys=("n_embd", "n_head"))

    @model_validator(mode="after")
    def _check(self) -> LoopedConfig:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd: must be divisible by n_head={self.n_head}, got {self.n_embd}"
            )
        if self.grad_last > self.n_loops:
            raise ValueError(
                f"grad_last: must be at most n_loops={self.n_loops}, got {self.grad_last}"
            )
        return self


class LoopedTransformer(HookedMixin, nn.Module):
    """A looped GPT block with input injection; see the module docstring.

    `forward(X (B, k, d_in), y (B, k), n_loops=None, grad_last=None) -> (n_loops, B, k)`.
    Parameters: `io` (read-in, positions, final LN, read-out, shared with `GPT`) and `blocks`.
    """

    def __init__(
        self,
        config: LoopedConfig,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.hook_points = HookPoints()
        build_io_and_blocks(self, config, config.n_blocks, generator, device, dtype)

    def f(self, z: Tensor, e: Tensor) -> Tensor:
        """One loop: `f(z + e)`, (B, 2k, n_embd) → (B, 2k, n_embd)."""
        h = z + e
        for block in self.blocks:
            h = block(h)
        if self.config.final_norm == "in_loop":
            h = self.io.ln_f(h)
        return h

    def _read_out(self, z: Tensor) -> Tensor:
        return self.io.read_out(z, final_norm=self.config.final_norm == "readout")  # (B, k)

    def _resolve(self, n_loops: int | None, grad_last: int | None) -> tuple[int, int]:
        b = self.config.n_loops if n_loops is None else n_loops
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"n_loops must be a positive integer, got {n_loops!r}")
        T = b if grad_last is None else grad_last
        if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= b:
            raise ValueError(f"grad_last must be an integer in 1..n_loops={b}, got {grad_last!r}")
        return b, T

    def _loops(
        self, X: Tensor, y: Tensor, b: int, T: int, read_from: int
    ) -> tuple[list[Tensor], Tensor]:
        """Run b loops, the first b − T under no_grad; predictions of loops t ≥ read_from (1-based).

        Returns (predictions [(B, k)] for t = read_from..b, final state z_b).
        """
        self.io.check_inputs(X, y)
        hooked = len(self.hook_points) > 0
        e = self.io.embed(X, y)  # (B, 2k, n_embd)
        if hooked:
            e = self.hook_points("hook_embed", e)
        z = torch.zeros_like(e)  # z_0 = 0
        if hooked:
            z = self.hook_points("hook_z.0", z)
        predictions = []
        for t in range(1, b + 1):
            with torch.no_grad() if t <= b - T else nullcontext():
                z = self.f(z, e)
                if hooked:
                    z = self.hook_points(f"hook_z.{t}", z)
                if t >= read_from:
                    predictions.append(self._read_out(z))
        return predictions, z

    def forward(
        self, X: Tensor, y: Tensor, n_loops: int | None = None, grad_last: int | None = None
    ) -> Tensor:
        """Predictions after every loop, (n_loops, B, k), from X (B, k, d_in), y (B, k).

        `n_loops` overrides the default b (`config.n_loops`). `grad_last=T` runs the first
        b − T loops under `torch.no_grad()` (their predictions are returned detached); None: every
        loop carries gradient.
        """
        b, T = self._resolve(n_loops, grad_last)
        predictions, _ = self._loops(X, y, b, T, read_from=1)
        return torch.stack(predictions)  # (b, B, k)

    def loss_over_last_loops(
        self,
        X: Tensor,
        y: Tensor,
        n_loops: int | None = None,
        last: int | None = None,
        target: Tensor | None = None,
    ) -> Tensor:
        """Yang et al.'s training loss: `(1/T) Σ_{t=b−T+1}^{b} mean_{B,k} (ŷ^{(t)} − target)²`.

        Scalar. The first b − T loops run without gradient and are not read out. `n_loops`, `last`
        default to `config.n_loops`, `config.grad_last`; `target` (B, k) defaults to `y`.
        """
        b = self.config.n_loops if n_loops is None else n_loops
        T = self.config.grad_last if last is None else last
        b, T = self._resolve(b, T)
        predictions, _ = self._loops(X, y, b, T, read_from=b - T + 1)
        target = y if target is None else target
        pred = torch.stack(predictions)  # (T, B, k)
        return (pred - target).square().mean()

    def hook_names(self, n_loops: int | None = None) -> list[str]:
        b, _ = self._resolve(n_loops, None)
        return ["hook_embed"] + [f"hook_z.{t}" for t in range(b + 1)]

    def run_with_cache(
        self,
        X: Tensor,
        y: Tensor,
        n_loops: int | None = None,
        names_filter: NamesFilter = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """`(predictions (n_loops, B, k), cache)`: cache maps hook name → detached activation."""
        return self._run_cached(names_filter, X, y, n_loops=n_loops)

    @classmethod
    def example(cls, *, dtype: torch.dtype = torch.float32) -> LoopedTransformer:
        """A tiny instance (the `Model` protocol, `icgd.models.api`): d_in = 3, up to 6 points,
        width 16, 2 heads, one block looped b = 3 times (T = 2), GPT-2 init from seed 0."""
        config = LoopedConfig(
            d_in=3, max_points=6, size=None, n_embd=16, n_head=2, n_loops=3, grad_last=2
        )
        return cls(config, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def example_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """`(X, y)`: standard normal X (B, k, d_in), y (B, k), k = `max_points`."""
        B, k, d = int(batch_size), self.config.max_points, self.config.d_in
        X = example_normal(generator, B, k, d, like=self)  # (B, k, d_in)
        return X, example_normal(generator, B, k, like=self)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"d_in={c.d_in}, max_points={c.max_points}, n_embd={c.n_embd}, n_head={c.n_head}, "
            f"n_blocks={c.n_blocks}, n_loops={c.n_loops}, grad_last={c.grad_last}, "
            f"final_norm={c.final_norm}"
        )


MODELS.register("looped", LoopedTransformer)
