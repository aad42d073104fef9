"""`icgd.algorithms.plugins`: the `Algorithm` protocol (a batched function carrying an `example`),
`AlgorithmExample` and `output_tensors`; the contract suite (`tests/test_contracts_components.py`)
runs every registered algorithm's example."""

from __future__ import annotations

import torch

from icgd.algorithms import GDResult, gradient_descent, ridge
from icgd.algorithms.plugins import (
    ALGORITHMS,
    Algorithm,
    AlgorithmExample,
    output_tensors,
    with_example,
)


def test_every_built_in_carries_an_example():
    assert all(isinstance(fn, Algorithm) for _, fn in ALGORITHMS.items())
    assert isinstance(ridge, Algorithm)


def test_a_function_without_example_is_not_an_algorithm():
    def mean(x):
        return x.mean(-1)

    assert not isinstance(mean, Algorithm)
    example = AlgorithmExample({"x": torch.arange(6.0).reshape(2, 3)})
    assert with_example(mean, lambda B, g: example) is mean and isinstance(mean, Algorithm)
    assert torch.equal(mean.example(2, None).run(mean), torch.tensor([1.0, 4.0]))


def test_prompt_slices_the_inputs_and_keeps_the_options():
    inputs = {"X": torch.arange(12.0).reshape(3, 4), "init": {"w": torch.arange(3.0)}}
    example = AlgorithmExample(inputs, {"lam": 0.5}, out_axis=1, out_axes={"iterates": 0})
    one = example.prompt(2)
    assert torch.equal(one.inputs["X"], inputs["X"][2:3])
    assert torch.equal(one.inputs["init"]["w"], torch.tensor([2.0]))
    assert one.options == {"lam": 0.5} and one.axis("weights") == 1 and one.axis("iterates") == 0


def test_output_tensors_reads_tensors_results_dicts_and_tuples():
    w = torch.zeros(4, 2, 3)
    assert output_tensors(w) == {"": w}
    assert output_tensors(GDResult(weights=w)) == {"weights": w}
    assert output_tensors({"a": w, "n": 3}) == {"a": w}
    assert output_tensors((w, 1.0)) == {"0": w}
    X, y = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    full = output_tensors(gradient_descent(X, y, 0.1, n_steps=2))["weights"]  # (L+1, B, d)
    assert full.shape == (3, 2, 3)
