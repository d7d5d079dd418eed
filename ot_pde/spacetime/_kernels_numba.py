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


def _threaded_and_serial(make):
    """``(threaded, serial)`` compilations of ``make(loop)``, a kernel whose outer loop is
    ``loop`` (``numba.prange`` or ``range``).

    Small grids run the serial one: there, waking the threads costs more than the loop (and
    far more on a loaded machine: 30-55 ms instead of 3 ms per iteration measured on a
    32-cell 1D grid with two threads at load average ~10). ``loop`` is a closure cell on
    purpose: numba's on-disk cache keys a kernel by its bytecode and closure values, not by
    its compile flags, so the two variants get distinct cache entries.
    """
    return (numba.njit(cache=True, parallel=True)(make(numba.prange)),
            numba.njit(cache=True)(make(range)))


def _make_prox_cells(loop):
    def kernel(ft, mt, gamma, f_out, m_out):
        n = ft.shape[0]
        d = mt.shape[0]
        for i in loop(n):
            msq = 0.0
            for k in range(d):
                msq += mt[k, i] * mt[k, i]
            f = _cubic_root(ft[i], msq, gamma)
            f_out[i] = f
            scale = f / (f + gamma)
            for k in range(d):
                m_out[k, i] = scale * mt[k, i]
    return kernel


_prox_cells = _threaded_and_serial(_make_prox_cells)


def kinetic_prox_numba(ft, mt, gamma, parallel: bool = True):
    """Same contract as :func:`._prox.kinetic_prox_numpy`; ``parallel``: threaded kernel."""
    shape = ft.shape
    m_stack = np.stack([m.reshape(-1) for m in mt])
    f_out = np.empty(ft.size)
    m_out = np.empty_like(m_stack)
    _prox_cells[0 if parallel else 1](np.ascontiguousarray(ft).reshape(-1), m_stack,
                                      float(gamma), f_out, m_out)
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


def thomas_factors(n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward-sweep factors of the Thomas algorithm for ``Id + A^T A`` (``n_faces`` unknowns).

    The matrix is tridiagonal with 1/4 off the diagonal and diagonal 5/4, 3/2, ..., 3/2, 5/4
    (``A`` averages neighbouring faces); it is diagonally dominant, so no pivoting is needed.
    """
    diag = np.full(n_faces, 1.5)
    diag[0] = diag[-1] = 1.25
    c_prime = np.empty(n_faces)
    inv = np.empty(n_faces)
    inv[0] = 1.0 / diag[0]
    c_prime[0] = 0.25 * inv[0]
    for i in range(1, n_faces):
        inv[i] = 1.0 / (diag[i] - 0.25 * c_prime[i - 1])
        c_prime[i] = 0.25 * inv[i]
    return c_prime, inv


def _make_interp_project_lines(loop):
    def kernel(zu, zv, c_prime, inv, u, v):
        # Arrays viewed as (before, axis, after): zu, u have n + 1 faces on the middle axis, zv, v
        # n centres. Solves (Id + A^T A) u = zu + A^T zv along the middle axis, then v = A u. The
        # innermost loop runs over the contiguous `after` index, so no transposition is needed.
        before, nf, after = zu.shape
        for b in loop(before):
            for i in range(nf):
                for a in range(after):
                    rhs = zu[b, i, a]
                    if i > 0:
                        rhs += 0.5 * zv[b, i - 1, a]
                    if i < nf - 1:
                        rhs += 0.5 * zv[b, i, a]
                    if i > 0:
                        rhs -= 0.25 * u[b, i - 1, a]
                    u[b, i, a] = rhs * inv[i]
            for i in range(nf - 2, -1, -1):
                for a in range(after):
                    u[b, i, a] -= c_prime[i] * u[b, i + 1, a]
            for i in range(nf - 1):
                for a in range(after):
                    v[b, i, a] = 0.5 * (u[b, i, a] + u[b, i + 1, a])
    return kernel


_interp_project_lines = _threaded_and_serial(_make_interp_project_lines)


def _three_axes(shape, axis):
    return (int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:])))


def interpolation_projection_numba(zu, zv, axis, factors, parallel: bool = True):
    """Same result as the sign-flipped DCT solve of the solver, along ``axis``, in O(n);
    ``parallel``: threaded kernel."""
    zu = np.ascontiguousarray(zu)
    zv = np.ascontiguousarray(zv)
    u = np.empty_like(zu)
    v = np.empty_like(zv)
    _interp_project_lines[0 if parallel else 1](
        zu.reshape(_three_axes(zu.shape, axis)), zv.reshape(_three_axes(zv.shape, axis)),
        factors[0], factors[1], u.reshape(_three_axes(u.shape, axis)),
        v.reshape(_three_axes(v.shape, axis)))
    return u, v
