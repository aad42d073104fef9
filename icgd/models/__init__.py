"""Models: linear self-attention (stacked or looped), softmax attention, a causal GPT, a looped
transformer with input injection, and hook points.

Imports only `icgd.core`.
"""

from icgd.models.gpt import GPT, GPT_SIZES, Block, GPTConfig
from icgd.models.hooks import HookPoints, caching_hook, names_filter_to_predicate
from icgd.models.looped import LoopedConfig, LoopedTransformer
from icgd.models.lsa import LinearSelfAttention, LSAConfig, hook_names
from icgd.models.softmax_attention import SoftmaxAttention, SoftmaxAttentionConfig

__all__ = [
    "GPT",
    "GPT_SIZES",
    "Block",
    "GPTConfig",
    "HookPoints",
    "LSAConfig",
    "LinearSelfAttention",
    "LoopedConfig",
    "LoopedTransformer",
    "SoftmaxAttention",
    "SoftmaxAttentionConfig",
    "caching_hook",
    "hook_names",
    "names_filter_to_predicate",
]
