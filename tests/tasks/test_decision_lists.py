"""Tests of the decision-list task (SPEC §3): the target (π, P, lists), the samplers, the labels
against a plain-Python reference, and the exact enumeration."""

from __future__ import annotations

import itertools
import math

import pydantic
import pytest
import torch

from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.tasks import DecisionLists, DecisionListsConfig, one_hot


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def task(**kw) -> DecisionLists:
    return DecisionLists(DecisionListsConfig(**kw))


def reference_determining(t: DecisionLists, seq: list[int]) -> list[int]:
    """Plain Python: for each position, the first entry of its token's list found in `seq`."""
    lists = [row[:m] for row, m in zip(t.lists.tolist(), t.lengths.tolist(), strict=True)]
    present = set(seq)
    out = []
    for a in seq:
        for entry in lists[a]:
            if entry in present:
                out.append(entry)
                break
        else:  # unreachable: the list ends in a
            raise AssertionError(f"no label-determining token for {a}")
    return out


# --- the target: lists, permutation --------------------------------------------------------------

SHAPES = [(2, 1), (2, 2), (5, 3), (12, 4), (9, 9)]


@pytest.mark.parametrize("kind", ["uniform", "fixed"])
@pytest.mark.parametrize(("L", "M"), SHAPES)
def test_lists_end_in_their_token_and_hold_distinct_tokens(kind, L, M):
    t = task(L=L, M=M, n=1, list_length=kind, seed=3)
    assert t.lists.shape == (L, M) and t.lists.dtype == torch.int64
    assert t.lengths.shape == (L,) and t.lengths.dtype == torch.int64
    assert ((t.lengths >= 1) & (t.lengths <= M)).all()
    if kind == "fixed":
        assert (t.lengths == M).all()
    for a, (row, m) in enumerate(zip(t.lists.tolist(), t.lengths.tolist(), strict=True)):
        assert row[m - 1] == a, (a, row)
        assert all(x == -1 for x in row[m:]), (a, row)
        head = row[: m - 1]
        assert len(set(head)) == len(head) and a not in head, (a, row)
        assert all(0 <= x < L for x in head), (a, row)


def test_uniform_lengths_are_uniform():
    L, M = 4000, 4
    counts = torch.bincount(task(L=L, M=M, seed=1).lengths, minlength=M + 1)[1:]
    p = 1 / M
    se = math.sqrt(L * p * (1 - p))
    for m, c in enumerate(counts.tolist(), start=1):
        assert abs(c - L * p) < 4 * se, f"length {m}: {c} vs {L * p}, SE {se:.1f}"


def test_list_entries_are_uniform_without_replacement():
    # L = 3, fixed M = 3: the list of token 0 is (1, 2, 0) or (2, 1, 0), each with probability 1/2
    firsts = torch.tensor(
        [task(L=3, M=3, list_length="fixed", seed=s).lists[0, 0] for s in range(400)]
    )
    assert set(firsts.tolist()) == {1, 2}
    share = (firsts == 1).double().mean().item()
    se = math.sqrt(0.25 / 400)
    assert abs(share - 0.5) < 4 * se, f"share of (1, 2, 0): {share:.3f} vs 0.5, SE {se:.3f}"
    # large L, M = 2: the offset (a_1 − a) mod L is uniform on 1 … L − 1
    L = 3000
    t = task(L=L, M=2, list_length="fixed", seed=5)
    offset = (t.lists[:, 0] - torch.arange(L)) % L
    assert (offset >= 1).all()
    mean, var = L / 2, ((L - 1) ** 2 - 1) / 12
    se = math.sqrt(var / L)
    measured = offset.double().mean().item()
    assert abs(measured - mean) < 4 * se, f"offset mean {measured:.1f} vs {mean}, SE {se:.1f}"


def test_target_is_a_function_of_the_seed():
    a, b, c = (task(L=20, M=5, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.perm, b.perm) and torch.equal(a.lists, b.lists)
    assert torch.equal(a.lengths, b.lengths) and torch.equal(a.P, b.P)
    assert not torch.equal(a.perm, c.perm) and not torch.equal(a.lists, c.lists)
    # the sequence sampler and n do not change the target
    d = task(L=20, M=5, seed=7, n=9, sequence_sampler="subset")
    assert torch.equal(a.perm, d.perm) and torch.equal(a.lists, d.lists)


def test_perm_and_permutation_matrix():
    t = DecisionLists(DecisionListsConfig(L=11, M=3, seed=2), dtype=torch.float64)
    assert t.perm.dtype == torch.int64
    assert torch.equal(t.perm.sort().values, torch.arange(11))
    assert t.P.shape == (11, 11) and t.P.dtype == torch.float64
    eye = torch.eye(11, dtype=torch.float64)
    for a in range(11):
        torch.testing.assert_close(t.P @ eye[:, a], eye[:, t.perm[a]], rtol=0, atol=0)
    torch.testing.assert_close(t.P @ t.P.T, eye, rtol=0, atol=0)
    seqs = t.sample(6, gen(0))
    assert torch.equal(t.P @ t.one_hot(seqs), t.one_hot(t.perm[seqs]))  # (P X)_j = e_{π(s_j)}


# --- sequences -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["iid", "subset"])
def test_sample_shapes_range_and_determinism(sampler):
    t = task(L=7, n=5, M=3, sequence_sampler=sampler)
    a, b, c = (t.sample(9, gen(s)) for s in (1, 1, 2))
    assert a.shape == (9, 5) and a.dtype == torch.int64
    assert ((a >= 0) & (a < 7)).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="batch_size"):
        t.sample(0, gen(0))


def test_subset_sampler_never_repeats_a_token():
    t = task(L=6, n=6, M=2, sequence_sampler="subset")
    seqs = t.sample(5000, gen(4))
    assert (seqs.sort(dim=1).values == torch.arange(6)).all()  # each row a permutation
    t = task(L=30, n=8, M=2, sequence_sampler="subset")
    seqs = t.sample(5000, gen(5)).sort(dim=1).values
    assert (seqs[:, 1:] != seqs[:, :-1]).all()


def test_one_hot_columns_are_tokens():
    seqs = torch.tensor([[2, 0, 2], [1, 1, 3]])
    X = one_hot(seqs, 4)
    assert X.shape == (2, 4, 3) and X.dtype == torch.float32
    for b in range(2):
        for i in range(3):
            assert torch.equal(X[b, :, i], torch.eye(4)[seqs[b, i]])
    assert one_hot(seqs, 4, torch.float64).dtype == torch.float64


# --- labels --------------------------------------------------------------------------------------

LABEL_CASES = [
    {"L": 6, "n": 8, "M": 4, "sequence_sampler": "iid"},  # many repeats
    {"L": 12, "n": 5, "M": 4, "sequence_sampler": "iid", "list_length": "fixed"},
    {"L": 9, "n": 9, "M": 9, "sequence_sampler": "iid"},
    {"L": 12, "n": 5, "M": 4, "sequence_sampler": "subset"},
    {"L": 7, "n": 7, "M": 7, "sequence_sampler": "subset", "list_length": "fixed"},
    {"L": 5, "n": 3, "M": 1, "sequence_sampler": "iid"},  # every label is π(s_j)
]


@pytest.mark.parametrize("cfg", LABEL_CASES)
def test_labels_match_reference(cfg):
    t = task(seed=11, **cfg)
    seqs = t.sample(300, gen(6))
    det = t.determining_tokens(seqs)
    labels = t.labels(seqs)
    assert det.shape == labels.shape == seqs.shape and labels.dtype == torch.int64
    expected = [reference_determining(t, row) for row in seqs.tolist()]
    assert det.tolist() == expected
    assert torch.equal(labels, t.perm[torch.tensor(expected)])
    if cfg["sequence_sampler"] == "iid" and cfg["n"] > cfg["L"]:
        assert (seqs.sort(1).values[:, 1:] == seqs.sort(1).values[:, :-1]).any()  # repeats
    if cfg["M"] == 1:
        assert torch.equal(labels, t.perm[seqs])
    # the label is not always π(s_j) when lists are long
    if cfg["M"] >= 4:
        assert (det != seqs).any()


def test_labels_on_a_hand_example():
    t = task(L=5, n=4, M=3, seed=0)
    lists = [row[:m] for row, m in zip(t.lists.tolist(), t.lengths.tolist(), strict=True)]
    # a sequence holding every token: each position's determining token is its list's head
    seq = torch.tensor([[0, 1, 2, 3, 4]])
    assert t.determining_tokens(seq)[0].tolist() == [lists[a][0] for a in range(5)]
    # a sequence of one repeated token: always the token itself
    for a in range(5):
        s = torch.full((1, 3), a)
        assert (t.determining_tokens(s) == a).all() and (t.labels(s) == t.perm[a]).all()


@pytest.mark.parametrize("sampler", ["iid", "subset"])
def test_determining_mask_and_positions_are_consistent(sampler):
    t = task(L=6, n=6, M=4, seed=2, sequence_sampler=sampler)
    seqs = t.sample(200, gen(8))
    det, k = t.determining_tokens(seqs), t.determining_positions(seqs)
    mask = t.determining_mask(seqs)
    assert mask.shape == (200, 6, 6) and mask.dtype == torch.bool
    for b in range(200):
        for j in range(6):
            assert mask[b, j].tolist() == [s == det[b, j].item() for s in seqs[b].tolist()]
    assert mask.any(dim=2).all()  # the determining token is somewhere in the sequence
    assert ((k >= 0) & (k < t.lengths[seqs])).all()
    assert torch.equal(t.lists[seqs, k], det)
    if sampler == "subset":
        assert (mask.sum(dim=2) == 1).all()  # distinct tokens: exactly one position


def test_bad_sequences_are_refused():
    t = task(L=5, n=3)
    with pytest.raises(ValueError, match="tokens"):
        t.labels(torch.tensor([[0, 5, 1]]))
    with pytest.raises(ValueError, match="tokens"):
        t.labels(torch.tensor([[0, -1, 1]]))
    with pytest.raises(ValueError, match="int64"):
        t.labels(torch.tensor([0, 1, 2]))


# --- enumeration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("L", "n", "sampler"),
    [(3, 3, "iid"), (4, 1, "iid"), (5, 2, "subset"), (5, 5, "subset"), (6, 3, "subset")],
)
def test_enumerate_lists_every_sequence_once(L, n, sampler):
    t = task(L=L, n=n, M=2, sequence_sampler=sampler)
    seqs, probs = t.enumerate()
    if sampler == "iid":
        expected = list(itertools.product(range(L), repeat=n))
        assert len(expected) == L**n
    else:
        expected = list(itertools.permutations(range(L), n))
        assert len(expected) == math.factorial(L) // math.factorial(L - n)
    assert seqs.dtype == torch.int64 and probs.dtype == torch.float64
    assert seqs.tolist() == [list(s) for s in expected]  # same rows, lexicographic order
    assert t.num_sequences() == len(expected)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert (probs == probs[0]).all()
    # every sampled sequence occurs in the enumeration
    drawn = t.sample(500, gen(3))
    assert (drawn.unsqueeze(1) == seqs.unsqueeze(0)).all(-1).any(-1).all()


def test_enumerate_refuses_beyond_the_limit():
    t = task(L=10, n=4, M=2)
    with pytest.raises(ValueError, match="10000 sequences"):
        t.enumerate(max_sequences=9999)
    assert t.enumerate(max_sequences=10000)[0].shape == (10000, 4)
    with pytest.raises(ValueError, match="max_sequences=2000000"):
        task(L=100, n=4, M=2, sequence_sampler="subset").enumerate()


@pytest.mark.parametrize(("L", "n", "sampler"), [(3, 2, "iid"), (4, 2, "subset")])
def test_sample_frequencies_match_enumerate(L, n, sampler):
    t = task(L=L, n=n, M=2, sequence_sampler=sampler)
    seqs, probs = t.enumerate()
    K = 60_000
    drawn = t.sample(K, gen(12))
    match = (drawn.unsqueeze(1) == seqs.unsqueeze(0)).all(-1)  # (K, N)
    assert (match.sum(1) == 1).all()
    counts = match.sum(0).double()  # (N,)
    expected = K * probs
    se = (K * probs * (1 - probs)).sqrt()
    assert ((counts - expected).abs() < 4 * se).all(), (counts, expected, se)
    # Pearson χ² with N − 1 degrees of freedom: mean N − 1, SD √(2(N − 1))
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    dof = len(probs) - 1
    assert chi2 < dof + 4 * math.sqrt(2 * dof), f"χ² = {chi2:.1f}, {dof} dof"


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"L": 1, "M": 1}, "L"),
        ({"L": 4, "M": 5}, "M"),
        ({"M": 0}, "M"),
        ({"n": 0}, "n"),
        ({"L": 4, "n": 5, "M": 2, "sequence_sampler": "subset"}, "n"),
        ({"list_length": "geometric"}, "list_length"),
        ({"sequence_sampler": "markov"}, "sequence_sampler"),
        ({"seed": -1}, "seed"),
        ({"L": 2.5}, "L"),
        ({"n": True}, "n"),
        ({"vocab": 3}, "vocab"),
    ],
)
def test_bad_config_names_the_field(data, field):
    with pytest.raises(InputError) as info:
        validate_config(DecisionListsConfig, data)
    assert info.value.field == field, str(info.value)
    with pytest.raises(pydantic.ValidationError, match=field):
        DecisionListsConfig(**data)


def test_config_defaults_frozen_and_iid_allows_n_above_L():
    cfg = DecisionListsConfig()
    assert (cfg.L, cfg.n, cfg.M, cfg.list_length, cfg.sequence_sampler, cfg.seed) == (
        10,
        4,
        3,
        "uniform",
        "iid",
        0,
    )
    with pytest.raises(pydantic.ValidationError):
        cfg.L = 3
    assert DecisionListsConfig(L=3, n=7, M=2).n == 7  # repeats are fine for "iid"
    assert validate_config(DecisionListsConfig, cfg.model_dump(mode="json")) == cfg
