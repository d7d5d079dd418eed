"""numba kernel of the entropic solver: the log-sum-exp Gaussian convolution along one axis.

Imported only when numba is installed. No ``fastmath``: the results must agree with the numpy
reference (:func:`.solver.lse_rows_numpy`) to round-off.
"""
from __future__ import annotations

import math

import numba
import numpy as np

#: terms below exp(CUTOFF) times the largest one are skipped (they change the sum by less
#: than n * 1e-26 relative, far below the double-precision unit round-off)
CUTOFF = -60.0


@numba.njit(cache=True, parallel=True)
def _lse_rows(u, cost, out):
    m, n = u.shape
    n_out = cost.shape[0]
    for a in numba.prange(m):
        for i in range(n_out):
            top = -np.inf
            for j in range(n):
                v = u[a, j] - cost[i, j]
                if v > top:
                    top = v
            if top == -np.inf:
                out[a, i] = -np.inf
                continue
            s = 0.0
            for j in range(n):
                v = u[a, j] - cost[i, j] - top
                if v > CUTOFF:
                    s += math.exp(v)
            out[a, i] = top + math.log(s)


def lse_rows_numba(u, cost):
    """``out[a, i] = log sum_j exp(u[a, j] - cost[i, j])``, stable (two passes per row)."""
    u = np.ascontiguousarray(u, dtype=np.float64)
    out = np.empty((u.shape[0], cost.shape[0]))
    _lse_rows(u, np.ascontiguousarray(cost, dtype=np.float64), out)
    return out
