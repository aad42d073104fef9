"""`decision-lists`: one softmax attention layer learns decision lists by gradient descent
("Provable gradient-descent-based learning of decision lists by transformers", SPEC §3).

`config.py` holds the settings and the `sampled` preset, `experiment.py` the run and the claims,
`fits.py` full-batch GD and Adam on a population of sequences and what is read from them,
`figures.py` the plots.
"""

from icgd.experiments.decision_lists.config import (
    SAMPLED,
    DecisionListsExperimentConfig,
    Tolerances,
)
from icgd.experiments.decision_lists.experiment import SMOKE, DecisionListsExperiment

EXPERIMENT = DecisionListsExperiment()

__all__ = [
    "EXPERIMENT",
    "SAMPLED",
    "SMOKE",
    "DecisionListsExperiment",
    "DecisionListsExperimentConfig",
    "Tolerances",
]
