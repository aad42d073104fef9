"""Models: linear self-attention (stacked or looped), softmax attention, a causal GPT, a looped
transformer with input injection, hook points, the `Model` protocol they keep (`icgd.models.api`),
and one config class per family (`ModelSpec`, a union on `kind`) building any of them at a depth.

Imports only `icgd.core`.
"""

from icgd.models.api import Model
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
from icgd.models.registry import (
    CAUSAL_KINDS,
    MODEL_KINDS,
    MODEL_SPECS,
    GPTSpec,
    LoopedSpec,
    LSASpec,
    ModelSpec,
    SoftmaxSpec,
    build_model,
    model_spec,
)
from icgd.models.softmax_attention import (
    SoftmaxAttention,
    SoftmaxAttentionConfig,
    StackedSoftmaxAttention,
)
from icgd.models.td_transformer import (
    TDTransformer,
    TDTransformerConfig,
    average_reward_rows,
    build_average_reward_prompt,
    read_average_reward,
    td_mask,
)

__all__ = [
    "Block",
    "CAUSAL_KINDS",
    "DecisionListAttention",
    "DecisionListAttentionConfig",
    "GPT",
    "GPTConfig",
    "GPTSpec",
    "GPT_SIZES",
    "HookPoints",
    "LSAConfig",
    "LSASpec",
    "LinearSelfAttention",
    "LoopedConfig",
    "LoopedSpec",
    "LoopedTransformer",
    "MODEL_KINDS",
    "MODEL_SPECS",
    "Model",
    "ModelSpec",
    "OTAttention",
    "OTAttentionConfig",
    "OTLayout",
    "SoftmaxAttention",
    "SoftmaxAttentionConfig",
    "SoftmaxSpec",
    "StackedSoftmaxAttention",
    "TDTransformer",
    "TDTransformerConfig",
    "average_reward_rows",
    "build_average_reward_prompt",
    "build_model",
    "caching_hook",
    "hook_names",
    "model_spec",
    "names_filter_to_predicate",
    "read_average_reward",
    "sequence_loss",
    "td_mask",
]
