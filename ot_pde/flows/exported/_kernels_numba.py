"""numba kernels of the exported-flow models: one dense layer with its activation, by rows.

Imported only when numba is installed (see :mod:`ot_pde.backends`). The result equals
``act(x @ W.T + b)`` of numpy up to the order of the sums (round-off).
"""
from __future__ import annotations

import math

import numba
import numpy as np

#: activation name -> kernel code
CODES = {"identity": 0, "tanh": 1, "relu": 2, "leaky_relu": 3, "elu": 4, "softplus": 5}


@numba.njit(parallel=True, cache=True, fastmath=False)
def dense(x, W, b, code, slope):
    """``act(x @ W.T + b)`` for ``x (B, n)``, ``W (m, n)``, ``b (m,)``."""
    B, n = x.shape
    m = W.shape[0]
    out = np.empty((B, m))
    for i in numba.prange(B):
        for j in range(m):
            acc = b[j]
            for k in range(n):
                acc += W[j, k] * x[i, k]
            if code == 1:
                acc = math.tanh(acc)
            elif code == 2:
                acc = acc if acc > 0.0 else 0.0
            elif code == 3:
                acc = acc if acc > 0.0 else slope * acc
            elif code == 4:
                acc = acc if acc > 0.0 else math.expm1(acc)
            elif code == 5:
                acc = max(acc, 0.0) + math.log1p(math.exp(-abs(acc)))
            out[i, j] = acc
    return out
