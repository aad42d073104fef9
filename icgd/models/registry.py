"""One config that picks a model family by `kind`, and the function that builds it at a depth.

Experiments that sweep "depth" over several architectures (`which-algorithm`) hold one
`ModelSpec` and call `build_model(spec, d=…, n_max=…, depth=…)`. Families, and what depth means:

| kind      | model                                  | depth          | reads prompts as         |
|-----------|----------------------------------------|----------------|--------------------------|
| `lsa`     | `LinearSelfAttention` (stacked)        | layers L       | (B, d+1, n+1), ŷ = −slot |
| `softmax` | `StackedSoftmaxAttention`              | layers L       | (B, d+1, n+1), ŷ = +slot |
| `gpt`     | `GPT` (causal, Garg et al. 2022)       | blocks n_layer | X (B, k, d), y (B, k)    |
| `looped`  | `LoopedTransformer` (Yang et al. 2024) | loops b        | X (B, k, d), y (B, k)    |

The prompt-layout families (`lsa`, `softmax`) see n_max context tokens and one query token; the
causal ones (`gpt`, `looped`) predict at every x token, so they are built for `n_max + 1` points:
the prediction after n_max context points is made at the (n_max+1)-th x token.

Family fields (None: the family's default, `family_defaults`); a field of another family is an
error, so a spec never silently carries a setting its model ignores:

- every kind: `n_heads` (lsa, softmax: 1; gpt, looped: from `size`);
- `lsa`, `softmax`: `init_std` (N(0, init_std²) entries, 0.01);
- `lsa`: `parametrisation` (`relaxed`, see `icgd.models.lsa`);
- `softmax`: `softmax_kind` (`full`: free OV matrices; `he`: label-writing OV vectors) and `mask`
  (`context`); padding is always hidden (`icgd.models.softmax_attention`);
- `gpt`, `looped`: `size` (`tiny`: width 64, 2 heads), `n_embd` (from `size`); GPT-2 init;
- `looped`: `n_blocks` (1 block in the loop body) and `grad_last` (T, the loops in the training
  loss: ⌈b/2⌉ as Yang et al.'s b = 30, T = 15; capped at b).

Imports only `icgd.core` and `icgd.models`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import NonNegativeFloat, PositiveInt, model_validator
from torch import nn

from icgd.core.config import Config
from icgd.models.gpt import GPT, GPT_SIZES, GPTConfig, GPTSize
from icgd.models.looped import LoopedConfig, LoopedTransformer
from icgd.models.lsa import LinearSelfAttention, LSAConfig
from icgd.models.softmax_attention import (
    MaskKind,
    SoftmaxAttentionConfig,
    SoftmaxKind,
    StackedSoftmaxAttention,
)

ModelKind = Literal["lsa", "softmax", "gpt", "looped"]
MODEL_KINDS: tuple[str, ...] = ("lsa", "softmax", "gpt", "looped")
CAUSAL_KINDS = frozenset({"gpt", "looped"})

# The fields each family reads (besides `kind`), with their defaults; None: computed from others.
FAMILY_FIELDS: dict[str, dict[str, Any]] = {
    "lsa": {"n_heads": 1, "init_std": 0.01, "parametrisation": "relaxed"},
    "softmax": {"n_heads": 1, "init_std": 0.01, "softmax_kind": "full", "mask": "context"},
    "gpt": {"n_heads": None, "size": "tiny", "n_embd": None},
    "looped": {"n_heads": None, "size": "tiny", "n_embd": None, "n_blocks": 1, "grad_last": None},
}


class ModelSpec(Config):
    """A model family and its architecture knobs; depth, d and n_max come at build time.

    Every field but `kind` defaults to None, the family's default (module docstring): switching
    `kind` with `--set model.kind=gpt` then leaves no setting of the old family behind.
    """

    kind: ModelKind = "lsa"
    n_heads: PositiveInt | None = None
    init_std: NonNegativeFloat | None = None
    parametrisation: Literal["relaxed", "full", "sparse"] | None = None
    softmax_kind: SoftmaxKind | None = None
    mask: MaskKind | None = None
    size: GPTSize | None = None
    n_embd: PositiveInt | None = None
    n_blocks: PositiveInt | None = None
    grad_last: PositiveInt | None = None

    @model_validator(mode="after")
    def _fields_of_the_family(self) -> ModelSpec:
        own = FAMILY_FIELDS[self.kind]
        for name in type(self).model_fields:
            if name != "kind" and getattr(self, name) is not None and name not in own:
                users = [k for k, fields in FAMILY_FIELDS.items() if name in fields]
                raise ValueError(
                    f"{name}: used by kind {' / '.join(users)} only, not by kind {self.kind!r}"
                )
        if self.kind in CAUSAL_KINDS:
            values = self.resolved()
            if values["n_embd"] % values["n_heads"] != 0:
                raise ValueError(
                    f"n_embd: must be divisible by n_heads={values['n_heads']}, "
                    f"got {values['n_embd']}"
                )
        return self

    @property
    def causal(self) -> bool:
        """True for the families that predict at every x token of one sequence (gpt, looped)."""
        return self.kind in CAUSAL_KINDS

    def resolved(self) -> dict[str, Any]:
        """The family's fields with None replaced by the defaults (T = grad_last stays None:
        it depends on the depth, see `loss_loops`)."""
        values = {k: v if getattr(self, k) is None else getattr(self, k) for k, v in
                  FAMILY_FIELDS[self.kind].items()}  # fmt: skip
        if self.kind in CAUSAL_KINDS:
            preset = GPT_SIZES[values["size"]]
            values["n_embd"] = values["n_embd"] or preset["n_embd"]
            values["n_heads"] = values["n_heads"] or preset["n_head"]
        return values

    def loss_loops(self, depth: int) -> int:
        """Looped family: T, the number of final loops in the training loss, for b = depth loops."""
        T = self.grad_last if self.grad_last is not None else (depth + 1) // 2
        return min(T, depth)


def build_model(
    spec: ModelSpec,
    *,
    d: int,
    n_max: int,
    depth: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The model of `spec`'s family at `depth` (module docstring), initialised from `generator`.

    d: input dimension; n_max: the most context points a prompt holds (causal families are built
    for n_max + 1 points). The same generator state gives the same weights for every dtype.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    v = spec.resolved()
    if spec.kind == "lsa":
        config = LSAConfig(
            d=d,
            n_layers=depth,
            parametrisation=v["parametrisation"],
            n_heads=v["n_heads"],
            init_std=v["init_std"],
        )
        return LinearSelfAttention(config, generator=generator, dtype=dtype).to(device)
    if spec.kind == "softmax":
        config = SoftmaxAttentionConfig(
            d=d,
            n_heads=v["n_heads"],
            kind=v["softmax_kind"],
            mask=v["mask"],
            init_std=v["init_std"],
        )
        return StackedSoftmaxAttention(
            config, depth, generator=generator, dtype=dtype, device=device
        )
    width = {"d_in": d, "max_points": n_max + 1, "size": None, "n_embd": v["n_embd"]}
    if spec.kind == "gpt":
        config = GPTConfig(**width, n_head=v["n_heads"], n_layer=depth)
        return GPT(config, generator=generator, dtype=dtype, device=device)
    config = LoopedConfig(
        **width,
        n_head=v["n_heads"],
        n_blocks=v["n_blocks"],
        n_loops=depth,
        grad_last=spec.loss_loops(depth),
    )
    return LoopedTransformer(config, generator=generator, dtype=dtype, device=device)
