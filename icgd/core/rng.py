"""Randomness is an argument: helpers that build seeded generators, never touching global state."""

from __future__ import annotations

import torch


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A `torch.Generator` on `device` seeded with `seed` (same seed, device → same stream)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def derive_seed(seed: int, *stream: str | int) -> int:
    """A child seed for a named sub-stream, stable across runs and Python versions.

    Used so that e.g. the covariance rotation, the training stream and the held-out batch of one
    run are independent streams that all follow from the single run seed.
    """
    import hashlib

    text = ":".join([str(int(seed)), *map(str, stream)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")
