"""`function-classes`: a causal transformer learns function classes in context (Garg et al. 2022).

`config.py` holds the settings (classes, baselines, presets, shifts, tolerances), `evaluation.py`
the test of a trained model against the prefix baselines, `experiment.py` the run, the claims
and the memory estimate, `figures.py` the plots.
"""

from icgd.experiments.function_classes.config import (
    ALL_CLASSES,
    CLASS_BASELINES,
    FunctionClassesConfig,
    Tolerances,
    shift_label,
)
from icgd.experiments.function_classes.experiment import SMOKE, FunctionClassesExperiment

EXPERIMENT = FunctionClassesExperiment()

__all__ = [
    "ALL_CLASSES",
    "CLASS_BASELINES",
    "EXPERIMENT",
    "SMOKE",
    "FunctionClassesConfig",
    "FunctionClassesExperiment",
    "Tolerances",
    "shift_label",
]
