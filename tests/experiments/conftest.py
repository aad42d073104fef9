"""Shared checks of the experiment tests."""

from __future__ import annotations

import pytest

from icgd.cli import main


@pytest.fixture
def assert_bad_config(tmp_path, capsys):
    """`check(experiment, override, field)`: `icgd run experiment --set override` exits 2 with one
    line `error: …` naming `field`, no traceback, and writes no run folder."""

    def check(experiment: str, override: str, field: str) -> None:
        out = tmp_path / "x"
        code = main(["run", experiment, "--set", override, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert field in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:")
        assert not out.exists()

    return check
