"""`identify` on hand-built models: it names the algorithm a construction runs and recovers the
parameters built into it (`icgd.constructions`), and it works for every model family."""

from __future__ import annotations

import json
import math

import pytest
import torch

from icgd.analysis.identify import (
    GradientDescent,
    ModelView,
    draw_prompts,
    identify,
    model_view,
    prediction_cosine,
    r_squared,
    spd_with_se,
)
from icgd.analysis.identify.gd_beta import start_beta
from icgd.analysis.identify.metrics import dropped_rows
from icgd.constructions import (
    lsa_from_gd_step,
    lsa_from_newton_schulz,
    lsa_from_preconditioned_gd,
    newton_schulz_prompt,
)
from icgd.core.prompts import build_prompt
from icgd.models import (
    GPT,
    LinearSelfAttention,
    LoopedTransformer,
    StackedSoftmaxAttention,
    TDTransformer,
)
from icgd.tasks import FunctionClass, FunctionClassConfig, LinearRegression, LinearRegressionConfig

F64 = torch.float64
D, N = 4, 20


def _task(d: int = D, n: int = N) -> LinearRegression:
    return LinearRegression(LinearRegressionConfig(d=d, n=n), dtype=F64)


def _gamma() -> torch.Tensor:
    """A non-symmetric, non-identity preconditioner (d = 4)."""
    base = torch.diag(torch.tensor([0.9, 0.5, 0.3, 0.2], dtype=F64))
    skew = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=F64)
    return base + 0.1 * skew


@pytest.fixture(scope="module")
def gd_step_result():
    """Every candidate fitted to a one-layer LSA built to take one GD step with η = 0.7."""
    return identify(lsa_from_gd_step(D, 0.7), _task(), n_prompts=1024, n_bootstrap=16)


def test_one_gd_step_lsa_is_identified_as_gd_with_its_step(gd_step_result):
    best = gd_step_result.best
    assert best.name == "gd" and best.steps == 1 and best.exact
    assert best.value("eta") == pytest.approx(0.7, rel=1e-10)
    assert best.parameters["eta"].sd.item() < 1e-12  # every resample refits the same η
    assert best.parameters["steps"].sd.item() == 0.0
    assert best.spd < 1e-28 and best.r2 == pytest.approx(1.0, abs=1e-14)
    # preconditioned GD fits too, with Γ = ηI: it ties and loses on its 17 parameters
    pgd = gd_step_result["preconditioned-gd"]
    assert pgd.exact and pgd.steps == 1
    torch.testing.assert_close(pgd.value("gamma"), 0.7 * torch.eye(D, dtype=F64), rtol=0, atol=1e-9)


def test_exact_fits_tie_and_the_fewest_parameters_rank_first(gd_step_result):
    """One GD step is also Chebyshev iteration (k = 1, any interval centred at 1/η), GD-β
    (β = 0) and preconditioned GD (Γ = ηI): all four are exact; ranked by parameter count."""
    exact = [f for f in gd_step_result.ranking if f.exact]
    assert [f.name for f in exact] == ["gd", "chebyshev", "gd-beta", "preconditioned-gd"]
    assert [f.n_parameters for f in exact] == [2, 3, D + 2, D * D + 1]
    assert gd_step_result["gd-beta"].value("beta").abs().max() < 1e-10
    inexact = [f.spd for f in gd_step_result.ranking if not f.exact]
    assert inexact == sorted(inexact) and min(inexact) > 1e-6


def test_preconditioned_gd_lsa_recovers_its_full_preconditioner():
    model = lsa_from_preconditioned_gd(_gamma()[None])
    result = identify(
        model,
        _task(),
        algorithms=["gd", "preconditioned_gd", "ridge", "ols"],
        n_prompts=1024,
        n_bootstrap=16,
    )
    best = result.best
    assert best.name == "preconditioned-gd" and best.steps == 1 and best.exact
    torch.testing.assert_close(best.value("gamma"), _gamma(), rtol=0, atol=1e-10)
    assert best.parameters["gamma"].sd.max().item() < 1e-12
    assert result["gd"].r2 < 0.99  # a scalar step cannot mimic a non-identity Γ


def test_looped_two_step_preconditioned_gd_recovers_gamma():
    """Two steps with one Γ: the prediction is quadratic in Γ; the least-squares polish from
    a GD start finds the built-in Γ."""
    model = lsa_from_preconditioned_gd(_gamma(), looped=True, n_loops=2)
    result = identify(
        model,
        _task(),
        algorithms=["preconditioned-gd", "gd"],
        n_prompts=1024,
        n_bootstrap=8,
        ilwd_prompts=64,
    )
    best = result.best
    assert best.name == "preconditioned-gd" and best.steps == 2 and best.exact
    torch.testing.assert_close(best.value("gamma"), _gamma(), rtol=0, atol=1e-8)


def test_stacked_lsa_recovers_one_preconditioner_per_layer():
    """Three layers with three different non-commuting Γ_l: the shared-Γ candidate cannot fit
    it; the per-step one, polished from the shared fit, finds the built-in Γ_l in order."""
    gammas = torch.stack(
        [_gamma(), 0.6 * _gamma().T, torch.diag(torch.tensor([0.3, 0.9, 0.5, 0.7], dtype=F64))]
    )
    model = lsa_from_preconditioned_gd(gammas)
    result = identify(
        model,
        _task(),
        algorithms=["stacked-preconditioned-gd", "preconditioned-gd"],
        n_prompts=1024,
        n_bootstrap=4,
        ilwd_prompts=0,
    )
    best = result.best
    assert best.name == "stacked-preconditioned-gd" and best.steps == 3 and best.exact
    torch.testing.assert_close(best.value("gammas"), gammas, rtol=0, atol=1e-8)
    assert best.parameters["gammas"].samples.shape == (4, 3, D, D)
    assert result["preconditioned-gd"].r2 < 0.999


@pytest.fixture(scope="module")
def newton_model():
    """Three Newton–Schulz steps from M_0 = αŜ, α = 0.05. Convergence needs α λ_max(Ŝ)² < 2;
    at d = 4, n = 20 the largest λ_max(Ŝ) of 10⁵ prompts was 3.49 (α λ² = 0.61)."""
    return lsa_from_newton_schulz(D, 3, 0.05)


def test_newton_schulz_lsa_is_identified_as_newton_with_its_steps(newton_model):
    result = identify(
        newton_model, _task(), prompt=newton_schulz_prompt, n_prompts=1024, n_bootstrap=16
    )
    best = result.best
    assert best.name == "iterative-newton" and best.exact
    assert best.steps == 3 and best.parameters["steps"].sd.item() == 0.0
    assert best.value("alpha") == pytest.approx(0.05, rel=1e-10)
    assert best.ilwd < 1e-24


def test_one_gd_step_does_not_fit_a_newton_model(newton_model):
    """The negative control: a model running Newton (close to OLS after 3 steps) is not one
    GD step, whatever the step size."""
    result = identify(
        newton_model,
        _task(),
        prompt=newton_schulz_prompt,
        algorithms=["iterative-newton", GradientDescent(steps=[1])],
        n_prompts=1024,
        n_bootstrap=8,
    )
    newton, gd = result["iterative-newton"], result["gd"]
    assert newton.r2 > 1 - 1e-12
    assert gd.r2 < 0.99 and gd.spd > 1e20 * newton.spd and not gd.exact
    assert result.names == ("iterative-newton", "gd")


def test_identification_serialises_to_json_and_arrays(gd_step_result):
    plain = gd_step_result.to_dict()
    text = json.dumps(plain, allow_nan=False)
    assert json.loads(text)["best"] == "gd"
    assert plain["ranking"] == list(gd_step_result.names)
    assert plain["algorithms"]["gd"]["parameters"]["eta"]["value"] == pytest.approx(0.7)
    metrics = gd_step_result.metrics()
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["gd.rank"] == 1.0 and metrics["gd.eta"] == pytest.approx(0.7)
    arrays = gd_step_result.arrays()
    assert arrays["preconditioned-gd.gamma.samples"].shape == (16, D, D)
    assert arrays["predictions.model"].shape == (1024,)
    assert all(isinstance(v, torch.Tensor) and v.is_contiguous() for v in arrays.values())


def test_identify_is_deterministic_under_its_seed():
    model, algorithms = lsa_from_gd_step(D, 0.5), ["ridge", "ols"]
    runs = [
        identify(
            model,
            _task(),
            algorithms=algorithms,
            n_prompts=256,
            n_bootstrap=8,
            ilwd_prompts=16,
            seed=s,
        ).to_dict()
        for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1]
    assert runs[0]["algorithms"]["ridge"] != runs[2]["algorithms"]["ridge"]


def _families():
    return [
        LinearSelfAttention.example(dtype=F64),
        StackedSoftmaxAttention.example(dtype=F64),
        GPT.example(dtype=F64),
        LoopedTransformer.example(dtype=F64),
    ]


def _direct_prediction(model, X, y, x_q):
    """The family's own forward, written out independently of the view."""
    if isinstance(model, LinearSelfAttention | StackedSoftmaxAttention):
        return model.predict(build_prompt(X, y, x_q))
    Xs, ys = torch.cat([X, x_q[:, None]], 1), torch.cat([y, torch.zeros_like(y[:, :1])], 1)
    out = model(Xs, ys)
    return (out[-1] if isinstance(model, LoopedTransformer) else out)[:, -1]


@pytest.mark.parametrize("model", _families(), ids=lambda m: type(m).__name__)
def test_views_match_each_familys_own_forward(model):
    prompts = draw_prompts(_task(3, 5), 32, torch.Generator().manual_seed(0))
    view = model_view(model, chunk=10)  # several chunks
    X, y, x_q = prompts.X, prompts.y, prompts.x_q
    torch.testing.assert_close(view.predict(X, y, x_q), _direct_prediction(model, X, y, x_q))
    states, own = view.residuals(X, y, x_q, native=True)
    assert len(states) == len(model.hook_names()) - sum(
        not n.startswith(("hook_z.", "hook_resid.")) for n in model.hook_names()
    )
    last = list(own)[-1]  # the model's head on the last layer's query token is its prediction
    torch.testing.assert_close(own[last], view.predict(X, y, x_q), rtol=0, atol=1e-10)
    assert model.training  # the view restores the mode it found


@pytest.mark.parametrize("model", _families()[1:], ids=lambda m: type(m).__name__)
def test_identify_runs_on_softmax_gpt_and_looped_models(model):
    result = identify(
        model,
        _task(3, 5),
        algorithms=["gd", "ridge", "ols"],
        n_prompts=128,
        n_bootstrap=4,
        ilwd_prompts=8,
    )
    assert set(result.names) == {"gd", "ridge", "ols"}
    for fit in result.ranking:
        assert math.isfinite(fit.spd) and math.isfinite(fit.r2) and fit.ilwd is not None


def test_next_point_tasks_give_context_and_query():
    task = FunctionClass(FunctionClassConfig(kind="linear", d=3, n_points=6), dtype=F64)
    p = draw_prompts(task, 8, torch.Generator().manual_seed(0))
    assert p.X.shape == (8, 5, 3) and p.x_q.shape == (8, 3) and p.y_q.shape == (8,)


def test_bad_inputs_are_refused_with_a_message():
    model = lsa_from_gd_step(D, 0.5)
    with pytest.raises(ValueError, match="unknown algorithm"):
        identify(model, _task(), algorithms=["lasso"])
    with pytest.raises(ValueError, match="n_prompts"):
        identify(model, _task(), n_prompts=1)
    with pytest.raises(TypeError, match="ModelView"):
        identify(TDTransformer.example(), _task())
    with pytest.raises(ValueError, match="not finite"):
        bad = ModelView(predict_fn=lambda X, y, q: torch.full_like(y[:, 0], math.nan))
        identify(bad, _task(), n_prompts=16)


def test_held_out_scores_leave_out_a_few_diverged_prompts():
    """At most 1% of the prompts diverged (not finite, or beyond 10³ rms(m)): the scores are
    those of the other prompts; more: not scored (SPD = inf, R² = −inf). Clean: bit for bit."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(1000, generator=g, dtype=F64)
    a = m + 0.1 * torch.randn(1000, generator=g, dtype=F64)
    sq = (m - a).square()
    assert spd_with_se(m, a) == (sq.mean().item(), sq.std().item() / math.sqrt(1000))
    assert r_squared(m, a) == 1 - (sq.sum() / (m - m.mean()).square().sum()).item()
    few = a.clone()
    few[[3, 7, 500]] = torch.tensor([math.inf, math.nan, 2e3], dtype=F64)  # 0.3%
    few[9] = 50.0  # large but not diverged: scored
    kept = torch.ones(1000, dtype=torch.bool)
    kept[[3, 7, 500]] = False
    assert dropped_rows(m, few) == 3 and dropped_rows(m, a) == 0
    assert spd_with_se(m, few) == spd_with_se(m[kept], few[kept])
    assert r_squared(m, few) == r_squared(m[kept], few[kept]) and r_squared(m, few) > -1e4
    assert prediction_cosine(m, few) == prediction_cosine(m[kept], few[kept])
    many = a.clone()
    many[:11] = math.inf  # 1.1%
    spd, se = spd_with_se(m, many)
    assert spd == math.inf and math.isnan(se) and r_squared(m, many) == -math.inf
    assert math.isnan(prediction_cosine(m, many))


class _BlowsUp(GradientDescent):
    """One GD step whose reference predictions are +inf on the first `bad` prompts."""

    def __init__(self, name: str, bad: int) -> None:
        super().__init__(steps=[1])
        self.name, self.bad = name, bad

    def reference(self, X, y, x_q, steps, params):
        out = super().reference(X, y, x_q, steps, params).clone()
        out[: self.bad] = math.inf
        return out


def test_a_candidate_diverging_on_many_held_out_prompts_ranks_last():
    result = identify(
        lsa_from_gd_step(D, 0.7),
        _task(),
        algorithms=[_BlowsUp("many", 26), _BlowsUp("few", 2), "ridge", "gd"],  # 5%, 0.4%
        n_prompts=512,
        n_bootstrap=0,
        ilwd_prompts=0,
    )
    assert result.names[-1] == "many" and result.names[:2] == ("gd", "few")
    many, few = result["many"], result["few"]
    assert many.spd == math.inf and many.r2 == -math.inf and not many.exact
    model, pred = result.predictions["model"], result.predictions["few"]
    assert few.spd == spd_with_se(model[2:], pred[2:])[0] and few.r2 > 1 - 1e-12  # 510 others
    json.dumps(result.to_dict(), allow_nan=False)


def test_gd_beta_start_is_the_same_bits_at_every_alignment():
    """gd-beta's start β was solved with torch's CPU default lstsq driver (gelsy), whose MKL
    build rounded differently with the operands' memory alignment: same-seed `identify` runs
    gave ILWDs (≈ 1e-30) differing in the last bits. `start_beta` (gelsd) must not."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(256, D, generator=g, dtype=F64) * 1e-3
    r = torch.randn(256, generator=g, dtype=F64) * 1e-3
    seen = set()
    for offset in range(8):  # 0 … 56 bytes past the allocator's 64-byte alignment
        a_at = torch.empty(a.numel() + offset, dtype=F64)[offset:].view_as(a).copy_(a)
        r_at = torch.empty(r.numel() + offset, dtype=F64)[offset:].copy_(r)
        for _ in range(3):
            seen.add(start_beta(a_at, r_at).numpy().tobytes())
    assert len(seen) == 1
