"""Markov reward processes, trajectories and sliding-window TD prompts (SPEC §5).

Wang, Blaser, Daneshmand, Zhang (2025), "Transformers learn temporal difference methods for
in-context reinforcement learning": every in-context task is one Markov reward process (MRP) on
`s` states with transition matrix P (s×s, row-stochastic, `P[i, j] = Pr(s' = j | s = i)`),
features `Φ ∈ R^{s×d}` (row i is φ(i)), state rewards `r ∈ R^s` and discount γ ∈ [0, 1). Its
value is the solution of the Bellman equation

    v = r + γ P v,   i.e.   (I − γP) v = r,

and its stationary distribution μ (a row vector) solves `μ P = μ`, `Σ_i μ_i = 1`. The error of an
estimate v̂ is the mean squared value error `MSVE = Σ_i μ_i (v̂_i − v_i)²` (`msve`).

Transition matrices (`MarkovRewardConfig.kind`), one fresh P per process, states 0 … s−1:

- "boyan" (SPEC §5): a chain that moves one or two states forward,
  `P[i, i+1] = p_i`, `P[i, i+2] = 1 − p_i`, `p_i ~ U(0.01, 0.99)` for i = 0 … s−3. The end follows
  the paper's reference code (Sequential-Intelligence-Lab/InContextTD, `MRP/boyan.py`): state s−2
  moves to s−1 with probability 1, and the last state s−1 jumps to *any* state, its row being
  `u / Σ_j u_j` with `u ~ U(0.01, 0.99)^s` (self-transition included). Every state reaches s−1
  and s−1 reaches every state in one step, so the chain is irreducible; `P[s−1, s−1] > 0` makes
  it aperiodic; hence ergodic with μ > 0.
- "loop" (ours; the reference's `MRP/loop.py` is a different, random sparse graph): a noisy cycle,
  `P[i, i] = ε_i`, `P[i, (i+1) mod s] = 1 − ε_i`, `ε_i ~ U(0, loop_stay)`. Irreducible (the cycle
  visits every state); aperiodic as soon as some ε_i > 0 (almost surely when `loop_stay > 0`;
  `loop_stay = 0` gives the deterministic, periodic cycle, whose μ is still unique: uniform).
- "random_walk" (ours): a lazy random walk on the ring, per state
  `(P[i, (i−1) mod s], P[i, i], P[i, (i+1) mod s]) = u / Σ u`, `u ~ U(0.01, 0.99)^3` (left, stay,
  right; for s = 2 left and right are the same state and their probabilities add). Irreducible and
  aperiodic (every entry listed is > 0).

Features `Φ ~ U(−1, 1)^{s×d}`, i.i.d. entries, resampled per process. Rewards
(`MarkovRewardConfig.rewards`): "random" — `r ~ U(−1, 1)^s`; "representable" — `w ~ N(0, I_d)`
(as the reference code draws it) and `r = (I − γP) Φ w`, so that the true value is exactly
`v = Φ w` (linear TD can reach zero error). In both cases v is computed by solving the Bellman
equation, so `v = Φ w` for representable rewards is a checked identity, not a definition.

Randomness: every draw comes from the generator passed to `MarkovReward.sample`, in float64 on the
sampler's device (then the results are cast to the requested dtype, so the same seed gives the same
process in every dtype up to rounding), in the order: the transition draws ("boyan": p (B, s−2)
then the last row's u (B, s); "loop": ε (B, s); "random_walk": u (B, s, 3)), then Φ (B, s, d),
then r (B, s) ("random") or w (B, d) ("representable"). μ and v are solved in float64.

Trajectories (`sample_trajectory`) and prompts (`sliding_prompts`, `value_prompts`) use the prompt
layout of `icgd.core.td_prompts`: `Z` (…, 2d+1, n+1), context column i `[φ(s_i); γ φ(s_{i+1}); r_i]`
with the state-based reward `r_i = r(s_i)` (the reward of leaving s_i, as in the reference code's
`step`, which returns `r[state]`), query column `[φ_q; 0; 0]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field, FiniteFloat, StrictInt
from torch import Tensor

from icgd.core.config import Config
from icgd.core.td_prompts import build_td_prompt
from icgd.tasks.plugins import TASKS

ChainKind = Literal["boyan", "loop", "random_walk"]
RewardKind = Literal["random", "representable"]
StartKind = Literal["stationary", "uniform"]

# The Boyan chain's forward probabilities, the last row's weights and the random walk's weights
# are U(0.01, 0.99), as in the reference code.
_LOW, _HIGH = 0.01, 0.99


class MarkovRewardConfig(Config):
    """Distribution of Markov reward processes (module docstring for the definitions).

    - `kind`: the transition matrix. "boyan": the Boyan chain of SPEC §5 (i → i+1 w.p. p_i, i → i+2
      w.p. 1 − p_i, p_i ~ U(0.01, 0.99); s−2 → s−1 surely; s−1 → any state, a random row);
      "loop": a noisy cycle i → i+1 mod s, staying put w.p. ε_i ~ U(0, loop_stay);
      "random_walk": a lazy random walk on the ring (left / stay / right w.p. ∝ U(0.01, 0.99)³).
    - `s`: number of states, ≥ 2. `d`: feature dimension, ≥ 1 (features Φ ~ U(−1, 1)^{s×d}).
    - `gamma`: discount γ, 0 ≤ γ < 1.
    - `rewards`: "random" (r ~ U(−1, 1)^s) or "representable" (r = (I − γP) Φ w, w ~ N(0, I_d),
      so v = Φ w).
    - `loop_stay`: the largest self-transition probability of "loop", 0 ≤ loop_stay < 1 (ignored
      by the other kinds).
    """

    kind: ChainKind = "boyan"
    s: Annotated[StrictInt, Field(ge=2)] = 10
    d: Annotated[StrictInt, Field(ge=1)] = 4
    gamma: Annotated[FiniteFloat, Field(ge=0, lt=1)] = 0.9
    rewards: RewardKind = "random"
    loop_stay: Annotated[FiniteFloat, Field(ge=0, lt=1)] = 0.1


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


def _uniform(shape: tuple[int, ...], low: float, high: float, kw: dict) -> Tensor:
    """U(low, high) of `shape` from `kw` (generator, device, dtype)."""
    return low + (high - low) * torch.rand(*shape, **kw)


def _transitions(cfg: MarkovRewardConfig, B: int, kw: dict) -> Tensor:
    """Draw P (B, s, s) float64 of `cfg.kind` (module docstring for the law and draw order)."""
    s = cfg.s
    P = torch.zeros(B, s, s, dtype=torch.float64, device=kw["device"])
    i = torch.arange(s, device=kw["device"])
    if cfg.kind == "boyan":
        p = _uniform((B, s - 2), _LOW, _HIGH, kw)  # (B, s−2) forward-by-one probabilities
        j = i[: s - 2]
        P[:, j, j + 1] = p
        P[:, j, j + 2] = 1 - p
        P[:, s - 2, s - 1] = 1.0
        u = _uniform((B, s), _LOW, _HIGH, kw)  # (B, s) the last state's row, unnormalised
        P[:, s - 1, :] = u / u.sum(-1, keepdim=True)
    elif cfg.kind == "loop":
        eps = _uniform((B, s), 0.0, cfg.loop_stay, kw)  # (B, s) self-transition probabilities
        P[:, i, i] = eps
        P[:, i, (i + 1) % s] = 1 - eps
    else:  # random_walk
        u = _uniform((B, s, 3), _LOW, _HIGH, kw)  # (B, s, 3) left, stay, right
        u = u / u.sum(-1, keepdim=True)
        # three separate additions so that coinciding targets (s = 2: left = right) accumulate
        P[:, i, (i - 1) % s] += u[..., 0]
        P[:, i, i] += u[..., 1]
        P[:, i, (i + 1) % s] += u[..., 2]
    return P


def stationary_distribution(P: Tensor) -> Tensor:
    """The stationary distribution of irreducible chains: P (B, s, s) → μ (B, s).

    Solves `(I − Pᵀ) μᵀ = 0` with its last equation replaced by the normalisation `Σ_j μ_j = 1`
    (one batched `torch.linalg.solve`). The s equations of `(I − Pᵀ) μᵀ = 0` sum to zero (P's rows
    sum to 1), so dropping one loses nothing; for an irreducible chain the remaining s − 1 have a
    one-dimensional kernel spanned by μ, and μ's sum is not 0, so the system is nonsingular.
    """
    B, s, _ = P.shape
    A = torch.eye(s, dtype=P.dtype, device=P.device) - P.transpose(1, 2)  # (B, s, s)
    A[:, -1, :] = 1.0  # the normalisation row
    b = torch.zeros(B, s, dtype=P.dtype, device=P.device)
    b[:, -1] = 1.0
    return torch.linalg.solve(A, b)  # (B, s)


def true_values(P: Tensor, r: Tensor, gamma: float) -> Tensor:
    """The values `v = (I − γP)⁻¹ r`: P (B, s, s), r (B, s) → v (B, s) (a batched solve)."""
    s = P.shape[-1]
    A = torch.eye(s, dtype=P.dtype, device=P.device) - gamma * P  # (B, s, s)
    return torch.linalg.solve(A, r)


def msve(v_hat: Tensor, v: Tensor, mu: Tensor) -> Tensor:
    """The mean squared value error `Σ_s μ(s) (v̂(s) − v(s))²`: (..., s) each → (...)."""
    return (mu * (v_hat - v) ** 2).sum(-1)


class MarkovReward:
    """Sampler of Markov reward processes: `sample(B, generator, dtype) -> MarkovRewardBatch`.

    All draws are made on `device` (that of the generator); the module docstring gives the law and
    the draw order.
    """

    def __init__(self, config: MarkovRewardConfig, *, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    def sample(
        self, batch_size: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> MarkovRewardBatch:
        """Draw `batch_size` processes: P (B, s, s), Φ (B, s, d), r, μ, v (B, s), w (B, d) | None.

        Drawn and solved in float64, then cast to `dtype`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        cfg = self.config
        B, s, d, gamma = int(batch_size), cfg.s, cfg.d, cfg.gamma
        kw = {"generator": generator, "device": self.device, "dtype": torch.float64}
        P = _transitions(cfg, B, kw)  # (B, s, s)
        phi = _uniform((B, s, d), -1.0, 1.0, kw)  # (B, s, d)
        w = None
        if cfg.rewards == "random":
            r = _uniform((B, s), -1.0, 1.0, kw)  # (B, s)
        else:
            w = torch.randn(B, d, **kw)  # (B, d)
            v_lin = (phi @ w.unsqueeze(-1)).squeeze(-1)  # (B, s) Φ w
            r = v_lin - gamma * (P @ v_lin.unsqueeze(-1)).squeeze(-1)  # (I − γP) Φ w
        mu = stationary_distribution(P)
        v = true_values(P, r, gamma)

        def cast(x: Tensor) -> Tensor:
            return x.to(dtype)

        return MarkovRewardBatch(
            P=cast(P),
            phi=cast(phi),
            r=cast(r),
            gamma=gamma,
            mu=cast(mu),
            v=cast(v),
            w_true=None if w is None else cast(w),
        )


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


TASKS.register("markov-reward", MarkovReward)
