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

Layout `reward-process` (the `Task` protocol, `icgd.tasks.api`): a batch is a `MarkovRewardBatch`
of B processes, P (B, s, s), Φ (B, s, d), r, μ, v (B, s) and, for representable rewards, w (B, d).
Prompts are made from it by `icgd.tasks.trajectories` (re-exported here): a trajectory per process
(`sample_trajectory`), then TD prompts (`sliding_prompts`, `value_prompts`) in the layout of
`icgd.core.td_prompts`, `Z` (…, 2d+1, n+1), context column i `[φ(s_i); γ φ(s_{i+1}); r_i]`,
query column `[φ_q; 0; 0]`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, FiniteFloat, StrictInt
from torch import Tensor

from icgd.core.config import Config
from icgd.tasks.plugins import TASKS
from icgd.tasks.trajectories import (
    MarkovRewardBatch,
    SlidingPrompts,
    StartKind,
    sample_trajectory,
    sliding_prompts,
    value_prompts,
)

__all__ = [
    "MarkovReward",
    "MarkovRewardBatch",
    "MarkovRewardConfig",
    "SlidingPrompts",
    "StartKind",
    "msve",
    "sample_trajectory",
    "sliding_prompts",
    "stationary_distribution",
    "true_values",
    "value_prompts",
]

ChainKind = Literal["boyan", "loop", "random_walk"]
RewardKind = Literal["random", "representable"]

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
    the draw order. A `Task` (`icgd.tasks.api`) of layout `reward-process`.
    """

    layout: ClassVar[str] = "reward-process"

    def __init__(self, config: MarkovRewardConfig, *, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    @classmethod
    def example(cls) -> MarkovReward:
        """A tiny instance: Boyan chains on s = 5 states, d = 2 features, representable rewards."""
        return cls(MarkovRewardConfig(s=5, d=2, rewards="representable"))

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The tensors of `sample(batch_size, g)`: P (B, s, s), phi (B, s, d), r, mu, v (B, s),
        and w_true (B, d) for representable rewards."""
        B, s, d = int(batch_size), self.config.s, self.config.d
        out = {"P": (B, s, s), "phi": (B, s, d), "r": (B, s), "mu": (B, s), "v": (B, s)}
        return out | ({"w_true": (B, d)} if self.config.rewards == "representable" else {})

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


TASKS.register("markov-reward", MarkovReward)
