"""Entropic optimal transport, batched over problems: log-domain Sinkhorn and semi-dual ascent.

For one problem: weights `a` (n,) and `b` (m,) on points `x_1..x_n` and `y_1..y_m` (positive,
each summing to 1; uniform `a_i = 1/n`, `b_j = 1/m` by default), a cost `C` (n, m) (by default
`C_ij = ‖x_i − y_j‖²`, `squared_distances`) and a regularisation ε > 0, the entropic OT problem is

    OT_ε = min_{P ∈ U(a,b)}  ⟨C, P⟩ − ε H(P),    H(P) = −Σ_ij P_ij (log P_ij − 1),
    U(a, b) = {P ≥ 0 : P 1 = a, Pᵀ 1 = b}.

On U(a, b), `Σ_ij P_ij = 1`, so `−ε H(P) = ε Σ_ij P_ij log P_ij − ε`: the same minimiser `P_ε` as
POT's `ot.sinkhorn(a, b, C, reg=ε)`, which minimises `⟨C, P⟩ + reg Σ_ij P_ij log P_ij` (POT's
documented objective, `Ω(γ) = Σ γ_ij log γ_ij`); POT's optimal value is `OT_ε + ε`. The
minimiser is `P_ij = exp((f_i + g_j − C_ij)/ε)` for the maximisers `f` (n,), `g` (m,) of the dual

    D(f, g) = ⟨a, f⟩ + ⟨b, g⟩ − ε Σ_ij exp((f_i + g_j − C_ij)/ε),    max D = OT_ε,

unique up to `(f + κ, g − κ)`. (POT's `sinkhorn_log` potentials are `u = f/ε`, `v = g/ε`.)
Maximising D over f in closed form (the smooth c-transform
`f_i(g) = ε log a_i − ε log Σ_j exp((g_j − C_ij)/ε)`) gives the concave semi-dual in g (m,):

    F(g) = Σ_j b_j g_j − ε Σ_i a_i log Σ_j exp((g_j − C_ij)/ε) + ε Σ_i a_i log a_i − ε,

with `max_g F = OT_ε` (the constant makes F(g*) the entropic objective; for a = b = 1/n it is
SPEC §4's `(1/n) Σ_j g_j − (ε/n) Σ_i log Σ_j exp((g_j − C_ij)/ε)` minus `ε(1 + log n)`).
Writing `π_ij(g) = softmax_j((g_j − C_ij)/ε)` (one softmax-attention row per i) and
`c_j(g) = Σ_i a_i π_ij(g)` (the column mass),

    ∇F(g)_j = b_j − c_j(g),     plan of g:  P_ij = a_i π_ij(g) = exp((f_i(g) + g_j − C_ij)/ε),

whose rows sum to `a_i` exactly and whose columns sum to `b_j` exactly at the optimum. F and the
plan are invariant to `g → g + κ`. (With weights inside the log, `Σ_j b_j exp(...)`, one gets the
same function of `g + ε log b`: for uniform b the two differ by a constant only.)

Curvature. `−∇²F(g) = (1/ε) Σ_i a_i (diag π_i − π_i π_iᵀ)`, and `diag p − p pᵀ` is the covariance
of a function under p, so (Popoviciu) `‖diag p − p pᵀ‖ ≤ 1/2`: F is L-smooth with
`L = 1/(2ε)`, whatever n, m. Also `−∇²F(g) ⪯ (1/ε) diag(c(g))`, which at the optimum is
`diag(b)/ε`: near the optimum the curvature of coordinate j is at most `b_j/ε` (`1/(mε)` for
uniform b), a factor ~m smaller than the global bound.

Algorithms (Cuturi 2013, "Sinkhorn distances: lightspeed computation of optimal transport";
Peyré & Cuturi 2019, "Computational optimal transport", §4.4 for the log domain; the semi-dual
ascent view of attention is Daneshmand 2024, "Provable optimal transport with transformers"):

- `sinkhorn_log`: block-coordinate ascent on D, in POT's order (g then f), from f = g = 0,
  with `u = f/ε`, `v = g/ε`:

      v_j ← log b_j − logsumexp_i(u_i − C_ij/ε),    u_i ← log a_i − logsumexp_j(v_j − C_ij/ε).

  After each iteration the rows of the plan `P_ij = exp(u_i + v_j − C_ij/ε)` sum to `a` (to
  rounding); the column sums come for free from the next iteration's first logsumexp. A problem
  stops (and is frozen: its potentials are those after the iteration that met the criterion) when
  `‖Pᵀ1 − b‖₁ ≤ tol`, which is the marginal violation `‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁` up to rounding;
  the reported `marginal_error` is recomputed from the returned plan (both terms). Finished
  problems are dropped from the working set once they are at least half of it.

- `semi_dual_ascent`: exactly `steps` steps of (preconditioned) gradient ascent on F,

      g^{t+1} = g^t + η^t ⊙ ∇F(g^t),    ∇F(g^t)_j = b_j − c_j^t,   c_j^t = Σ_i a_i π_ij(g^t),

  from `g^0 = g0` (default 0), with one of the step rules (`step` is the parameter s > 0):

  * ``"constant"``: `η_j = s ε / b_j` (= `s ε m` for uniform b). Scaling: `b_j/ε` is the
    curvature of coordinate j at the optimum, so s ≤ 1 is the 1/L step of the local quadratic
    model (locally stable for s < 2), and s = 1 is the linearisation of Sinkhorn's column update
    `g_j ← g_j − ε log(c_j/b_j)` at `c = b`. Globally guaranteed (descent lemma with
    L = 1/(2ε)): F increases by ≥ `(1/2) Σ_j η_j ∇F_j²` at every step when `max_j η_j ≤ 2ε`,
    i.e. `s ≤ 2 min_j b_j` (= 2/m uniform).
  * ``"sink"``: `η_j = s ε / (b_j + c_j^t)`; for `a = b = 1/n` this is
    `η_j = s ε n / (1 + s_j)` with `s_j = n Σ_i a_i π_ij(g^t)` the normalised column mass — what
    a softmax-attention layer with a constant "sink" key can compute — and the update reads
    `g_j ← g_j + s ε (1 − s_j)/(1 + s_j)`. It equals the constant rule damped by `1 + c_j/b_j`
    (≈ half of it at the optimum, so s ≤ 2 is locally stable), and every coordinate moves by less
    than s ε per step, so `c_j` changes by a factor < `e^{2s}` along the step and, with
    `−∇²F ⪯ diag(c)/ε`, F provably increases at every step when `s e^{2s} ≤ 2` (s ≤ 0.6).
  * ``"armijo"``: `η_j = τ s ε / b_j` with the largest `τ ∈ {1, 1/2, 1/4, …}` (fresh at every
    step, per problem) such that `F(g + η ⊙ ∇F) ≥ F(g) + (1/2) Σ_j η_j ∇F_j²` (up to a rounding
    slack of 8 machine epsilons times the scale of F). Monotone for any s; the search stops by
    `max_j η_j ≤ 2ε` at the latest (descent lemma).

Shapes: a batch of B problems, `C` (B, n, m), `a` (B, n) or (n,), `b` (B, m) or (m,); every
computation is batched (no Python loop over problems or points), in C's dtype and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from icgd.algorithms.plugins import ALGORITHMS

StepRule = Literal["constant", "sink", "armijo"]
STEP_RULES = ("constant", "sink", "armijo")


@dataclass(frozen=True)
class OTResult:
    """Entropic OT solutions of B problems (module docstring for the symbols).

    plan: (B, n, m) `P_ij = exp((f_i + g_j − C_ij)/ε)`; f: (B, n), g: (B, m) the dual potentials
    (defined up to `(f + κ, g − κ)`); value: (B,) the transport cost `⟨C, P⟩`; objective: (B,)
    the entropic objective `⟨C, P⟩ − ε H(P)` of the returned plan (POT's objective − ε); dual:
    (B,) `D(f, g)` (for `semi_dual_ascent`, `= F(g)`); iterations: (B,) int64 iterations used;
    converged: (B,) bool (`sinkhorn_log`: the stopping criterion was met before `max_iter`;
    `semi_dual_ascent`: `marginal_error ≤ tol`); marginal_error: (B,)
    `‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁` recomputed from the returned plan (for `sinkhorn_log` it exceeds the
    stopping test `‖Pᵀ1 − b‖₁` by the rounding error of the rows and of the plan's exp, ~1e-15 in
    float64, up to ~1e-6 in float32 when `|C|/ε ~ 100`); iterates: (steps + 1, B, m) `g^0 … g^steps`
    when `semi_dual_ascent(..., return_iterates=True)`, else None.
    """

    plan: Tensor
    f: Tensor
    g: Tensor
    value: Tensor
    objective: Tensor
    dual: Tensor
    iterations: Tensor
    converged: Tensor
    marginal_error: Tensor
    iterates: Tensor | None = None


def squared_distances(X: Tensor, Y: Tensor) -> Tensor:
    """The cost `C_ij = ‖x_i − y_j‖²`: X (B, n, d), Y (B, m, d) → C (B, n, m).

    Computed as `‖x_i‖² + ‖y_j‖² − 2⟨x_i, y_j⟩` (one batched matmul), clamped at 0 against
    cancellation; the absolute rounding error is a few machine epsilons times `‖x_i‖² + ‖y_j‖²`.
    """
    if X.ndim != 3 or Y.ndim != 3 or X.shape[0] != Y.shape[0] or X.shape[2] != Y.shape[2]:
        raise ValueError(f"expected X (B, n, d) and Y (B, m, d), got {tuple(X.shape)}, {Y.shape}")
    Y = Y.to(X.dtype)
    sq_x = X.square().sum(-1)  # (B, n)
    sq_y = Y.square().sum(-1)  # (B, m)
    C = torch.baddbmm(sq_x.unsqueeze(-1) + sq_y.unsqueeze(-2), X, Y.transpose(1, 2), alpha=-2)
    return C.clamp_min_(0)  # (B, n, m)


def _weights(w: Tensor | None, B: int, k: int, C: Tensor, name: str) -> Tensor:
    """Weights of length k as (B, k) in C's dtype/device; uniform 1/k when None."""
    if w is None:
        return torch.full((B, k), 1.0 / k, dtype=C.dtype, device=C.device)
    w = torch.as_tensor(w, dtype=C.dtype, device=C.device)
    if w.shape not in ((k,), (B, k)):
        raise ValueError(f"{name} must have shape ({k},) or ({B}, {k}), got {tuple(w.shape)}")
    if not bool((w > 0).all()):
        raise ValueError(f"{name} must be positive")
    total = w.sum(-1)
    if not bool(((total - 1).abs() <= 1e-6).all()):
        raise ValueError(f"{name} must sum to 1 (got sums in [{total.min()}, {total.max()}])")
    return w.expand(B, k)


def check_prefix_inputs(C: Tensor, eps: float, a: Tensor | None, b: Tensor | None):
    """Validate (C, ε, a, b) → (ε as float, a (B, n), b (B, m))."""
    if C.ndim != 3:
        raise ValueError(f"expected a cost C (B, n, m), got shape {tuple(C.shape)}")
    if not C.is_floating_point():
        raise ValueError(f"C must be a floating-point tensor, got {C.dtype}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be finite and > 0, got {eps}")
    B, n, m = C.shape
    return eps, _weights(a, B, n, C, "a"), _weights(b, B, m, C, "b")


def _finish(C, eps, u, v, a, b, iterations, converged, iterates=None) -> OTResult:
    """OTResult from potentials in units of ε: u = f/ε (B, n), v = g/ε (B, m); `converged` is a
    (B,) bool tensor, or a float tol meaning `marginal_error ≤ tol`."""
    log_P = u.unsqueeze(-1) + v.unsqueeze(-2) - C / eps  # (B, n, m)
    P = torch.exp(log_P)
    value = (C * P).sum((1, 2))  # ⟨C, P⟩
    objective = value + eps * (P * (log_P - 1)).sum((1, 2))  # ⟨C, P⟩ − ε H(P)
    dual = eps * ((a * u).sum(-1) + (b * v).sum(-1) - P.sum((1, 2)))  # D(f, g)
    err = (P.sum(-1) - a).abs().sum(-1) + (P.sum(-2) - b).abs().sum(-1)  # (B,)
    if not isinstance(converged, Tensor):
        converged = err <= converged
    return OTResult(
        plan=P,
        f=eps * u,
        g=eps * v,
        value=value,
        objective=objective,
        dual=dual,
        iterations=iterations,
        converged=converged,
        marginal_error=err,
        iterates=iterates,
    )


def sinkhorn_log(
    C: Tensor,
    eps: float,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    tol: float = 1e-9,
    max_iter: int = 10_000,
) -> OTResult:
    """Log-domain Sinkhorn for `min_{P ∈ U(a,b)} ⟨C, P⟩ − ε H(P)` on B problems at once.

    C: (B, n, m) cost; eps: ε > 0; a: (n,) or (B, n), b: (m,) or (B, m) positive weights summing
    to 1 (default uniform); tol: a problem stops when `‖Pᵀ1 − b‖₁ ≤ tol` after an iteration (rows
    are exact then, module docstring), and is frozen; max_iter ≥ 1: iterations (one g-update and
    one f-update each). Returns an `OTResult` (iterations = updates used; converged = stopped by
    the criterion, not by max_iter; marginal_error recomputed from the plan). Same plan as POT's
    `ot.sinkhorn(a, b, C, reg=eps)`.
    """
    eps, a, b = check_prefix_inputs(C, eps, a, b)
    tol = float(tol)
    if not tol >= 0 or max_iter < 1:
        raise ValueError(f"need tol >= 0 and max_iter >= 1, got {tol}, {max_iter}")
    B, n, m = C.shape
    K = -C / eps  # (B, n, m) log-kernel
    u_out = torch.zeros(B, n, dtype=C.dtype, device=C.device)
    v_out = torch.zeros(B, m, dtype=C.dtype, device=C.device)
    iter_out = torch.full((B,), max_iter, dtype=torch.int64, device=C.device)
    conv_out = torch.zeros(B, dtype=torch.bool, device=C.device)

    # The working set of problems still iterating, and their data.
    idx = torch.arange(B, device=C.device)  # (P,) indices into the B problems
    Kw, log_a, log_b, bw = K, a.log(), b.log(), b
    u = torch.zeros(B, n, dtype=C.dtype, device=C.device)  # f/ε
    v = torch.zeros(B, m, dtype=C.dtype, device=C.device)  # g/ε
    done = torch.zeros(B, dtype=torch.bool, device=C.device)
    for it in range(max_iter + 1):
        lse_col = torch.logsumexp(Kw + u.unsqueeze(-1), dim=1)  # (P, m) log Σ_i e^{u_i − C_ij/ε}
        if it == max_iter:  # out of iterations: hand back the stragglers' last potentials
            keep = ~done
            u_out[idx[keep]], v_out[idx[keep]] = u[keep], v[keep]
            break
        if it >= 1:
            col_err = (torch.exp(v + lse_col) - bw).abs().sum(-1)  # (P,) ‖Pᵀ1 − b‖₁
            newly = (col_err <= tol) & ~done
            if bool(newly.any()):
                sel = idx[newly]
                u_out[sel], v_out[sel] = u[newly], v[newly]
                iter_out[sel] = it
                conv_out[sel] = True
                done = done | newly
                n_done = int(done.sum())
                if n_done == done.numel():
                    break
                if 2 * n_done >= done.numel():  # compact: copying survivors costs ≤ 1× overall
                    keep = ~done
                    idx, Kw, log_a, log_b, bw = (
                        idx[keep],
                        Kw[keep],
                        log_a[keep],
                        log_b[keep],
                        bw[keep],
                    )
                    u, v, lse_col, done = u[keep], v[keep], lse_col[keep], done[keep]
        v = log_b - lse_col  # g-update
        u = log_a - torch.logsumexp(Kw + v.unsqueeze(-2), dim=2)  # f-update, (P, n)
    return _finish(C, eps, u_out, v_out, a, b, iter_out, conv_out)


def _c_transform(C: Tensor, g: Tensor, eps: float, a: Tensor) -> tuple[Tensor, Tensor]:
    """`u = f(g)/ε` (B, n) and the softmax rows `π(g)` (B, n, m) (module docstring)."""
    logits = (g.unsqueeze(-2) - C) / eps  # (B, n, m) (g_j − C_ij)/ε
    lse = torch.logsumexp(logits, dim=-1)  # (B, n)
    pi = torch.exp(logits - lse.unsqueeze(-1))  # (B, n, m) softmax_j
    return a.log() - lse, pi


def semi_dual(
    C: Tensor, g: Tensor, eps: float, a: Tensor | None = None, b: Tensor | None = None
) -> Tensor:
    """The semi-dual `F(g) = Σ_j b_j g_j − ε Σ_i a_i log Σ_j e^{(g_j − C_ij)/ε} + ε Σ_i a_i log a_i
    − ε` (module docstring; `max_g F = OT_ε`): C (B, n, m), g (B, m) → (B,). Differentiable."""
    eps, a, b = check_prefix_inputs(C, eps, a, b)
    logits = (g.unsqueeze(-2) - C) / eps  # (B, n, m)
    lse = torch.logsumexp(logits, dim=-1)  # (B, n)
    return (b * g).sum(-1) + eps * (a * (a.log() - lse)).sum(-1) - eps


def semi_dual_gradient(
    C: Tensor, g: Tensor, eps: float, a: Tensor | None = None, b: Tensor | None = None
) -> Tensor:
    """`∇F(g)_j = b_j − Σ_i a_i softmax_j((g_j − C_ij)/ε)`: C (B, n, m), g (B, m) → (B, m)."""
    eps, a, b = check_prefix_inputs(C, eps, a, b)
    _, pi = _c_transform(C, g, eps, a)
    return b - torch.einsum("bn,bnm->bm", a, pi)


def semi_dual_ascent(
    C: Tensor,
    eps: float,
    *,
    steps: int,
    step_rule: StepRule = "constant",
    step: float = 1.0,
    a: Tensor | None = None,
    b: Tensor | None = None,
    g0: Tensor | None = None,
    tol: float = 1e-9,
    return_iterates: bool = False,
    max_backtracks: int = 60,
) -> OTResult:
    """`steps` steps of gradient ascent `g^{t+1} = g^t + η^t ⊙ ∇F(g^t)` on the semi-dual F.

    C: (B, n, m) cost; eps: ε > 0; steps ≥ 0; step_rule: "constant" (`η_j = s ε / b_j`), "sink"
    (`η_j = s ε / (b_j + c_j^t)`) or "armijo" (backtracking from `s ε / b_j`), s = `step` > 0
    (module docstring for the rules and their stability bounds); a, b: weights as in
    `sinkhorn_log`; g0: (B, m) start (default 0); tol: only sets `converged`
    (`marginal_error ≤ tol`), there is no early stop; return_iterates: also return
    `iterates` (steps + 1, B, m) = g^0 … g^steps; max_backtracks: halvings per Armijo step.
    Returns an `OTResult` for `g^steps`: plan `P_ij = a_i π_ij(g)`, `f = f(g)` the c-transform,
    dual = F(g), iterations = steps.
    """
    eps, a, b = check_prefix_inputs(C, eps, a, b)
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    step = float(step)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be finite and > 0, got {step}")
    if steps < 0 or max_backtracks < 0:
        raise ValueError(f"need steps >= 0 and max_backtracks >= 0, got {steps}, {max_backtracks}")
    B, n, m = C.shape
    if g0 is None:
        g = torch.zeros(B, m, dtype=C.dtype, device=C.device)
    else:
        if g0.shape != (B, m):
            raise ValueError(f"g0 must have shape ({B}, {m}), got {tuple(g0.shape)}")
        g = g0.to(C.dtype).clone()
    const = eps * (a * a.log()).sum(-1) - eps  # (B,) the constant of F
    macheps = torch.finfo(C.dtype).eps

    def F_of(h: Tensor) -> Tensor:  # semi-dual F(h) (B,) without re-validating
        lse = torch.logsumexp((h.unsqueeze(-2) - C) / eps, dim=-1)  # (B, n)
        return (b * h).sum(-1) - eps * (a * lse).sum(-1) + const

    iterates = [g] if return_iterates else None
    for _ in range(steps):
        _, pi = _c_transform(C, g, eps, a)  # (B, n, m) π(g^t)
        c = torch.einsum("bn,bnm->bm", a, pi)  # (B, m) column mass c^t
        grad = b - c  # ∇F(g^t)
        if step_rule == "constant":
            eta = step * eps / b
        elif step_rule == "sink":
            eta = step * eps / (b + c)
        else:  # armijo
            eta = step * eps / b  # (B, m), shrunk per problem below
            F0 = F_of(g)  # (B,)
            gain = (eta * grad.square()).sum(-1)  # (B,) Σ_j η_j ∇F_j² at τ = 1
            slack = 8 * macheps * (F0.abs() + (b * g).abs().sum(-1) + eps)
            tau = torch.ones(B, dtype=C.dtype, device=C.device)
            ok = F_of(g + eta * grad) >= F0 + 0.5 * gain - slack
            for _ in range(max_backtracks):
                if bool(ok.all()):
                    break
                tau = torch.where(ok, tau, tau / 2)
                F_try = F_of(g + (tau.unsqueeze(-1) * eta) * grad)
                ok = ok | (F_try >= F0 + 0.5 * tau * gain - slack)
            eta = tau.unsqueeze(-1) * eta
        g = g + eta * grad
        if iterates is not None:
            iterates.append(g)
    u, _ = _c_transform(C, g, eps, a)
    iters = torch.full((B,), steps, dtype=torch.int64, device=C.device)
    stacked = torch.stack(iterates) if iterates is not None else None  # (steps + 1, B, m)
    return _finish(C, eps, u, g / eps, a, b, iters, float(tol), stacked)


ALGORITHMS.register("sinkhorn", sinkhorn_log)
ALGORITHMS.register("semi-dual-ascent", semi_dual_ascent)
