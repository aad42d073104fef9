"""Full-batch GD and Adam on a decision-list population, mode (c)'s runs from random init, and
what is read from the result.

Used by `icgd.experiments.decision_lists.experiment` (module docstring there: the model, the
loss, the modes). The parameters trained are passed as a dict and evaluated with `torch.func` on a
model whose own weights stay fixed (V = cP in mode (a)), so one model object serves every mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from icgd.analysis import top_hessian_eigenvalue
from icgd.core.rng import derive_seed, make_generator
from icgd.models import DecisionListAttention, DecisionListAttentionConfig
from icgd.models.decision_list_attention import sequence_loss
from icgd.tasks import DecisionLists
from icgd.training.guard import checks_every_step


class Population:
    """The sequences the loss is taken over, with their weights and labels, and the sequences
    accuracy is measured on: every sequence with its probability (`size=None`: exact, the test
    sequences are the same ones), or a fixed iid sample of `size` with weights 1/size and a second
    sample of the same size to test on (streams "population" and "heldout" of `seed`)."""

    def __init__(self, task: DecisionLists, size: int | None = None, seed: int = 0) -> None:
        device = task.device
        if size is None:
            self.seqs, self.weights = task.enumerate()
            self.test_seqs, self.test_weights = self.seqs, self.weights
        else:

            def draw(stream: str) -> Tensor:
                return task.sample(size, make_generator(derive_seed(seed, stream), device))

            self.seqs, self.test_seqs = draw("population"), draw("heldout")
            uniform = torch.full((size,), 1.0 / size, dtype=torch.float64, device=device)
            self.weights, self.test_weights = uniform, uniform
        self.labels = task.labels(self.seqs)
        self.test_labels = task.labels(self.test_seqs)


def perfect_mass(Z: Tensor, labels: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """`(all perfect, mass)` as 0-dim tensors on Z's device (no host sync): whether every sequence
    of positive weight has every position's argmax at its label, and the probability mass of the
    perfect sequences, exactly 1.0 when all are (a sum of N weights 1/N need not round to 1:
    5000 × (1/5000) = 1 + 2e-16). Z (N, L, n) logits, labels (N, n), weights (N,)."""
    perfect = (Z.argmax(1) == labels).all(1)  # (N,)
    every = (perfect | (weights <= 0)).all()
    mass = (perfect.to(weights.dtype) * weights).sum()
    return every, torch.where(every, torch.ones_like(mass), mass)


def weighted_perfect(Z: Tensor, labels: Tensor, weights: Tensor) -> float:
    """`perfect_mass`'s mass as a float."""
    return float(perfect_mass(Z, labels, weights)[1])


def perfect_fraction(model, params: dict, seqs: Tensor, labels: Tensor, weights: Tensor) -> float:
    """`weighted_perfect` of the model with `params` on `seqs`."""
    with torch.no_grad():
        Z = torch.func.functional_call(model, params, (seqs,), strict=False)
        return weighted_perfect(Z, labels, weights)


def lambda_max(model, params: dict, pop: Population, iters: int, seed: int, tag: str) -> float:
    fn = model.loss_fn(pop.seqs, pop.labels, pop.weights)
    gen = make_generator(derive_seed(seed, "power", tag), "cpu")
    return top_hessian_eigenvalue(fn, params, iters=iters, generator=gen, which="largest").value


class Curvature:
    """λ_max of the population loss's Hessian along a run, by power iteration warm-started from
    the eigenvector found at the previous point (a few Hessian-vector products per call once the
    run moves slowly); the first call starts from a random vector of stream `tag` of `seed`."""

    def __init__(self, model, pop: Population, iters: int, seed: int, tag: str) -> None:
        self.loss_fn = model.loss_fn(pop.seqs, pop.labels, pop.weights)
        self.iters, self.generator = iters, make_generator(derive_seed(seed, "power", tag), "cpu")
        self.vector: dict[str, Tensor] | None = None

    def __call__(self, params: dict[str, Tensor]) -> float:
        eig = top_hessian_eigenvalue(
            self.loss_fn, params, iters=self.iters, generator=self.generator, which="largest",
            start=self.vector,
        )  # fmt: skip
        self.vector = eig.vector
        return eig.value


class _Watch:
    """What a full-batch loop reads from its steps, kept on the device and read by the host only
    every step on CPU (where reading is free) and elsewhere at log steps, curvature re-measurements
    and the end (as the training loop's guard, `icgd.training.guard`): the first step at which
    every sequence is perfect and its gradient-flow time, the first step whose loss is non-finite
    with that step's loss, perfect mass and time, and the log entries not read yet. After a
    non-finite loss the caller keeps its parameters fixed (`ok` false), so on reading, the loop
    stops with the weights and the curve it would have had stopping at that step."""

    def __init__(self, device: torch.device, with_time: bool) -> None:
        self.every_step, self.with_time = checks_every_step(device), with_time
        self.ok = torch.ones((), dtype=torch.bool, device=device)  # every loss so far finite
        self.first_perfect = torch.full((), -1, dtype=torch.long, device=device)
        self.time_perfect = torch.full((), math.nan, dtype=torch.float64, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad: tuple[Tensor, Tensor, Tensor] | None = None  # (loss, perfect, time) there
        self.now: tuple[Tensor, Tensor] | None = None  # this step's (loss, perfect mass)
        self.pending: list[tuple[int, Tensor, Tensor, float, Any]] = []
        self.curve: dict[str, list] = {k: [] for k in ("step", "loss", "perfect", "time", "track")}

    def observe(self, step: int, loss: Tensor, every: Tensor, mass: Tensor, time: float) -> None:
        """One step's loss and `perfect_mass`, before its update; `time` its gradient-flow time."""
        ok_before = self.ok
        newly = ok_before & every & (self.first_perfect < 0)
        self.first_perfect = torch.where(newly, step, self.first_perfect)
        self.time_perfect = torch.where(newly, time, self.time_perfect)
        first_bad = ok_before & ~torch.isfinite(loss)
        self.bad_step = torch.where(first_bad, step, self.bad_step)
        at = torch.stack([loss.to(mass.dtype), mass, torch.full_like(mass, time)])
        self.bad = at if self.bad is None else torch.where(first_bad, at, self.bad)
        self.ok = ok_before & ~first_bad
        self.now = (loss, mass)

    def log(self, step: int, time: float, params: Any = None) -> None:
        """A curve entry for this step (`params` for the caller's `track`, read later)."""
        assert self.now is not None
        self.pending.append((step, *self.now, time, params))

    def _append(self, step: int, loss: float, mass: float, time: float, tracked: Any) -> None:
        self.curve["step"].append(step)
        self.curve["loss"].append(loss)
        self.curve["perfect"].append(mass)
        if self.with_time:
            self.curve["time"].append(time)
        if tracked is not None:
            self.curve["track"].append(tracked)

    def read(self, params: Any, track: Callable[[Any], float] | None = None) -> bool:
        """The host sync: move the pending entries to the curve; False (and the curve ends at
        the first bad step, `params` being its weights) if a loss went non-finite."""
        ok = bool(self.ok)
        bad_step = -1 if ok else int(self.bad_step)
        for step, loss, mass, time, at in self.pending:
            if ok or step < bad_step:
                tracked = track(at) if track is not None else None
                self._append(step, float(loss), float(mass), time, tracked)
        self.pending.clear()
        if not ok:
            assert self.bad is not None
            loss, mass, time = self.bad.tolist()
            self._append(bad_step, loss, mass, time, track(params) if track else None)
        return ok

    def due(self, logs: bool) -> bool:
        """Whether the host reads after this step."""
        return self.every_step or logs

    def first(self) -> tuple[int | None, float]:
        """(first perfect step or None, its gradient-flow time or NaN)."""
        step = int(self.first_perfect)
        return (None, math.nan) if step < 0 else (step, float(self.time_perfect))


def run_gd(
    model: DecisionListAttention,
    params: dict[str, Tensor],
    pop: Population,
    eta: float,
    steps: int,
    log_every: int,
    track: Callable[[dict[str, Tensor]], float] | None = None,
    curvature: Curvature | None = None,
    every: int = 0,
    eta_factor: float = 1.0,
) -> dict[str, Any]:
    """Full-batch GD `θ ← θ − η_t ∇ loss(θ)` on the parameters of `params` (the others fixed).

    The step: `η_t = eta` throughout, or, given `curvature` and `every > 0`, the local rule
    `η_t = eta_factor / λ_max(θ_t)` with λ_max re-measured every `every` steps (`eta` is the step
    until the first re-measurement, normally `eta_factor / λ_max(θ_0)`): GD with `η ≤ 1/λ_max`
    where the curvature is measured, without keeping the tiny step of the steep start once the
    landscape has flattened. Gradient-flow time is `Σ_t η_t`.

    Returns the final params, the curve (step, loss, perfect fraction, gradient-flow time, and
    `track(params)` if given) every `log_every` steps, `first_perfect`: the first step at which
    every sequence of the population (the sequences the loss is taken over) is classified
    perfectly (None if never within `steps`), `time_to_perfect`: its gradient-flow time (NaN if
    never), `eta_lambda`: the largest `η·λ_max` seen at the re-measurements (a step that was
    taken with the previous η, checked against the new λ_max; NaN without re-measurements), and
    `eta_final`: the last step size, and `perfect_heldout`: the final params' perfect mass on the
    test sequences. The per-step check
    reuses the step's own logits.
    """

    def objective(p: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        Z = torch.func.functional_call(model, p, (pop.seqs,), strict=False)  # (N, L, n)
        return sequence_loss(Z, pop.labels, pop.weights), Z.detach()

    grad_and_loss = torch.func.grad_and_value(objective, has_aux=True)
    watch = _Watch(pop.seqs.device, with_time=True)
    time, eta_lambda = 0.0, math.nan
    adaptive = curvature is not None and every > 0
    for step in range(steps + 1):
        if adaptive and step > 0 and step % every == 0:
            if not watch.read(params, track):  # never measure the curvature of a diverged run
                break
            lam = curvature(params)  # type: ignore[misc]
            eta_lambda = max(eta * lam, 0.0 if math.isnan(eta_lambda) else eta_lambda)
            eta = eta_factor / lam
        grads, (loss, Z) = grad_and_loss(params)
        watch.observe(step, loss.detach(), *perfect_mass(Z, pop.labels, pop.weights), time)
        logs = step % log_every == 0 or step == steps
        if logs:
            watch.log(step, time, params if track is not None else None)
        if (watch.due(logs) and not watch.read(params, track)) or step == steps:
            break
        ok = watch.ok  # after a non-finite loss the weights stay those of that step
        params = {k: torch.where(ok, v - eta * grads[k], v).detach() for k, v in params.items()}
        time += eta
    first_perfect, time_to_perfect = watch.first()
    return {
        "params": params,
        "curve": watch.curve,
        "first_perfect": first_perfect,
        "time_to_perfect": time_to_perfect,
        "eta_lambda": eta_lambda,
        "eta_final": eta,
        "perfect_heldout": heldout_perfect(model, params, pop),
    }


def heldout_perfect(model, params: dict[str, Tensor], pop: Population) -> float:
    """Perfect mass on the test sequences (the population itself when exact)."""
    return perfect_fraction(model, params, pop.test_seqs, pop.test_labels, pop.test_weights)


def run_adam(
    model: DecisionListAttention,
    params: dict[str, Tensor],
    task: DecisionLists,
    pop: Population,
    lr: float,
    steps: int,
    batch: int,
    log_every: int,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Adam on the parameters of `params` (the others fixed), a fresh batch of `batch` sequences
    per step from `generator`; the same return value as `run_gd` (the logged loss is the batch
    loss; `perfect` and `first_perfect` are measured on the population at every step)."""
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    optim = torch.optim.Adam(params.values(), lr=lr)
    watch = _Watch(pop.seqs.device, with_time=False)
    for step in range(steps + 1):
        detached = {k: v.detach() for k, v in params.items()}
        with torch.no_grad():
            Z_pop = torch.func.functional_call(model, detached, (pop.seqs,), strict=False)
        every, mass = perfect_mass(Z_pop, pop.labels, pop.weights)
        seqs = task.sample(batch, generator)
        Z = torch.func.functional_call(model, params, (seqs,), strict=False)
        loss = sequence_loss(Z, task.labels(seqs))
        watch.observe(step, loss.detach(), every, mass, math.nan)
        logs = step % log_every == 0 or step == steps
        if logs:
            watch.log(step, math.nan)
        if (watch.due(logs) and not watch.read(detached)) or step == steps:
            break
        before = {k: v.clone() for k, v in detached.items()}  # `detached` shares their storage
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        with torch.no_grad():  # after a non-finite loss the weights stay those of that step
            for name, p in params.items():
                p.copy_(torch.where(watch.ok, p, before[name]))
    final = {k: v.detach() for k, v in params.items()}
    first_perfect, _ = watch.first()
    return {
        "params": final,
        "curve": watch.curve,
        "first_perfect": first_perfect,
        "time_to_perfect": math.nan,  # gradient-flow time is GD's only
        "eta_lambda": math.nan,
        "eta_final": math.nan,
        "perfect_heldout": heldout_perfect(model, final, pop),
    }


def attention_on_determining(model, params, task: DecisionLists, pop: Population) -> float:
    """Mean over positions j (weighted over sequences) of `Σ_i A_ij 1{s_i is j's label-determining
    token}`: the attention mass each query puts on its label-determining token."""
    with torch.no_grad():
        seqs = pop.test_seqs
        S = params["W"][seqs[:, :, None], seqs[:, None, :]]  # (N, n, n): W[s_i, s_j]
        A = torch.softmax(S, dim=1)  # the model's attention: column j a distribution over keys i
        mask = task.determining_mask(pop.test_seqs)  # (N, n, n): [b, j, i]
        mass = (A.transpose(1, 2) * mask).sum(-1).mean(-1)  # (N,): mean over queries j
        return float((mass * pop.test_weights).sum())


def cosine(U: Tensor, V: Tensor) -> float:
    return float((U * V).sum() / (U.norm() * V.norm()))


def mode_c(config, task: DecisionLists, pop: Population) -> dict[str, Any]:
    """Both parametrisations (`full` W, and `factored` W = W_Kᵀ W_Q of full rank) from
    N(0, init_std_c²), Adam (lr_c) on fresh batches of `batch_c` sequences for `steps_c`
    steps, per seed; every `log_every` steps the batch loss and the perfectly classified mass
    of the population; success = every sequence of the population perfect at the end."""
    out: dict[str, Any] = {}
    dtype, device = pop.weights.dtype, pop.seqs.device
    for kind in ("full", "factored"):
        prefix = "mode_c" if kind == "full" else "mode_c_factored"
        finals = []
        for s in range(config.seeds_c):
            model = DecisionListAttention(
                DecisionListAttentionConfig(
                    L=config.L, parametrisation=kind, init="normal", init_std=config.init_std_c
                ),
                generator=make_generator(derive_seed(config.seed, prefix, s), "cpu"),
                dtype=dtype,
                device=device,
            )
            optim = torch.optim.Adam(model.parameters(), lr=config.lr_c)
            stream = make_generator(derive_seed(config.seed, prefix + "_data", s), task.device)
            losses, perfect = [], []
            for step in range(config.steps_c + 1):
                if step % config.log_every == 0 or step == config.steps_c:
                    with torch.no_grad():
                        Z = model(pop.seqs)
                    perfect.append(weighted_perfect(Z, pop.labels, pop.weights))
                if step == config.steps_c:
                    break
                seqs = task.sample(config.batch_c, stream)
                loss = model.loss(seqs, task.labels(seqs))
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                if step % config.log_every == 0:
                    losses.append(float(loss.detach()))
            finals.append(perfect[-1])
            out[f"curve_{prefix}{s}_loss"] = losses
            out[f"curve_{prefix}{s}_perfect"] = perfect
        successes = [f == 1.0 for f in finals]
        out[f"{prefix}_success_rate"] = sum(successes) / len(successes) if successes else math.nan
        out[f"{prefix}_perfect"] = finals
    return out
