"""The result schema: claim rules, `result.json` round trip, bad files, and atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from icgd.core import io
from icgd.core.errors import InputError
from icgd.core.io import (
    atomic_save_safetensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from icgd.core.results import Provenance, Result, make_claim, read_result, write_result


def provenance(**kw) -> Provenance:
    base = dict(icgd="0.1.0", torch="2.x", device="cpu", dtype="float32", seed=3, wall_seconds=1.5)
    return Provenance(**{**base, **kw})


def result(**kw) -> Result:
    base = dict(
        experiment="looped-gd",
        status="failed",
        config={"d": 5, "train": {"steps": 10}, "eigenvalues": [1.0, 0.5]},
        metrics={"loss": 0.25, "steps": 10, "curve": [1.0, 0.5, 0.25], "missing": None},
        claims=[
            make_claim("a", "loss small", 0.25, 0.0, 0.3, "at_most"),
            make_claim("b", "alpha", float("nan"), 1.0, 0.1, "rel"),
        ],
        provenance=provenance(),
        message="tiny",
    )
    return Result(**{**base, **kw})


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- claims ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measured", "expected", "tol", "comparison", "passed"),
    [
        (1.05, 1.0, 0.1, "abs", True),
        (1.2, 1.0, 0.1, "abs", False),
        (0.8, 1.0, 0.1, "abs", False),  # two-sided
        (1.0, 1.0, 0.0, "abs", True),  # boundary is inclusive
        (105.0, 100.0, 0.05, "rel", True),
        (106.0, 100.0, 0.05, "rel", False),
        (-104.0, -100.0, 0.05, "rel", True),  # relative to |expected|
        (0.0, 0.0, 0.0, "rel", True),
        (1e-9, 0.0, 10.0, "rel", False),  # rel against 0 only passes exactly
        (1.09, 1.0, 0.1, "at_most", True),
        (1.11, 1.0, 0.1, "at_most", False),
        (-5.0, 1.0, 0.0, "at_most", True),  # one-sided
        (0.91, 1.0, 0.1, "at_least", True),
        (0.89, 1.0, 0.1, "at_least", False),
        (50.0, 1.0, 0.0, "at_least", True),
    ],
)
def test_claim_rules(measured, expected, tol, comparison, passed):
    claim = make_claim("c", "s", measured, expected, tol, comparison)
    assert claim.passed is passed
    assert claim.measured == measured and claim.expected == expected and claim.tolerance == tol
    assert claim.comparison == comparison and claim.rule


@pytest.mark.parametrize("comparison", ["abs", "rel", "at_most", "at_least"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_measurement_never_passes(comparison, bad):
    claim = make_claim("c", "s", bad, 0.0, math.inf, comparison)
    assert claim.passed is False
    assert claim.measured is None


def test_claim_accepts_tensor_and_numpy_scalars():
    import numpy as np

    claim = make_claim("c", "s", torch.tensor(0.5), np.float64(0.5), np.float32(0.0), "abs")
    assert claim.passed and isinstance(claim.measured, float)


# --- result.json round trip and bad files ------------------------------------------------------


def test_result_round_trip(tmp_path: Path):
    original = result()
    path = write_result(tmp_path / "run" / "result.json", original)
    assert path == tmp_path / "run" / "result.json"
    back = read_result(path)
    assert back == original
    assert back.claims[1].measured is None and back.claims[1].passed is False
    assert back.metrics["curve"] == [1.0, 0.5, 0.25] and back.metrics["missing"] is None
    data = json.loads(path.read_text())
    assert set(data) == {
        "experiment",
        "status",
        "config",
        "metrics",
        "claims",
        "provenance",
        "message",
    }
    assert set(data["claims"][0]) == {
        "name",
        "statement",
        "measured",
        "expected",
        "tolerance",
        "comparison",
        "passed",
    }
    assert leftovers(path.parent) == []


def test_non_finite_metrics_are_written_as_null(tmp_path: Path):
    path = write_result(tmp_path / "result.json", result(metrics={"a": math.nan, "b": math.inf}))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert read_result(path).metrics == {"a": None, "b": None}


def test_provenance_keeps_extra_fields(tmp_path: Path):
    path = write_result(tmp_path / "result.json", result(provenance=provenance(host="node1")))
    assert read_result(path).provenance.model_extra == {"host": "node1"}


def test_read_missing_file_names_path(tmp_path: Path):
    path = tmp_path / "result.json"
    with pytest.raises(InputError) as info:
        read_result(path)
    assert info.value.field == str(path) and "run folder" in info.value.message


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff\xfe garbage \x80", b'{"experiment": "looped-gd", ', b"", b"not json at all"],
)
def test_read_garbage_names_path(tmp_path: Path, content: bytes):
    path = tmp_path / "result.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_result(path)
    assert info.value.field == str(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("metrics"), "metrics"),
        (lambda d: d.update(status="exploded"), "status"),
        (lambda d: d.update(unexpected=1), "unexpected"),
        (lambda d: d["claims"][0].update(comparison="roughly"), "claims"),
        (lambda d: d["provenance"].pop("seed"), "provenance"),
    ],
)
def test_read_wrong_schema_names_path_and_field(tmp_path: Path, mutate, field: str):
    data = result().model_dump(mode="json")
    mutate(data)
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as info:
        read_result(path)
    assert info.value.field == str(path)
    assert field in info.value.message


@pytest.mark.parametrize("content", ["[1, 2, 3]", "42", "null"])
def test_read_json_that_is_not_an_object(tmp_path: Path, content: str):
    path = tmp_path / "result.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read_result(path)
    assert info.value.field == str(path)


def test_read_a_folder_is_input_error(tmp_path: Path):
    (tmp_path / "result.json").mkdir()
    with pytest.raises(InputError):
        read_result(tmp_path / "result.json")


# --- atomic writes -----------------------------------------------------------------------------


def test_failed_rename_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch):
    path = write_result(tmp_path / "result.json", result())
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_result(path, result(status="passed"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_unserialisable_object_keeps_old_file(tmp_path: Path):
    path = tmp_path / "data.json"
    atomic_write_json(path, {"a": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_failure_inside_writer_keeps_old_file(tmp_path: Path, monkeypatch):
    path = atomic_write_text(tmp_path / "t.txt", "old")

    def half_write(self, data):
        with open(self, "wb") as handle:
            handle.write(data[:2])
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(Path, "write_bytes", half_write)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new content")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_failed_safetensors_write_keeps_old_file(tmp_path: Path):
    path = atomic_save_safetensors(tmp_path / "a.safetensors", {"x": torch.ones(3)})
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error type for a bad value
        atomic_save_safetensors(path, {"x": "not a tensor"})  # type: ignore[dict-item]
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_atomic_writes_create_parents_and_overwrite(tmp_path: Path):
    path = tmp_path / "a" / "b" / "c.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert leftovers(path.parent) == []


def test_atomic_write_json_nulls_non_finite(tmp_path: Path):
    obj = {
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "nested": [1.0, math.nan, {"x": math.inf}],
        "tuple": (math.nan, 2),
        "ok": 0.5,
        "int": 3,
        "s": "NaN",
    }
    path = atomic_write_json(tmp_path / "x.json", obj)
    assert json.loads(path.read_text()) == {
        "nan": None,
        "inf": None,
        "ninf": None,
        "nested": [1.0, None, {"x": None}],
        "tuple": [None, 2],
        "ok": 0.5,
        "int": 3,
        "s": "NaN",
    }
    # strict JSON: a reader with parse_constant that rejects NaN/Infinity accepts it
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
