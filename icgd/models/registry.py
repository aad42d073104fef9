"""One config class per model family, chosen by `kind`, and the function that builds it at a depth.

Experiments that sweep "depth" over several architectures (`which-algorithm`) hold one `ModelSpec`
and call `build_model(spec, d=…, n_max=…, depth=…)`. Families, and what depth means:

| kind      | spec          | model                                  | depth    | reads prompts as |
|-----------|---------------|----------------------------------------|----------|------------------|
| `lsa`     | `LSASpec`     | `LinearSelfAttention` (stacked)        | layers L | (B, d+1, n+1)    |
| `softmax` | `SoftmaxSpec` | `StackedSoftmaxAttention`              | layers L | (B, d+1, n+1)    |
| `gpt`     | `GPTSpec`     | `GPT` (causal, Garg et al. 2022)       | blocks   | X (B, k, d), y   |
| `looped`  | `LoopedSpec`  | `LoopedTransformer` (Yang et al. 2024) | loops b  | X (B, k, d), y   |

A prompt-layout model predicts `ŷ = −[Z_L]_{d+1, n+1}` (lsa) or `+[Z_L]_{d+1, n+1}` (softmax); a
causal one reads X (B, k, d) and y (B, k).

The prompt-layout families (`lsa`, `softmax`) see n_max context tokens and one query token; the
causal ones (`gpt`, `looped`) predict at every x token, so they are built for `n_max + 1` points:
the prediction after n_max context points is made at the (n_max+1)-th x token.

`ModelSpec` is the discriminated union of the four classes on `kind`: each holds its family's
fields only, with the family's defaults, and a field of another family is a validation error
naming the field (`model.init_std: unknown key` for a GPT). The fields:

- `lsa`: `n_heads` (1), `init_std` (N(0, init_std²) entries, 0.01), `parametrisation`
  (`relaxed`, see `icgd.models.lsa`);
- `softmax`: `n_heads` (1), `init_std` (0.01), `softmax_kind` (`full`: free OV matrices; `he`:
  label-writing OV vectors) and `mask` (`context`); padding is always hidden
  (`icgd.models.softmax_attention`);
- `gpt`: `size` (`tiny`: width 64, 2 heads), `n_embd` and `n_heads` (None: from `size`); GPT-2 init;
- `looped`: as `gpt`, plus `n_blocks` (1 block in the loop body) and `grad_last` (T, the loops in
  the training loss; None: ⌈b/2⌉ as Yang et al.'s b = 30, T = 15; capped at b).

Switching family with dotted overrides (`--set model.kind=gpt`): a spec's dump (`model_dump`, so
also `config.yaml` and `result.json`) holds `kind` and the fields that were set, never the
defaults it did not set, so a new `kind` inherits no setting of the old family; the defaults are
in this module. `None` given for a field of a family stands for its default (run folders written
before the split stored the unset fields of the one flat spec as null). The tags of the union
are `kind[…]`, which `icgd.core.config` drops from error locations (`model.n_heads`, not
`model.gpt.n_heads`).

Imports only `icgd.core` and `icgd.models`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import torch
from pydantic import (
    Discriminator,
    NonNegativeFloat,
    PositiveInt,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
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
# Every field name of some family: None given for one of them is dropped (module docstring).
_FAMILY_FIELDS = frozenset(
    {"n_heads", "init_std", "parametrisation", "softmax_kind", "mask", "size", "n_embd"}
    | {"n_blocks", "grad_last"}
)


class _FamilySpec(Config):
    """What every family's spec shares: `kind`, `causal`, `resolved()`, the dump of set fields."""

    kind: str

    @model_validator(mode="before")
    @classmethod
    def _none_is_the_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in _FAMILY_FIELDS)}
        return data

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k == "kind" or k in self.model_fields_set}

    @property
    def causal(self) -> bool:
        """True for the families that predict at every x token of one sequence (gpt, looped)."""
        return self.kind in CAUSAL_KINDS

    def resolved(self) -> dict[str, Any]:
        """The family's fields (not `kind`), those computed from others filled in (`n_embd`,
        `n_heads` from `size`; `grad_last` stays None: it depends on the depth, `loss_loops`)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != "kind"}


class LSASpec(_FamilySpec):
    """Stacked linear self-attention (`icgd.models.lsa`): heads, init scale, parametrisation."""

    kind: Literal["lsa"] = "lsa"
    n_heads: PositiveInt = 1
    init_std: NonNegativeFloat = 0.01
    parametrisation: Literal["relaxed", "full", "sparse"] = "relaxed"

    def build(self, d: int, n_max: int, depth: int, **init: Any) -> nn.Module:
        """`LinearSelfAttention` of `depth` layers on d-dimensional prompts (n_max unused)."""
        config = LSAConfig(
            d=d,
            n_layers=depth,
            parametrisation=self.parametrisation,
            n_heads=self.n_heads,
            init_std=self.init_std,
        )
        device = init.pop("device")
        return LinearSelfAttention(config, **init).to(device)


class SoftmaxSpec(_FamilySpec):
    """Stacked softmax attention (`icgd.models.softmax_attention`): heads, init scale, the OV
    form (`softmax_kind`) and the mask."""

    kind: Literal["softmax"] = "softmax"
    n_heads: PositiveInt = 1
    init_std: NonNegativeFloat = 0.01
    softmax_kind: SoftmaxKind = "full"
    mask: MaskKind = "context"

    def build(self, d: int, n_max: int, depth: int, **init: Any) -> nn.Module:
        """`StackedSoftmaxAttention` of `depth` layers on d-dimensional prompts (n_max unused)."""
        config = SoftmaxAttentionConfig(
            d=d,
            n_heads=self.n_heads,
            kind=self.softmax_kind,
            mask=self.mask,
            init_std=self.init_std,
        )
        return StackedSoftmaxAttention(config, depth, **init)


class GPTSpec(_FamilySpec):
    """A causal GPT (`icgd.models.gpt`): `size` sets width and heads, `n_embd` / `n_heads` given
    explicitly win."""

    kind: Literal["gpt"] = "gpt"
    size: GPTSize = "tiny"
    n_embd: PositiveInt | None = None
    n_heads: PositiveInt | None = None

    @field_validator("n_heads")
    @classmethod
    def _heads_divide_width(cls, value: int | None, info: ValidationInfo) -> int | None:
        size, n_embd = info.data.get("size"), info.data.get("n_embd")
        if size is None:  # size itself was invalid and is reported on its own
            return value
        width = n_embd or GPT_SIZES[size]["n_embd"]
        heads = value or GPT_SIZES[size]["n_head"]
        if width % heads != 0:
            of_size = "" if value is not None else f" (the {heads} heads of size {size!r})"
            raise ValueError(f"must divide n_embd = {width}{of_size}")
        return value

    def resolved(self) -> dict[str, Any]:
        values = super().resolved()
        preset = GPT_SIZES[self.size]
        values["n_embd"] = values["n_embd"] or preset["n_embd"]
        values["n_heads"] = values["n_heads"] or preset["n_head"]
        return values

    def build(self, d: int, n_max: int, depth: int, **init: Any) -> nn.Module:
        """`GPT` of `depth` blocks for up to n_max + 1 points of dimension d."""
        v = self.resolved()
        config = GPTConfig(
            d_in=d, max_points=n_max + 1, size=None, n_embd=v["n_embd"], n_head=v["n_heads"],
            n_layer=depth,
        )  # fmt: skip
        return GPT(config, **init)


class LoopedSpec(GPTSpec):
    """A looped transformer with input injection (`icgd.models.looped`): the GPT fields, the
    blocks of the loop body and T, the final loops in the training loss."""

    kind: Literal["looped"] = "looped"  # type: ignore[assignment]
    n_blocks: PositiveInt = 1
    grad_last: PositiveInt | None = None

    def loss_loops(self, depth: int) -> int:
        """T, the number of final loops in the training loss, for b = depth loops."""
        T = self.grad_last if self.grad_last is not None else (depth + 1) // 2
        return min(T, depth)

    def build(self, d: int, n_max: int, depth: int, **init: Any) -> nn.Module:
        """`LoopedTransformer` of b = depth loops for up to n_max + 1 points of dimension d."""
        v = self.resolved()
        config = LoopedConfig(
            d_in=d,
            max_points=n_max + 1,
            size=None,
            n_embd=v["n_embd"],
            n_head=v["n_heads"],
            n_blocks=self.n_blocks,
            n_loops=depth,
            grad_last=self.loss_loops(depth),
        )
        return LoopedTransformer(config, **init)


def _tag(value: Any) -> str | None:
    """The union tag `kind[<kind>]` of a spec or of a mapping (None without a `kind`)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return None if kind is None else f"kind[{kind}]"


ModelSpec = Annotated[
    Union[  # noqa: UP007 (the union of the discriminated members, spelled as pydantic documents)
        Annotated[LSASpec, Tag("kind[lsa]")],
        Annotated[SoftmaxSpec, Tag("kind[softmax]")],
        Annotated[GPTSpec, Tag("kind[gpt]")],
        Annotated[LoopedSpec, Tag("kind[looped]")],
    ],
    Discriminator(
        _tag,
        custom_error_type="model_kind",
        custom_error_message=f"kind must be one of: {', '.join(MODEL_KINDS)}",
    ),
]
"""A model family and its architecture knobs (module docstring); depth, d and n_max come at
build time. Validate a mapping with `model_spec(**fields)`."""

MODEL_SPECS: dict[str, type[_FamilySpec]] = {
    "lsa": LSASpec,
    "softmax": SoftmaxSpec,
    "gpt": GPTSpec,
    "looped": LoopedSpec,
}

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelSpec)


def model_spec(**fields: Any) -> LSASpec | SoftmaxSpec | GPTSpec | LoopedSpec:
    """The spec of `fields["kind"]` (default "lsa") validated from `fields`; a field of another
    family, or a bad value, is a `pydantic.ValidationError` naming it."""
    return _ADAPTER.validate_python({"kind": "lsa", **fields})


def build_model(
    spec: LSASpec | SoftmaxSpec | GPTSpec | LoopedSpec,
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
    return spec.build(d, n_max, depth, generator=generator, dtype=dtype, device=device)
