"""Every prefix of a prompt, for the models and the baselines of `which-algorithm`.

Akyürek, Schuurmans, Andreas, Ma, Zhou (2023), "What learning algorithm is in-context learning?
Investigations with linear models". A model family sees the prefixes k = 1 … n of a prompt
`(x_1, y_1, …, x_n, y_n; x_q, y_q)` in one of two ways (`prefix_protocol`):

- `PaddedPrefixes` (lsa, softmax): prefix k is its own prompt, the first k points, n − k zero
  tokens and the query x_q (convention (a) of `icgd.algorithms.prefix`: one query for every k).
  A zero token is inert in linear attention (it adds nothing to `Z M Zᵀ` and is mapped to 0); under
  softmax it is not (its score 0 gets weight exp(0)), so softmax prompts carry their context length
  and the model hides the padding (`masked`). One padded batch evaluates every prefix.
- `CausalPrefixes` (gpt, looped): one causal forward over the n + 1 points `x_1 … x_n, x_q` gives
  the prediction after every prefix at once: after k points it is made at the next x token,
  x_{k+1} (x_q for k = n), and its target is y_{k+1} (y_q for k = n): convention (b), queries
  `[x_2, …, x_n, x_q]`. The baselines must then be asked at the same per-k queries (`queries`,
  `targets`).

The baselines are computed for every prefix at once by `icgd.algorithms.prefix`, in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from icgd.algorithms import prefix_knn, prefix_ols, prefix_one_step_gd, prefix_ridge
from icgd.analysis import linear_weights
from icgd.core.prompts import build_prompt
from icgd.models import LoopedTransformer, ModelSpec
from icgd.tasks import LinearRegression

TAU = 1.0  # prior scale of w* ~ N(0, τ² I) ("identity" weight prior)


def bayes_lambda(noise: float) -> float:
    """The ridge λ of the Bayes posterior mean for w ~ N(0, τ² I): σ²/τ²."""
    return noise**2 / TAU**2


# ------------------------------------------------------------------------------ prompts, models


@dataclass(frozen=True)
class _PaddedBatch:
    """Prompts of mixed context lengths, zero-padded to n_max: Z (B, d+1, n_max+1), y_q (B,),
    n_context (B,) the number k of real context points of each prompt."""

    Z: Tensor
    y_q: Tensor
    n_context: Tensor

    def prompt(self) -> Tensor:
        return self.Z


class PrefixTask:
    """Training prompts with a random context length k ~ U{1 … n_max} per prompt.

    Wraps a `LinearRegression` task with n = n_max for `fit_lsa` (which needs `sample`, `device`
    and `dtype`): the first k points of each prompt are kept, the other n_max − k tokens are zero
    (inert in linear attention, see the module docstring). All randomness comes from `generator`.
    """

    def __init__(self, task: LinearRegression) -> None:
        self.task, self.device, self.dtype, self.n = task, task.device, task.dtype, task.n

    def sample(self, batch_size: int, generator: torch.Generator) -> _PaddedBatch:
        batch = self.task.sample(batch_size, generator)
        k = torch.randint(1, self.n + 1, (batch_size,), generator=generator, device=self.device)
        keep = (torch.arange(self.n, device=self.device) < k[:, None]).to(self.dtype)  # (B, n)
        Z = build_prompt(batch.X * keep.unsqueeze(-1), batch.y * keep, batch.x_q)
        return _PaddedBatch(Z=Z, y_q=batch.y_q, n_context=k)


def prefix_prompts(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
    """Every prefix of every prompt, zero-padded to n tokens.

    X (B, n, d), y (B, n), x_q (B, d) → Z (B·n, d+1, n+1); row `b·n + k − 1` holds the first k
    points of prompt b, n − k zero tokens and the query of prompt b.
    """
    B, n, d = X.shape
    keep = torch.ones(n, n, dtype=X.dtype, device=X.device).tril()  # [k−1, i] = 1 if i < k
    Xp = X.unsqueeze(1) * keep[None, :, :, None]  # (B, n, n, d): [b, k−1] = prefix k, padded
    yp = y.unsqueeze(1) * keep[None]  # (B, n, n)
    Xp, yp = Xp.reshape(B * n, n, d), yp.reshape(B * n, n)
    return build_prompt(Xp, yp, x_q.repeat_interleave(n, dim=0))


def predict_prefixes(
    model: nn.Module, X: Tensor, y: Tensor, x_q: Tensor, chunk: int, masked: bool = False
) -> Tensor:
    """The model's prediction after every prefix: (B, n), column k−1 from the first k points.

    LSA and softmax attention are not causal (every token sees the whole context), so each
    prefix is its own prompt; they all go through the model as one padded batch, `chunk` prompts
    (× n prefixes) at a time to bound memory. `masked`: pass each prompt's context length k to
    `model.predict(Z, n_context)` (softmax hides its padding). Under no_grad, in float64.
    """
    B, n, _ = X.shape
    out = []
    with torch.no_grad():
        for start in range(0, B, chunk):  # memory only: each call is a batched forward
            s = slice(start, start + chunk)
            Z = prefix_prompts(X[s], y[s], x_q[s])  # (b·n, d+1, n+1)
            if masked:  # row b·n + k − 1 holds k points
                k = torch.arange(1, n + 1, device=X.device).repeat(Z.shape[0] // n)  # (b·n,)
                out.append(model.predict(Z, k).reshape(-1, n))
            else:
                out.append(model.predict(Z).reshape(-1, n))
    return torch.cat(out).double()


def causal_predict(model: nn.Module, X: Tensor, y: Tensor) -> Tensor:
    """A causal model's predictions at every x token, (B, k), from X (B, k, d), y (B, k): a GPT's
    output, or a looped model's after its last loop (b = `config.n_loops`)."""
    out = model(X, y)
    return out[-1] if isinstance(model, LoopedTransformer) else out


def _chunked_causal(model: nn.Module, X: Tensor, y: Tensor, chunk: int) -> Tensor:
    """`causal_predict` under no_grad, `chunk` sequences a call (memory only): (B, k)."""
    with torch.no_grad():
        parts = [causal_predict(model, X[i : i + chunk], y[i : i + chunk]) for i in
                 range(0, X.shape[0], chunk)]  # fmt: skip
    return torch.cat(parts)


# ------------------------------------------------------------------ every prefix, by family


class PaddedPrefixes:
    """LSA / softmax: one zero-padded prompt per prefix, query x_q for every k (module docstring).

    `masked`: the batches carry each prompt's context length and the model gets it
    (`model.predict(Z, n_context)`), so softmax attention hides the padding.
    """

    causal = False

    def __init__(self, masked: bool) -> None:
        self.masked = masked

    def sampler(self, task: LinearRegression) -> Callable[[int, torch.Generator], tuple]:
        """`(B, generator) -> (Z (B, d+1, n+1), y_q (B,)[, k (B,)])`, k ~ U{1 … n} per prompt."""
        prefixes = PrefixTask(task)

        def sample(batch_size: int, generator: torch.Generator) -> tuple:
            batch = prefixes.sample(batch_size, generator)
            if self.masked:
                return batch.Z, batch.y_q, batch.n_context
            return batch.Z, batch.y_q

        return sample

    def loss(self, model: nn.Module, batch: tuple) -> Tensor:
        """Mean squared query error `mean_b (ŷ_b − y_q,b)²` over prompts of mixed lengths."""
        Z, y_q, *k = batch
        return ((model.predict(Z, *k) - y_q) ** 2).mean()  # as `prompt_mse`: the same numbers

    def queries(self, X: Tensor, x_q: Tensor) -> Tensor:
        """The query of every prefix: x_q (B, d), the same for every k (convention (a))."""
        return x_q

    def targets(self, y: Tensor, y_q: Tensor) -> Tensor:
        """The target of every prefix: y_q as (B, 1), broadcast over k."""
        return y_q[:, None]

    def predict(self, model: nn.Module, X: Tensor, y: Tensor, x_q: Tensor, chunk: int) -> Tensor:
        """(B, n) predictions at x_q after every prefix; `predict_prefixes`."""
        return predict_prefixes(model, X, y, x_q, chunk, masked=self.masked)

    def predict_probes(
        self, model: nn.Module, X: Tensor, y: Tensor, probes: Tensor, chunk: int
    ) -> Tensor:
        """(B, m, n): entry [b, j, k−1] = the prediction at probes[b, j] after the first k points
        of prompt b. Each prompt is repeated once per probe, which is its query."""
        B, m, d = probes.shape
        n = X.shape[1]
        return self.predict(
            model,
            X.repeat_interleave(m, 0),  # (B·m, n, d): prompt b once per probe
            y.repeat_interleave(m, 0),
            probes.reshape(B * m, d),
            chunk,
        ).reshape(B, m, n)


class CausalPrefixes:
    """GPT / looped: one causal forward over `x_1 … x_n, x_q` predicts after every prefix, at the
    next point (module docstring). `loss_loops`: T for a looped model (its training loss averages
    the last T loops, Yang et al. 2024), None for a GPT."""

    causal = True

    def __init__(self, loss_loops: int | None = None) -> None:
        self.loss_loops = loss_loops

    @staticmethod
    def sequence(X: Tensor, y: Tensor, x_q: Tensor, y_q: Tensor) -> tuple[Tensor, Tensor]:
        """The n + 1 points `x_1 … x_n, x_q`: (B, n+1, d) and labels (B, n+1)."""
        return torch.cat([X, x_q[:, None]], 1), torch.cat([y, y_q[:, None]], 1)

    def sampler(self, task: LinearRegression) -> Callable[[int, torch.Generator], tuple]:
        """`(B, generator) -> (X (B, n+1, d), y (B, n+1))` from `task`'s n-point prompts."""

        def sample(batch_size: int, generator: torch.Generator) -> tuple:
            batch = task.sample(batch_size, generator)
            return self.sequence(batch.X, batch.y, batch.x_q, batch.y_q)

        return sample

    def loss(self, model: nn.Module, batch: tuple) -> Tensor:
        """Mean squared error over the prefixes k = 1 … n (positions 1 … n; position 0, no
        context, is left out as it is from the sweep); a looped model's averaged over its last T
        loops (the earlier loops run without gradient)."""
        X, y = batch
        if self.loss_loops is None:
            return (model(X, y)[:, 1:] - y[:, 1:]).square().mean()
        pred = model(X, y, grad_last=self.loss_loops)[-self.loss_loops :]  # (T, B, n+1)
        return (pred[..., 1:] - y[:, 1:]).square().mean()

    def queries(self, X: Tensor, x_q: Tensor) -> Tensor:
        """The query of prefix k is the next point: `[x_2, …, x_n, x_q]`, (B, n, d)."""
        return torch.cat([X[:, 1:], x_q[:, None]], 1)

    def targets(self, y: Tensor, y_q: Tensor) -> Tensor:
        """The target of prefix k is the next label: `[y_2, …, y_n, y_q]`, (B, n)."""
        return torch.cat([y[:, 1:], y_q[:, None]], 1)

    def predict(self, model: nn.Module, X: Tensor, y: Tensor, x_q: Tensor, chunk: int) -> Tensor:
        """(B, n) predictions after every prefix at its query (`queries`), in float64. The label of
        x_q is passed as 0: no x token sees it (causal), and 0 makes that plain."""
        Xs, ys = self.sequence(X, y, x_q, torch.zeros_like(y[:, 0]))
        return _chunked_causal(model, Xs, ys, chunk)[:, 1:].double()  # (B, n): positions 1 … n

    def predict_probes(
        self, model: nn.Module, X: Tensor, y: Tensor, probes: Tensor, chunk: int
    ) -> Tensor:
        """(B, m, n): entry [b, j, k−1] = the prediction at probes[b, j] after the first k points.

        The probe is appended as the x token after k points: sequence (b, j, k) is prompt b's
        points with point k+1 replaced by probe j (label 0), read at that position; the points
        after it are never seen by that prediction (causal). All B·m·n sequences go through the
        model as one batch of n+1 points, `chunk` sequences a call (memory only): exact, and
        batched, at the cost of ≈ 2× the tokens of per-k sequences of length k+1.
        """
        B, n, d = X.shape
        m = probes.shape[1]
        Xs = torch.cat([X, X.new_zeros(B, 1, d)], 1)  # (B, n+1, d): one free slot at the end
        ys = torch.cat([y, y.new_zeros(B, 1)], 1)  # (B, n+1)
        pos = torch.arange(n + 1, device=X.device)
        at = pos[None, :] == pos[1:, None]  # (n, n+1): [k−1, i] = (i == k), the probe's slot
        seq = torch.where(
            at[None, None, :, :, None], probes[:, :, None, None, :], Xs[:, None, None]
        )
        labels = torch.where(at, 0.0, ys[:, None, None]).to(y.dtype)  # (B, 1, n, n+1)
        labels = labels.expand(B, m, n, n + 1)
        seq, labels = seq.reshape(-1, n + 1, d), labels.reshape(-1, n + 1)  # (B·m·n, n+1, ·)
        pred = _chunked_causal(model, seq, labels, chunk).reshape(B, m, n, n + 1)
        return pred[:, :, pos[:-1], pos[1:]].double()  # (B, m, n): [b, j, k−1] at position k


def prefix_protocol(spec: ModelSpec, depth: int) -> PaddedPrefixes | CausalPrefixes:
    """How `spec`'s family at `depth` sees every prefix: its training sampler and loss, queries,
    targets and predictions (module docstring)."""
    if spec.kind == "lsa":
        return PaddedPrefixes(masked=False)
    if spec.kind == "softmax":
        return PaddedPrefixes(masked=True)
    return CausalPrefixes(spec.loss_loops(depth) if spec.kind == "looped" else None)


# ----------------------------------------------------------------------------------- baselines


def summed_gd(X: Tensor, y: Tensor, x_q: Tensor, step: float) -> Tensor:
    """One GD step from 0 on every prefix's summed loss `½ Σ_{i≤k} (x_iᵀw − y_i)²`:
    `ŷ_k = η x_qᵀ Σ_{i≤k} y_i x_i` = η·k·(averaging baseline). X (B, n, d) … → (B, n)."""
    k = torch.arange(1, X.shape[1] + 1, dtype=X.dtype, device=X.device)
    return step * k * prefix_one_step_gd(X, y, x_q, 1.0)


def line_search_gd(X: Tensor, y: Tensor, x_q: Tensor, y_q: Tensor) -> float:
    """The η minimising `Σ_{b,k} (η g_{bk} − y_{q,bk})²` with `g = summed_gd(·, 1)`: exact, since
    the loss is quadratic in η: `η* = Σ g y_q / Σ g²`. Queries x_q (B, d) with targets y_q (B,)
    or (B, 1), or one query and target per prefix: (B, n, d), (B, n)."""
    g = summed_gd(X, y, x_q, 1.0)  # (B, n)
    target = y_q[:, None] if y_q.ndim == 1 else y_q  # (B, 1) or (B, n)
    return float((g * target).sum() / g.square().sum())


def baseline_predictions(
    X: Tensor, y: Tensor, x_q: Tensor, noise: float, eta: float, grid: Tensor, knn: int
) -> tuple[dict[str, Tensor], Tensor]:
    """Every baseline on every prefix, float64: ({name: (B, n)}, ridge on the grid (G, B, n))."""
    preds = {
        "gd": summed_gd(X, y, x_q, eta),
        "bayes": prefix_ridge(X, y, x_q, bayes_lambda(noise)),  # λ = 0 → min-norm OLS
        "ols": prefix_ols(X, y, x_q),
        "knn": prefix_knn(X, y, x_q, knn),
    }
    return preds, prefix_ridge(X, y, x_q, grid)


def baseline_weights(
    X: Tensor, y: Tensor, noise: float, eta: float, grid: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    """Exact weights of the linear baselines on every prefix: ({name: (B, n, d)}, (B, G, n, d))."""
    weights = {
        "gd": linear_weights(lambda A, b, q: summed_gd(A, b, q, eta), X, y),
        "bayes": linear_weights(lambda A, b, q: prefix_ridge(A, b, q, bayes_lambda(noise)), X, y),
        "ols": linear_weights(prefix_ols, X, y),
    }
    ridge = linear_weights(lambda A, b, q: prefix_ridge(A, b, q, grid).movedim(0, 1), X, y)
    return weights, ridge
