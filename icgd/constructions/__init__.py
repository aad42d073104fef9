"""Constructions: functions that return a new model whose weights implement an algorithm.

Imports only `icgd.core` and `icgd.models`.
"""

from icgd.constructions.newton_schulz import (
    lsa_from_newton_schulz,
    newton_schulz_layers,
    newton_schulz_prompt,
    read_newton_schulz,
)
from icgd.constructions.ot_dual_ascent import (
    barycentric_map,
    dual_ascent_layer_weights,
    ot_prompt,
    plan_argmax,
    transformer_from_dual_ascent,
)
from icgd.constructions.preconditioned_gd import lsa_from_preconditioned_gd
from icgd.constructions.td import (
    transformer_from_average_reward_td,
    transformer_from_residual_gradient,
    transformer_from_td0,
    transformer_from_td_lambda,
)
from icgd.constructions.von_oswald import (
    lsa_from_gd_plus_plus,
    lsa_from_gd_plus_plus_steps,
    lsa_from_gd_step,
)

__all__ = [
    "barycentric_map",
    "dual_ascent_layer_weights",
    "lsa_from_gd_plus_plus",
    "lsa_from_gd_plus_plus_steps",
    "lsa_from_gd_step",
    "lsa_from_newton_schulz",
    "lsa_from_preconditioned_gd",
    "newton_schulz_layers",
    "newton_schulz_prompt",
    "ot_prompt",
    "plan_argmax",
    "read_newton_schulz",
    "transformer_from_average_reward_td",
    "transformer_from_dual_ascent",
    "transformer_from_residual_gradient",
    "transformer_from_td0",
    "transformer_from_td_lambda",
]
