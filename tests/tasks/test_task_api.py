"""`icgd.tasks.api`: the `Task` protocol and how a batch's tensors are named (`batch_tensors`);
the contract suite (`tests/test_contracts_components.py`) runs them over every registered task."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from icgd.tasks import (
    LinearRegression,
    PointClouds,
    Task,
    batch_tensors,
    markov_reward,
    trajectories,
)


@dataclass(frozen=True)
class _Batch:
    X: torch.Tensor
    params: dict
    gamma: float
    extra: torch.Tensor | None = None


def test_batch_tensors_names_fields_entries_and_dict_keys():
    X, w = torch.zeros(2, 3), torch.ones(2)
    batch = _Batch(X=X, params={"w": w, "depth": 4}, gamma=0.9)
    assert batch_tensors(batch, []) == {"X": X, "params.w": w}  # numbers and None left out
    assert batch_tensors((X, w), ["X", "Y"]) == {"X": X, "Y": w}
    assert batch_tensors(X, ["seqs"]) == {"seqs": X}
    with pytest.raises(ValueError, match="holds 2 tensors"):
        batch_tensors((X, w), ["X"])


def test_protocol_is_checked_member_by_member():
    class SampleOnly:
        config = None

        def sample(self, batch_size, generator):
            return torch.zeros(batch_size)

    assert not isinstance(SampleOnly(), Task)  # no layout, shapes, example
    assert isinstance(LinearRegression.example(), Task)
    assert LinearRegression.layout == "regression" and PointClouds.layout == "point-cloud-pair"


def test_sample_with_other_arguments_keeps_the_default_numbers():
    # The protocol's `sample(B, g)` is the task's own sampler with its defaults, unchanged.
    task = LinearRegression.example()
    a = task.sample(4, torch.Generator().manual_seed(5))
    b = task.sample(4, torch.Generator().manual_seed(5), n=task.n)
    assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("X", "y", "x_q", "y_q"))


def test_trajectory_helpers_are_re_exported_by_markov_reward():
    for name in ("MarkovRewardBatch", "SlidingPrompts", "sample_trajectory", "sliding_prompts"):
        assert getattr(markov_reward, name) is getattr(trajectories, name)
    assert "value_prompts" in markov_reward.__all__
