"""Closed forms and high-precision numerical optima (float64), independent of `icgd.algorithms`.

Imports only `icgd.core`, so every result here is an independent check on the algorithms.
"""

from icgd.theory.debiased_gd import debiased_one_step_floor, debiased_one_step_risk, m_star
from icgd.theory.decision_lists import (
    DecisionListMasses,
    decision_list_masses,
    mode_a_constants,
    mode_b_conditions,
)
from icgd.theory.flow import FlowResult, dominance_ratios, gradient_dominance, gradient_flow
from icgd.theory.gatmiry import gatmiry_constant, gradient_dominance_constant
from icgd.theory.landscape import (
    LandscapeMinimum,
    loss_gap,
    minimise_looped_loss,
    whitened_draws,
    whitened_gradient,
    whitened_loss,
)
from icgd.theory.looped import LoopedOptimum, looped_loss, optimal_loop_scale
from icgd.theory.one_layer import (
    ahn_optimal_preconditioner,
    expected_s_m_s,
    one_layer_loss,
    one_layer_risk,
    optimal_one_layer_preconditioner,
    optimal_one_step_scale,
    optimal_prefix_step_scale,
    risk_at_test_length,
    risk_floor,
    zfb_gamma,
)
from icgd.theory.population import (
    GaussianRegression,
    PopulationDraws,
    heads,
    population_draws,
    population_gradient,
    population_loss,
    sparse_heads,
)
from icgd.theory.preconditioner_loss import preconditioner_loss
from icgd.theory.skew import (
    SkewCurvature,
    skew_curvature,
    skew_curvature_from_eigenvalues,
    skew_curvature_limit,
)
from icgd.theory.stacked import StackedOptimum, optimal_layer_scales, stacked_loss
from icgd.theory.wishart import (
    WishartMoments,
    moments_from_eigenvalues,
    whitened_eigenvalues,
    whitened_wishart_moments,
)

__all__ = [
    "whitened_loss",
    "whitened_gradient",
    "whitened_eigenvalues",
    "whitened_draws",
    "skew_curvature_limit",
    "skew_curvature_from_eigenvalues",
    "moments_from_eigenvalues",
    "minimise_looped_loss",
    "loss_gap",
    "DecisionListMasses",
    "FlowResult",
    "GaussianRegression",
    "LandscapeMinimum",
    "LoopedOptimum",
    "PopulationDraws",
    "SkewCurvature",
    "StackedOptimum",
    "WishartMoments",
    "ahn_optimal_preconditioner",
    "debiased_one_step_floor",
    "debiased_one_step_risk",
    "decision_list_masses",
    "dominance_ratios",
    "expected_s_m_s",
    "gatmiry_constant",
    "gradient_dominance",
    "gradient_dominance_constant",
    "gradient_flow",
    "heads",
    "looped_loss",
    "m_star",
    "mode_a_constants",
    "mode_b_conditions",
    "one_layer_loss",
    "one_layer_risk",
    "optimal_layer_scales",
    "optimal_loop_scale",
    "optimal_one_layer_preconditioner",
    "optimal_one_step_scale",
    "optimal_prefix_step_scale",
    "population_draws",
    "population_gradient",
    "population_loss",
    "preconditioner_loss",
    "risk_at_test_length",
    "risk_floor",
    "skew_curvature",
    "sparse_heads",
    "stacked_loss",
    "whitened_wishart_moments",
    "zfb_gamma",
]
