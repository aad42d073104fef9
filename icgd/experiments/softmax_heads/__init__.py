"""`softmax-heads`: multi-head softmax attention learns debiased one-step GD with zero-sum heads
(He, Pan, Chen, Yang 2025).

`config.py` holds the settings, `experiment.py` the run and the claims, `measurements.py` what the
run measures (head structure, the one-step GD predictors and R², test errors by context length),
`figures.py` the plots.
"""

from icgd.experiments.softmax_heads.config import SoftmaxHeadsConfig, Tolerances
from icgd.experiments.softmax_heads.experiment import SoftmaxHeads
from icgd.experiments.softmax_heads.measurements import (
    head_metrics,
    one_step_predictors,
    scalar_fit_r2,
)

EXPERIMENT = SoftmaxHeads()

__all__ = [
    "EXPERIMENT",
    "SoftmaxHeads",
    "SoftmaxHeadsConfig",
    "Tolerances",
    "head_metrics",
    "one_step_predictors",
    "scalar_fit_r2",
]
