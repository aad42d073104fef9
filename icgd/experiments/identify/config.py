"""The config of `identify`: which model (a run folder or a hand-built construction), which
algorithms, how many prompts, and the tolerances of the known-answer claims."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, NonNegativeFloat, NonNegativeInt, field_validator

from icgd.core.config import Config
from icgd.experiments.api import ExperimentConfig

CONSTRUCTIONS = ("gd", "preconditioned-gd", "iterative-newton", "td0")


class Tolerances(Config):
    """Tolerances of the known-answer claims (each claim states its comparison)."""

    exact_r2: NonNegativeFloat = 1e-6  # a construction runs its algorithm exactly: R² ≥ 1 − this
    exact_parameter: NonNegativeFloat = 1e-3  # relative error of a built-in parameter
    trained_r2: NonNegativeFloat = 0.02  # a trained model's expected algorithm: R² ≥ 1 − this
    trained_parameter: NonNegativeFloat = 0.1  # relative error of a trained model's Γ (looped-gd)


class IdentifyConfig(ExperimentConfig):
    """Settings of `identify` (`icgd identify RUN` sets `source`; see the package docstring).

    `source`: a run folder (its model in `model`, "" for the main one), or `construction:NAME`,
    a hand-built model that runs NAME exactly (one of `CONSTRUCTIONS`) at d = `d`, n = `n`, with
    the parameters of `sources.py`. `algorithms`: candidate names (default: the prompt family's,
    e.g. `icgd.analysis.identify.DEFAULT_ALGORITHMS` for regression; the candidates a known
    answer names are always added). `prompts`: fitting prompts, as many held out.
    """

    source: str = "construction:gd"
    model: str = ""
    algorithms: list[str] | None = None
    prompts: Annotated[int, Field(ge=64, le=1_000_000)] = 8192
    bootstrap: NonNegativeInt = 64
    probe_prompts: Annotated[int, Field(ge=64, le=1_000_000)] = 4096
    probes: bool = True
    max_steps: Annotated[int, Field(ge=1, le=64)] = 8  # iterations k = 0 … max_steps per layer
    d: Annotated[int, Field(ge=1, le=64)] = 4  # constructions only
    n: Annotated[int, Field(ge=1, le=1000)] = 20  # constructions only
    tolerances: Tolerances = Tolerances()

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str] | None) -> list[str] | None:
        from icgd.analysis.identify import CANDIDATE_FAMILIES

        known = {n for registry, _ in CANDIDATE_FAMILIES.values() for n in registry} | {"newton"}
        unknown = [a for a in value or () if a not in known]
        if unknown or value == []:
            choices = ", ".join(sorted(known))
            raise ValueError(f"unknown {unknown or 'empty list'}; choose from {choices}")
        return value

    @field_validator("source")
    @classmethod
    def _known_construction(cls, value: str) -> str:
        if value.startswith("construction:") and value.split(":", 1)[1] not in CONSTRUCTIONS:
            raise ValueError(f"unknown construction; one of {', '.join(CONSTRUCTIONS)}")
        if not value:
            raise ValueError("give a run folder or construction:NAME")
        if not value.startswith("construction:") and not (Path(value) / "result.json").is_file():
            raise ValueError(f"{value} is not a run folder (no result.json)")
        return value
