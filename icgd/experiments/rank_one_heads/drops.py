"""Find the drops of a loss curve that has plateaus: where −d log L / d log t peaks.

Saddle-to-saddle training leaves a loss curve of plateaus separated by short drops, and the
plateaus last geometrically longer one after another (each escape is slower than the last), so the
curve is read against log-time: with `x = log t` and `ℓ = log L`, the rate

    r(t) = −dℓ/dx = −d log L / d log t

is near 0 on a plateau and peaks in a drop. `detect_drops`:

1. smooths ℓ with a Gaussian kernel of width `smoothing` in x (SGD noise on a plateau would
   otherwise give large derivatives where the evaluations are dense, i.e. late);
2. takes r by finite differences on the (uneven) x grid;
3. calls each maximal run of points with `r > rate_threshold` a candidate drop, extended by one
   point on each side (the last point before, the first after), and keeps it when the smoothed
   log-loss falls by at least `min_drop` across it.

Consecutive drops are separated by at least one point with `r ≤ rate_threshold`: a plateau. Points
with `t ≤ 0` (the initial evaluation) have no log-time; they belong to the first plateau and get no
rate. Everything is plain numpy on the (T,) curve of T evaluations; the kernel is cut at 4 widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Drop:
    """One drop: indices into the curve (`start` the last point before it, `peak` the steepest
    point, `end` the first point after it) and `size`, the fall of the smoothed log-loss from
    `start` to `end`."""

    start: int
    peak: int
    end: int
    size: float


@dataclass(frozen=True)
class Drops:
    """What `detect_drops` found.

    `drops`: in time order. `rate`: the smoothed `−d log L / d log t` at every point, (T,), NaN
    where t ≤ 0. `plateaus`: `(first, last)` index windows of the `len(drops) + 1` plateaus:
    before the first drop, between consecutive drops, after the last one.
    """

    drops: tuple[Drop, ...]
    rate: np.ndarray
    plateaus: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.drops)


def detect_drops(
    steps,
    losses,
    *,
    smoothing: float = 0.05,
    rate_threshold: float = 0.3,
    min_drop: float = 0.05,
) -> Drops:
    """The drops of the curve `losses` (T,) at increasing `steps` (T,) (module docstring).

    smoothing: the kernel's standard deviation in log-time (0: none). rate_threshold: a point is
    in a drop when `−d log L / d log t` exceeds it. min_drop: the least fall of log L that counts
    as a drop (0.05: the loss falls by ≈ 5%).
    """
    t = np.asarray(steps, dtype=np.float64).ravel()
    loss = np.asarray(losses, dtype=np.float64).ravel()
    if t.shape != loss.shape:
        raise ValueError(f"steps and losses differ in shape: {t.shape} vs {loss.shape}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("steps must increase strictly")
    if np.any(~np.isfinite(loss)) or np.any(loss <= 0):
        raise ValueError("losses must be finite and positive (the curve is read in log scale)")
    T = t.size
    rate = np.full(T, np.nan)
    valid = np.flatnonzero(t > 0)  # indices with a log-time
    if valid.size < 3:
        return Drops((), rate, ((0, max(T - 1, 0)),))
    x, ell = np.log(t[valid]), np.log(loss[valid])  # (V,) each
    if smoothing > 0:
        ell = _smooth(x, ell, smoothing)
    r = -np.gradient(ell, x)  # (V,)
    rate[valid] = r

    drops: list[Drop] = []
    above = r > rate_threshold
    i = 0
    while i < valid.size:
        if not above[i]:
            i += 1
            continue
        j = i
        while j + 1 < valid.size and above[j + 1]:
            j += 1
        a, b = max(i - 1, 0), min(j + 1, valid.size - 1)  # one point outside on each side
        size = float(ell[a] - ell[b])
        if size >= min_drop:
            peak = i + int(np.argmax(r[i : j + 1]))
            drops.append(Drop(int(valid[a]), int(valid[peak]), int(valid[b]), size))
        i = j + 1

    edges = [0] + [e for d in drops for e in (d.start, d.end)] + [T - 1]
    plateaus = tuple((edges[2 * k], edges[2 * k + 1]) for k in range(len(drops) + 1))
    return Drops(tuple(drops), rate, plateaus)


def _smooth(x: np.ndarray, y: np.ndarray, width: float) -> np.ndarray:
    """Gaussian-kernel average of y (V,) over the points x (V,) within 4 widths of each point;
    O(V) memory (a band, not the V×V kernel)."""
    lo = np.searchsorted(x, x - 4 * width, side="left")
    hi = np.searchsorted(x, x + 4 * width, side="right")
    out = np.empty_like(y)
    for i in range(x.size):
        w = np.exp(-0.5 * ((x[lo[i] : hi[i]] - x[i]) / width) ** 2)
        out[i] = w @ y[lo[i] : hi[i]] / w.sum()
    return out


def plateau_indices(steps, window: tuple[int, int]) -> np.ndarray:
    """The points that stand for a plateau's level: those of `window` = (first, last) whose
    log-time lies in the middle third of the window's log-time span (away from the drops at its
    ends), or its last point when none does. Points with t ≤ 0 count as the first positive one."""
    t = np.asarray(steps, dtype=np.float64).ravel()
    first, last = window
    idx = np.arange(first, last + 1)
    positive = t[t > 0]
    if positive.size == 0:
        return idx
    x = np.log(np.maximum(t[idx], positive[0]))
    lo, hi = x[0] + (x[-1] - x[0]) / 3, x[0] + 2 * (x[-1] - x[0]) / 3
    middle = idx[(x >= lo) & (x <= hi)]
    return middle if middle.size else idx[-1:]
