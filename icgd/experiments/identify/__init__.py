"""`identify`: which learning algorithm a model runs, with which parameters, and at which layer.

`config.py` holds the settings, `sources.py` the models (run folders, constructions) and their
known answers, `experiment.py` the run and the claims, `figures.py` the plots. The command
`icgd identify RUN` runs it on a saved run.
"""

from icgd.experiments.identify.config import IdentifyConfig, Tolerances
from icgd.experiments.identify.experiment import Identify

EXPERIMENT = Identify()

__all__ = ["EXPERIMENT", "Identify", "IdentifyConfig", "Tolerances"]
