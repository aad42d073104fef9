"""In-context linear regression with a Gaussian design (SPEC §1).

A prompt is `n` labelled points and one query drawn from one random linear model:

    x_i, x_q = α Σ₀^{1/2} z,   Σ₀ = U diag(λ) Uᵀ,   z ~ N(0, I) or U(−1, 1)^d,
    w*       ~ N(0, Σ_w),  Σ_w ∈ {I, Σ⁻¹, I/d},
    y_i = x_iᵀ w* + σ ε_i,  y_q = x_qᵀ w* + σ ε_q,  ε ~ N(0, 1).

By default z is Gaussian and the scale α = 1, so `x ~ N(0, Σ)` with `Σ = Σ₀`. von Oswald et al. 2023
("Transformers learn in-context by gradient descent") draw `x ~ U(−1, 1)^d` instead, and test out of
distribution on `x ~ U(−α, α)^d`: that is `input_distribution="uniform"`, `input_scale=α` with
Σ₀ = I. Σ always denotes the covariance the inputs really have, `α² Σ₀` (Gaussian) or `α² Σ₀ / 3`
(uniform, since Var U(−1, 1) = 1/3), and the prior `N(0, Σ⁻¹)` uses that Σ.

`U` is the identity, or a Haar-random orthogonal matrix (kind "rotated": QR of a d×d standard
Gaussian with the signs fixed by the diagonal of R), or the eigenvectors of a user-given matrix
(kind "matrix"). Ahn et al. 2023 ("Transformers learn to implement preconditioned gradient descent
for in-context learning") use d = 5, n = 20, λ = (1, 1, 1/4, 1/16, 1); the prior `N(0, Σ⁻¹)` is
Gatmiry et al.'s "distorted view" (isotropic after whitening), for which `E[y_q²] = d` when σ = 0.

Prompts are laid out by `icgd.core.prompts.build_prompt`: `(B, d+1, n+1)`, context columns
`[x_i; y_i]`, query column `[x_q; 0]`. This is layout `regression` of the `Task` protocol
(`icgd.tasks.api`): a batch is a `LinearRegressionBatch`, X (B, n, d), y (B, n), x_q (B, d),
y_q (B,), w* (B, d), Σ (d, d), and `batch.prompt()` is `Z`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, FiniteFloat, StrictInt, ValidationInfo, field_validator
from torch import Tensor

from icgd.core.config import Config
from icgd.core.prompts import build_prompt
from icgd.tasks.plugins import TASKS

PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeFiniteFloat = Annotated[FiniteFloat, Field(ge=0)]
PositiveFiniteFloat = Annotated[FiniteFloat, Field(gt=0)]

_EIGEN_KINDS = ("eigenvalues", "rotated")

AHN_EIGENVALUES = (1.0, 1.0, 0.25, 0.0625, 1.0)  # Ahn et al. 2023's spectrum, d = 5


def ahn_spectrum(d: int) -> tuple[float, ...]:
    """Ahn et al.'s spectrum (1, 1, 1/4, 1/16, 1) repeated to length d (ours when d ≠ 5)."""
    return tuple(AHN_EIGENVALUES[i % len(AHN_EIGENVALUES)] for i in range(d))


class LinearRegressionConfig(Config):
    """Distribution of in-context linear-regression prompts.

    - `d`, `n`: input dimension and number of context points.
    - `covariance`: `Σ` of the inputs. "identity": `Σ = I`; "eigenvalues": `Σ = diag(eigenvalues)`;
      "rotated": `Σ = U diag(eigenvalues) Uᵀ` with a Haar-random `U` (fixed by the task's
      `rotation_seed`); "matrix": `Σ = matrix` (symmetric positive definite, d×d).
    - `eigenvalues`: length-d, every entry > 0; required for, and only used with, "eigenvalues" and
      "rotated".
    - `matrix`: d×d symmetric positive definite; required for, and only used with, "matrix".
    - `weight_prior`: `w* ~ N(0, I)` ("identity"), `N(0, Σ⁻¹)` ("inverse_covariance") or
      `N(0, I/d)` ("scaled_identity").
    - `noise_std`: `σ ≥ 0`, the label-noise standard deviation.
    - `input_distribution`: the law of z in `x = α Σ₀^{1/2} z`: "gaussian" N(0, I) or "uniform"
      U(−1, 1)^d (von Oswald et al.'s data, with `covariance="identity"`).
    - `input_scale`: α > 0, multiplies every input (an out-of-distribution knob).
    """

    d: PositiveInt = 5
    n: PositiveInt = 20
    covariance: Literal["identity", "eigenvalues", "rotated", "matrix"] = "identity"
    eigenvalues: tuple[FiniteFloat, ...] | None = None
    matrix: tuple[tuple[FiniteFloat, ...], ...] | None = None
    weight_prior: Literal["identity", "inverse_covariance", "scaled_identity"] = "identity"
    noise_std: NonNegativeFiniteFloat = 0.0
    input_distribution: Literal["gaussian", "uniform"] = "gaussian"
    input_scale: PositiveFiniteFloat = 1.0

    # Field validators run in declaration order, so `d` and `covariance` are in `info.data` (when
    # they were valid themselves); an error raised here is located at the field it names.
    @field_validator("eigenvalues")
    @classmethod
    def _check_eigenvalues(
        cls, value: tuple[float, ...] | None, info: ValidationInfo
    ) -> tuple[float, ...] | None:
        kind = info.data.get("covariance")
        d = info.data.get("d")
        if kind is None:  # covariance itself was invalid and is reported on its own
            return value
        if kind not in _EIGEN_KINDS:
            if value is not None:
                raise ValueError(
                    f"only used with covariance 'eigenvalues' or 'rotated', not {kind!r}; remove it"
                )
            return value
        if value is None:
            raise ValueError(f"required when covariance is {kind!r}: a list of d positive numbers")
        if d is not None and len(value) != d:
            raise ValueError(f"must have length d={d}, got {len(value)}")
        if any(v <= 0 for v in value):
            raise ValueError("must all be > 0 (covariance must be positive definite)")
        return value

    @field_validator("matrix")
    @classmethod
    def _check_matrix(
        cls, value: tuple[tuple[float, ...], ...] | None, info: ValidationInfo
    ) -> tuple[tuple[float, ...], ...] | None:
        kind = info.data.get("covariance")
        d = info.data.get("d")
        if kind is None:
            return value
        if kind != "matrix":
            if value is not None:
                raise ValueError(f"only used with covariance 'matrix', not {kind!r}; remove it")
            return value
        if value is None:
            raise ValueError(
                "required when covariance is 'matrix': a d×d symmetric positive "
                "definite list of rows"
            )
        if d is not None and (len(value) != d or any(len(row) != d for row in value)):
            shape = f"{len(value)} rows of lengths {sorted({len(r) for r in value})}"
            raise ValueError(f"must be d×d with d={d}, got {shape}")
        if len(value) == 0 or any(len(row) != len(value) for row in value):
            raise ValueError("must be a square matrix")
        M = torch.tensor(value, dtype=torch.float64)
        scale = max(M.abs().max().item(), 1e-300)
        if (M - M.T).abs().max().item() > 1e-10 * scale:
            raise ValueError("must be symmetric")
        eig = torch.linalg.eigvalsh(M)
        if eig.min().item() <= 1e-12 * eig.abs().max().item():
            raise ValueError(f"not positive definite (smallest eigenvalue {eig.min().item():.3g})")
        return value


@dataclass(frozen=True)
class LinearRegressionBatch:
    """A batch of B prompts.

    X: (B, n, d) context inputs, y: (B, n) labels, x_q: (B, d) queries, y_q: (B,) query targets,
    w_star: (B, d) the true weights, sigma: (d, d) the input covariance Σ.
    """

    X: Tensor
    y: Tensor
    x_q: Tensor
    y_q: Tensor
    w_star: Tensor
    sigma: Tensor

    def prompt(self) -> Tensor:
        """The prompts `Z`: (B, d+1, n+1), context columns `[x_i; y_i]`, query column `[x_q; 0]`."""
        return build_prompt(self.X, self.y, self.x_q)


def haar_orthogonal(d: int, seed: int) -> Tensor:
    """A Haar-random d×d orthogonal matrix in float64 on CPU, a pure function of `seed`.

    QR of a standard Gaussian matrix `G = QR`, then `U = Q · diag(sign(diag R))` so that the
    decomposition is unique and `U` is exactly Haar distributed (Mezzadri 2007).
    """
    generator = torch.Generator().manual_seed(int(seed))
    G = torch.randn(d, d, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    signs = torch.sign(torch.diagonal(R))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return Q * signs  # scales column j of Q by signs[j]


class LinearRegression:
    """Sampler of in-context linear-regression prompts (see the module docstring for the model).

    Attributes (all on `device`, in `dtype`; computed in float64 on CPU first so that Σ is the same
    numbers on every device and dtype up to the final rounding):
    `eigenvalues` (d,) λ; `rotation` (d, d) U; `sigma` (d, d) Σ = U diag(λ) Uᵀ, the covariance of
    the inputs (`α² Σ₀`, or `α² Σ₀ / 3` for uniform inputs); `sigma_sqrt`,
    `sigma_inv_sqrt`, `sigma_inv` (d, d) the symmetric square root, its inverse and Σ⁻¹;
    `weight_covariance` (d, d) Σ_w, the prior covariance of w*. A `Task` (`icgd.tasks.api`) of
    layout `regression`.
    """

    layout: ClassVar[str] = "regression"

    def __init__(
        self,
        config: LinearRegressionConfig,
        *,
        rotation_seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.d = config.d
        self.n = config.n
        self.device = torch.device(device)
        self.dtype = dtype
        self.rotation_seed = int(rotation_seed)
        d = config.d
        f64 = torch.float64

        if config.covariance == "identity":
            lam = torch.ones(d, dtype=f64)
            U = torch.eye(d, dtype=f64)
        elif config.covariance == "eigenvalues":
            lam = torch.tensor(config.eigenvalues, dtype=f64)
            U = torch.eye(d, dtype=f64)
        elif config.covariance == "rotated":
            lam = torch.tensor(config.eigenvalues, dtype=f64)
            U = haar_orthogonal(d, self.rotation_seed)
        else:  # "matrix"
            M = torch.tensor(config.matrix, dtype=f64)
            lam, U = torch.linalg.eigh((M + M.T) / 2)

        alpha = config.input_scale
        input_map = alpha * ((U * lam.sqrt()) @ U.T)  # α Σ₀^{1/2}: x = α Σ₀^{1/2} z
        # From here on λ are the eigenvalues of the inputs' true covariance Σ (Var z = 1 or 1/3).
        uniform = config.input_distribution == "uniform"
        lam = lam * (alpha**2 / 3 if uniform else alpha**2)
        sigma = (U * lam) @ U.T  # U diag(λ) Uᵀ
        sigma = (sigma + sigma.T) / 2
        sigma_sqrt = (U * lam.sqrt()) @ U.T
        sigma_inv_sqrt = (U * lam.rsqrt()) @ U.T
        sigma_inv = (U * lam.reciprocal()) @ U.T
        eye = torch.eye(d, dtype=f64)
        if config.weight_prior == "identity":
            weight_cov, weight_sqrt = eye, eye
        elif config.weight_prior == "inverse_covariance":
            weight_cov, weight_sqrt = sigma_inv, sigma_inv_sqrt
        else:  # "scaled_identity"
            weight_cov, weight_sqrt = eye / d, eye / math.sqrt(d)

        def cast(t: Tensor) -> Tensor:
            return t.to(device=self.device, dtype=dtype)

        self.eigenvalues = cast(lam)
        self.rotation = cast(U)
        self.sigma = cast(sigma)
        self.sigma_sqrt = cast(sigma_sqrt)
        self.sigma_inv_sqrt = cast(sigma_inv_sqrt)
        self.sigma_inv = cast(sigma_inv)
        self.weight_covariance = cast(weight_cov)
        self._weight_sqrt = cast(weight_sqrt)
        self._input_map = cast(input_map)
        self._population_loss_of_zero = float(torch.trace(sigma @ weight_cov)) + config.noise_std**2

    @classmethod
    def example(cls) -> LinearRegression:
        """A tiny instance: d = 3, n = 6, label noise σ = 0.1."""
        return cls(LinearRegressionConfig(d=3, n=6, noise_std=0.1))

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The tensors of `sample(batch_size, g)`: X (B, n, d), y (B, n), x_q (B, d), y_q (B,),
        w_star (B, d), sigma (d, d)."""
        B, n, d = int(batch_size), self.n, self.d
        return {
            "X": (B, n, d),
            "y": (B, n),
            "x_q": (B, d),
            "y_q": (B,),
            "w_star": (B, d),
            "sigma": (d, d),
        }

    def population_loss_of_zero(self) -> float:
        """`E[y_q²] = tr(Σ Σ_w) + σ²`: the population loss of always predicting 0 (d for the
        inverse-covariance prior without noise)."""
        return self._population_loss_of_zero

    def sample(
        self, batch_size: int, generator: torch.Generator, n: int | None = None
    ) -> LinearRegressionBatch:
        """Draw `batch_size` prompts with `n` context points (default `config.n`).

        All randomness comes from `generator`, which must live on `self.device`; the same generator
        state gives the same batch. Draw order: inputs (B, n+1, d) (context and query together),
        then w* (B, d), then label noise (B, n+1) (drawn even when σ = 0, so the inputs and weights
        do not depend on σ).
        """
        n = self.n if n is None else int(n)
        if batch_size < 1 or n < 1:
            raise ValueError(f"batch_size and n must be >= 1, got {batch_size} and {n}")
        B, d = int(batch_size), self.d
        kw = {"generator": generator, "device": self.device, "dtype": self.dtype}
        if self.config.input_distribution == "uniform":
            z = 2 * torch.rand(B, n + 1, d, **kw) - 1  # (B, n+1, d) U(−1, 1)
        else:
            z = torch.randn(B, n + 1, d, **kw)  # (B, n+1, d) N(0, 1)
        inputs = z @ self._input_map  # (B, n+1, d): rows α Σ₀^{1/2} z_i (Σ₀^{1/2} symmetric)
        w_star = torch.randn(B, d, **kw) @ self._weight_sqrt  # (B, d)
        eps = torch.randn(B, n + 1, **kw)  # (B, n+1)
        labels = torch.einsum("bnd,bd->bn", inputs, w_star) + self.config.noise_std * eps
        return LinearRegressionBatch(
            X=inputs[:, :n],
            y=labels[:, :n],
            x_q=inputs[:, n],
            y_q=labels[:, n],
            w_star=w_star,
            sigma=self.sigma,
        )


TASKS.register("linear-regression", LinearRegression)
