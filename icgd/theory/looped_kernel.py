"""Compiled value and gradient of ``f(Γ) = E_S̃ ‖(I − ΓS̃)^L‖_F²`` over fixed draws (numba).

The mathematics is in `icgd.theory.landscape`: with ``M = I − ΓS̃`` and ``E = M^L``,

    ∇f = −2 E[H S̃],   H = T_{L−1},   T_0 = E,   T_j = Mᵀ T_{j−1} + E (M^j)ᵀ.

Why compiled: each draw is a handful of d × d products (for L = 3, d = 5 about 10³ multiply-adds),
and 10⁶ draws must take under a second. Stacked matmul in numpy or torch spends most of that
time on per-matrix dispatch and on temporaries of shape (S, d, d); one loop per draw that keeps
M, its powers and T in a few small buffers does only the arithmetic.

Parallelism is left to the caller (`icgd.theory.landscape.whitened_gradient`): the kernel
releases the GIL, so fixed chunks of draws run on Python threads and are summed in chunk order.
That keeps numba's own threading layers (not all of them fork- or thread-safe) out of it, and the
result independent of the thread count.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` for d × d matrices, with no temporaries."""
    d = a.shape[0]
    for i in range(d):
        for j in range(d):
            acc = 0.0
            for k in range(d):
                acc += a[i, k] * b[k, j]
            out[i, j] = acc


@numba.njit(nogil=True, cache=True)
def _draw(g, s, L, powers, T, U, V, grad):
    """Add draw s's ``−2 H S̃`` to grad and return ``‖E‖_F²``; buffers are (L+1, d, d) and (d, d).

    powers[k] = M^k (powers[0] = I), T the adjoint recursion, U and V scratch products.
    """
    d = g.shape[0]
    _matmul(g, s, V)
    for i in range(d):  # M = I − Γ S̃
        for j in range(d):
            powers[1, i, j] = (1.0 if i == j else 0.0) - V[i, j]
    for p in range(2, L + 1):
        _matmul(powers[p - 1], powers[1], powers[p])
    E = powers[L]
    T[:, :] = E
    for j in range(1, L):  # T ← Mᵀ T + E (M^j)ᵀ
        for a in range(d):
            for b in range(d):
                acc = 0.0
                for k in range(d):
                    acc += powers[1, k, a] * T[k, b] + E[a, k] * powers[j, b, k]
                U[a, b] = acc
        T[:, :] = U
    _matmul(T, s, V)
    norm = 0.0
    for a in range(d):
        for b in range(d):
            grad[a, b] -= 2.0 * V[a, b]
            norm += E[a, b] * E[a, b]
    return norm


@numba.njit(nogil=True, cache=True)
def chunk_sums(g: np.ndarray, draws: np.ndarray, L: int) -> tuple[float, np.ndarray]:
    """Over draws (S, d, d) in order: the sum of ``‖E‖_F²`` and the (d, d) sum of ``−2 H S̃``.

    Releases the GIL, so chunks run in parallel on Python threads.
    """
    d = g.shape[0]
    powers = np.zeros((L + 1, d, d))
    for i in range(d):
        powers[0, i, i] = 1.0
    T, U, V = np.empty((d, d)), np.empty((d, d)), np.empty((d, d))
    grad = np.zeros((d, d))
    total = 0.0
    for t in range(draws.shape[0]):
        total += _draw(g, draws[t], L, powers, T, U, V, grad)
    return total, grad
