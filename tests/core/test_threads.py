"""`icgd.core.threads`: the thread count is set inside and restored after, even on an error."""

from __future__ import annotations

import pytest
import torch

from icgd.core.threads import single_threaded, torch_threads


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before

    @single_threaded
    def boom():
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        boom()
    assert torch.get_num_threads() == before
