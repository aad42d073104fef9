"""Models: linear self-attention (stacked or looped) and hook points.

Imports only `icgd.core`.
"""

from icgd.models.hooks import HookPoints, caching_hook, names_filter_to_predicate
from icgd.models.lsa import LinearSelfAttention, LSAConfig, hook_names

__all__ = [
    "HookPoints",
    "LSAConfig",
    "LinearSelfAttention",
    "caching_hook",
    "hook_names",
    "names_filter_to_predicate",
]
