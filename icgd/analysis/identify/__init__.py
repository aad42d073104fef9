"""Algorithm identification: which learning algorithm does a model run, with which parameters,
and at which layer? (issue 20; Akyürek et al. 2023, von Oswald et al. 2023, Fu et al. 2024)

- `identify(model, task)`: fit every candidate algorithm's free parameters to the model's
  predictions, with bootstrap uncertainty, and rank the fitted algorithms by held-out SPD
  (`Identification`);
- `probe_layers(model, task)`: linear read-out probes of the query token at every layer, and the
  layer ↔ iteration map of each iterative algorithm by SimE (`LayerProbes`).

Modules: `spectral` (closed-form predictions on parameter grids), `fitting` (grid, zoom, polish,
one-step bootstrap), `candidates`, `preconditioned` and `gd_beta` (the algorithms), `views`
(models and tasks), `metrics`, `result`, `identify`, `probe`; the TD family (Markov-reward prompts,
the TD transformer, batch TD candidates): `td`, `td_candidates`.
"""

from icgd.analysis.identify.candidates import (
    Candidate,
    Chebyshev,
    DebiasedGD,
    GradientDescent,
    IterativeNewton,
    OneStepGD,
    OrdinaryLeastSquares,
    Ridge,
)
from icgd.analysis.identify.gd_beta import GDBeta
from icgd.analysis.identify.identify import (
    CANDIDATE_FAMILIES,
    CANDIDATES,
    DEFAULT_ALGORITHMS,
    identify,
    make_candidates,
)
from icgd.analysis.identify.metrics import (
    prediction_cosine,
    r_squared,
    sime,
    sime_matrix,
    spd_with_se,
    weight_cosine,
)
from icgd.analysis.identify.preconditioned import PreconditionedGD, StackedPreconditionedGD
from icgd.analysis.identify.probe import (
    ITERATES,
    PROBE_ALGORITHMS,
    calibrate,
    iterate_predictions,
    probe_layers,
    ridge_probe,
)
from icgd.analysis.identify.result import (
    AlgorithmFit,
    Identification,
    LayerProbes,
    ParameterEstimate,
)
from icgd.analysis.identify.td import TDPromptTask, td_view
from icgd.analysis.identify.td_candidates import (
    LSTD,
    TD0,
    TD_ALGORITHMS,
    TD_CANDIDATES,
    TD_PROBE_ALGORITHMS,
    PreconditionedTD0,
    ResidualGradient,
)
from icgd.analysis.identify.views import (
    ModelView,
    Prompts,
    draw_prompts,
    model_view,
    prompt_family,
)

__all__ = [
    "CANDIDATES",
    "CANDIDATE_FAMILIES",
    "DEFAULT_ALGORITHMS",
    "LSTD",
    "TD0",
    "TD_ALGORITHMS",
    "TD_CANDIDATES",
    "TD_PROBE_ALGORITHMS",
    "ITERATES",
    "PROBE_ALGORITHMS",
    "AlgorithmFit",
    "Candidate",
    "Chebyshev",
    "DebiasedGD",
    "GDBeta",
    "GradientDescent",
    "Identification",
    "IterativeNewton",
    "LayerProbes",
    "OneStepGD",
    "ModelView",
    "OrdinaryLeastSquares",
    "ParameterEstimate",
    "PreconditionedGD",
    "PreconditionedTD0",
    "Prompts",
    "ResidualGradient",
    "Ridge",
    "StackedPreconditionedGD",
    "TDPromptTask",
    "calibrate",
    "draw_prompts",
    "identify",
    "iterate_predictions",
    "make_candidates",
    "model_view",
    "prediction_cosine",
    "probe_layers",
    "prompt_family",
    "r_squared",
    "ridge_probe",
    "sime",
    "sime_matrix",
    "spd_with_se",
    "td_view",
    "weight_cosine",
]
