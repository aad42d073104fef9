"""TD prompts and the TD transformer for `identify` and `probe_layers` (prompt family "td").

Wang, Blaser, Daneshmand, Zhang (2025), "Transformers learn temporal difference methods for
in-context reinforcement learning" (SPEC §5): a prompt is n transitions `(φ_i, r_i, φ'_i)` of
one trajectory of a Markov reward process and a query state's features φ_q; the model's output
is a value estimate `v̂(φ_q)`. Its candidate algorithms (batch TD(0), …) live in
`icgd.analysis.identify.td_candidates`.

**Packing** (why: `identify` and `probe_layers` pass every prompt as `(X, y, x_q)`). A TD prompt
travels as the regression triple whose `build_prompt` *is* the TD prompt
(`icgd.core.td_prompts.build_td_prompt`, the same bits):

    X = [φ_i, γφ'_i] (B, n, 2d),   y = r_i (B, n),   x_q = [φ_q, 0] (B, 2d),   y_q = v(s_q) (B,),

i.e. a token's feature rows of the TD prompt, its reward row, and the query column's feature
rows. The discount lives inside X, so every TD algorithm runs on `(φ, γφ')` with γ = 1 (the
TD error `r_i + wᵀ(γφ'_i) − wᵀφ_i` is the same number). A query's implicit weight in the
`[φ_q, 0]` coordinates is `[w, 0]` (the probes' zero block gets the minimum-norm 0), so ILWD is
the difference of the TD weights. `unpack` is the inverse.

**Task** (`TDPromptTask`, layout "td"): `sample(B, g)` draws B fresh processes
(`icgd.tasks.MarkovReward`), one trajectory `s_0 … s_n` per process from the stationary law, the
context transitions `i = 0 … n−1` and the query `s_q = s_n`, the successor of the last one (the
query of the in-context-td training windows, `icgd.tasks.sliding_prompts` window 0), with
target the true value `v(s_q)`.

**View** (`td_view`, registered for `TDTransformer` of kind "td"): the prompt `build_prompt(X,
y, x_q)`, the value `−Z_L[2d+1, n+1]`, and the query column (B, 2d+1) of every `hook_z.{t}`,
t = 0 … L, read out natively by `−z[2d+1]` (for the TD(0) construction `φ_qᵀ w_t`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from icgd.analysis.identify.views import (
    LAYOUTS,
    VIEWS,
    ModelView,
    PromptLayout,
    Prompts,
    query_columns,
)
from icgd.core.prompts import build_prompt
from icgd.models import TDTransformer
from icgd.tasks import MarkovReward, sample_trajectory


def pack(phi: Tensor, phi_next: Tensor, rewards: Tensor, phi_q: Tensor, gamma: float):
    """The packed triple (module docstring): phi, phi_next (B, n, d), rewards (B, n), phi_q
    (B, d) → X (B, n, 2d) = [φ, γφ'], y (B, n) = r, x_q (B, 2d) = [φ_q, 0]."""
    X = torch.cat([phi, gamma * phi_next], dim=-1)  # γφ' as `build_td_prompt` forms it
    return X, rewards, torch.cat([phi_q, torch.zeros_like(phi_q)], dim=-1)


def unpack(X: Tensor, y: Tensor, x_q: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inverse of `pack`: φ (B, n, d), γφ' (B, n, d), r (B, n), φ_q (B, d)."""
    if X.shape[-1] % 2 or x_q.shape[-1] != X.shape[-1]:
        raise ValueError(
            f"TD prompts pack X (B, n, 2d) and x_q (B, 2d), got {tuple(X.shape)}, "
            f"{tuple(x_q.shape)}"
        )
    d = X.shape[-1] // 2
    return X[..., :d], X[..., d:], y, x_q[..., :d]


@dataclass(frozen=True)
class TDPromptBatch:
    """B TD prompts: phi, phi_next (B, n, d) (φ' undiscounted), rewards (B, n), phi_q (B, d), the
    true value of the query state v_q (B,), the discount γ."""

    phi: Tensor
    phi_next: Tensor
    rewards: Tensor
    phi_q: Tensor
    v_q: Tensor
    gamma: float


class TDPromptTask:
    """TD prompts of context length n over fresh Markov reward processes (module docstring).

    process: the `MarkovReward` sampler (its config: chain, s, d, γ, reward law); n: the number of
    context transitions (≥ 1). Layout "td" (`draw_prompts`).
    """

    layout: ClassVar[str] = "td"

    def __init__(self, process: MarkovReward, n: int) -> None:
        if not isinstance(process, MarkovReward):
            raise TypeError(f"process must be a MarkovReward, got {type(process).__name__}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        self.process, self.n = process, n

    @property
    def device(self) -> torch.device:
        return self.process.device

    @property
    def gamma(self) -> float:
        return float(self.process.config.gamma)

    def sample(
        self, batch_size: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> TDPromptBatch:
        """B processes, one trajectory s_0 … s_n each (stationary start), the n transitions and
        the query s_n; draws from `generator` in that order."""
        batch = self.process.sample(batch_size, generator, dtype=dtype)
        states = sample_trajectory(batch, self.n, generator)  # (B, n+1)
        B, d = batch.batch_size, batch.d
        phi_s = torch.gather(batch.phi, 1, states.unsqueeze(-1).expand(B, self.n + 1, d))
        return TDPromptBatch(
            phi=phi_s[:, :-1],
            phi_next=phi_s[:, 1:],
            rewards=torch.gather(batch.r, 1, states[:, :-1]),  # r(s_i), state-based rewards
            phi_q=phi_s[:, -1],
            v_q=torch.gather(batch.v, 1, states[:, -1:])[:, 0],
            gamma=batch.gamma,
        )


def draw_td_prompts(task: TDPromptTask, batch_size: int, generator: torch.Generator) -> Prompts:
    """`batch_size` fresh TD prompts of `task`, packed (module docstring), float64 on the CPU."""
    b = task.sample(batch_size, generator)
    X, y, x_q = pack(b.phi, b.phi_next, b.rewards, b.phi_q, b.gamma)
    return Prompts(*(t.detach().to("cpu", torch.float64) for t in (X, y, x_q, b.v_q)))


def _no_td_length(task, batch_size: int, generator: torch.Generator) -> Prompts:
    raise ValueError(
        "a Markov reward task has no context length: wrap it, TDPromptTask(task, n) "
        "(icgd.analysis.identify.td)"
    )


def td_view(model: TDTransformer, chunk: int) -> ModelView:
    """The view of a TD transformer of kind "td" (module docstring)."""
    if model.config.kind != "td":
        raise TypeError(
            f"no view for a {model.config.kind!r} TD transformer: identify reads the 'td' "
            "prompt; wrap the model in icgd.analysis.identify.ModelView"
        )
    d = model.config.d

    def prompt(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        if X.shape[-1] != 2 * d:
            raise ValueError(f"the model has d = {d}: packed X must be (B, n, {2 * d})")
        return build_prompt(X, y, x_q)  # = build_td_prompt(φ, φ', r, φ_q, γ)

    def predict(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        return model.value(prompt(X, y, x_q))

    def residuals(X: Tensor, y: Tensor, x_q: Tensor) -> dict[str, Tensor]:
        return query_columns(model, prompt(X, y, x_q))

    p = next(model.parameters())
    return ModelView(
        predict, residuals, lambda H: -H[:, -1], p.dtype, p.device, chunk, model, family="td"
    )


def _register(model_cls: type[nn.Module]) -> None:
    LAYOUTS["td"] = PromptLayout("td", draw_td_prompts)
    LAYOUTS[MarkovReward.layout] = PromptLayout("td", _no_td_length)
    VIEWS[model_cls] = td_view


_register(TDTransformer)
