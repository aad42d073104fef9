"""Trajectories of Markov reward processes and the sliding-window TD prompts over them (SPEC §5).

`MarkovRewardBatch` holds B processes (`icgd.tasks.markov_reward.MarkovReward` samples them; the
module docstring there defines P, Φ, r, γ, μ, v). Trajectories (`sample_trajectory`) and prompts
(`sliding_prompts`, `value_prompts`) use the prompt layout of `icgd.core.td_prompts`: `Z`
(…, 2d+1, n+1), context column i `[φ(s_i); γ φ(s_{i+1}); r_i]` with the state-based reward
`r_i = r(s_i)` (the reward of leaving s_i, as in the reference code's `step`, which returns
`r[state]`), query column `[φ_q; 0; 0]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from icgd.core.td_prompts import build_td_prompt

StartKind = Literal["stationary", "uniform"]


@dataclass(frozen=True)
class MarkovRewardBatch:
    """B Markov reward processes, one per leading index.

    P: (B, s, s) row-stochastic transitions; phi: (B, s, d) features Φ (row i is φ(i)); r: (B, s)
    state rewards; gamma: the discount γ; mu: (B, s) stationary distributions (μ P = μ, Σ μ = 1);
    v: (B, s) true values ((I − γP) v = r); w_true: (B, d) the weights with v = Φ w for
    representable rewards, None for random rewards.
    """

    P: Tensor
    phi: Tensor
    r: Tensor
    gamma: float
    mu: Tensor
    v: Tensor
    w_true: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.P.shape[0]

    @property
    def s(self) -> int:
        return self.P.shape[-1]

    @property
    def d(self) -> int:
        return self.phi.shape[-1]


def _inverse_cdf(cdf: Tensor, last: Tensor, u: Tensor) -> Tensor:
    """Sample by inversion: cdf (B, s) cumulative probabilities, last (B,) the last state of
    positive probability, u (B,) uniforms in [0, 1) → (B,) int64, the first j with `u < cdf[j]`.

    Clamping to `last` only matters when rounding leaves `cdf[-1]` a hair below 1 and u above it:
    the state drawn is then the last one of positive probability, never one of probability 0.
    """
    j = torch.searchsorted(cdf, u.unsqueeze(-1).contiguous(), right=True).squeeze(-1)  # (B,)
    return torch.minimum(j, last)


def _last_positive(probs: Tensor) -> Tensor:
    """The largest index of a positive entry along the last axis: (..., s) → (...) int64."""
    s = probs.shape[-1]
    idx = torch.arange(s, device=probs.device).expand_as(probs)
    return torch.where(probs > 0, idx, torch.zeros_like(idx)).amax(-1)


def sample_trajectory(
    batch: MarkovRewardBatch,
    T: int,
    generator: torch.Generator,
    start: StartKind = "stationary",
) -> Tensor:
    """One trajectory `s_0, s_1, …, s_T` per process: states (B, T+1) int64.

    `s_0 ~ μ` ("stationary") or uniform on the s states ("uniform"; the reference code starts
    from a random distribution instead), then `s_{t+1} ~ P[s_t, :]`. Randomness: one draw of
    float64 uniforms U (B, T+1) from `generator` (on P's device); column 0 picks s_0 and column
    t+1 the step t → t+1, each by inverting the cumulative probabilities (`torch.searchsorted`).
    Sequential in time (a Markov chain must be), batched over the B processes: one vectorised
    step per time, the B rows `P[b, s_t^b, :]` gathered at once.
    """
    if T < 0:
        raise ValueError(f"T must be >= 0, got {T}")
    if start not in ("stationary", "uniform"):
        raise ValueError(f"start must be 'stationary' or 'uniform', got {start!r}")
    P = batch.P.to(torch.float64)  # (B, s, s)
    B, s, _ = P.shape
    device = P.device
    u = torch.rand(B, T + 1, generator=generator, dtype=torch.float64, device=device)
    if start == "stationary":
        p0 = batch.mu.to(torch.float64).clamp_min(0)  # (B, s)
    else:
        p0 = torch.full((B, s), 1.0 / s, dtype=torch.float64, device=device)
    cdf = P.cumsum(-1)  # (B, s, s)
    last = _last_positive(P)  # (B, s)
    rows = torch.arange(B, device=device)
    states = torch.empty(B, T + 1, dtype=torch.int64, device=device)
    states[:, 0] = _inverse_cdf(
        p0.cumsum(-1) / p0.sum(-1, keepdim=True), _last_positive(p0), u[:, 0]
    )
    for t in range(T):
        cur = states[:, t]  # (B,)
        states[:, t + 1] = _inverse_cdf(cdf[rows, cur], last[rows, cur], u[:, t + 1])
    return states


@dataclass(frozen=True)
class SlidingPrompts:
    """Sliding-window TD prompts over one trajectory per process (`sliding_prompts`).

    prompts: (B, W+1, 2d+1, n+1), window t = 0 … W (W = T − n): context transitions t … t+n−1,
    i.e. columns `[φ(s_i); γ φ(s_{i+1}); r(s_i)]` for i = t … t+n−1, and query `φ(s_{t+n})`.
    rewards: (B, W), `r(s_{t+n})`, the reward of the query's transition s_{t+n} → s_{t+n+1}.
    query_states: (B, W+1), `s_{t+n}`.

    `Z` and `Z_next` are views (no copy): `Z[:, t]` is window t and `Z_next[:, t]` window t+1,
    whose query φ(s_{t+n+1}) is the successor of Z's query, so the semi-gradient TD error is
    `δ_t = rewards[:, t] + γ v̂(Z_next[:, t]) − v̂(Z[:, t])`.
    """

    prompts: Tensor
    rewards: Tensor
    query_states: Tensor

    @property
    def Z(self) -> Tensor:
        """(B, W, 2d+1, n+1) windows t = 0 … W−1."""
        return self.prompts[:, :-1]

    @property
    def Z_next(self) -> Tensor:
        """(B, W, 2d+1, n+1) windows t+1 = 1 … W (each Z shifted by one step)."""
        return self.prompts[:, 1:]


def _check_states(batch: MarkovRewardBatch, states: Tensor) -> None:
    if states.ndim != 2 or states.shape[0] != batch.batch_size:
        raise ValueError(
            f"states must be (B, T+1) with B = {batch.batch_size}, got {tuple(states.shape)}"
        )


def _features(batch: MarkovRewardBatch, states: Tensor) -> tuple[Tensor, Tensor]:
    """φ(s_t) (B, T+1, d) and r(s_t) (B, T+1) along the trajectories `states` (B, T+1)."""
    B, L = states.shape
    d = batch.d
    phi_s = torch.gather(batch.phi, 1, states.unsqueeze(-1).expand(B, L, d))  # (B, T+1, d)
    r_s = torch.gather(batch.r, 1, states)  # (B, T+1)
    return phi_s, r_s


def sliding_prompts(batch: MarkovRewardBatch, states: Tensor, n: int) -> SlidingPrompts:
    """Every sliding window of n transitions over the trajectories `states` (B, T+1), T ≥ n+1.

    Window t = 0 … T−n holds the transitions t … t+n−1 as context and queries φ(s_{t+n}); the
    training pairs are (window t, window t+1) for t = 0 … W−1, W = T − n, with reward r(s_{t+n})
    (`SlidingPrompts` for the layout). This pairing follows the multi-task TD loop of the paper's
    reference code (Sequential-Intelligence-Lab/InContextTD, `experiment/train.py`: `Z_next,
    reward = prompt.step()`, `δ = reward + γ v̂(Z_next) − v̂(Z)`, the reward being that of the
    state queried by Z). Difference: that code's `MRPPrompt` queries φ(s_{t+n+1}), one state past
    the last context transition's successor; here the query is φ(s_{t+n}), the next state of the
    last context transition, so every transition of the trajectory is either in the context or
    the query's.

    Batched: window index arithmetic `idx[t, i] = t + i` (W+1, n) and gathers, no loop over
    windows; the prompts are laid out by `build_td_prompt` on the flattened (B·(W+1)) windows.
    """
    _check_states(batch, states)
    B, L = states.shape
    T = L - 1
    if n < 1 or T < n + 1:
        raise ValueError(f"need n >= 1 and T >= n + 1 (T + 1 = {L} states), got n = {n}")
    d = batch.d
    M = T - n + 1  # windows t = 0 … T−n, i.e. W + 1
    phi_s, r_s = _features(batch, states)  # (B, T+1, d), (B, T+1)
    idx = torch.arange(M, device=states.device)[:, None] + torch.arange(n, device=states.device)
    # idx (M, n): window t, context position i → time t + i
    phi = phi_s[:, idx]  # (B, M, n, d) φ(s_{t+i})
    phi_next = phi_s[:, idx + 1]  # (B, M, n, d) φ(s_{t+i+1})
    rewards = r_s[:, idx]  # (B, M, n) r(s_{t+i})
    phi_q = phi_s[:, n:]  # (B, M, d) φ(s_{t+n})
    Z = build_td_prompt(
        phi.reshape(B * M, n, d),
        phi_next.reshape(B * M, n, d),
        rewards.reshape(B * M, n),
        phi_q.reshape(B * M, d),
        batch.gamma,
    )  # (B·M, 2d+1, n+1)
    return SlidingPrompts(
        prompts=Z.reshape(B, M, 2 * d + 1, n + 1),
        rewards=r_s[:, n:T],  # (B, W) r(s_{t+n}), t = 0 … W−1
        query_states=states[:, n:],  # (B, W+1)
    )


def value_prompts(batch: MarkovRewardBatch, states: Tensor, n: int, t: int = 0) -> Tensor:
    """The context of sliding window t (transitions t … t+n−1 of `states` (B, T+1), T ≥ t+n)
    with every state as query: (B, s, 2d+1, n+1), prompt q querying φ(q), q = 0 … s−1.

    `read_value` of the model's output on prompt q is v̂(q), to compare with the true v under μ
    (`msve`). The context columns equal those of `sliding_prompts(batch, states, n).prompts[:, t]`.
    """
    _check_states(batch, states)
    B, L = states.shape
    if n < 1 or t < 0 or t + n > L - 1:
        raise ValueError(
            f"need n >= 1, t >= 0 and t + n <= T (T + 1 = {L} states), got n = {n}, t = {t}"
        )
    s, d = batch.s, batch.d
    window = states[:, t : t + n + 1]  # (B, n+1) s_t … s_{t+n}
    phi_s, r_s = _features(batch, window)  # (B, n+1, d), (B, n+1)
    phi = phi_s[:, :-1].unsqueeze(1).expand(B, s, n, d)  # (B, s, n, d) shared by all queries
    phi_next = phi_s[:, 1:].unsqueeze(1).expand(B, s, n, d)
    rewards = r_s[:, :-1].unsqueeze(1).expand(B, s, n)  # (B, s, n)
    Z = build_td_prompt(
        phi.reshape(B * s, n, d),
        phi_next.reshape(B * s, n, d),
        rewards.reshape(B * s, n),
        batch.phi.reshape(B * s, d),  # query q of process b is φ_b(q)
        batch.gamma,
    )  # (B·s, 2d+1, n+1)
    return Z.reshape(B, s, 2 * d + 1, n + 1)
