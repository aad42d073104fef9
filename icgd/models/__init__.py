"""Models: linear self-attention (stacked or looped), softmax attention, a causal GPT, a looped
transformer with input injection, hook points, and a registry building any of them by `kind`.

Imports only `icgd.core`.
"""

from icgd.models.decision_list_attention import (
    DecisionListAttention,
    DecisionListAttentionConfig,
    sequence_loss,
)
from icgd.models.gpt import GPT, GPT_SIZES, Block, GPTConfig
from icgd.models.hooks import HookPoints, caching_hook, names_filter_to_predicate
from icgd.models.looped import LoopedConfig, LoopedTransformer
from icgd.models.lsa import LinearSelfAttention, LSAConfig, hook_names
from icgd.models.ot_attention import OTAttention, OTAttentionConfig, OTLayout
from icgd.models.registry import CAUSAL_KINDS, MODEL_KINDS, ModelSpec, build_model
from icgd.models.softmax_attention import (
    SoftmaxAttention,
    SoftmaxAttentionConfig,
    StackedSoftmaxAttention,
)

__all__ = [
    "CAUSAL_KINDS",
    "DecisionListAttention",
    "DecisionListAttentionConfig",
    "GPT",
    "GPT_SIZES",
    "Block",
    "GPTConfig",
    "HookPoints",
    "LSAConfig",
    "LinearSelfAttention",
    "LoopedConfig",
    "LoopedTransformer",
    "MODEL_KINDS",
    "ModelSpec",
    "OTAttention",
    "OTAttentionConfig",
    "OTLayout",
    "SoftmaxAttention",
    "SoftmaxAttentionConfig",
    "StackedSoftmaxAttention",
    "build_model",
    "caching_hook",
    "hook_names",
    "names_filter_to_predicate",
    "sequence_loss",
]
