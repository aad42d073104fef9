"""`gd-vs-transformer`: trained linear self-attention does GD (von Oswald et al. 2023).

`config.py` holds the settings, `experiment.py` the run and the claims, `measurements.py` what the
run measures (errors, the interpolation path, GD++, the out-of-distribution sweep), `figures.py`
the plots.
"""

from icgd.experiments.gd_vs_transformer.config import GDvsTransformerConfig, Tolerances
from icgd.experiments.gd_vs_transformer.experiment import GDvsTransformer

EXPERIMENT = GDvsTransformer()

__all__ = ["EXPERIMENT", "GDvsTransformer", "GDvsTransformerConfig", "Tolerances"]
