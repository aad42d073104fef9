"""`higher-order`: a trained GPT's layers track iterative Newton, not GD (Fu et al. 2024).

`config.py` holds the settings (presets, tolerances), `analysis.py` the layer ↔ iteration maps
and the fits the claims read, `experiment.py` the run, the claims and the memory estimate,
`figures.py` the plots.
"""

from icgd.experiments.higher_order.analysis import layer_fits, line_fit, matched_steps
from icgd.experiments.higher_order.config import HigherOrderConfig, Tolerances
from icgd.experiments.higher_order.experiment import SMOKE, HigherOrder

EXPERIMENT = HigherOrder()

__all__ = [
    "EXPERIMENT",
    "SMOKE",
    "HigherOrder",
    "HigherOrderConfig",
    "Tolerances",
    "layer_fits",
    "line_fit",
    "matched_steps",
]
