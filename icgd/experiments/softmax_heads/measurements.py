"""What `softmax-heads` measures: the structure of the trained heads, the plain and debiased
one-step GD predictors with the R² of one fitted scalar, and the test errors at several context
lengths (nested prompts, float64, evaluated in chunks)."""

from __future__ import annotations

import copy

import torch

from icgd.analysis import distance_to_identity
from icgd.core.prompts import build_prompt
from icgd.core.rng import derive_seed, make_generator
from icgd.experiments.softmax_heads.config import SoftmaxHeadsConfig
from icgd.tasks import LinearRegression
from icgd.theory import m_star

EVAL_CHUNK = 1024  # prompts per forward pass at test time: bounds the (B, H, n+1, n+1) scores


def one_step_predictors(X: torch.Tensor, y: torch.Tensor, x_q: torch.Tensor) -> dict:
    """The plain and debiased one-step GD predictors, each (B,).

    X: (B, n, d), y: (B, n), x_q: (B, d). plain: `x_qᵀ (1/n) Σ_ℓ y_ℓ x_ℓ`;
    debiased: `x_qᵀ (1/n) Σ_ℓ y_ℓ (x_ℓ − x̄)` with x̄ the context mean.
    """
    n = X.shape[1]
    g_plain = torch.bmm(y.unsqueeze(1), X).squeeze(1) / n  # (B, d) = (1/n) Xᵀ y
    g_deb = g_plain - y.mean(1, keepdim=True) * X.mean(1)  # (B, d): minus ȳ x̄
    return {
        "plain": (g_plain * x_q).sum(-1),
        "debiased": (g_deb * x_q).sum(-1),
    }


def scalar_fit_r2(y: torch.Tensor, g: torch.Tensor) -> tuple[float, float]:
    """Least-squares fit `y ≈ c g` by one scalar: returns `(c, R²)`, both (B,) → float.

    `c = ⟨y, g⟩/⟨g, g⟩`, `R² = 1 − ‖y − c g‖² / ‖y − ȳ‖²` (centred total sum of squares).
    """
    y, g = y.double(), g.double()
    c = (y * g).sum() / (g * g).sum()
    residual = (y - c * g).square().sum()
    total = (y - y.mean()).square().sum()
    return float(c), float(1 - residual / total)


def head_metrics(KQ: torch.Tensor, o: torch.Tensor) -> dict[str, list[float] | float]:
    """Structure of He-form weights: KQ (H, d+1, d+1), o (H, d+1) → the metrics of the claims."""
    KQ, o = KQ.double(), o.double()
    d = KQ.shape[-1] - 1
    x_block = KQ[:, :d, :d]  # (H, d, d)
    omega = x_block.diagonal(dim1=1, dim2=2).mean(1)  # (H,) = tr / d
    y_parts = torch.cat([KQ[:, d, :], KQ[:, :d, d]], dim=1)  # (H, 2d+1): y-row and y-column
    y_mass = y_parts.norm(dim=1) / KQ.flatten(1).norm(dim=1)  # (H,)
    x_share = o[:, :d].norm(dim=1) / o.norm(dim=1)  # (H,)
    mu = o[:, d]  # (H,)
    dist = distance_to_identity(x_block)  # (H,)
    return {
        "kq_dist": dist.tolist(),
        "kq_dist_max": float(dist.max()),
        "omega": omega.tolist(),
        "y_mass": y_mass.tolist(),
        "y_mass_max": float(y_mass.max()),
        "ov_x_share": x_share.tolist(),
        "ov_x_share_max": float(x_share.max()),
        "ov_sum_x_share": float(o[:, :d].sum(0).norm() / mu.norm()),
        "mu": mu.tolist(),
        "zero_sum_ratio": float(mu.sum().abs() / mu.abs().sum()),
        # First-order step of the layer: Σ_h μ_h ω_h multiplies (1/n) Σ y_ℓ (x_ℓ − x̄)ᵀ x_q.
        "step_first_order": float((mu * omega).sum()),
    }


@torch.no_grad()
def predict_in_chunks(model: torch.nn.Module, Z: torch.Tensor) -> torch.Tensor:
    """`model.predict` in chunks of EVAL_CHUNK prompts: Z (B, d+1, n+1) → (B,)."""
    return torch.cat([model.predict(part) for part in Z.split(EVAL_CHUNK)])


def length_errors(config: SoftmaxHeadsConfig, soft, lsa) -> dict:
    """Test MSEs at every context length in `config.lengths`, and the R² fits at length n.

    Test prompts in float64, nested over the context length: the prompt of length L uses the
    first L points of the longest one, so the errors at different lengths are paired. Returns
    `soft`, `lsa`, `fixed` (lists over the lengths) and `c_deb`, `r2_deb`, `c_plain`, `r2_plain`;
    and, at length n on the same prompts (no new random draws), the Monte Carlo floor `deb_floor`:
    the MSE of debiased one-step GD at the optimal step m* (`icgd.theory.m_star`, b = E‖w‖² = d
    for the task's w ~ N(0, I_d)), its SE `deb_floor_se`, and the SE of the paired difference
    softmax − floor, `soft_minus_floor_se`.
    """
    device = torch.device(config.device)
    lengths = config.lengths
    long_task = LinearRegression(
        config.task_config(n=max(lengths)), device=device, dtype=torch.float64
    )
    test = long_task.sample(
        config.test_batch_size, make_generator(derive_seed(config.seed, "test"), device)
    )
    soft64 = copy.deepcopy(soft).double()
    lsa64 = copy.deepcopy(lsa).double()
    err_soft, err_lsa, err_fixed = [], [], []
    for L in lengths:
        Z = build_prompt(test.X[:, :L], test.y[:, :L], test.x_q)  # (B, d+1, L+1)
        y_soft = predict_in_chunks(soft64, Z)
        y_lsa = predict_in_chunks(lsa64, Z)
        err_soft.append(float((y_soft - test.y_q).square().mean()))
        err_lsa.append(float((y_lsa - test.y_q).square().mean()))
        err_fixed.append(float((y_lsa * (L / config.n) - test.y_q).square().mean()))
        if L == config.n:
            predictors = one_step_predictors(test.X[:, :L], test.y[:, :L], test.x_q)
            c_deb, r2_deb = scalar_fit_r2(y_soft, predictors["debiased"])
            c_plain, r2_plain = scalar_fit_r2(y_soft, predictors["plain"])
            step = m_star(L, config.d, float(config.d), config.noise_std)
            sq_floor = (step * predictors["debiased"] - test.y_q).square()
            sq_diff = (y_soft - test.y_q).square() - sq_floor
            root_b = len(sq_floor) ** 0.5
            floor = (float(sq_floor.mean()), float(sq_floor.std() / root_b))
            diff_se = float(sq_diff.std() / root_b)
    return {
        "soft": err_soft,
        "lsa": err_lsa,
        "fixed": err_fixed,
        "c_deb": c_deb,
        "r2_deb": r2_deb,
        "c_plain": c_plain,
        "r2_plain": r2_plain,
        "deb_floor": floor[0],
        "deb_floor_se": floor[1],
        "soft_minus_floor_se": diff_se,
    }
