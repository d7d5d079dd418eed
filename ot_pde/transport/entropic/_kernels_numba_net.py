"""numba kernel of the learned potentials' network
(:meth:`.neural.QuadraticNetwork.net_value_grad_trace`): value, gradient and weighted Hessian
trace of a one-hidden-layer network in one pass over the hidden units, without the
``(rows, width)`` temporaries of the numpy reference.

Imported only when numba is installed. No ``fastmath``: the results agree with the numpy
reference to round-off (``tests/test_entropic_samples.py``). Activation codes are those of
:data:`ot_pde.flows.potentials.base.ACTIVATIONS` (0 logcosh, 1 softplus, 2 tanh).
"""
from __future__ import annotations

import math

import numba
import numpy as np

_LOG2 = math.log(2.0)


@numba.njit(cache=True, inline="always")
def _act(z, code):
    """(sigma, sigma', sigma'') with the formulas of the numpy reference."""
    az = abs(z)
    if code == 0:  # logcosh
        e = math.exp(-2.0 * az)
        return az + math.log1p(e) - _LOG2, math.tanh(z), 4.0 * e / ((1.0 + e) * (1.0 + e))
    if code == 1:  # softplus
        e = math.exp(-az)
        inv = 1.0 / (1.0 + e)
        s1 = inv if z >= 0.0 else e * inv
        return max(z, 0.0) + math.log1p(e), s1, e * inv * inv
    t = math.tanh(z)  # tanh
    e = math.exp(-2.0 * az)
    sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e))
    return t, sech2, -2.0 * t * sech2


@numba.njit(cache=True, parallel=True)
def net_value_grad_trace(x, w1, b, w2, aw2, code):
    n, d = x.shape
    m = w1.shape[0]
    val = np.zeros(n)
    grad = np.zeros((n, d))
    tr = np.zeros(n)
    for i in numba.prange(n):
        v = 0.0
        t = 0.0
        for j in range(m):
            z = b[j]
            for k in range(d):
                z += w1[j, k] * x[i, k]
            s, s1, s2 = _act(z, code)
            v += w2[j] * s
            g = w2[j] * s1
            for k in range(d):
                grad[i, k] += g * w1[j, k]
            t += w2[j] * s2 * aw2[j]
        val[i] = v
        tr[i] = t
    return val, grad, tr
