"""Tests of the in-context linear-regression sampler (SPEC §1)."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icgd.core.config import validate_config
from icgd.core.errors import InputError
from icgd.tasks import LinearRegression, LinearRegressionConfig, haar_orthogonal

AHN_EIGENVALUES = (1.0, 1.0, 0.25, 1 / 16, 1.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rotated(**kw) -> LinearRegressionConfig:
    return LinearRegressionConfig(covariance="rotated", eigenvalues=AHN_EIGENVALUES, **kw)


# --- shapes, dtypes, determinism -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(dtype):
    task = LinearRegression(rotated(d=5, n=7, noise_std=0.1), dtype=dtype)
    batch = task.sample(4, gen(0))
    assert batch.X.shape == (4, 7, 5)
    assert batch.y.shape == (4, 7)
    assert batch.x_q.shape == (4, 5)
    assert batch.y_q.shape == (4,)
    assert batch.w_star.shape == (4, 5)
    assert batch.sigma.shape == (5, 5)
    for t in (batch.X, batch.y, batch.x_q, batch.y_q, batch.w_star, batch.sigma):
        assert t.dtype == dtype and t.device.type == "cpu"
    for name in (
        "eigenvalues",
        "rotation",
        "sigma",
        "sigma_sqrt",
        "sigma_inv_sqrt",
        "sigma_inv",
        "weight_covariance",
    ):
        assert getattr(task, name).dtype == dtype
    # n override: a different context length for test-time evaluation
    longer = task.sample(3, gen(0), n=11)
    assert longer.X.shape == (3, 11, 5) and longer.y.shape == (3, 11)


def test_prompt_layout():
    task = LinearRegression(LinearRegressionConfig(d=3, n=4), dtype=torch.float64)
    b = task.sample(2, gen(1))
    Z = b.prompt()
    assert Z.shape == (2, 4, 5)
    torch.testing.assert_close(Z[:, :3, :4], b.X.transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(Z[:, 3, :4], b.y, rtol=0, atol=0)
    torch.testing.assert_close(Z[:, :3, 4], b.x_q, rtol=0, atol=0)
    assert (Z[:, 3, 4] == 0).all()


def test_noiseless_labels_are_linear():
    task = LinearRegression(rotated(weight_prior="inverse_covariance"), dtype=torch.float64)
    b = task.sample(8, gen(2))
    torch.testing.assert_close(b.y, torch.einsum("bnd,bd->bn", b.X, b.w_star), rtol=0, atol=1e-12)
    torch.testing.assert_close(b.y_q, (b.x_q * b.w_star).sum(-1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_generator_state_same_batch(dtype):
    task = LinearRegression(rotated(noise_std=0.5), dtype=dtype)
    a, b = task.sample(6, gen(123)), task.sample(6, gen(123))
    for name in ("X", "y", "x_q", "y_q", "w_star"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    c = task.sample(6, gen(124))
    assert not torch.equal(a.X, c.X)
    # consecutive draws from one generator differ
    g = gen(5)
    assert not torch.equal(task.sample(6, g).X, task.sample(6, g).X)


def test_noise_does_not_change_inputs_or_weights():
    a = LinearRegression(rotated(noise_std=0.0)).sample(5, gen(9))
    b = LinearRegression(rotated(noise_std=0.3)).sample(5, gen(9))
    assert torch.equal(a.X, b.X) and torch.equal(a.w_star, b.w_star)
    assert not torch.equal(a.y, b.y)


# --- covariance construction ---------------------------------------------------------------------


def test_rotation_is_orthogonal_and_the_same_across_dtypes():
    t64 = LinearRegression(rotated(), rotation_seed=7, dtype=torch.float64)
    t32 = LinearRegression(rotated(), rotation_seed=7, dtype=torch.float32)
    U = t64.rotation
    torch.testing.assert_close(U.T @ U, torch.eye(5, dtype=torch.float64), rtol=0, atol=1e-13)
    torch.testing.assert_close(t32.rotation, U.float(), rtol=0, atol=0)
    torch.testing.assert_close(t32.sigma, t64.sigma.float(), rtol=0, atol=0)
    assert not torch.allclose(U, torch.eye(5, dtype=torch.float64))
    # Haar sign convention: U = Q sign(diag R) makes R's diagonal positive, i.e. diag(Uᵀ G) > 0
    G = torch.randn(5, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert (torch.diagonal(U.T @ G) > 0).all()
    # another seed, another rotation; identity for kind "eigenvalues"
    assert not torch.allclose(haar_orthogonal(5, 8), U)
    plain = LinearRegression(
        LinearRegressionConfig(covariance="eigenvalues", eigenvalues=AHN_EIGENVALUES)
    )
    assert torch.equal(plain.rotation, torch.eye(5))


def test_square_roots_and_inverse():
    task = LinearRegression(rotated(), dtype=torch.float64)
    eye = torch.eye(5, dtype=torch.float64)
    S = task.sigma
    torch.testing.assert_close(S, S.T, rtol=0, atol=0)
    torch.testing.assert_close(task.sigma_sqrt @ task.sigma_sqrt, S, rtol=0, atol=1e-13)
    torch.testing.assert_close(task.sigma_inv @ S, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(task.sigma_inv_sqrt @ task.sigma_sqrt, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        torch.linalg.eigvalsh(S),
        torch.tensor(sorted(AHN_EIGENVALUES), dtype=torch.float64),
        rtol=0,
        atol=1e-13,
    )


def test_matrix_covariance_is_the_given_matrix():
    M = ((2.0, 0.5, 0.0), (0.5, 1.0, 0.2), (0.0, 0.2, 0.5))
    task = LinearRegression(
        LinearRegressionConfig(d=3, covariance="matrix", matrix=M), dtype=torch.float64
    )
    torch.testing.assert_close(task.sigma, torch.tensor(M, dtype=torch.float64), rtol=0, atol=1e-14)
    U, lam = task.rotation, task.eigenvalues
    torch.testing.assert_close((U * lam) @ U.T, task.sigma, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    ("prior", "expected"),
    [("identity", "eye"), ("inverse_covariance", "inv"), ("scaled_identity", "eye/d")],
)
def test_weight_covariance_attribute(prior, expected):
    task = LinearRegression(rotated(weight_prior=prior), dtype=torch.float64)
    eye = torch.eye(5, dtype=torch.float64)
    want = {"eye": eye, "inv": task.sigma_inv, "eye/d": eye / 5}[expected]
    torch.testing.assert_close(task.weight_covariance, want, rtol=0, atol=1e-14)


# --- statistics (|estimate − truth| < 4 SE, SE estimated from the same sample) ------------------


def assert_second_moments(samples: torch.Tensor, target: torch.Tensor, what: str) -> None:
    """samples (N, d): each entry of the mean of x xᵀ within 4 standard errors of target."""
    N = samples.shape[0]
    products = samples[:, :, None] * samples[:, None, :]  # (N, d, d)
    estimate = products.mean(0)
    se = products.std(0) / math.sqrt(N)
    z = ((estimate - target).abs() / se).max().item()
    assert z < 4, f"{what}: max |estimate − truth| = {z:.2f} SE (SE up to {se.max().item():.3g})"


def test_empirical_input_covariance_matches_sigma():
    task = LinearRegression(rotated(n=50), dtype=torch.float64)
    b = task.sample(800, gen(11))
    xs = torch.cat([b.X.reshape(-1, 5), b.x_q])  # (B(n+1), d)
    assert_second_moments(xs, task.sigma, "E[x xᵀ] vs Σ")


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_uniform_inputs_lie_in_the_box_with_covariance_alpha2_over_3(scale):
    """von Oswald et al.'s x ~ U(−α, α)^d: in the box, Σ = α²/3 · I, the same w* and noise."""
    config = LinearRegressionConfig(d=4, n=30, input_distribution="uniform", input_scale=scale)
    task = LinearRegression(config, dtype=torch.float64)
    torch.testing.assert_close(task.sigma, torch.eye(4, dtype=torch.float64) * scale**2 / 3)
    torch.testing.assert_close(task.sigma_sqrt @ task.sigma_sqrt, task.sigma)
    assert task.population_loss_of_zero() == pytest.approx(4 * scale**2 / 3, rel=1e-12)
    b = task.sample(2000, gen(21))
    xs = torch.cat([b.X.reshape(-1, 4), b.x_q])  # (B(n+1), d)
    assert xs.abs().max().item() <= scale
    assert xs.abs().max().item() > 0.99 * scale  # fills the box
    assert_second_moments(xs, task.sigma, "E[x xᵀ] vs α²/3 I")
    # the weights do not depend on the input law (drawn after the inputs, same generator use)
    gaussian = LinearRegression(LinearRegressionConfig(d=4, n=30), dtype=torch.float64)
    torch.testing.assert_close(b.w_star, gaussian.sample(2000, gen(21)).w_star)


def test_input_scale_scales_gaussian_inputs_and_sigma():
    base = LinearRegression(rotated(n=6), dtype=torch.float64)
    scaled = LinearRegression(rotated(n=6, input_scale=3.0), dtype=torch.float64)
    torch.testing.assert_close(scaled.sigma, 9 * base.sigma)
    torch.testing.assert_close(scaled.sigma_inv, base.sigma_inv / 9)
    torch.testing.assert_close(scaled.sample(5, gen(2)).X, 3 * base.sample(5, gen(2)).X)


@pytest.mark.parametrize("prior", ["identity", "inverse_covariance", "scaled_identity"])
def test_empirical_weight_covariance_matches_prior(prior):
    task = LinearRegression(rotated(n=2, weight_prior=prior), dtype=torch.float64)
    b = task.sample(40_000, gen(12))
    assert_second_moments(b.w_star, task.weight_covariance, f"E[w* w*ᵀ] vs prior {prior}")


def test_query_energy_is_d_for_inverse_covariance_prior():
    """SPEC §1: with w* ~ N(0, Σ⁻¹) and σ = 0, E[y_q²] = d (predicting 0 costs d)."""
    task = LinearRegression(rotated(n=2, weight_prior="inverse_covariance"), dtype=torch.float64)
    assert task.population_loss_of_zero() == pytest.approx(5.0, abs=1e-12)
    b = task.sample(40_000, gen(13))
    sq = b.y_q.square()
    se = sq.std().item() / math.sqrt(sq.numel())
    est = sq.mean().item()
    assert abs(est - 5.0) < 4 * se, f"E[y_q²] = {est:.4f}, want 5 (SE {se:.4f})"


def test_noise_variance():
    sigma_noise = 0.7
    task = LinearRegression(rotated(n=10, noise_std=sigma_noise), dtype=torch.float64)
    b = task.sample(4000, gen(14))
    eps = torch.cat(
        [
            (b.y - torch.einsum("bnd,bd->bn", b.X, b.w_star)).flatten(),
            b.y_q - (b.x_q * b.w_star).sum(-1),
        ]
    )
    sq = eps.square()
    est, se = sq.mean().item(), sq.std().item() / math.sqrt(sq.numel())
    assert abs(est - sigma_noise**2) < 4 * se, f"noise variance {est:.4f} vs 0.49 (SE {se:.4f})"
    mean_se = eps.std().item() / math.sqrt(eps.numel())
    assert abs(eps.mean().item()) < 4 * mean_se, (
        f"noise mean {eps.mean().item():.4f} (SE {mean_se:.4f})"
    )
    # E[y_q²] = tr(Σ Σ_w) + σ² = tr Σ + σ² for the identity prior
    assert task.population_loss_of_zero() == pytest.approx(sum(AHN_EIGENVALUES) + sigma_noise**2)


# --- validation ----------------------------------------------------------------------------------


def names_field(error: InputError, field: str) -> bool:
    """The error is located at `field` or inside it (an element: ``eigenvalues.2``)."""
    return error.field == field or error.field.startswith(field + ".")


BAD_CONFIGS = [
    ({"d": 0}, "d", "greater than 0"),
    ({"n": -3}, "n", "greater than 0"),
    ({"d": 2.5}, "d", "integer"),
    ({"covariance": "diagonal"}, "covariance", "identity"),
    ({"weight_prior": "flat"}, "weight_prior", "inverse_covariance"),
    ({"noise_std": -0.1}, "noise_std", "greater than or equal to 0"),
    ({"noise_std": math.inf}, "noise_std", "finite"),
    ({"covariance": "rotated"}, "eigenvalues", "required"),
    (
        {"covariance": "eigenvalues", "eigenvalues": [1, 2, 3]},
        "eigenvalues",
        "must have length d=5, got 3",
    ),
    ({"covariance": "rotated", "eigenvalues": [1, 1, 0, 1, 1]}, "eigenvalues", "must all be > 0"),
    ({"covariance": "rotated", "eigenvalues": [1, 1, math.nan, 1, 1]}, "eigenvalues", "finite"),
    ({"eigenvalues": [1, 1, 1, 1, 1]}, "eigenvalues", "only used with covariance 'eigenvalues'"),
    ({"covariance": "matrix"}, "matrix", "required"),
    (
        {"d": 2, "covariance": "matrix", "matrix": [[1, 2], [2, 1]]},
        "matrix",
        "not positive definite",
    ),
    ({"d": 2, "covariance": "matrix", "matrix": [[1, 0.1], [0.2, 1]]}, "matrix", "symmetric"),
    (
        {"d": 2, "covariance": "matrix", "matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
        "matrix",
        "d×d with d=2",
    ),
    ({"d": 2, "matrix": [[1, 0], [0, 1]]}, "matrix", "only used with covariance 'matrix'"),
    (
        {"d": 2, "covariance": "eigenvalues", "eigenvalues": [1, 2], "matrix": [[1, 0], [0, 1]]},
        "matrix",
        "only used",
    ),
    ({"sigma": 1.0}, "sigma", "unknown key"),
    ({"input_distribution": "laplace"}, "input_distribution", "gaussian"),
    ({"input_scale": 0}, "input_scale", "greater than 0"),
]


@pytest.mark.parametrize(("data", "field", "fragment"), BAD_CONFIGS)
def test_bad_config_names_the_field(data, field, fragment):
    with pytest.raises(InputError) as info:
        validate_config(LinearRegressionConfig, data)
    assert names_field(info.value, field)
    assert fragment in info.value.message, info.value.message
    # constructing directly raises pydantic's error, which also names the field
    with pytest.raises(pydantic.ValidationError, match=field):
        LinearRegressionConfig(**data)


def test_config_is_frozen_and_round_trips():
    cfg = rotated(noise_std=0.2)
    with pytest.raises(pydantic.ValidationError):
        cfg.d = 3
    again = validate_config(LinearRegressionConfig, cfg.model_dump(mode="json"))
    assert again == cfg


# --- property tests ------------------------------------------------------------------------------

FIELDS = set(LinearRegressionConfig.model_fields)
positive = st.floats(min_value=1e-3, max_value=1e3)
wrong_type = st.one_of(
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer()),
)


@st.composite
def bad_configs(draw):
    """A valid base config plus one corruption; returns (data, the field to be named)."""
    d = draw(st.integers(1, 6))
    data = {
        "d": d,
        "n": draw(st.integers(1, 40)),
        "covariance": "rotated",
        "eigenvalues": draw(st.lists(positive, min_size=d, max_size=d)),
    }
    kind = draw(
        st.sampled_from(
            [
                "d_nonpositive",
                "n_nonpositive",
                "d_type",
                "n_type",
                "eig_length",
                "eig_nonpositive",
                "unknown_key",
                "noise",
                "covariance_type",
                "prior_type",
            ]
        )
    )
    if kind in ("d_nonpositive", "n_nonpositive"):
        field = kind[0]
        data[field] = draw(st.integers(max_value=0))
    elif kind in ("d_type", "n_type"):
        field = kind[0]
        data[field] = draw(wrong_type)
    elif kind == "eig_length":
        field = "eigenvalues"
        length = draw(st.integers(0, 8).filter(lambda k: k != d))
        data["eigenvalues"] = draw(st.lists(positive, min_size=length, max_size=length))
        data["covariance"] = draw(st.sampled_from(["eigenvalues", "rotated"]))
    elif kind == "eig_nonpositive":
        field = "eigenvalues"
        eig = list(data["eigenvalues"])
        eig[draw(st.integers(0, d - 1))] = draw(st.floats(max_value=0, allow_nan=False))
        data["eigenvalues"] = eig
    elif kind == "unknown_key":
        field = draw(
            st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
                lambda k: k not in FIELDS
            )
        )
        data[field] = draw(st.integers())
    elif kind == "noise":
        field = "noise_std"
        data["noise_std"] = draw(
            st.one_of(
                st.floats(max_value=-1e-9),
                st.just(math.nan),
                st.just(math.inf),
                st.text(max_size=3),
            )
        )
    elif kind == "covariance_type":
        field = "covariance"
        data["covariance"] = draw(
            st.one_of(
                st.text(max_size=8).filter(
                    lambda s: s not in ("identity", "eigenvalues", "rotated", "matrix")
                ),
                st.integers(),
            )
        )
    else:
        field = "weight_prior"
        data["weight_prior"] = draw(
            st.one_of(
                st.text(max_size=8).filter(
                    lambda s: s not in ("identity", "inverse_covariance", "scaled_identity")
                ),
                st.none(),
            )
        )
    return data, field


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_configs())
def test_property_bad_configs_raise_input_error_naming_the_field(case):
    data, field = case
    with pytest.raises(InputError) as info:
        validate_config(LinearRegressionConfig, data)
    assert names_field(info.value, field), (data, str(info.value))


@st.composite
def valid_configs(draw):
    d = draw(st.integers(1, 6))
    data = {
        "d": d,
        "n": draw(st.integers(1, 40)),
        "covariance": draw(st.sampled_from(["identity", "eigenvalues", "rotated", "matrix"])),
        "weight_prior": draw(
            st.sampled_from(["identity", "inverse_covariance", "scaled_identity"])
        ),
        "noise_std": draw(st.floats(0, 10)),
    }
    if data["covariance"] in ("eigenvalues", "rotated"):
        data["eigenvalues"] = draw(st.lists(positive, min_size=d, max_size=d))
    elif data["covariance"] == "matrix":
        # symmetric, strictly diagonally dominant with positive diagonal → positive definite
        off = draw(st.lists(st.floats(-1, 1), min_size=d * d, max_size=d * d))
        M = [
            [off[min(i, j) * d + max(i, j)] if i != j else float(d) for j in range(d)]
            for i in range(d)
        ]
        data["matrix"] = M
    return data


@settings(max_examples=60, deadline=None)
@given(valid_configs())
def test_property_valid_configs_validate_and_sample(data):
    cfg = validate_config(LinearRegressionConfig, data)
    task = LinearRegression(cfg, dtype=torch.float64)
    b = task.sample(2, gen(0))
    assert b.X.shape == (2, cfg.n, cfg.d)
    assert torch.isfinite(b.prompt()).all()
