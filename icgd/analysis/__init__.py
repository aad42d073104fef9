"""Analysis: metrics that read trained weights and predictions against algorithms and theory."""

from icgd.analysis.algorithm_distance import ilwd, implicit_weights, linear_weights, spd
from icgd.analysis.comparison import (
    compare,
    gd_prediction_fn,
    lsa_prediction_fn,
    model_cosine,
    model_difference,
    prediction_difference,
    prediction_rmse,
    query_sensitivity,
)
from icgd.analysis.hessian import HessianEig, hessian_vector_product, top_hessian_eigenvalue
from icgd.analysis.identify import (
    AlgorithmFit,
    Identification,
    LayerProbes,
    ModelView,
    identify,
    probe_layers,
)
from icgd.analysis.preconditioner import (
    distance_to_identity,
    effective_preconditioners,
    identity_scale,
    one_step_predictor_gap,
    predictor_leak_ratio,
    whiten,
)

__all__ = [
    "AlgorithmFit",
    "HessianEig",
    "Identification",
    "LayerProbes",
    "ModelView",
    "compare",
    "distance_to_identity",
    "effective_preconditioners",
    "gd_prediction_fn",
    "hessian_vector_product",
    "identify",
    "identity_scale",
    "ilwd",
    "implicit_weights",
    "linear_weights",
    "lsa_prediction_fn",
    "model_cosine",
    "model_difference",
    "one_step_predictor_gap",
    "prediction_difference",
    "prediction_rmse",
    "predictor_leak_ratio",
    "probe_layers",
    "query_sensitivity",
    "spd",
    "top_hessian_eigenvalue",
    "whiten",
]
