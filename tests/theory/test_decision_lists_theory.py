"""δ, γ and the decision-list theorem constants (icgd.theory.decision_lists)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from icgd.theory import (
    decision_list_masses,
    mode_a_constants,
    mode_b_conditions,
)

NAN = float("nan")


def _pad(rows: list[list[int]], M: int) -> tuple[torch.Tensor, torch.Tensor]:
    lists = torch.tensor([r + [-1] * (M - len(r)) for r in rows], dtype=torch.int64)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    return lists, lengths


def _enumerate_iid(r: list[float], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sequence of [L]^n with its probability under iid tokens of law r."""
    seqs = list(itertools.product(range(len(r)), repeat=n))
    probs = [math.prod(r[t] for t in s) for s in seqs]
    return torch.tensor(seqs, dtype=torch.int64), torch.tensor(probs, dtype=torch.float64)


def _reference_masses(
    rows: list[list[int]], M: int, seqs: list[tuple[int, ...]], probs: list[float]
) -> tuple[list[list[float]], list[list[float]]]:
    """Plain-Python p, q: for each position, walk its token's list to the first present entry."""
    L = len(rows)
    p = [[0.0] * M for _ in range(L)]
    q = [[0.0] * M for _ in range(L)]
    for s, w in zip(seqs, probs, strict=True):
        n = len(s)
        present = set(s)
        for a in present:
            j = next(k for k, t in enumerate(rows[a]) if t in present)  # label-determining index
            p[a][j] += w
            q[a][j] += w * s.count(a) / n
    for a in range(L):
        for j in range(len(rows[a]), M):
            p[a][j] = q[a][j] = NAN
    return p, q


# L = 3, n = 2, iid tokens with law (1/2, 1/4, 1/4): every probability is a power of 2, so exact.
TINY_ROWS = [[1, 0], [1], [0, 1, 2]]
TINY_R = [0.5, 0.25, 0.25]


def test_tiny_case_by_hand():
    """Hand computation over the 9 sequences (listed with their probabilities in the comments).

    P: (0,0) 1/4; (0,1) (1,0) (0,2) (2,0) 1/8; (1,1) (1,2) (2,1) (2,2) 1/16.
    a=0, L_0=(1,0): E_{0,1} = {0,1 ∈ s}: (0,1),(1,0): p=1/4, q=2·(1/2)(1/8)=1/8.
                    E_{0,2} = {0 ∈ s, 1 ∉ s}: (0,0),(0,2),(2,0): p=1/2, q=1/4+1/16+1/16=3/8.
    a=1, L_1=(1):   E_{1,1} = {1 ∈ s}: p=1−(3/4)²=7/16, q=1/16+1/16+1/16+1/32+1/32=1/4.
    a=2, L_2=(0,1,2): E_{2,1} = {2,0 ∈ s}: (0,2),(2,0): p=1/4, q=1/8.
                      E_{2,2} = {2,1 ∈ s, 0 ∉ s}: (1,2),(2,1): p=1/8, q=1/16.
                      E_{2,3} = {s = (2,2)}: p=1/16, q=1/16.
    δ = 1/16 at (2,3); γ = 1/16 at (2,2) and (2,3), the first in row-major order is (2,2).
    """
    lists, lengths = _pad(TINY_ROWS, 3)
    seqs, probs = _enumerate_iid(TINY_R, 2)
    res = decision_list_masses(lists, lengths, seqs, probs)
    p = torch.tensor([[1 / 4, 1 / 2, NAN], [7 / 16, NAN, NAN], [1 / 4, 1 / 8, 1 / 16]])
    q = torch.tensor([[1 / 8, 3 / 8, NAN], [1 / 4, NAN, NAN], [1 / 8, 1 / 16, 1 / 16]])
    torch.testing.assert_close(res.p, p.double(), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(res.q, q.double(), rtol=0, atol=0, equal_nan=True)
    assert res.delta == 1 / 16 and res.argmin_delta == (2, 3)
    assert res.gamma == 1 / 16 and res.argmin_gamma == (2, 2)
    assert res.n_unexercised == 0
    assert res.delta_se == 0.0 and res.gamma_se == 0.0 and not res.sampled
    assert res.p.dtype == torch.float64 and res.p.shape == (3, 3) and res.q.shape == (3, 3)


def test_single_token_sequences_exercise_only_the_last_entries():
    """n = 1: s = (a) holds no other token, so only E_{a,m_a} happens; p_{a,m_a} = q = P(a)."""
    rows = [[1, 0], [1], [0, 1, 2]]
    lists, lengths = _pad(rows, 3)
    seqs, probs = _enumerate_iid(TINY_R, 1)
    res = decision_list_masses(lists, lengths, seqs, probs)
    assert res.n_unexercised == sum(len(r) - 1 for r in rows) == 3
    p = torch.tensor([[0.0, 0.5, NAN], [0.25, NAN, NAN], [0.0, 0.0, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(res.p, p, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(res.q, p, rtol=0, atol=0, equal_nan=True)
    # the zero entries are left out of the minima
    assert res.delta == 0.25 and res.argmin_delta == (1, 1)
    assert res.gamma == 0.25 and res.argmin_gamma == (1, 1)


# L = 5, M = 3, n = 3, a non-uniform token law; lists of distinct tokens ending in a.
MC_ROWS = [[3, 0], [4, 2, 1], [2], [1, 0, 3], [0, 4]]
MC_R = [0.1, 0.3, 0.25, 0.2, 0.15]
MC_N = 3


def test_enumeration_matches_a_plain_python_reference_and_partitions():
    lists, lengths = _pad(MC_ROWS, 3)
    seqs, probs = _enumerate_iid(MC_R, MC_N)
    res = decision_list_masses(lists, lengths, seqs, probs)
    p_ref, q_ref = _reference_masses(MC_ROWS, 3, [tuple(s) for s in seqs.tolist()], probs.tolist())
    torch.testing.assert_close(
        res.p, torch.tensor(p_ref, dtype=torch.float64), rtol=0, atol=1e-14, equal_nan=True
    )
    torch.testing.assert_close(
        res.q, torch.tensor(q_ref, dtype=torch.float64), rtol=0, atol=1e-14, equal_nan=True
    )
    # For fixed a the events E_{a,j} partition {a ∈ s}: Σ_j p_{a,j} = P(a ∈ s) = 1 − (1 − r_a)^n.
    p_in = torch.tensor([1 - (1 - r) ** MC_N for r in MC_R], dtype=torch.float64)
    torch.testing.assert_close(res.p.nansum(dim=1), p_in, rtol=0, atol=1e-14)
    # Σ_{a,j} q_{a,j} = E[Σ_a #a/n] = 1.
    assert abs(float(res.q.nansum()) - 1.0) < 1e-14


def test_sample_estimates_agree_with_the_enumeration_within_4_se():
    lists, lengths = _pad(MC_ROWS, 3)
    exact = decision_list_masses(lists, lengths, *_enumerate_iid(MC_R, MC_N))
    N = 200_000
    g = torch.Generator().manual_seed(7)
    r = torch.tensor(MC_R, dtype=torch.float64)
    seqs = torch.multinomial(r, N * MC_N, replacement=True, generator=g).view(N, MC_N)
    est = decision_list_masses(
        lists, lengths, seqs, torch.full((N,), 1.0 / N, dtype=torch.float64), sampled=True
    )
    assert est.sampled and est.n_unexercised == exact.n_unexercised == 0
    valid = ~exact.p.isnan()
    for name in ("p", "q"):
        e, x, se = (
            getattr(est, name)[valid],
            getattr(exact, name)[valid],
            getattr(est, f"{name}_se"),
        )
        z = (e - x).abs() / se[valid]
        assert bool((se[valid] > 0).all())
        assert float(z.max()) < 4, (name, e, x, se[valid])
    # The binomial SE of p̂ at the minimising entry.
    pd = est.delta
    assert math.isclose(est.delta_se, math.sqrt(pd * (1 - pd) / (N - 1)), rel_tol=1e-9)
    assert abs(est.delta - exact.delta) < 4 * est.delta_se, (est.delta, exact.delta, est.delta_se)
    assert abs(est.gamma - exact.gamma) < 4 * est.gamma_se, (est.gamma, exact.gamma, est.gamma_se)
    assert est.argmin_delta == exact.argmin_delta  # the rarest entry is well separated here


def test_invariant_under_permuting_the_sequences():
    lists, lengths = _pad(MC_ROWS, 3)
    seqs, probs = _enumerate_iid(MC_R, MC_N)
    perm = torch.randperm(seqs.shape[0], generator=torch.Generator().manual_seed(3))
    a = decision_list_masses(lists, lengths, seqs, probs)
    b = decision_list_masses(lists, lengths, seqs[perm], probs[perm])
    torch.testing.assert_close(a.p, b.p, rtol=0, atol=1e-15, equal_nan=True)
    torch.testing.assert_close(a.q, b.q, rtol=0, atol=1e-15, equal_nan=True)
    assert a.argmin_delta == b.argmin_delta and a.argmin_gamma == b.argmin_gamma
    assert math.isclose(a.delta, b.delta, rel_tol=1e-12)
    assert math.isclose(a.gamma, b.gamma, rel_tol=1e-12)


def test_chunking_does_not_change_the_result(monkeypatch):
    import icgd.theory.decision_lists as mod

    lists, lengths = _pad(MC_ROWS, 3)
    seqs, probs = _enumerate_iid(MC_R, MC_N)
    whole = decision_list_masses(lists, lengths, seqs, probs)
    monkeypatch.setattr(mod, "_CHUNK", 7)
    chunked = decision_list_masses(lists, lengths, seqs, probs)
    torch.testing.assert_close(whole.p, chunked.p, rtol=0, atol=1e-15, equal_nan=True)
    torch.testing.assert_close(whole.q, chunked.q, rtol=0, atol=1e-15, equal_nan=True)


def test_mode_a_constants():
    out = mode_a_constants(n=4, L=8, M=3, delta=0.01, gamma=0.002)
    assert math.isclose(out["c_required"], 4 * 4 * math.log(8) / 0.01, rel_tol=1e-15)
    assert math.isclose(out["time_bound"], 4 * 3 / (math.log(8) * 0.002), rel_tol=1e-15)
    with pytest.raises(ValueError, match="L must be"):
        mode_a_constants(n=4, L=1, M=1, delta=0.1, gamma=0.1)
    with pytest.raises(ValueError, match="delta"):
        mode_a_constants(n=4, L=3, M=1, delta=0.0, gamma=0.1)


def test_mode_b_conditions():
    ok = mode_b_conditions(eta=0.5, lambda_max=2.0, eps=1e-3, c=10.0, c_required=9.0)
    assert ok == {"eta_ok": True, "eta_max": 0.5, "c_ok": True, "eps": 1e-3, "checked_ok": True}
    bad = mode_b_conditions(eta=0.6, lambda_max=2.0, eps=0.0, c=8.0, c_required=9.0)
    assert not bad["eta_ok"] and not bad["c_ok"] and not bad["checked_ok"]
    with pytest.raises(ValueError, match="lambda_max"):
        mode_b_conditions(eta=0.1, lambda_max=0.0, eps=0.0, c=1.0, c_required=1.0)


@pytest.mark.parametrize(
    ("rows", "match"),
    [([[1, 0], [0]], "end in a"), ([[0], [1, 2]], r"tokens in \[0, L")],
)
def test_bad_lists_are_rejected(rows, match):
    lists, lengths = _pad(rows, 2)
    seqs, probs = _enumerate_iid([0.5, 0.5], 2)
    with pytest.raises(ValueError, match=match):
        decision_list_masses(lists, lengths, seqs, probs)


def test_bad_weights_are_rejected():
    lists, lengths = _pad([[0], [1]], 1)
    seqs, probs = _enumerate_iid([0.5, 0.5], 2)
    with pytest.raises(ValueError, match="sum to 1"):
        decision_list_masses(lists, lengths, seqs, 2 * probs)
    nonuniform = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    with pytest.raises(ValueError, match="uniform"):
        decision_list_masses(lists, lengths, seqs, nonuniform, sampled=True)
