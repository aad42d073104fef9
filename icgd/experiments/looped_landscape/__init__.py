"""`looped-landscape`: the looped loss at a*·Σ⁻¹, minimum or saddle, and its true minimiser.

`config.py` holds the settings, `measure.py` the phase diagram and the minimiser sweep,
`experiment.py` the run and the claims, `figures.py` the plots.
"""

from icgd.experiments.looped_landscape.config import LoopedLandscapeConfig, Tolerances
from icgd.experiments.looped_landscape.experiment import LoopedLandscape

EXPERIMENT = LoopedLandscape()

__all__ = ["EXPERIMENT", "LoopedLandscape", "LoopedLandscapeConfig", "Tolerances"]
