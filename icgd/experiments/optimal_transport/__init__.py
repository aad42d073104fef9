"""`optimal-transport`: a fixed-weight attention transformer runs dual ascent on entropic OT and
sorts (Daneshmand 2024, "Provable optimal transport with transformers"; SPEC §4).

`config.py` holds the settings, `experiment.py` the run, the claims and the read-outs (plans,
objective, evaluation depths), `figures.py` the plots.
"""

from icgd.experiments.optimal_transport.config import OptimalTransportConfig, Tolerances
from icgd.experiments.optimal_transport.experiment import (
    SMOKE,
    OptimalTransportExperiment,
    entropic_objective,
    eval_depths,
    plan_of,
)

EXPERIMENT = OptimalTransportExperiment()

__all__ = [
    "EXPERIMENT",
    "SMOKE",
    "OptimalTransportConfig",
    "OptimalTransportExperiment",
    "Tolerances",
    "entropic_objective",
    "eval_depths",
    "plan_of",
]
