"""Analysis: metrics that read trained weights and predictions against algorithms and theory."""

from icgd.analysis.preconditioner import (
    distance_to_identity,
    effective_preconditioners,
    identity_scale,
    one_step_predictor_gap,
    predictor_leak_ratio,
    whiten,
)

__all__ = [
    "distance_to_identity",
    "effective_preconditioners",
    "identity_scale",
    "one_step_predictor_gap",
    "predictor_leak_ratio",
    "whiten",
]
