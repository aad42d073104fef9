"""Population loss of stacked or looped multi-head LSA, given as plain (P, Q) tensors; float64.

Model (SPEC §1.1): ``Z_{l+1} = Z_l + (1/n) Σ_h P_{l,h} Z_l M Z_lᵀ Q_{l,h} Z_l``,
``ŷ = −[Z_L]_{d+1,n+1}``, with heads ``P, Q ∈ R^{(d+1)×(d+1)}``. Data: ``x_i, x_q ~ N(0, Σ)``,
``w* ~ N(0, Σ_w)``, ``y = Xw* + σε``, ``y_q = x_qᵀw* + σε_q``. Loss ``E(ŷ − y_q)²`` (no ½).

Query (every case). Keys/values come from the context only, so the context columns evolve on their
own and the query column linearly: ``z_q ← (I + W_l/n) z_q``, ``W_l = Σ_h P_h C_l Q_h``,
``C_l = Σ_{i≤n} z_i z_iᵀ``. Hence ``ŷ = x_qᵀ ŵ``, ``ŵ = −(T_L)_{d+1,1:d}`` with
``T_L = Π_l (I + W_l/n)``, and, given the context,
``E[(ŷ − y_q)² | X, y] = (ŵ − w*)ᵀΣ(ŵ − w*) + σ²``.

Structured heads (exact over w*, ε): ``P = [[B, 0], [uᵀ, c]]``, ``Q = [[−A, 0], [0, 0]]``, which
holds ``sparse`` (B = 0, u = 0, c = 1), ``sparse_u`` (B = 0) and ``relaxed`` (u = 0). Covariates
move by ``X_{l+1} = X_l T_lᵀ``, ``T_l = I − Σ_h B_h Ŝ_l A_h``, so ``X_l = X R_lᵀ``, ``R_0 = I``,
``R_{l+1} = T_l R_l``, ``Ŝ_l = R_l Ŝ R_lᵀ``. With label row ``y − X w_l`` (query ``−x_qᵀw_l``),
induction gives ``ŷ = x_qᵀ w_L`` for

    w_{l+1} = w_l + G_l (Xᵀy/n − Ŝ w_l) + b_l,  G_l = R_lᵀ (Σ_h c_h A_hᵀ) R_l,
                                              b_l = R_lᵀ Σ_h A_hᵀ Ŝ_l u_h.

With ``Xᵀy/n = Ŝw* + v``, ``Cov(v | X) = (σ²/n) Ŝ``, the error is ``e_L = −M w* + K v + β``,
``M ← (I − G_lŜ) M``, ``K ← (I − G_lŜ) K + G_l``, ``β ← (I − G_lŜ) β + b_l`` (from I, 0, 0), so

    E[(ŷ − y_q)² | X] = tr(Σ M Σ_w Mᵀ) + (σ²/n) tr(Σ K Ŝ Kᵀ) + βᵀ Σ β + σ²      (exact given X).

One structured step is exact over X too: ``Γ = Σ_h c_h A_hᵀ``, ``β = Σ_h A_hᵀ Ŝ u_h`` and
``E[Ŝ N Ŝ] = Σ N Σ + (1/n)(Σ Nᵀ Σ + tr(NΣ) Σ)`` (Isserlis, any N) give

    tr(ΣΣ_w) − 2 tr(ΣΓΣΣ_w) + tr(Σ Γ E[ŜΣ_wŜ] Γᵀ) + (σ²/n) tr(ΣΓΣΓᵀ)
      + Σ_{h,h'} u_hᵀ E[Ŝ A_h Σ A_{h'}ᵀ Ŝ] u_{h'} + σ².

Otherwise (full heads) the loss given the context is averaged over (X, w*, ε).

Common random numbers: every non-closed form averages over one fixed set of standard normal
draws (``population_draws``: the X stream is exactly that of `preconditioner_loss` with the same
seed, w* and ε come from a derived stream), so the loss is a smooth deterministic function of
(P, Q, Σ) and autograd gives its exact gradient; the SE is the per-draw SD over ``√S``. Gradients
of the structured paths are gradients *within* the structure (entries outside it get zero); use
``method="monte_carlo"`` for the gradient in every entry of P and Q.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from icgd.core.rng import derive_seed, make_generator

_CHUNK = 4_096  # draws per batch; equal to preconditioner_loss's, so a seed fixes the same X
Method = Literal["auto", "closed_form", "given_x", "monte_carlo"]
_F64 = torch.float64


@dataclass(frozen=True)
class GaussianRegression:
    """Data law: ``x ~ N(0, Σ)`` (``sigma`` (d, d)), ``w* ~ N(0, Σ_w)`` (``weight_cov`` (d, d),
    default I; pass Σ⁻¹ for Gatmiry's prior), label noise SD ``noise_std``, ``n`` context points."""

    sigma: Tensor
    n: int
    weight_cov: Tensor | None = None
    noise_std: float = 0.0

    @property
    def d(self) -> int:
        return self.sigma.shape[-1]

    def covariances(self) -> tuple[Tensor, Tensor]:
        """``(Σ, Σ_w)`` as float64 (d, d)."""
        sigma = torch.as_tensor(self.sigma, dtype=_F64)
        eye = torch.eye(self.d, dtype=_F64)
        cov_w = eye if self.weight_cov is None else torch.as_tensor(self.weight_cov, dtype=_F64)
        return sigma, cov_w


@dataclass(frozen=True)
class PopulationDraws:
    """Fixed standard normal draws: ``g`` (S, n, d) with ``X = g Cᵀ`` (``Σ = CCᵀ``), ``xi`` (S, d)
    with ``w* = ξ C_wᵀ``, ``eps`` (S, n) label noise."""

    g: Tensor
    xi: Tensor
    eps: Tensor

    @property
    def n_samples(self) -> int:
        return self.g.shape[0]


def population_draws(n: int, d: int, n_samples: int = 20_000, seed: int = 0) -> PopulationDraws:
    """The draws a seed fixes. ``g`` chunk by chunk from ``make_generator(seed)`` exactly as in
    `preconditioner_loss`; ``xi``, ``eps`` from ``derive_seed(seed, "population", "labels")``."""
    if n < 1 or d < 1 or n_samples < 2:
        raise ValueError(f"need n >= 1, d >= 1, n_samples >= 2; got {n=}, {d=}, {n_samples=}")
    gen_x = make_generator(seed)
    gen_w = make_generator(derive_seed(seed, "population", "labels"))
    gs, xis, epss = [], [], []
    for start in range(0, n_samples, _CHUNK):
        size = min(_CHUNK, n_samples - start)
        gs.append(torch.randn(size, n, d, generator=gen_x, dtype=_F64))
        xis.append(torch.randn(size, d, generator=gen_w, dtype=_F64))
        epss.append(torch.randn(size, n, generator=gen_w, dtype=_F64))
    return PopulationDraws(g=torch.cat(gs), xi=torch.cat(xis), eps=torch.cat(epss))


# ------------------------------------------------------------------------- parametrisations


def sparse_heads(A: Tensor, u: Tensor | None = None, B: Tensor | None = None):
    """``(P, Q)`` of the structured heads, each ``A.shape[:-2] + (d+1, d+1)``, differentiable:
    ``P = [[B, 0], [uᵀ, 1]]``, ``Q = [[−A, 0], [0, 0]]`` (``u``: A.shape[:-1]; B like A; None = 0).
    ``sparse``: A only; ``sparse_u``: A, u; ``relaxed``: A, B (as `LSAConfig.parametrisation`)."""
    d = A.shape[-1]
    Q = F.pad(-A, (0, 1, 0, 1))
    corner = torch.zeros(d + 1, d + 1, dtype=A.dtype, device=A.device)
    corner[d, d] = 1.0
    P = corner.expand_as(Q).clone()
    if B is not None:
        P = P + F.pad(B, (0, 1, 0, 1))
    if u is not None:
        P = P + F.pad(u.unsqueeze(-2), (0, 1, d, 0))  # u in row d, columns :d
    return P, Q


def heads(parametrisation: str, params: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(P, Q)`` from the tensors `LinearSelfAttention` holds for ``parametrisation``:
    full {P, Q}; sparse {A}; sparse_u {A, u}; relaxed {A, B}."""
    names = {"full": {"P", "Q"}, "sparse": {"A"}, "sparse_u": {"A", "u"}, "relaxed": {"A", "B"}}
    if parametrisation not in names or set(params) != names[parametrisation]:
        raise ValueError(
            f"parametrisation {parametrisation!r} with params {sorted(params)}; expected one of "
            f"{ {k: sorted(v) for k, v in names.items()} }"
        )
    if parametrisation == "full":
        return params["P"], params["Q"]
    return sparse_heads(params["A"], u=params.get("u"), B=params.get("B"))


def is_structured(P: Tensor, Q: Tensor) -> bool:
    """True if every head has ``P[:d, d] = 0``, ``Q[d, :] = 0``, ``Q[:d, d] = 0`` (exactly)."""
    d = P.shape[-1] - 1
    blocks = (P[..., :d, d], Q[..., d, :], Q[..., :d, d])
    return all(bool((b == 0).all()) for b in blocks)


# ---------------------------------------------------------------------------- the three paths


def _split(P: Tensor, Q: Tensor):
    """Structured blocks of (S_p, H, D, D) heads: A, B (S_p, H, d, d), u (S_p, H, d), c (S_p, H)."""
    d = P.shape[-1] - 1
    return -Q[..., :d, :d], P[..., :d, :d], P[..., d, :d], P[..., d, d]


def _closed_form_one_step(P: Tensor, Q: Tensor, data: GaussianRegression) -> Tensor:
    """(S_p,) exact one-step loss (module docstring) for structured heads (S_p, H, D, D)."""
    sigma, cov_w = data.covariances()
    n, s2 = data.n, float(data.noise_std) ** 2
    A, _, u, c = _split(P, Q)
    gamma = torch.einsum("ph,phji->pij", c, A)  # (S_p, d, d) Γ = Σ_h c_h A_hᵀ
    e_sws = (n + 1) / n * sigma @ cov_w @ sigma + torch.trace(cov_w @ sigma) / n * sigma
    tr = torch.einsum("ij,pjk,kl,pil->p", sigma, gamma, e_sws, gamma)  # tr(Σ Γ E Γᵀ)
    loss = torch.trace(sigma @ cov_w) - 2 * torch.einsum(
        "ij,pjk,kl,li->p", sigma, gamma, sigma, cov_w
    )
    loss = loss + tr + s2 / n * torch.einsum("ij,pjk,kl,pil->p", sigma, gamma, sigma, gamma) + s2
    # E βᵀΣβ, β = Σ_h A_hᵀ Ŝ u_h, N_{hk} = A_h Σ A_kᵀ: u_hᵀ (ΣNΣ + (ΣNᵀΣ + tr(NΣ)Σ)/n) u_k
    a = u @ sigma  # (S_p, H, d): (Σ u_h)ᵀ
    m = torch.einsum("phji,phj->pi", A, a)  # (S_p, d) Σ_h A_hᵀ Σ u_h
    first = torch.einsum("pi,ij,pj->p", m, sigma, m)
    cross = torch.einsum("phji,pkj->phki", A, a)  # (S_p, H, H, d): A_hᵀ Σ u_k
    second = torch.einsum("pkhi,ij,phkj->p", cross, sigma, cross) / n
    tr_n = torch.einsum("phij,jl,pkml,mi->phk", A, sigma, A, sigma)  # tr(A_h Σ A_kᵀ Σ)
    third = torch.einsum("phk,phi,pki->p", tr_n, a, u) / n
    return loss + first + second + third


def _given_x(P, Q, steps, data, g) -> Tensor:
    """(S_p, s) loss given X (exact over w*, ε, x_q) for structured heads (S_p, L, H, D, D)."""
    sigma, cov_w = data.covariances()
    n, s2 = data.n, float(data.noise_std) ** 2
    x = g @ torch.linalg.cholesky(sigma).T  # (s, n, d)
    s_hat = (x.transpose(1, 2) @ x / n).unsqueeze(0)  # (1, s, d, d)
    S_p, d = P.shape[0], P.shape[-1] - 1
    eye = torch.eye(d, dtype=_F64)
    R = M = eye.expand(S_p, *s_hat.shape[1:])  # (S_p, s, d, d)
    K = torch.zeros_like(M)
    beta = torch.zeros(*M.shape[:-1], dtype=_F64)  # (S_p, s, d)
    for layer in steps:
        A, B, u, c = _split(P[:, layer], Q[:, layer])  # (S_p, H, ...)
        s_l = R @ s_hat @ R.transpose(-1, -2)  # (S_p, s, d, d) Ŝ_l = R Ŝ Rᵀ
        gamma = torch.einsum("ph,phji->pij", c, A).unsqueeze(1)  # (S_p, 1, d, d)
        G = R.transpose(-1, -2) @ gamma @ R
        b = torch.einsum("psji,phkj,pskl,phl->psi", R, A, s_l, u)  # Rᵀ Σ_h A_hᵀ Ŝ_l u_h
        step = eye - G @ s_hat
        M, K = step @ M, step @ K + G
        beta = (step @ beta.unsqueeze(-1)).squeeze(-1) + b
        R = R - torch.einsum("phij,psjk,phkl,pslm->psim", B, s_l, A, R)  # T_l R
    val = torch.einsum("ij,psjk,kl,psil->ps", sigma, M, cov_w, M)
    val = val + torch.einsum("psi,ij,psj->ps", beta, sigma, beta) + s2
    if s2 > 0:
        val = val + s2 / n * torch.einsum("ij,psjk,pskl,psil->ps", sigma, K, s_hat, K)
    return val


def _monte_carlo(P, Q, steps, data, g, xi, eps) -> Tensor:
    """(S_p, s) loss given the context (exact over x_q, ε_q) for any heads (S_p, L, H, D, D)."""
    sigma, cov_w = data.covariances()
    n, s2 = data.n, float(data.noise_std) ** 2
    x = g @ torch.linalg.cholesky(sigma).T  # (s, n, d)
    w = xi @ torch.linalg.cholesky(cov_w).T  # (s, d)
    y = (x @ w.unsqueeze(-1)).squeeze(-1) + float(data.noise_std) * eps  # (s, n)
    ctx = torch.cat([x.transpose(1, 2), y.unsqueeze(1)], dim=1)  # (s, D, n) context tokens
    S_p, D = P.shape[0], P.shape[-1]
    ctx = ctx.expand(S_p, *ctx.shape)  # (S_p, s, D, n)
    T = torch.eye(D, dtype=_F64).expand(S_p, ctx.shape[1], D, D)  # query map, (S_p, s, D, D)
    for layer in steps:
        C = ctx @ ctx.transpose(-1, -2)  # (S_p, s, D, D) = Z M Zᵀ
        W = torch.einsum("phab,psbc,phcd->psad", P[:, layer], C, Q[:, layer]) / n
        ctx, T = ctx + W @ ctx, T + W @ T
    err = -T[..., -1, :-1] - w  # (S_p, s, d): ŵ − w*
    return torch.einsum("psi,ij,psj->ps", err, sigma, err) + s2


# ------------------------------------------------------------------------------- public API


def population_loss(
    P: Tensor,
    Q: Tensor,
    data: GaussianRegression,
    *,
    n_loops: int | None = None,
    method: Method = "auto",
    n_samples: int = 20_000,
    seed: int = 0,
    draws: PopulationDraws | None = None,
) -> tuple[Tensor, Tensor]:
    """``(loss, SE)`` of LSA with heads ``P, Q`` (L, H, d+1, d+1), or a batch (S, L, H, d+1, d+1)
    giving (S,) losses. ``n_loops=None``: stacked, layer l is ``P[l], Q[l]`` (one layer: L = 1);
    an int: looped, the single layer (L = 1) applied ``n_loops`` times.

    ``method``: "closed_form" (one structured step, exact, SE 0), "given_x" (structured heads:
    exact given X, CRN over X), "monte_carlo" (any heads: CRN over X, w*, ε); "auto" picks the
    first that applies. ``draws`` (else ``population_draws(n, d, n_samples, seed)``) are reused.
    """
    P, Q = torch.as_tensor(P, dtype=_F64), torch.as_tensor(Q, dtype=_F64)
    batched = P.ndim == 5
    if P.shape != Q.shape or P.ndim not in (4, 5) or P.shape[-1] != data.d + 1:
        raise ValueError(
            f"P, Q must be ([S,] L, H, {data.d + 1}, {data.d + 1}); got "
            f"{tuple(P.shape)}, {tuple(Q.shape)}"
        )
    if not batched:
        P, Q = P.unsqueeze(0), Q.unsqueeze(0)  # (1, L, H, D, D)
    if n_loops is not None and (P.shape[1] != 1 or n_loops < 1):
        raise ValueError(f"looped needs L = 1 and n_loops >= 1; got L={P.shape[1]}, {n_loops=}")
    steps = list(range(P.shape[1])) if n_loops is None else [0] * n_loops
    structured = is_structured(P, Q)
    if method == "auto":
        method = "given_x" if structured else "monte_carlo"
        method = "closed_form" if structured and len(steps) == 1 else method
    if method in ("closed_form", "given_x") and not structured:
        raise ValueError(f"method {method!r} needs structured heads (see module docstring)")
    if method == "closed_form":
        if len(steps) != 1:
            raise ValueError(f"closed_form is for one step, got {len(steps)}")
        loss = _closed_form_one_step(P[:, 0], Q[:, 0], data)
        se = torch.zeros_like(loss).detach()
    else:
        if draws is None:
            draws = population_draws(data.n, data.d, n_samples, seed)
        vals = []
        for start in range(0, draws.n_samples, _CHUNK):
            sl = slice(start, start + _CHUNK)
            if method == "given_x":
                vals.append(_given_x(P, Q, steps, data, draws.g[sl]))
            else:
                vals.append(
                    _monte_carlo(P, Q, steps, data, draws.g[sl], draws.xi[sl], draws.eps[sl])
                )
        per_draw = torch.cat(vals, dim=1)  # (S_p, S)
        loss = per_draw.mean(dim=1)
        se = per_draw.detach().std(dim=1) / per_draw.shape[1] ** 0.5
    return (loss, se) if batched else (loss[0], se[0])


def population_gradient(
    params: Mapping[str, Tensor],
    data: GaussianRegression,
    *,
    parametrisation: str = "full",
    **kwargs,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """``(loss, SE, {name: ∂loss/∂param})`` by autograd through `heads` and `population_loss`
    (``kwargs`` passed on). Params as in `heads`, each with an optional leading batch axis S;
    gradients have the params' shapes (per batch entry: the losses share no parameters)."""
    leaves = {
        k: torch.as_tensor(v, dtype=_F64).detach().requires_grad_(True) for k, v in params.items()
    }
    P, Q = heads(parametrisation, leaves)
    loss, se = population_loss(P, Q, data, **kwargs)
    grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True)
    out = {
        k: torch.zeros_like(v) if gr is None else gr
        for (k, v), gr in zip(leaves.items(), grads, strict=True)
    }
    return loss.detach(), se, out
