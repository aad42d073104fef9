"""Moments of the whitened Wishart matrix ``S̃ = GᵀG / n`` by Monte Carlo, with standard errors.

Setting (SPEC §1.2): in in-context linear regression with ``x ~ N(0, Σ)``, whitening turns the
empirical covariance ``Ŝ = XᵀX / n`` into ``S̃ = Σ^{-1/2} Ŝ Σ^{-1/2} = GᵀG / n`` with
``G ∈ R^{n×d}`` standard normal, whatever Σ is. The losses of GD with preconditioners that are
multiples of ``Σ⁻¹`` are expectations of polynomials in the eigenvalues ``λ_j`` of ``S̃``:

    E Σ_j p(λ_j) = Σ_k p_k m_k,      m_k = E tr(S̃^k) = E Σ_j λ_j^k.

So one Monte Carlo of the power sums ``tr(S̃^k)`` (common random numbers) gives the expectation of
*every* polynomial, and, since the per-draw power sums are kept, the standard error of every such
expectation: ``SE = SD_s(Σ_k p_k t_{s,k}) / √S``.

Exact low moments (used as checks in the tests): ``m_0 = d``, ``m_1 = d``,
``m_2 = d (n + d + 1) / n`` (from ``E[S̃²] = ((n + 1)/n) I + (d/n) I``) and
``m_3 = d (n² + d² + 3nd + 3n + 3d + 4) / n²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from icgd.core.rng import make_generator

_CHUNK = 8_192  # draws per batched eigendecomposition; fixed so that a seed fixes the numbers


@dataclass(frozen=True)
class WishartMoments:
    """Monte Carlo power sums of the eigenvalues of ``S̃ = GᵀG/n``, ``G ∈ R^{n×d}`` standard normal.

    Attributes:
        n: number of context points (rows of ``G``).
        d: dimension.
        moments: ``(K+1,)`` float64, ``moments[k] ≈ m_k = E tr(S̃^k)`` for ``k = 0..K``.
        samples: ``(S, K+1)`` float64, the per-draw ``tr(S̃^k)``; ``moments = samples.mean(0)``.
    """

    n: int
    d: int
    moments: torch.Tensor
    samples: torch.Tensor

    @property
    def max_order(self) -> int:
        return self.moments.shape[0] - 1

    @property
    def n_samples(self) -> int:
        return self.samples.shape[0]

    def require(self, order: int) -> None:
        """Raise if moments up to ``order`` are not available."""
        if order > self.max_order:
            raise ValueError(f"need Wishart moments up to order {order}, have {self.max_order}")

    def expectation(self, coeffs: torch.Tensor) -> tuple[float, float]:
        """``(E Σ_j p(λ_j), SE)`` for the polynomial ``p(λ) = Σ_k coeffs[k] λ^k``.

        The SE is the standard deviation of the per-draw values over ``√S``.
        """
        values = self.per_draw(coeffs)
        return float(values.mean()), float(values.std() / values.shape[0] ** 0.5)

    def per_draw(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``(S,)`` per-draw values ``Σ_j p(λ_j)`` of the polynomial with ``coeffs`` (ascending)."""
        coeffs = torch.as_tensor(coeffs, dtype=torch.float64)
        self.require(coeffs.shape[0] - 1)
        return self.samples[:, : coeffs.shape[0]] @ coeffs


def whitened_eigenvalues(n: int, d: int, n_samples: int = 200_000, seed: int = 0) -> torch.Tensor:
    """(S, d) ascending eigenvalues of ``S̃ = GᵀG/n``, G (n, d) standard normal, float64.

    Draws ``n_samples`` matrices ``G`` in chunks of fixed size from a generator seeded with
    ``seed`` (global RNG untouched) and runs a batched ``eigvalsh``.
    """
    if n < 1 or d < 1 or n_samples < 2:
        raise ValueError(f"need n >= 1, d >= 1, n_samples >= 2; got {n=}, {d=}, {n_samples=}")
    generator = make_generator(seed)
    out = []
    done = 0
    while done < n_samples:
        size = min(_CHUNK, n_samples - done)
        g = torch.randn(size, n, d, generator=generator, dtype=torch.float64)  # (s, n, d)
        out.append(torch.linalg.eigvalsh(g.transpose(1, 2) @ g / n))  # (s, d)
        done += size
    return torch.cat(out)


def moments_from_eigenvalues(eigenvalues: torch.Tensor, n: int, max_order: int) -> WishartMoments:
    """The power sums ``tr(S̃^k)``, ``k = 0..max_order``, of given (S, d) eigenvalues."""
    powers = torch.arange(max_order + 1, dtype=torch.float64)
    samples = (eigenvalues.unsqueeze(-1) ** powers).sum(dim=1)  # (S, K+1)
    return WishartMoments(
        n=n, d=eigenvalues.shape[-1], moments=samples.mean(dim=0), samples=samples
    )


def whitened_wishart_moments(
    n: int, d: int, max_order: int, n_samples: int = 200_000, seed: int = 0
) -> WishartMoments:
    """Monte Carlo power sums ``tr(S̃^k)``, ``k = 0..max_order``, of ``S̃ = GᵀG / n``, from the
    eigenvalues `whitened_eigenvalues` draws (per-draw power sums kept)."""
    if max_order < 0:
        raise ValueError(f"need max_order >= 0; got {max_order=}")
    return moments_from_eigenvalues(whitened_eigenvalues(n, d, n_samples, seed), n, max_order)


def moments_for_loops(
    L: int, n: int, d: int, moments: WishartMoments | None, n_samples: int, seed: int
) -> WishartMoments:
    """The moments an L-step loss needs (orders up to 2L): `moments` checked, or drawn afresh."""
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    if moments is None:
        moments = whitened_wishart_moments(n, d, 2 * L, n_samples=n_samples, seed=seed)
    if (moments.n, moments.d) != (n, d):
        raise ValueError(f"moments are for (n, d) = {(moments.n, moments.d)}, not {(n, d)}")
    moments.require(2 * L)
    return moments
