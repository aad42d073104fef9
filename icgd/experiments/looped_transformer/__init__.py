"""`looped-transformer`: one looped block ≈ a multi-layer transformer (Yang et al. 2024).

`config.py` holds the settings (sizes of both models, presets, curricula, tolerances),
`experiment.py` the run, the test, the claims and the memory estimate, `figures.py` the plots.
"""

from icgd.experiments.looped_transformer.config import LoopedTransformerConfig, Tolerances
from icgd.experiments.looped_transformer.experiment import SMOKE, LoopedTransformerExperiment

EXPERIMENT = LoopedTransformerExperiment()

__all__ = [
    "EXPERIMENT",
    "SMOKE",
    "LoopedTransformerConfig",
    "LoopedTransformerExperiment",
    "Tolerances",
]
