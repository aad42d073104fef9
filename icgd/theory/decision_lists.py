"""The quantities of the decision-list theorems: δ, γ, and the constants they set.

Setting (SPEC §3; "Provable Gradient-Descent-Based Learning of Decision Lists by Transformers"):
vocabulary ``[L]`` (tokens ``0..L−1`` here), sequences ``s ∈ [L]^n``; each token a has a list
``L_a = (a_1, …, a_m)``, ``1 ≤ m = m_a ≤ M``, with ``a_m = a``. A position holding a is labelled
``π(a_j)`` for the smallest j with ``a_j ∈ s``, the *label-determining token*. The model is
``f_{W,V}(X) = σ(V X σ(Xᵀ W X))`` and the paper's theorems are stated with two distribution
constants δ and γ:

- mode (a), training W only by gradient flow from ``W₀ = 0`` with ``V = cP`` fixed: perfect
  classification for ``c ≥ c_required = 4 n log(L) / δ``, within time ``4 M / (log(L) γ)``;
- mode (b), training W and V by GD with step ``η ≤ 1/λ_max`` (λ_max the largest Hessian
  eigenvalue) from ``V₀ = cP + E``, ``‖E‖`` of size ε small: perfect classification as well.

The paper's full text was not available to us, so the definitions of δ and γ below are **ours**.
The reasoning: with ``W = 0`` every position attends uniformly, and the gradient of the population
loss on the entry ``W[a_j, a]`` (attention from a query holding a to a key holding a_j) is driven by
the sequences in which a occurs *and* a_j is its label-determining token, weighted by how many
positions of the sequence hold a. The theorems need every such event that the distribution
exercises to carry some minimum mass. For a token a and a list index ``1 ≤ j ≤ m_a`` let

    E_{a,j} = { a ∈ s, a_j ∈ s, a_1, …, a_{j−1} ∉ s }        (a_j is a's label-determining token)

    p_{a,j} = P(E_{a,j})                                     (per-sequence probability)
    q_{a,j} = E[ (#{i : s_i = a} / n) · 1{E_{a,j}} ]         (its weight per position in the loss)

    δ = min { p_{a,j} : p_{a,j} > 0 },     γ = min { q_{a,j} : q_{a,j} > 0 }        (ours)

(q > 0 exactly when p > 0, so both minima run over the same *exercised* entries). For fixed a the
events ``E_{a,1}, …, E_{a,m_a}`` partition ``{a ∈ s}`` (``a_{m_a} = a``), so
``Σ_j p_{a,j} = P(a ∈ s)`` and ``Σ_a Σ_j q_{a,j} = 1``. Entries with ``p_{a,j} = 0`` are
*unexercised* (e.g. ``a_j`` can never be first present because the sampler never draws it with a);
they drive no gradient and are left out of the minima, and their number is reported.

The constants use the natural logarithm:

    c_required = 4 n log(L) / δ,        time_bound = 4 M / (log(L) γ).

Layouts (the same as the decision-list task module's, but plain tensors so that `theory` does not
import `tasks`): ``lists`` (L, M) int64, row a = ``L_a`` padded with −1; ``lengths`` (L,) int64,
``m_a``; ``seqs`` (N, n) int64 with entries in ``[0, L)``; ``probs`` (N,) float64, the sequences'
probabilities, summing to 1 — either an exact enumeration (every sequence once with its
probability) or uniform weights ``1/N`` over an iid sample.

From a sample, ``p̂`` and ``q̂`` are unbiased, with Monte-Carlo standard errors
``SE = sqrt((mean(Y²) − mean(Y)²) / (N − 1))`` for the per-sequence values Y (``1{E}`` for p — the
binomial SE up to N/(N−1) — and ``(#a/n)·1{E}`` for q). The reported SE of δ̂ (γ̂) is the SE of the
minimising entry's estimate. Caveats: the minimum over many noisy entries is biased **low** (the
entry that looks rarest is, more often than not, one whose estimate fell below its mean), and an
entry whose true mass is positive but was never seen in the sample counts as unexercised and is left
out of the minimum, which biases it **high**. Treat a sampled δ̂, γ̂ as an order of magnitude unless
every exercised entry has been seen many times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_CHUNK = 65_536  # sequences per batch; memory is O(chunk · L) booleans/floats


@dataclass(frozen=True)
class DecisionListMasses:
    """Masses of the events ``E_{a,j}`` and their minima δ, γ (definitions in the module docstring).

    ``p``, ``q``, ``p_se``, ``q_se`` are (L, M) float64 with NaN at padding (``j > m_a``); column
    ``j − 1`` holds list index j. ``argmin_delta`` / ``argmin_gamma`` are ``(a, j)`` with j
    **1-based** (the paper's index), ties broken by the first in row-major order. ``delta_se``,
    ``gamma_se`` are the Monte-Carlo SEs of the minimising entries (0.0 for an exact enumeration,
    ``sampled=False``).
    """

    p: torch.Tensor
    q: torch.Tensor
    p_se: torch.Tensor
    q_se: torch.Tensor
    delta: float
    gamma: float
    delta_se: float
    gamma_se: float
    argmin_delta: tuple[int, int]
    argmin_gamma: tuple[int, int]
    n_unexercised: int
    sampled: bool


def _check_inputs(
    lists: torch.Tensor, lengths: torch.Tensor, seqs: torch.Tensor, probs: torch.Tensor
) -> tuple[int, int, int, int]:
    if lists.dim() != 2 or lists.dtype != torch.int64:
        raise ValueError(
            f"lists must be an (L, M) int64 tensor, got {lists.dtype} {tuple(lists.shape)}"
        )
    L, M = lists.shape
    if lengths.shape != (L,) or lengths.dtype != torch.int64:
        raise ValueError(f"lengths must be an ({L},) int64 tensor, got {tuple(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > M)).any()):
        raise ValueError(f"lengths must lie in [1, M={M}], got {lengths.tolist()}")
    cols = torch.arange(M)
    valid = cols[None, :] < lengths[:, None]  # (L, M)
    if bool((lists[valid] < 0).any()) or bool((lists[valid] >= L).any()):
        raise ValueError(f"list entries j ≤ m_a must be tokens in [0, L={L})")
    if bool((lists[~valid] != -1).any()):
        raise ValueError("lists must be padded with -1 beyond lengths[a]")
    last = lists.gather(1, (lengths - 1)[:, None]).squeeze(1)  # (L,) a_{m_a}
    if not torch.equal(last, torch.arange(L)):
        raise ValueError("each list L_a must end in a (lists[a, lengths[a] - 1] == a)")
    if seqs.dim() != 2 or seqs.dtype != torch.int64:
        raise ValueError(
            f"seqs must be an (N, n) int64 tensor, got {seqs.dtype} {tuple(seqs.shape)}"
        )
    N, n = seqs.shape
    if N == 0 or n == 0:
        raise ValueError(f"seqs must be non-empty, got shape {(N, n)}")
    if bool((seqs < 0).any()) or bool((seqs >= L).any()):
        raise ValueError(f"seqs entries must be tokens in [0, L={L})")
    if probs.shape != (N,):
        raise ValueError(f"probs must have shape ({N},), got {tuple(probs.shape)}")
    if bool((probs < 0).any()) or not bool(torch.isfinite(probs).all()):
        raise ValueError("probs must be finite and non-negative")
    total = float(probs.to(torch.float64).sum())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"probs must sum to 1, got {total!r}")
    return L, M, N, n


def _weighted_moments(
    seqs: torch.Tensor, w: torch.Tensor, tok: torch.Tensor, valid: torch.Tensor, L: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(p, q, q2)`` (L, M): the weighted first moments of ``Y_p = 1{E_{a,j}}`` and
    ``Y_q = (#a/n)·1{E_{a,j}}``, and the second moment of ``Y_q``, over the sequences seqs
    (N, n) with weights w (N,), in chunks of `_CHUNK`; tok, valid (L, M) the padded lists."""
    N, n = seqs.shape
    M = tok.shape[1]
    p = torch.zeros(L, M, dtype=torch.float64)
    q = torch.zeros(L, M, dtype=torch.float64)
    q2 = torch.zeros(L, M, dtype=torch.float64)
    for lo in range(0, N, _CHUNK):
        s = seqs[lo : lo + _CHUNK]  # (B, n)
        wb = w[lo : lo + _CHUNK]  # (B,)
        B = s.shape[0]
        counts = torch.zeros(B, L, dtype=torch.float64)  # (B, L) #positions holding each token
        counts.scatter_add_(1, s, torch.ones(B, n, dtype=torch.float64))
        present = counts > 0  # (B, L) token ∈ s
        frac = counts / n  # (B, L) #a / n
        none_before = present.clone()  # (B, L) a ∈ s and a_1..a_{j-1} ∉ s
        for j in range(M):
            # hit[b, a]: a ∈ s_b, a_{j+1} (0-based column j) ∈ s_b, no earlier list entry in s_b
            hit = none_before & present[:, tok[:, j]] & valid[:, j][None, :]  # (B, L)
            h = hit.to(torch.float64)
            p[:, j] += wb @ h
            yq = h * frac  # (B, L)
            q[:, j] += wb @ yq
            q2[:, j] += wb @ (yq * yq)
            none_before &= ~hit
    return p, q, q2


def decision_list_masses(
    lists: torch.Tensor,
    lengths: torch.Tensor,
    seqs: torch.Tensor,
    probs: torch.Tensor,
    *,
    sampled: bool = False,
) -> DecisionListMasses:
    """``p_{a,j}``, ``q_{a,j}``, δ, γ for the distribution ``Σ_s probs[s] · δ_{seqs[s]}``.

    Shapes: ``lists`` (L, M), ``lengths`` (L,), ``seqs`` (N, n), ``probs`` (N,) (layouts in the
    module docstring). ``sampled=False``: the rows are an exact enumeration and the SEs are 0.
    ``sampled=True``: the rows are an iid sample with uniform weights ``1/N`` (checked), and
    ``p_se``, ``q_se``, ``delta_se``, ``gamma_se`` are Monte-Carlo standard errors.

    Batched over sequences (in chunks of 65,536); the only Python loop is over the list index j
    (M iterations), which carries the "no earlier entry present" mask along the lists.
    """
    L, M, N, _ = _check_inputs(lists, lengths, seqs, probs)
    w = probs.to(torch.float64)
    if sampled:
        if N < 2:
            raise ValueError("a sampled estimate needs N ≥ 2 sequences")
        if not torch.allclose(w, torch.full_like(w, 1.0 / N), rtol=1e-9, atol=0.0):
            raise ValueError("sampled=True needs uniform weights probs = 1/N")
    valid = torch.arange(M)[None, :] < lengths[:, None]  # (L, M)
    tok = lists.clamp(min=0)  # (L, M) padding mapped to token 0, masked by `valid`

    p, q, q2 = _weighted_moments(seqs, w, tok, valid, L)

    if sampled:
        # Y_p is binary, so E[Y_p²] = p.
        p_se = ((p - p * p).clamp(min=0) / (N - 1)).sqrt()
        q_se = ((q2 - q * q).clamp(min=0) / (N - 1)).sqrt()
    else:
        p_se = torch.zeros(L, M, dtype=torch.float64)
        q_se = torch.zeros(L, M, dtype=torch.float64)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    p, q, p_se, q_se = (torch.where(valid, t, nan) for t in (p, q, p_se, q_se))

    exercised = valid & (p > 0)  # (L, M); q > 0 ⇔ p > 0
    if not bool(exercised.any()):  # impossible for probs summing to 1, kept as a guard
        raise ValueError("no list entry is exercised by the distribution")
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    i_d = int(torch.where(exercised, p, inf).flatten().argmin())  # first minimum, row-major
    i_g = int(torch.where(exercised, q, inf).flatten().argmin())
    a_d, j_d = divmod(i_d, M)
    a_g, j_g = divmod(i_g, M)
    return DecisionListMasses(
        p=p,
        q=q,
        p_se=p_se,
        q_se=q_se,
        delta=float(p[a_d, j_d]),
        gamma=float(q[a_g, j_g]),
        delta_se=float(p_se[a_d, j_d]),
        gamma_se=float(q_se[a_g, j_g]),
        argmin_delta=(a_d, j_d + 1),
        argmin_gamma=(a_g, j_g + 1),
        n_unexercised=int((valid & ~exercised).sum()),
        sampled=sampled,
    )


def mode_a_constants(n: int, L: int, M: int, delta: float, gamma: float) -> dict[str, float]:
    """Mode (a) constants: ``c_required = 4 n log(L)/δ`` and ``time_bound = 4 M/(log(L) γ)``.

    Natural logarithm; needs ``L ≥ 2`` (log 1 = 0) and ``δ, γ > 0``. A run with ``V = cP`` is
    inside the hypothesis when ``c ≥ c_required``; ``time_bound`` is in gradient-flow time
    (learning rate × number of steps for small-step GD).
    """
    if L < 2:
        raise ValueError(f"L must be ≥ 2 (log L > 0), got {L}")
    if n < 1 or M < 1:
        raise ValueError(f"n and M must be ≥ 1, got n={n}, M={M}")
    if not (delta > 0 and gamma > 0):
        raise ValueError(f"delta and gamma must be > 0, got delta={delta}, gamma={gamma}")
    log_l = math.log(L)
    return {"c_required": 4 * n * log_l / delta, "time_bound": 4 * M / (log_l * gamma)}


def mode_b_conditions(
    eta: float, lambda_max: float, eps: float, c: float, c_required: float
) -> dict[str, float | bool]:
    """Mode (b) hypotheses for GD on W and V with step η from ``V₀ = cP + E``, ``‖E‖ = ε``.

    Returns ``eta_ok = η ≤ 1/λ_max``, ``eta_max = 1/λ_max``, ``c_ok = c ≥ c_required``, ``eps``
    (reported as given) and ``checked_ok = eta_ok and c_ok``. The theorem needs ε *small*, but its
    exact threshold is not available to us, so ε is reported without a numeric test and is not part
    of ``checked_ok``. ``lambda_max`` (the largest Hessian eigenvalue along the run, or at its
    start) must be positive.
    """
    if not (lambda_max > 0 and math.isfinite(lambda_max)):
        raise ValueError(f"lambda_max must be positive and finite, got {lambda_max}")
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    if not eps >= 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}")
    eta_max = 1.0 / lambda_max
    eta_ok = eta <= eta_max
    c_ok = c >= c_required
    return {
        "eta_ok": eta_ok,
        "eta_max": eta_max,
        "c_ok": c_ok,
        "eps": float(eps),
        "checked_ok": eta_ok and c_ok,
    }
