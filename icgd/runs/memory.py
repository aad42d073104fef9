"""Memory is checked before it is spent: an experiment's estimate against what the device has.

Each experiment's `memory(config)` estimates the peak bytes of its configured sizes
(`icgd.experiments.api.MemoryEstimate`). `check_memory` compares the total with the memory the
run's device can still give — on CPU the system's available memory (`psutil`), on CUDA the free
device memory (`torch.cuda.mem_get_info`) — and refuses a run that would not fit with one line
naming the estimate, its largest part and the fields to shrink. The check runs before the run
folder is created, so nothing is written for a run that is refused.
"""

from __future__ import annotations

from icgd.core.errors import InputError
from icgd.experiments.api import Experiment, ExperimentConfig

__all__ = ["available_bytes", "check_memory", "human_bytes"]


def human_bytes(n: float) -> str:
    """`3.3e12` → "3.3 TB" (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def available_bytes(device: str) -> int:
    """Memory the device can still give: free CUDA memory, or the system's available memory."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(
    experiment: Experiment, config: ExperimentConfig, available: int | None = None
) -> int | None:
    """Raise `InputError` (exit 2) when `experiment.memory(config)` exceeds the memory available;
    returns the estimate in bytes (None when the experiment gives none).

    A seed ensemble keeps every seed's tensors at once, so its estimate is K times a seed's.
    `available` overrides the measurement (tests).
    """
    estimate = experiment.memory(config)
    if estimate is None:
        return None
    copies = len(config.seeds) if config.seeds else 1
    total = estimate.total * copies
    limit = available_bytes(config.device) if available is None else available
    if total > limit:
        label, part = max(estimate.parts.items(), key=lambda item: item[1])
        seeds = f" for {copies} seeds" if copies > 1 else ""
        raise InputError(
            "memory",
            f"{experiment.name} needs about {human_bytes(total)}{seeds} "
            f"(largest: {label}, {human_bytes(part * copies)}) but {config.device} has "
            f"{human_bytes(limit)} available; shrink {', '.join(estimate.fields)}",
        )
    return total
