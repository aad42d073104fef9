"""`in-context-td`: a looped linear transformer trained by multi-task TD learns in-context TD
(Wang, Blaser, Daneshmand, Zhang 2025; SPEC §5).

`config.py` holds the settings, `experiment.py` the training loss and sampler, the run and the
claims, `values.py` the float64 value analysis (fitted TD step, MSVE against context length),
`figures.py` the plots.
"""

from icgd.experiments.in_context_td.config import InContextTDConfig, Tolerances
from icgd.experiments.in_context_td.experiment import SMOKE, InContextTD, td_loss, td_sampler

EXPERIMENT = InContextTD()

__all__ = [
    "EXPERIMENT",
    "SMOKE",
    "InContextTD",
    "InContextTDConfig",
    "Tolerances",
    "td_loss",
    "td_sampler",
]
