"""The results of `identify` and `probe_layers`: frozen dataclasses that serialise to plain
JSON-able dicts (`to_dict`: numbers, lists, strings; NaN and ±inf become None) and to named
tensors (`arrays`, for a `.safetensors` file beside `result.json`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def plain(value: Any) -> Any:
    """A JSON-able copy: tensors → numbers / nested lists, non-finite floats → None."""
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class ParameterEstimate:
    """A fitted parameter and its bootstrap distribution.

    value: the fit on all fitting prompts, () or e.g. (d, d); samples: (R, ...) the bootstrap
    fits (`icgd.analysis.identify.fitting.one_step_bootstrap`); sd: their standard deviation;
    low, high: their percentile interval at `level` (e.g. 2.5% and 97.5% for 0.95).
    """

    value: Tensor
    samples: Tensor
    sd: Tensor
    low: Tensor
    high: Tensor
    level: float

    @classmethod
    def from_samples(cls, value: Tensor, samples: Tensor, level: float) -> ParameterEstimate:
        """Summarise R bootstrap samples (R, ...) of a parameter fitted as `value` (...)."""
        value, samples = value.double(), samples.double()
        if samples.shape[0] < 2:
            nan = torch.full_like(value, math.nan)
            return cls(value, samples, nan, nan, nan, level)
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
        low, high = torch.quantile(samples, q, dim=0)
        return cls(value, samples, samples.std(dim=0), low, high, level)

    def to_dict(self) -> dict[str, Any]:
        return plain({"value": self.value, "sd": self.sd, "low": self.low, "high": self.high})


@dataclass(frozen=True)
class AlgorithmFit:
    """One candidate algorithm fitted to a model and scored on held-out prompts.

    name: the algorithm (`icgd.algorithms` registry name); steps: the fitted number of steps k
    (None for ridge, OLS); parameters: name → `ParameterEstimate` (the fitted free parameters,
    and `steps` with its bootstrap distribution for an iterative algorithm); fit_mse: mean
    squared difference to the model on the fitting prompts; held-out scores
    (`icgd.analysis.identify.metrics`): spd (± spd_se), r2, cosine (prediction cosine),
    test_mse (the algorithm's own error against y_q), ilwd and weight_cosine (None when the
    model's implicit weights were not computed); n_parameters: free numbers fitted (k counts
    one); exact: the held-out RMS difference is at rounding level, `SPD ≤ (100 ε)² mean m²` with
    ε the model dtype's machine epsilon (then candidates tie, and fewer parameters rank first);
    dropped: held-out prompts left out of the scores because the algorithm diverged there
    (`metrics.diverged_rows`; more than 1% and the scores are ±inf / NaN, ranked last).
    """

    name: str
    steps: int | None
    parameters: dict[str, ParameterEstimate]
    fit_mse: float
    spd: float
    spd_se: float
    r2: float
    cosine: float
    test_mse: float
    ilwd: float | None = None
    weight_cosine: float | None = None
    n_parameters: int = 0
    exact: bool = False
    dropped: int = 0

    def value(self, name: str) -> float | Tensor:
        """A fitted parameter's value: a float for a scalar, else the tensor."""
        v = self.parameters[name].value
        return v.item() if v.ndim == 0 else v

    def values(self) -> dict[str, float | Tensor]:
        """Every fitted free parameter by name (`steps` left out), e.g. `{"eta": 0.3}`."""
        return {name: self.value(name) for name in self.parameters if name != "steps"}

    def to_dict(self) -> dict[str, Any]:
        scores = (
            "fit_mse",
            "spd",
            "spd_se",
            "r2",
            "cosine",
            "test_mse",
            "ilwd",
            "weight_cosine",
            "n_parameters",
            "exact",
            "dropped",
        )
        return plain(
            {
                "name": self.name,
                "steps": self.steps,
                "parameters": {k: p.to_dict() for k, p in self.parameters.items()},
                **{k: getattr(self, k) for k in scores},
            }
        )


def _rank_key(fit: AlgorithmFit) -> tuple:
    """Least held-out SPD first; numerically exact fits tie, and the fewer parameters win."""
    spd = fit.spd if math.isfinite(fit.spd) else math.inf
    return (0, fit.n_parameters, spd) if fit.exact else (1, spd, fit.n_parameters)


@dataclass(frozen=True)
class Identification:
    """What `identify` found: every candidate fitted and scored, best first: least held-out SPD,
    and among numerically exact fits (`AlgorithmFit.exact`) the fewest parameters.

    ranking: the `AlgorithmFit`s, best first; model_mse: the model's own error against y_q on
    the held-out prompts; n_fit, n_heldout: prompts used to fit and to score; n_bootstrap, level:
    the bootstrap; seed: the seed of every stream; predictions: the held-out predictions
    (`model`, `target` = y_q, and one per algorithm), each (n_heldout,).
    """

    ranking: tuple[AlgorithmFit, ...]
    model_mse: float
    n_fit: int
    n_heldout: int
    n_bootstrap: int
    level: float
    seed: int
    predictions: dict[str, Tensor] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranking", tuple(sorted(self.ranking, key=_rank_key)))

    @property
    def best(self) -> AlgorithmFit:
        return self.ranking[0]

    @property
    def names(self) -> tuple[str, ...]:
        """The algorithms, best first."""
        return tuple(f.name for f in self.ranking)

    def __getitem__(self, name: str) -> AlgorithmFit:
        for fit in self.ranking:
            if fit.name == name:
                return fit
        raise KeyError(f"{name!r} was not fitted; fitted: {list(self.names)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (bootstrap samples and predictions are in `arrays`)."""
        return plain(
            {
                "ranking": list(self.names),
                "best": self.best.name,
                "algorithms": {f.name: f.to_dict() for f in self.ranking},
                "model_mse": self.model_mse,
                "n_fit": self.n_fit,
                "n_heldout": self.n_heldout,
                "n_bootstrap": self.n_bootstrap,
                "level": self.level,
                "seed": self.seed,
            }
        )

    def metrics(self) -> dict[str, float]:
        """Flat name → number: `<algorithm>.<score>`, `<algorithm>.rank` (1 = best), each
        scalar parameter `<algorithm>.<parameter>` with `…_sd` (matrices are in `arrays`), and
        `<algorithm>.dropped` where held-out prompts were left out of its scores."""
        out: dict[str, float] = {"model_mse": self.model_mse}
        for rank, fit in enumerate(self.ranking, start=1):
            out[f"{fit.name}.rank"] = float(rank)
            for score in ("spd", "spd_se", "r2", "cosine", "fit_mse", "test_mse"):
                out[f"{fit.name}.{score}"] = getattr(fit, score)
            for score in ("ilwd", "weight_cosine"):
                if getattr(fit, score) is not None:
                    out[f"{fit.name}.{score}"] = getattr(fit, score)
            if fit.dropped:  # only where some held-out prompts were left out
                out[f"{fit.name}.dropped"] = float(fit.dropped)
            for name, p in fit.parameters.items():
                if p.value.ndim == 0:
                    out[f"{fit.name}.{name}"] = p.value.item()
                    out[f"{fit.name}.{name}_sd"] = p.sd.item()
        return out

    def arrays(self) -> dict[str, Tensor]:
        """Named tensors: `predictions.<name>` (n_heldout,), `<algorithm>.<parameter>` and
        `<algorithm>.<parameter>.samples` (R, ...)."""
        out = {f"predictions.{k}": v.contiguous() for k, v in self.predictions.items()}
        for fit in self.ranking:
            for name, p in fit.parameters.items():
                out[f"{fit.name}.{name}"] = p.value.contiguous()
                out[f"{fit.name}.{name}.samples"] = p.samples.contiguous()
        return out


@dataclass(frozen=True)
class LayerProbes:
    """What `probe_layers` found, layer by layer (rows: layers in order, `layers` their hooks).

    steps: the iterations k = 0 … K compared; target_r2: (L+1,) held-out R² of the linear probe
    of y_q at each layer; iterate_r2: algorithm → (L+1, K+1) held-out R² of the probe of the
    algorithm's k-th iterate prediction `x_qᵀ w_k`; sime: algorithm → (L+1, K+1) SimE between
    the layer's y_q read-out and iterate k; best_steps: algorithm → the argmax k per layer (the
    layer ↔ iteration map); decoded_steps: algorithm → the k whose iterate the layer decodes
    best (argmax of iterate_r2); output_sime: algorithm → (K+1,) SimE of the model's own
    prediction with each iterate; parameters: the algorithms' parameters used; readout
    ("probe" or "native") and calibrated: how the layer and the iterates were compared;
    n_fit, n_heldout, seed, ridge as given; masked: algorithm → (K+1,) int64, the prompts
    (fitting plus held-out) on which iterate k diverged and was left out (`probe` docstring; a
    best step of −1 means no iterate was comparable at that layer).
    """

    layers: tuple[str, ...]
    steps: tuple[int, ...]
    target_r2: Tensor
    iterate_r2: dict[str, Tensor]
    sime: dict[str, Tensor]
    best_steps: dict[str, tuple[int, ...]]
    decoded_steps: dict[str, tuple[int, ...]]
    output_sime: dict[str, Tensor]
    parameters: dict[str, dict[str, Any]]
    readout: str
    calibrated: bool
    n_fit: int
    n_heldout: int
    seed: int
    ridge: float
    masked: dict[str, Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return plain(
            {
                "layers": list(self.layers),
                "steps": list(self.steps),
                "target_r2": self.target_r2,
                "iterate_r2": self.iterate_r2,
                "sime": self.sime,
                "best_steps": {k: list(v) for k, v in self.best_steps.items()},
                "decoded_steps": {k: list(v) for k, v in self.decoded_steps.items()},
                "output_sime": self.output_sime,
                "parameters": self.parameters,
                "readout": self.readout,
                "calibrated": self.calibrated,
                "n_fit": self.n_fit,
                "n_heldout": self.n_heldout,
                "seed": self.seed,
                "ridge": self.ridge,
                "masked": self.masked,
            }
        )

    def arrays(self) -> dict[str, Tensor]:
        """`target_r2`, and `iterate_r2`, `sime`, `output_sime`, `masked` by `.<algorithm>`."""
        out = {"target_r2": self.target_r2.contiguous()}
        for prefix, table in (
            ("iterate_r2", self.iterate_r2),
            ("sime", self.sime),
            ("output_sime", self.output_sime),
            ("masked", self.masked),
        ):
            out.update({f"{prefix}.{k}": v.contiguous() for k, v in table.items()})
        return out
