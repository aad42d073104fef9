"""`stacked-gd`: L stacked (non-looped) linear-attention layers learn per-layer preconditioned GD
(Ahn et al. 2023, Thm 3 and 4).

`config.py` holds the settings and training recipes, `experiment.py` the run, the depth and
context-length sweeps and the claims, `figures.py` the plots.
"""

from icgd.experiments.stacked_gd.config import StackedGDConfig, Tolerances
from icgd.experiments.stacked_gd.experiment import SMOKE, StackedGD

EXPERIMENT = StackedGD()

__all__ = ["EXPERIMENT", "SMOKE", "StackedGD", "StackedGDConfig", "Tolerances"]
