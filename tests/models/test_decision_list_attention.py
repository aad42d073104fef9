"""Decision-list attention `σ(V X σ(Xᵀ W X))`: indexing path == matrix formula == a per-sequence
loop, attention invariants, the loss by hand, weights, hooks, gradients, config."""

from __future__ import annotations

import math

import pytest
import torch

from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.core.rng import make_generator
from icgd.models import DecisionListAttention, DecisionListAttentionConfig, sequence_loss

F64 = torch.float64
PARAMETRISATIONS = ["full", "factored"]


def make_model(parametrisation="full", L=5, rank=None, std=0.7, seed=1):
    config = DecisionListAttentionConfig(
        L=L, parametrisation=parametrisation, rank=rank, init="normal", init_std=std
    )
    return DecisionListAttention(config, generator=make_generator(seed), dtype=F64)


def random_batch(B: int, n: int, L: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = make_generator(seed)
    seqs = torch.randint(L, (B, n), generator=g)
    labels = torch.randint(L, (B, n), generator=g)
    return seqs, labels


def one_hot(seqs: torch.Tensor, L: int) -> torch.Tensor:
    """X (B, L, n): column j = e_{s_j}."""
    return torch.nn.functional.one_hot(seqs, L).to(F64).transpose(1, 2)


def reference_logits(W: torch.Tensor, V: torch.Tensor, seq: list[int]) -> torch.Tensor:
    """Z (L, n) of one sequence, entry by entry:
    `Z[:, j] = Σ_i softmax_i(W[s_i, s_j]) V[:, s_i]`."""
    n = len(seq)
    Z = torch.zeros(V.shape[0], n, dtype=F64)
    for j in range(n):
        exps = [math.exp(float(W[seq[i], seq[j]])) for i in range(n)]
        total = sum(exps)
        for i in range(n):
            Z[:, j] += (exps[i] / total) * V[:, seq[i]]
    return Z


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_indexing_equals_matrix_formula_and_loop(parametrisation):
    L, B, n = 5, 7, 6
    model = make_model(parametrisation, L=L, rank=3 if parametrisation == "factored" else None)
    seqs, _ = random_batch(B, n, L)
    with torch.no_grad():
        Z = model(seqs)
        Z_matrix = model.forward_onehot(one_hot(seqs, L))
        W, V = model.W_eff, model.V
        Z_loop = torch.stack([reference_logits(W, V, s.tolist()) for s in seqs])
    assert Z.shape == (B, L, n) and Z.dtype == F64
    assert Z.abs().max() > 1e-2  # a non-trivial point
    torch.testing.assert_close(Z, Z_matrix, rtol=0, atol=1e-12)
    torch.testing.assert_close(Z, Z_loop, rtol=0, atol=1e-12)


def test_factored_W_eff_is_WK_transpose_WQ():
    model = make_model("factored", L=4, rank=2)
    assert model.W_K.shape == model.W_Q.shape == (2, 4)
    torch.testing.assert_close(model.W_eff, model.W_K.T @ model.W_Q)
    assert torch.linalg.matrix_rank(model.W_eff.detach()) == 2
    assert DecisionListAttentionConfig(L=4, parametrisation="factored", init="normal").r == 4


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_attention_columns_sum_to_one(parametrisation):
    model = make_model(parametrisation, L=6)
    seqs, _ = random_batch(4, 5, 6)
    with torch.no_grad():
        A = model.attention(seqs)
        f = model.probs(seqs)
    assert A.shape == (4, 5, 5)
    assert (A >= 0).all() and (f >= 0).all()
    torch.testing.assert_close(A.sum(dim=1), torch.ones(4, 5, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(f.sum(dim=1), torch.ones(4, 5, dtype=F64), rtol=0, atol=1e-14)
    assert (model.predict(seqs) == f.argmax(dim=1)).all()


def test_zero_W_gives_uniform_attention():
    config = DecisionListAttentionConfig(L=5)  # init "zero": W = V = 0
    model = DecisionListAttention(config, dtype=F64)
    assert (model.W == 0).all() and (model.V == 0).all()
    seqs, _ = random_batch(3, 4, 5)
    with torch.no_grad():
        A = model.attention(seqs)
    torch.testing.assert_close(A, torch.full((3, 4, 4), 0.25, dtype=F64), rtol=0, atol=0)


def test_loss_by_hand():
    # W = 0 (uniform attention), seq (0, 2), V diagonal (1, 2, 3): both positions' logits are
    # z = (V[:, 0] + V[:, 2]) / 2 = (0.5, 0, 1.5); labels (2, 0).
    model = DecisionListAttention(DecisionListAttentionConfig(L=3), dtype=F64)
    model.set_weights(V=torch.diag(torch.tensor([1.0, 2.0, 3.0])))
    seqs, labels = torch.tensor([[0, 2]]), torch.tensor([[2, 0]])
    z = [0.5, 0.0, 1.5]
    log_norm = math.log(sum(math.exp(v) for v in z))
    expected = -0.5 * ((z[2] - log_norm) + (z[0] - log_norm))
    with torch.no_grad():
        torch.testing.assert_close(model(seqs)[0, :, 0], torch.tensor(z, dtype=F64))
        assert abs(float(model.loss(seqs, labels)) - expected) < 1e-14


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_loss_matches_loop_and_weights(parametrisation):
    L, B, n = 4, 6, 3
    model = make_model(parametrisation, L=L)
    seqs, labels = random_batch(B, n, L, seed=3)
    with torch.no_grad():
        W, V = model.W_eff, model.V
        per_seq = []
        for s, y in zip(seqs.tolist(), labels.tolist(), strict=True):
            Z = reference_logits(W, V, s)
            log_f = Z - torch.logsumexp(Z, dim=0, keepdim=True)
            per_seq.append(-sum(float(log_f[y[j], j]) for j in range(n)) / n)
        mean = float(model.loss(seqs, labels))
        uniform = float(model.loss(seqs, labels, torch.full((B,), 1.0 / B, dtype=F64)))
        w = torch.rand(B, generator=make_generator(4), dtype=F64)
        w = w / w.sum()
        weighted = float(model.loss(seqs, labels, w))
    assert abs(mean - sum(per_seq) / B) < 1e-12
    assert abs(uniform - mean) < 1e-12
    assert abs(weighted - sum(wb * lb for wb, lb in zip(w.tolist(), per_seq, strict=True))) < 1e-12


def test_loss_is_stable_for_large_logits():
    # V = cP with c large (SPEC §3, c = 4 n log(L)/δ): softmax probabilities underflow to 0, the
    # log-softmax loss must stay finite.
    model = DecisionListAttention(DecisionListAttentionConfig(L=4), dtype=F64)
    model.set_weights(V=2000.0 * torch.eye(4))
    seqs = torch.tensor([[0, 1, 2]])
    with torch.no_grad():
        loss = model.loss(seqs, torch.tensor([[3, 3, 3]]))
    assert torch.isfinite(loss) and float(loss) > 100


def test_hooks_fire_with_shapes_and_patch():
    L, B, n = 5, 2, 4
    model = make_model("full", L=L)
    seqs, _ = random_batch(B, n, L)
    logits, cache = model.run_with_cache(seqs)
    assert list(cache) == model.hook_names() == ["hook_scores", "hook_attention", "hook_logits"]
    assert cache["hook_scores"].shape == cache["hook_attention"].shape == (B, n, n)
    assert cache["hook_logits"].shape == (B, L, n)
    torch.testing.assert_close(cache["hook_logits"], logits.detach())
    torch.testing.assert_close(cache["hook_attention"], model.attention(seqs).detach())
    # the one-hot path fires the same hooks with the same values
    _, cache_onehot = model.run_with_cache(seqs)
    with model.hooks([(lambda name: True, lambda t, name: cache_onehot.__setitem__(name, t))]):
        model.forward_onehot(one_hot(seqs, L))
    for name in model.hook_names():
        torch.testing.assert_close(cache_onehot[name].detach(), cache[name], rtol=0, atol=1e-12)
    # patching the scores to 0 gives uniform attention downstream
    with model.hooks([("hook_scores", lambda t, name: torch.zeros_like(t))]):
        _, patched = model.run_with_cache(seqs, "hook_attention")
    torch.testing.assert_close(patched["hook_attention"], torch.full((B, n, n), 1 / n, dtype=F64))
    assert len(model.hook_points) == 0  # removed on exit


@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_gradients_flow_to_every_parameter(parametrisation):
    model = make_model(parametrisation, L=4)
    seqs, labels = random_batch(5, 3, 4)
    model.loss(seqs, labels).backward()
    names = ["W", "V"] if parametrisation == "full" else ["W_K", "W_Q", "V"]
    assert sorted(n for n, _ in model.named_parameters()) == sorted(names)
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().max() > 1e-6, name


def test_loss_fn_matches_loss_and_keeps_missing_params():
    model = make_model("full", L=4)
    seqs, labels = random_batch(5, 3, 4)
    fn = model.loss_fn(seqs, labels)
    params = {k: v.detach() for k, v in model.named_parameters()}
    torch.testing.assert_close(fn(params), model.loss(seqs, labels).detach())
    # only W given: V is the module's own
    torch.testing.assert_close(fn({"W": params["W"]}), model.loss(seqs, labels).detach())
    with torch.no_grad():
        assert float(fn({"W": torch.zeros(4, 4, dtype=F64)})) != float(fn(params))


def test_set_weights():
    model = DecisionListAttention(DecisionListAttentionConfig(L=3), dtype=F64)
    P = torch.eye(3)[[2, 0, 1]]
    model.set_weights(V=5 * P, W=torch.ones(3, 3))
    assert model.V.dtype == F64 and (model.V == 5 * P.to(F64)).all() and (model.W == 1).all()
    with pytest.raises(ValueError, match="W_K"):
        model.set_weights(W_K=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="shape"):
        model.set_weights(V=torch.zeros(2, 3))
    factored = make_model("factored", L=3, rank=2)
    with pytest.raises(ValueError, match="W: not a parameter"):
        factored.set_weights(W=torch.zeros(3, 3))
    factored.set_weights(W_K=torch.ones(2, 3), W_Q=torch.eye(3)[:2])
    torch.testing.assert_close(
        factored.W_eff.detach(), torch.ones(3, 2, dtype=F64) @ torch.eye(3, dtype=F64)[:2]
    )


def test_init_is_deterministic_and_dtype_independent():
    config = DecisionListAttentionConfig(L=4, init="normal", init_std=0.3)
    a = DecisionListAttention(config, generator=make_generator(7), dtype=F64)
    b = DecisionListAttention(config, generator=make_generator(7), dtype=F64)
    c = DecisionListAttention(config, generator=make_generator(7), dtype=torch.float32)
    assert torch.equal(a.W, b.W) and torch.equal(a.V, b.V)
    torch.testing.assert_close(c.W, a.W.float())
    assert not torch.equal(a.W, a.V)


def test_bad_inputs():
    model = make_model("full", L=4)
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[0, -1, 2]]))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[0, 4, 2]]))
    with pytest.raises(ValueError, match="labels"):
        sequence_loss(torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.int64))
    tokens = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="weights"):
        model.loss(tokens, tokens, torch.ones(3))


def test_config_validation():
    with pytest.raises(InputError, match="rank"):
        validate_config(DecisionListAttentionConfig, {"L": 4, "rank": 2})
    with pytest.raises(InputError, match="init"):
        validate_config(DecisionListAttentionConfig, {"L": 4, "parametrisation": "factored"})
    with pytest.raises(InputError, match="parametrisation"):
        validate_config(DecisionListAttentionConfig, {"parametrisation": "lowrank"})
    with pytest.raises(InputError, match="extra|unknown"):
        validate_config(DecisionListAttentionConfig, {"d": 3})
