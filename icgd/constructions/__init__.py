"""Constructions: functions that return a new model whose weights implement an algorithm.

Imports only `icgd.core` and `icgd.models`.
"""

from icgd.constructions.preconditioned_gd import lsa_from_preconditioned_gd
from icgd.constructions.von_oswald import (
    lsa_from_gd_plus_plus,
    lsa_from_gd_plus_plus_steps,
    lsa_from_gd_step,
)

__all__ = [
    "lsa_from_gd_plus_plus",
    "lsa_from_gd_plus_plus_steps",
    "lsa_from_gd_step",
    "lsa_from_preconditioned_gd",
]
