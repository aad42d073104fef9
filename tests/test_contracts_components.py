"""The contract every registered task, model and algorithm keeps, plugins included (DESIGN.md:
one contract suite parametrised over everything registered). Each is built through its protocol's
own tiny example, so a newly registered one is covered without editing this file:

- a task (`icgd.tasks.api.Task`): `sample` gives the shapes `shapes` documents; the same generator
  seed gives the same batch, another seed another batch, and the global RNG is never touched;
- a model (`icgd.models.api.Model`): runs in float64; `run_with_cache` caches every hook name of
  `hook_names()` (and only those a filter lets through) and returns the plain forward's output;
  `hooks` sees every name in firing order, and a hook replacing the last activation changes the
  output;
- an algorithm (`icgd.algorithms.plugins.Algorithm`): its example's B prompts at once give, prompt
  by prompt, what each prompt alone gives (float64, 1e-10).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

from icgd.algorithms.plugins import ALGORITHMS, Algorithm, output_tensors
from icgd.core.config import Config
from icgd.models.api import Model
from icgd.models.plugins import MODELS
from icgd.tasks.api import Task, batch_tensors
from icgd.tasks.plugins import TASKS

B = 3  # prompts of every example batch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def missing(obj: object, protocol: type) -> list[str]:
    """The members of `protocol` that `obj` lacks."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n in vars(protocol) if not n.startswith("_")}
    return sorted(n for n in names if not hasattr(obj, n))


def tensors(output: object) -> list[Tensor]:
    """Every tensor of a model's output (a tensor, or a tuple / dataclass of them)."""
    if isinstance(output, Tensor):
        return [output]
    if dataclasses.is_dataclass(output):
        output = [getattr(output, f.name) for f in dataclasses.fields(output)]
    return [t for t in output if isinstance(t, Tensor)]


# --- tasks --------------------------------------------------------------------------------------


def example_task(name: str) -> Task:
    cls = TASKS.get(name)
    where = f"task {name!r} ({TASKS.origin(name)})"
    assert hasattr(cls, "example"), f"{where} has no example() (icgd.tasks.api.Task)"
    task = cls.example()
    assert isinstance(task, Task), f"{where}: example() lacks {missing(task, Task)}"
    return task


@pytest.mark.parametrize("name", TASKS.names())
def test_task_keeps_the_protocol(name):
    task = example_task(name)
    assert isinstance(task.config, Config), "a task's config is a typed, closed icgd Config"
    assert isinstance(task.layout, str) and task.layout, "the layout has a name"


@pytest.mark.parametrize("name", TASKS.names())
def test_task_samples_the_documented_shapes(name):
    task = example_task(name)
    shapes = task.shapes(B)
    got = batch_tensors(task.sample(B, gen(0)), list(shapes))
    assert {k: tuple(v.shape) for k, v in got.items()} == shapes


@pytest.mark.parametrize("name", TASKS.names())
def test_task_draws_its_randomness_from_the_generator_only(name):
    task = example_task(name)
    shapes = list(task.shapes(B))
    state = torch.get_rng_state()
    first = batch_tensors(task.sample(B, gen(0)), shapes)
    again = batch_tensors(task.sample(B, gen(0)), shapes)
    other = batch_tensors(task.sample(B, gen(1)), shapes)
    assert torch.equal(torch.get_rng_state(), state), "sample touched the global RNG"
    assert all(torch.equal(first[k], again[k]) for k in first), "same seed, another batch"
    assert any(not torch.equal(first[k], other[k]) for k in first), "another seed, same batch"


# --- models -------------------------------------------------------------------------------------


def example_model(name: str, dtype: torch.dtype = torch.float64) -> nn.Module:
    cls = MODELS.get(name)
    where = f"model {name!r} ({MODELS.origin(name)})"
    assert hasattr(cls, "example"), f"{where} has no example() (icgd.models.api.Model)"
    model = cls.example(dtype=dtype)
    assert isinstance(model, Model), f"{where}: example() lacks {missing(model, Model)}"
    return model


@pytest.mark.parametrize("name", MODELS.names())
def test_model_keeps_the_protocol(name):
    model = example_model(name, torch.float32)
    assert isinstance(model, nn.Module) and isinstance(model.config, Config)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", MODELS.names())
def test_model_runs_in_float64(name):
    model = example_model(name)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    with torch.no_grad():
        out = tensors(model(*model.example_inputs(B, gen(0))))
    assert out and all(t.dtype == torch.float64 for t in out if t.is_floating_point())
    assert all(torch.isfinite(t).all() for t in out if t.is_floating_point())


@pytest.mark.parametrize("name", MODELS.names())
def test_run_with_cache_caches_every_hook_point(name):
    model = example_model(name)
    inputs, names = model.example_inputs(B, gen(0)), model.hook_names()
    with torch.no_grad():
        plain = tensors(model(*inputs))
        out, cache = model.run_with_cache(*inputs)
        _, first_only = model.run_with_cache(*inputs, names_filter=names[0])
    assert names and set(cache) == set(names), "the cache holds every hook name, and only those"
    assert list(first_only) == [names[0]]
    for a, b in zip(tensors(out), plain, strict=True):
        # equal up to rounding: watching may switch a model to its explicit path (scores, ...)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", MODELS.names())
def test_hooks_see_every_name_and_can_patch(name):
    model = example_model(name)
    inputs, names = model.example_inputs(B, gen(0)), model.hook_names()
    seen: list[str] = []
    with torch.no_grad():
        plain = tensors(model(*inputs))
        with model.hooks([(lambda n: True, lambda t, n: seen.append(n))]):
            model(*inputs)
        with model.hooks([(names[-1], lambda t, n: torch.zeros_like(t))]):
            patched = tensors(model(*inputs))
        after = tensors(model(*inputs))
    assert seen == names, "hooks fire every hook name, in the order of hook_names()"
    assert any(not torch.equal(a, b) for a, b in zip(patched, plain, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(after, plain, strict=True)), "hooks removed"


# --- algorithms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_algorithm_is_batched_over_prompts(name):
    fn = ALGORITHMS.get(name)
    assert isinstance(fn, Algorithm), (
        f"algorithm {name!r} ({ALGORITHMS.origin(name)}) has no `example`: attach one with "
        "icgd.algorithms.plugins.with_example (see that module)"
    )
    example = fn.example(B, gen(0))
    for key, value in example.inputs.items():
        for t in value.values() if isinstance(value, dict) else [value]:
            assert t.shape[0] == B, f"input {key} holds {t.shape[0]} prompts, not {B}"
            assert not t.is_floating_point() or t.dtype == torch.float64, f"{key}: not float64"
    full = output_tensors(example.run(fn))
    assert full, "the output holds at least one tensor"
    for b in range(B):
        alone = output_tensors(example.prompt(b).run(fn))
        assert alone.keys() == full.keys()
        for key, value in full.items():
            axis = example.axis(key)
            assert value.shape[axis] == B, f"output {key!r}: no prompt axis {axis}"
            mine = value.narrow(axis, b, 1)
            if mine.is_floating_point():
                torch.testing.assert_close(alone[key], mine, atol=1e-10, rtol=0, msg=key)
            else:
                assert torch.equal(alone[key], mine), f"output {key!r}, prompt {b}"
