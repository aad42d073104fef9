"""`which-algorithm`: which learning algorithm does a trained transformer run, by depth?
(Akyürek et al. 2023, "What learning algorithm is in-context learning?").

`config.py` holds the settings (config, presets, per-family training recipes, ridge grid),
`prefixes.py` how each model family sees every prefix of a prompt and the float64 baselines on
them, `experiment.py` the run (documented in its docstring), `claims.py` the paper's claims,
`memory.py` the peak-memory estimate, `figures.py` the plots.
"""

from icgd.experiments.which_algorithm.config import (
    DEFAULT_TRAIN,
    FAMILY_TRAIN,
    PRESETS,
    SMOKE,
    Tolerances,
    WhichAlgorithmConfig,
)
from icgd.experiments.which_algorithm.experiment import WhichAlgorithm

EXPERIMENT = WhichAlgorithm()

__all__ = [
    "DEFAULT_TRAIN",
    "EXPERIMENT",
    "FAMILY_TRAIN",
    "PRESETS",
    "SMOKE",
    "Tolerances",
    "WhichAlgorithm",
    "WhichAlgorithmConfig",
]
