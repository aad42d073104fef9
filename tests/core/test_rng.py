"""Seeded randomness: generators reproduce, derived seeds are stable and distinct per stream."""

from __future__ import annotations

import itertools

import torch

from icgd.core.rng import derive_seed, make_generator


def test_make_generator_reproducible():
    a = torch.randn(100, generator=make_generator(7))
    b = torch.randn(100, generator=make_generator(7))
    c = torch.randn(100, generator=make_generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_make_generator_leaves_global_state_alone():
    torch.manual_seed(123)
    expected = torch.randn(5)
    torch.manual_seed(123)
    torch.randn(50, generator=make_generator(0))
    assert torch.equal(torch.randn(5), expected)


def test_derive_seed_is_stable():
    # pinned values: a change here changes every run's numbers, so it must be deliberate
    assert derive_seed(0, "rotation") == derive_seed(0, "rotation")
    assert derive_seed(0, "train", "looped") == derive_seed(0, "train", "looped")
    assert derive_seed(3, "eval") == 64807417308422640
    assert isinstance(derive_seed(3, "eval"), int)


def test_derive_seed_distinct_per_stream_and_seed():
    streams = [
        ("rotation",),
        ("eval",),
        ("test",),
        ("train", "looped"),
        ("train", "stacked"),
        ("init", "looped"),
        ("init", "stacked"),
        ("line-search",),
    ]
    seeds = {derive_seed(s, *stream) for s, stream in itertools.product(range(20), streams)}
    assert len(seeds) == 20 * len(streams)


def test_derive_seed_fits_torch_generator():
    for seed in (0, 1, 2**31, 10**12):
        child = derive_seed(seed, "x")
        assert 0 <= child < 2**56
        make_generator(child)  # accepted by torch.manual_seed
