"""`one-step-gd`: one full-matrix LSA layer learns one optimal preconditioned GD step
(Ahn et al. 2023, Thm 1; Mahankali et al. 2023).

`config.py` holds the settings, `experiment.py` the run and the claims, `figures.py` the plots,
`lengths.py` the test-length claims and `flow.py` the gradient flow from Zhang–Frei–Bartlett's
initialisation (ZFB 2024, §4.1 and Thm 4.1).
"""

from icgd.experiments.one_step_gd.config import OneStepGDConfig, Tolerances
from icgd.experiments.one_step_gd.experiment import SMOKE, OneStepGD

EXPERIMENT = OneStepGD()

__all__ = ["EXPERIMENT", "SMOKE", "OneStepGD", "OneStepGDConfig", "Tolerances"]
