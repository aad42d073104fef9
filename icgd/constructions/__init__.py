"""Constructions: functions that return a new model whose weights implement an algorithm.

Imports only `icgd.core` and `icgd.models`.
"""

from icgd.constructions.preconditioned_gd import lsa_from_preconditioned_gd

__all__ = ["lsa_from_preconditioned_gd"]
