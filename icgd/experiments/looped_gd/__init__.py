"""`looped-gd`: looped linear attention learns multi-step preconditioned GD (Gatmiry et al. 2024).

`config.py` holds the settings, `experiment.py` the run and the claims, `figures.py` the plots.
"""

from icgd.experiments.looped_gd.config import LoopedGDConfig, Tolerances
from icgd.experiments.looped_gd.experiment import LoopedGD

EXPERIMENT = LoopedGD()

__all__ = ["EXPERIMENT", "LoopedGD", "LoopedGDConfig", "Tolerances"]
