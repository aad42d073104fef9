"""Checkpoint files: round trip, metadata, and a one-line InputError for every kind of damage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from icgd.core.config import Config
from icgd.core.errors import InputError
from icgd.training import (
    CHECKPOINT_FILE,
    STATE_FILE,
    load_checkpoint,
    load_training_state,
    read_checkpoint_metadata,
    save_checkpoint,
)


class TinyConfig(Config):
    d: int = 3
    hidden: int = 4


class Tiny(nn.Module):
    """Two weight matrices and a buffer, with a pydantic config like the package's models."""

    def __init__(self, config: TinyConfig = TinyConfig(), seed: int = 0) -> None:
        super().__init__()
        self.config = config
        g = torch.Generator().manual_seed(seed)
        self.W1 = nn.Parameter(torch.randn(config.d, config.hidden, generator=g))
        self.W2 = nn.Parameter(torch.randn(config.hidden, 1, generator=g))
        self.register_buffer("scale", torch.tensor(2.0))


def assert_one_line_error(info: pytest.ExceptionInfo, path: Path) -> None:
    assert info.value.field == str(path)
    assert "\n" not in str(info.value)


def test_round_trip_with_metadata(tmp_path: Path) -> None:
    src, dst = Tiny(seed=1), Tiny(seed=2)
    save_checkpoint(tmp_path, src, step=17, training_state={"x": torch.arange(3)})
    assert load_checkpoint(tmp_path, dst) == 17
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value)
    meta = read_checkpoint_metadata(tmp_path)
    assert meta["step"] == "17"
    assert TinyConfig.model_validate_json(meta["model_config"]) == src.config
    state = load_training_state(tmp_path, expected_step=17)
    assert state["step"] == 17 and torch.equal(state["x"], torch.arange(3))
    # A file path works as well as the run folder.
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE, Tiny(seed=3)) == 17


def test_model_without_config_and_tied_weights(tmp_path: Path) -> None:
    lin = nn.Linear(3, 3)
    model = nn.ModuleDict({"a": lin, "b": lin})  # the same tensors under two names
    save_checkpoint(tmp_path, model, step=0)
    assert "model_config" not in read_checkpoint_metadata(tmp_path)
    fresh = nn.Linear(3, 3)
    other = nn.ModuleDict({"a": fresh, "b": fresh})
    load_checkpoint(tmp_path, other)
    assert torch.equal(fresh.weight, lin.weight)
    assert not (tmp_path / STATE_FILE).exists()


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as info:
        load_checkpoint(tmp_path, Tiny())
    assert_one_line_error(info, tmp_path / CHECKPOINT_FILE)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint(tmp_path: Path, damage: str) -> None:
    save_checkpoint(tmp_path, Tiny(), step=3)
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    bad = {"truncate": data[: len(data) - 20], "garbage": b"\x07garbage" * 50, "empty": b""}
    path.write_bytes(bad[damage])
    with pytest.raises(InputError) as info:
        load_checkpoint(tmp_path, Tiny())
    assert_one_line_error(info, path)


def test_wrong_shapes(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, Tiny(TinyConfig(hidden=5)), step=3)
    with pytest.raises(InputError, match="W1 has shape") as info:
        load_checkpoint(tmp_path, Tiny())
    assert_one_line_error(info, tmp_path / CHECKPOINT_FILE)


def test_wrong_keys(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, nn.Linear(3, 4), step=3)
    with pytest.raises(InputError, match="missing keys W1, W2, scale; unexpected keys") as info:
        load_checkpoint(tmp_path, Tiny())
    assert_one_line_error(info, tmp_path / CHECKPOINT_FILE)


def test_training_state_damage(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    with pytest.raises(InputError, match="not found") as info:
        load_training_state(tmp_path)
    assert_one_line_error(info, path)
    save_checkpoint(tmp_path, Tiny(), step=5, training_state={"records": []})
    with pytest.raises(InputError, match="killed between") as info:
        load_training_state(tmp_path, expected_step=6)
    assert_one_line_error(info, path)
    data = path.read_bytes()
    for bad in (data[: len(data) // 2], b"not a zip file at all"):
        path.write_bytes(bad)
        with pytest.raises(InputError, match="not a readable training state") as info:
            load_training_state(tmp_path)
        assert_one_line_error(info, path)


def test_training_state_refuses_pickled_code(tmp_path: Path) -> None:
    """weights_only=True: an arbitrary object in the file is refused, not executed."""
    torch.save({"step": 1, "obj": TinyConfig()}, tmp_path / STATE_FILE)
    with pytest.raises(InputError, match="not a readable training state"):
        load_training_state(tmp_path)
