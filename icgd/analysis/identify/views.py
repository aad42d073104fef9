"""How `identify` and `probe_layers` see a model and a task: regression prompts in, the query's
prediction and the query token's residual stream out.

Every model family lays a regression prompt `(x_1, y_1, …, x_n, y_n; x_q)` out its own way; a
`ModelView` hides that behind two functions of `X (B, n, d), y (B, n), x_q (B, d)`:

- `predict → (B,)`, the model's prediction at the query;
- `residuals → {hook name: (B, D)}`, in layer order, the representation of the query token at
  every layer (or loop), from the model's hook points (`run_with_cache`);
- `readout_fn (B, D) → (B,)`, the model's own read-out applied to a layer's query token (the
  "native" read-out of an intermediate layer): `−z[d+1]` for LSA, `+z[d+1]` for softmax
  attention, the final LayerNorm and read-out head for GPT and the looped transformer.

`model_view(model)` builds it for icgd's families:

- `LinearSelfAttention` (stacked or looped), `SoftmaxAttention`, `StackedSoftmaxAttention`:
  the prompt `build_prompt(X, y, x_q)` (B, d+1, n+1), or the `prompt` function given (e.g.
  `icgd.constructions.newton_schulz_prompt`); the query token is column n+1 of `hook_z.{t}`,
  t = 0 … L;
- `GPT`: the n + 1 points `x_1 … x_n, x_q` with labels `y_1 … y_n, 0`, the prediction at the x_q
  token; the query token is token 2n of `hook_resid.{l}`, l = 0 … n_layer;
- `LoopedTransformer`: as GPT, after the last loop; token 2n of `hook_z.{t}`, t = 0 … b.

Other families register here (`VIEWS`, model class → view builder): the TD transformer
(`TDTransformer`) by `icgd.analysis.identify.td`, whose view reads TD prompts. Any other model
works through `ModelView(predict_fn=..., residual_fn=...)`. A view names the prompt `family` it
reads ("regression" by default, "td"), which `identify` checks against the task's.

The model runs under `torch.no_grad()` in eval mode (restored afterwards), in its own dtype and
on its own device, `chunk` prompts a call (memory only); outputs come back in float64 on the CPU.

`draw_prompts(task, B, generator)` draws fresh prompts from a task of layout `regression`
(`LinearRegression`) or `next-point` (`FunctionClass`: the first n − 1 points are the context, the
last point is the query), or of a layout registered in `LAYOUTS` (layout → `PromptLayout`, its
family and its drawer; `td` by `icgd.analysis.identify.td`). `prompt_family(task)` is the family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from icgd.core.prompts import build_prompt
from icgd.models import (
    GPT,
    LinearSelfAttention,
    LoopedTransformer,
    SoftmaxAttention,
    StackedSoftmaxAttention,
)

PredictFn = Callable[[Tensor, Tensor, Tensor], Tensor]
ResidualFn = Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]]


@dataclass(frozen=True)
class Prompts:
    """B regression prompts in float64 on the CPU: X (B, n, d), y (B, n), x_q (B, d), y_q (B,)."""

    X: Tensor
    y: Tensor
    x_q: Tensor
    y_q: Tensor

    def __len__(self) -> int:
        return self.X.shape[0]


@dataclass(frozen=True)
class PromptLayout:
    """A task layout beyond regression / next-point: the prompt `family` it gives (the candidates
    and views that go with it) and `draw(task, batch_size, generator) → Prompts`."""

    family: str
    draw: Callable[[Any, int, torch.Generator], Prompts]


LAYOUTS: dict[str, PromptLayout] = {}
"""Registered task layouts (module docstring); regression and next-point are built in."""


def prompt_family(task: Any) -> str:
    """The prompt family of `task`: its registered layout's, else "regression"."""
    layout = LAYOUTS.get(getattr(task, "layout", None))
    return "regression" if layout is None else layout.family


def draw_prompts(task: Any, batch_size: int, generator: torch.Generator) -> Prompts:
    """`batch_size` fresh prompts from `task` (module docstring), all randomness from
    `generator` (on the task's device)."""
    layout = getattr(task, "layout", None)
    if layout in LAYOUTS:
        return LAYOUTS[layout].draw(task, batch_size, generator)
    batch = task.sample(batch_size, generator)
    if layout == "regression":
        X, y, x_q, y_q = batch.X, batch.y, batch.x_q, batch.y_q
    elif layout == "next-point":
        if batch.X.shape[1] < 2:
            raise ValueError("a next-point task needs at least 2 points per prompt")
        X, y, x_q, y_q = batch.X[:, :-1], batch.y[:, :-1], batch.X[:, -1], batch.y[:, -1]
    else:
        raise ValueError(
            f"task layout {layout!r} is not supported: identify needs 'regression' or "
            "'next-point' prompts"
        )
    return Prompts(*(t.detach().to("cpu", torch.float64) for t in (X, y, x_q, y_q)))


@dataclass(frozen=True)
class ModelView:
    """A model as `identify` sees it (module docstring).

    `predict_fn(X, y, x_q) → (B,)`, `residual_fn(X, y, x_q) → {name: (B, D)}` and
    `readout_fn((B, D)) → (B,)` take and return tensors in the model's `dtype` and on its
    `device`; `predict` and `residuals` wrap them (chunks of `chunk` prompts, no_grad, `module`
    in eval mode, results in float64 on the CPU). `residual_fn` None: no layer probes;
    `readout_fn` None: no native read-out. `family`: the prompts it reads (`prompt_family`).
    """

    predict_fn: PredictFn
    residual_fn: ResidualFn | None = None
    readout_fn: Callable[[Tensor], Tensor] | None = None
    dtype: torch.dtype = torch.float64
    device: torch.device = torch.device("cpu")
    chunk: int = 4096
    module: nn.Module | None = None
    family: str = "regression"

    def _run(self, fn: Callable, X: Tensor, y: Tensor, x_q: Tensor) -> list:
        was_training = self.module.training if self.module is not None else False
        if self.module is not None:
            self.module.eval()
        try:
            with torch.no_grad():
                return [
                    fn(*(t[i : i + self.chunk].to(self.device, self.dtype) for t in (X, y, x_q)))
                    for i in range(0, X.shape[0], self.chunk)  # memory only
                ]
        finally:
            if self.module is not None:
                self.module.train(was_training)

    def predict(self, X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        """The model's predictions (B,), float64 on the CPU."""
        parts = self._run(self.predict_fn, X, y, x_q)
        return torch.cat([p.reshape(-1) for p in parts]).to("cpu", torch.float64)

    def residuals(
        self, X: Tensor, y: Tensor, x_q: Tensor, *, native: bool = False
    ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """The query token's representation at every layer, {name: (B, D)} in layer order, and,
        if `native`, the model's read-out of each, {name: (B,)} (else None). float64, CPU."""
        if self.residual_fn is None:
            raise ValueError("this model view has no residual_fn: its layers cannot be probed")
        if native and self.readout_fn is None:
            raise ValueError("this model view has no readout_fn: use the probe read-out")
        read = self.readout_fn

        def both(*args: Tensor) -> tuple[dict, dict]:
            H = self.residual_fn(*args)
            return H, ({k: read(v) for k, v in H.items()} if native and read else {})

        parts = self._run(both, X, y, x_q)

        def gather(i: int) -> dict[str, Tensor]:
            keys = parts[0][i]
            return {k: torch.cat([p[i][k] for p in parts]).to("cpu", torch.float64) for k in keys}

        return gather(0), (gather(1) if native else None)


def _layer_order(names: list[str], prefix: str) -> list[str]:
    """The hook names starting with `prefix` (`prefix{t}`), sorted by t."""
    chosen = [n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()]
    return sorted(chosen, key=lambda n: int(n[len(prefix) :]))


def _prompt_view(model: nn.Module, prompt: Callable, chunk: int) -> ModelView:
    """LSA / softmax attention: a prompt matrix in, the query column of every `hook_z.{t}`; the
    read-out is the label entry, negated for LSA (Ahn et al.'s sign)."""
    sign = -1.0 if isinstance(model, LinearSelfAttention) else 1.0

    def predict(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        return model.predict(prompt(X, y, x_q))

    def residuals(X: Tensor, y: Tensor, x_q: Tensor) -> dict[str, Tensor]:
        return query_columns(model, prompt(X, y, x_q))

    return _view(model, predict, residuals, lambda H: sign * H[:, -1], chunk)


def query_columns(model: nn.Module, Z: Tensor) -> dict[str, Tensor]:
    """The query column (B, D) of the prompt matrix at every `hook_z.{t}`, in layer order, for a
    prompt-matrix model (LSA, softmax attention, the TD transformer) on prompts Z (B, D, n+1)."""
    _, cache = model.run_with_cache(Z, names_filter=_is_z)
    return {name: cache[name][:, :, -1] for name in _layer_order(list(cache), "hook_z.")}


def _is_z(name: str) -> bool:
    return name.startswith("hook_z.")


def _sequence(X: Tensor, y: Tensor, x_q: Tensor) -> tuple[Tensor, Tensor]:
    """The n + 1 points `x_1 … x_n, x_q` (B, n+1, d) and labels `y_1 … y_n, 0` (B, n+1)."""
    return torch.cat([X, x_q[:, None]], 1), torch.cat([y, y.new_zeros(y.shape[0], 1)], 1)


def _causal_view(model: nn.Module, chunk: int) -> ModelView:
    """GPT / looped transformer: the prediction at x_q and its token (2n) in every layer/loop."""
    looped = isinstance(model, LoopedTransformer)
    prefix = "hook_z." if looped else "hook_resid."

    def predict(X: Tensor, y: Tensor, x_q: Tensor) -> Tensor:
        out = model(*_sequence(X, y, x_q))  # (B, n+1), or (b, B, n+1) for a looped model
        return (out[-1] if looped else out)[:, -1]

    def residuals(X: Tensor, y: Tensor, x_q: Tensor) -> dict[str, Tensor]:
        n = X.shape[1]
        Xs, ys = _sequence(X, y, x_q)
        _, cache = model.run_with_cache(Xs, ys, names_filter=lambda s: s.startswith(prefix))
        return {name: cache[name][:, 2 * n, :] for name in _layer_order(list(cache), prefix)}

    norm = not looped or model.config.final_norm == "readout"

    def readout(H: Tensor) -> Tensor:  # (B, n_embd) → (B,): LN_f and the head, as at the end
        return model.io.read_out(H[:, None, :], final_norm=norm)[:, 0]

    return _view(model, predict, residuals, readout, chunk)


def _view(
    model: nn.Module, predict: PredictFn, residuals: ResidualFn, readout: Callable, chunk: int
) -> ModelView:
    p = next(model.parameters())
    return ModelView(predict, residuals, readout, p.dtype, p.device, chunk, model)


VIEWS: dict[type, Callable[[nn.Module, int], ModelView]] = {}
"""Registered model families beyond the built-in ones: class → `builder(model, chunk)`."""


def model_view(
    model: nn.Module | ModelView, *, prompt: Callable | None = None, chunk: int = 4096
) -> ModelView:
    """The `ModelView` of an icgd model (module docstring); a `ModelView` is returned as is.

    prompt: `fn(X, y, x_q) -> Z` for the prompt-matrix families (default `build_prompt`), e.g.
    `icgd.constructions.newton_schulz_prompt` for `lsa_from_newton_schulz`.
    """
    if isinstance(model, ModelView):
        return model
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if isinstance(model, LinearSelfAttention | SoftmaxAttention | StackedSoftmaxAttention):
        return _prompt_view(model, prompt or build_prompt, chunk)
    if prompt is not None:
        raise ValueError(f"prompt= applies to the prompt-matrix families, not {type(model)}")
    if isinstance(model, GPT | LoopedTransformer):
        return _causal_view(model, chunk)
    for cls, build in VIEWS.items():
        if isinstance(model, cls):
            return build(model, chunk)
    raise TypeError(
        f"no view for {type(model).__name__}: identify reads regression prompts; wrap the model "
        "in icgd.analysis.identify.ModelView(predict_fn=..., residual_fn=...)"
    )
