"""numba kernels of the Benamou-Brenier solver (imported only when numba is installed).

No ``fastmath``: these kernels are checked by the convergence tests and must agree with the
numpy reference to round-off.
"""
from __future__ import annotations

import numba
import numpy as np

from ._prox import MAX_NEWTON


@numba.njit(cache=True, inline="always")
def _cubic_root(ft, msq, gamma):
    # Scalar twin of _prox.cubic_root_numpy; see the docstring there for the bracket.
    c = 0.5 * gamma * msq
    f0 = ft if ft > 0.0 else 0.0
    if ft < 0.0 and -ft * gamma * gamma - c >= 0.0:
        return 0.0
    if c <= 0.0:
        return f0
    x = f0 + min(c / ((f0 + gamma) * (f0 + gamma)), np.cbrt(c))
    for _ in range(MAX_NEWTON):
        xg = x + gamma
        p = (x - ft) * xg * xg - c
        dp = xg * (3.0 * x + gamma - 2.0 * ft)
        xn = x - p / dp
        if not xn < x:
            break
        x = xn
    return x


@numba.njit(cache=True)
def _prox_cells(ft, mt, gamma, f_out, m_out):
    n = ft.shape[0]
    d = mt.shape[0]
    for i in range(n):
        msq = 0.0
        for k in range(d):
            msq += mt[k, i] * mt[k, i]
        f = _cubic_root(ft[i], msq, gamma)
        f_out[i] = f
        scale = f / (f + gamma)
        for k in range(d):
            m_out[k, i] = scale * mt[k, i]


def kinetic_prox_numba(ft, mt, gamma):
    """Same contract as :func:`._prox.kinetic_prox_numpy`."""
    shape = ft.shape
    m_stack = np.stack([m.reshape(-1) for m in mt])
    f_out = np.empty(ft.size)
    m_out = np.empty_like(m_stack)
    _prox_cells(np.ascontiguousarray(ft).reshape(-1), m_stack, float(gamma), f_out, m_out)
    return f_out.reshape(shape), [m_out[k].reshape(shape) for k in range(len(mt))]


@numba.njit(cache=True)
def _sq_norms(x, y, x_prev):
    sx = 0.0
    sg = 0.0
    sc = 0.0
    for i in range(x.size):
        xi = x[i]
        sx += xi * xi
        g = y[i] - xi
        sg += g * g
        c = xi - x_prev[i]
        sc += c * c
    return sx, sg, sc


def residual_sq_norms_numba(xs, ys, x_prevs):
    """(|x|^2, |y - x|^2, |x - x_prev|^2) summed over lists of arrays, in one pass each.

    Fuses the ~30 array operations of the numpy version; the sums are accumulated in a
    different order, so results agree with numpy to round-off (they only feed the residuals).
    """
    total = np.zeros(3)
    for x, y, xp in zip(xs, ys, x_prevs):
        total += _sq_norms(np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(y).reshape(-1),
                           np.ascontiguousarray(xp).reshape(-1))
    return total
