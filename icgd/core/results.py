"""The one result schema (`result.json`) shared by every experiment, and its atomic IO.

    {experiment, status, config, metrics, claims: [{name, statement, measured, expected,
     tolerance, comparison, passed}], provenance: {icgd, git_commit, torch, device, dtype, seed,
     wall_seconds}}

A claim states how `measured` is compared with `expected` (`comparison`) and with which
`tolerance`, so a reader can recompute `passed` from the file alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from icgd.core.errors import InputError
from icgd.core.io import atomic_write_json

# A run folder's life: "running" from its start; then "passed"/"failed" (claims checked),
# "diverged" (NaN/inf in training), "interrupted" (a signal; resumable) or "error" (a crash).
Status = Literal["running", "passed", "failed", "diverged", "interrupted", "error"]
Comparison = Literal["abs", "rel", "at_most", "at_least"]

_RULES = {
    "abs": "|measured − expected| ≤ tolerance",
    "rel": "|measured − expected| ≤ tolerance·|expected|",
    "at_most": "measured ≤ expected + tolerance",
    "at_least": "measured ≥ expected − tolerance",
}


class Claim(BaseModel):
    """One checked statement of a paper: the measured value against the expected one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    statement: str
    measured: float | None
    expected: float
    tolerance: float
    comparison: Comparison
    passed: bool

    @property
    def rule(self) -> str:
        return _RULES[self.comparison]


def make_claim(
    name: str,
    statement: str,
    measured: float,
    expected: float,
    tolerance: float,
    comparison: Comparison,
) -> Claim:
    """Build a claim and decide `passed` by its comparison rule (NaN never passes)."""
    m, e, t = float(measured), float(expected), float(tolerance)
    if not math.isfinite(m):
        passed = False
    elif comparison == "abs":
        passed = abs(m - e) <= t
    elif comparison == "rel":
        passed = abs(m - e) <= t * abs(e)
    elif comparison == "at_most":
        passed = m <= e + t
    else:
        passed = m >= e - t
    return Claim(
        name=name,
        statement=statement,
        measured=m if math.isfinite(m) else None,
        expected=e,
        tolerance=t,
        comparison=comparison,
        passed=passed,
    )


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    icgd: str
    git_commit: str | None = None
    torch: str
    device: str
    dtype: str
    seed: int
    wall_seconds: float


# NaN/inf are written as null (JSON has no NaN), inside lists too, so a list may hold None.
Metric = float | int | list[float | None] | None


class SeedsSummary(BaseModel):
    """The per-seed block of a seed ensemble's `result.json` (`icgd run NAME --seeds …`).

    `seeds` in order; `status` of each seed; `metrics`: each metric's per-seed values (None where
    a seed has no finite value); `claims`: each claim's per-seed `passed`; `claim_pass_rate`: the
    fraction of seeds that passed it; `batched`: whether every train call ran stacked.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: list[int]
    status: list[Status]
    metrics: dict[str, list[Metric]]
    claims: dict[str, list[bool | None]]
    claim_pass_rate: dict[str, float]
    batched: bool


class ErrorInfo(BaseModel):
    """What crashed a run (`status: error`): the exception's type and message; the traceback is
    in the run folder's `error.log`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    message: str


class Result(BaseModel):
    """The content of a run folder's `result.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str
    status: Status
    config: dict[str, Any]
    metrics: dict[str, Metric]
    claims: list[Claim]
    provenance: Provenance
    message: str = ""
    seeds: SeedsSummary | None = None  # only in the folder of a seed ensemble
    error: ErrorInfo | None = None  # only with status "error"


def write_result(path: str | Path, result: Result) -> Path:
    """Write `result.json` atomically."""
    data = result.model_dump(mode="json")
    for optional in ("seeds", "error"):
        if data.get(optional) is None:
            data.pop(optional, None)  # absent unless used: older readers see the same file
    return atomic_write_json(path, data)


def read_result(path: str | Path) -> Result:
    """Read and validate a `result.json`; a missing or corrupted file is an `InputError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(str(path), "no result.json here (is this a run folder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"cannot read result.json ({exc.__class__.__name__})") from None
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise InputError(str(path), f"not a valid result.json (field {loc or '?'})") from None
