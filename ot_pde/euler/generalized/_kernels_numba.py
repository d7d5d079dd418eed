"""numba kernel of the log-domain kernel product (imported only when numba is installed).

Serial on purpose: the products are small (n x n per row of a few hundred rows) and the
threads' start-up cost outweighed the gain on loaded 2-core machines. No ``fastmath``: results
must agree with the NumPy reference (:mod:`._logsum`) to round-off; the one difference is that
terms more than :data:`._logsum.CUTOFF` below the maximum are skipped (relative effect
< 1e-18).
"""
from __future__ import annotations

import numba
import numpy as np

from ._logsum import CUTOFF


@numba.njit(cache=True)
def _apply_rows(F, G, out):
    # F, out: (rows, n) contiguous; G symmetric (n, n): out[r, q] = lse_j F[r, j] + G[q, j]
    rows, n = F.shape
    for r in range(rows):
        f = F[r]
        for q in range(n):
            g = G[q]
            m = -np.inf
            for j in range(n):
                v = f[j] + g[j]
                if v > m:
                    m = v
            if m == -np.inf:
                out[r, q] = m
                continue
            low = m - CUTOFF
            s = 0.0
            for j in range(n):
                v = f[j] + g[j]
                if v > low:
                    s += np.exp(v - m)
            out[r, q] = m + np.log(s)


@numba.njit(cache=True)
def _apply_middle(F, G, out, peak, total):
    # F, out: (before, n, after); the product runs along the middle axis; after > 1.
    before, n, after = F.shape
    for b in range(before):
        for q in range(n):
            g = G[q]
            for a in range(after):
                peak[a] = -np.inf
            for j in range(n):
                gj = g[j]
                for a in range(after):
                    v = F[b, j, a] + gj
                    if v > peak[a]:
                        peak[a] = v
            for a in range(after):
                total[a] = 0.0
            for j in range(n):
                gj = g[j]
                for a in range(after):
                    v = F[b, j, a] + gj - peak[a]
                    if v > -CUTOFF:
                        total[a] += np.exp(v)
            for a in range(after):
                if peak[a] == -np.inf:
                    out[b, q, a] = -np.inf
                else:
                    out[b, q, a] = peak[a] + np.log(total[a])


def log_apply_numba(F: np.ndarray, G: np.ndarray, axis: int) -> np.ndarray:
    """Same contract as :func:`._logsum.log_apply_numpy`."""
    F = np.ascontiguousarray(F, dtype=np.float64)
    G = np.ascontiguousarray(G, dtype=np.float64)
    shape = F.shape
    before = int(np.prod(shape[:axis]))
    after = int(np.prod(shape[axis + 1:]))
    n = shape[axis]
    out = np.empty_like(F)
    if after == 1:
        _apply_rows(F.reshape(before, n), G, out.reshape(before, n))
    else:
        _apply_middle(F.reshape(before, n, after), G, out.reshape(before, n, after),
                      np.empty(after), np.empty(after))
    return out
