"""`rank-one-heads`: linear attention with separate rank-one keys and queries learns the principal
components of its inputs one plateau-and-drop at a time, largest eigenvalue first
(Zhang, Singh, Latham, Saxe 2025).

`config.py` holds the settings, `experiment.py` the run and the claims, `drops.py` the drop
detector, `theory.py` the plateau levels, `figures.py` the plots.
"""

from icgd.experiments.rank_one_heads.config import DropDetector, RankOneHeadsConfig, Tolerances
from icgd.experiments.rank_one_heads.experiment import SMOKE, RankOneHeads

EXPERIMENT = RankOneHeads()

__all__ = [
    "EXPERIMENT",
    "SMOKE",
    "DropDetector",
    "RankOneHeads",
    "RankOneHeadsConfig",
    "Tolerances",
]
