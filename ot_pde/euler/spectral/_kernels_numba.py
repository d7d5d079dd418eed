"""numba kernels of the spectral Euler solver (imported only when numba is installed).

Twins of ``derivatives_xp``, ``advection_xp`` and ``marker_sums_xp`` in :mod:`.solver`: the
spectral multipliers fused in one pass, the advection product fused with the CFL maximum,
and the marker Fourier sums summed per marker (parallel over markers), without the
``(3M, K+1)`` temporaries of the matrix-product form. No ``fastmath``: results agree with the
numpy reference to round-off (the marker sums add in another order).
"""
from __future__ import annotations

import math
import types

import numba
import numpy as np

TWO_PI = 2.0 * math.pi
#: grid points, and marker x mode evaluations, from which the parallel twin of a kernel runs.
#: Below, waking numba's thread pool costs more than the loop: measured on 2 shared cores under
#: load, the advection product at 256^2 took 0.10 ms serial and 17 ms parallel, the marker sums
#: (256 markers, 256^2 grid: 3.8e6 evaluations) 12 ms serial and 20 ms parallel. The twins give
#: bit-identical results.
PARALLEL_MIN_POINTS = 1 << 19
PARALLEL_MIN_MARKER_WORK = 1 << 23


def _twins(py_func):
    """Serial and parallel compilations of one kernel (``prange`` is ``range`` when serial)."""
    # a renamed copy for the parallel build, so the two never share a numba cache entry
    twin = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_par")
    twin.__qualname__ = py_func.__qualname__ + "_par"
    return (numba.njit(cache=True)(py_func), numba.njit(cache=True, parallel=True)(twin))


def _derivatives_py(omega_hat, ikx, iky, inv_k2, out):
    nx, ny = omega_hat.shape
    for i in numba.prange(nx):
        for j in range(ny):
            w = omega_hat[i, j]
            psi = w * inv_k2[i, j]
            out[0, i, j] = iky[i, j] * psi
            out[1, i, j] = -(ikx[i, j] * psi)
            out[2, i, j] = ikx[i, j] * w
            out[3, i, j] = iky[i, j] * w


def derivatives(omega_hat, ikx, iky, inv_k2, out):
    _derivatives[omega_hat.size >= PARALLEL_MIN_POINTS](omega_hat, ikx, iky, inv_k2, out)
    return out


_derivatives = _twins(_derivatives_py)


def _advection_py(grid4, ux, uy, out, row_max):
    nx, ny = out.shape
    for i in numba.prange(nx):
        m = 0.0
        for j in range(ny):
            u = grid4[0, i, j] + ux
            v = grid4[1, i, j] + uy
            out[i, j] = u * grid4[2, i, j] + v * grid4[3, i, j]
            s = abs(u) + abs(v)
            if s > m or s != s:  # keep a NaN
                m = s
        row_max[i] = m


_advection = _twins(_advection_py)


def advection(grid4, ux, uy, inv_dx):
    out = np.empty(grid4.shape[1:])
    row_max = np.empty(grid4.shape[1])
    _advection[out.size >= PARALLEL_MIN_POINTS](grid4, ux, uy, out, row_max)
    return out, float(row_max.max()) * inv_dx


def _marker_sums_py(block, kxs, kys, weights, positions, ux, uy, vel, grad):
    m_count = positions.shape[0]
    nkx = kxs.shape[0]
    nky = kys.shape[0]
    for m in numba.prange(m_count):
        x = positions[m, 0] % TWO_PI
        y = positions[m, 1] % TWO_PI
        ey = np.empty(nky, dtype=np.complex128)
        for q in range(nky):
            ey[q] = complex(math.cos(y * kys[q]), math.sin(y * kys[q])) * weights[q]
        psi_x = 0.0
        psi_y = 0.0
        psi_xx = 0.0
        psi_xy = 0.0
        psi_yy = 0.0
        for p in range(nkx):
            kx = kxs[p]
            ex = complex(math.cos(x * kx), math.sin(x * kx))
            s0 = 0j
            s1r = 0.0
            s1i = 0.0
            s2r = 0.0
            s2i = 0.0
            for q in range(nky):
                t = block[p, q] * ey[q]
                s0 += t
                k = kys[q]
                s1r -= k * t.imag  # t * (i k)
                s1i += k * t.real
                s2r -= k * k * t.real  # t * (-k^2)
                s2i -= k * k * t.imag
            s1 = complex(s1r, s1i)
            s2 = complex(s2r, s2i)
            psi_x += (ex * (1j * kx) * s0).real
            psi_y += (ex * s1).real
            psi_xx += (ex * (-(kx * kx)) * s0).real
            psi_xy += (ex * (1j * kx) * s1).real
            psi_yy += (ex * s2).real
        vel[m, 0] = psi_y + ux
        vel[m, 1] = -psi_x + uy
        grad[m, 0, 0] = psi_xy
        grad[m, 0, 1] = psi_yy
        grad[m, 1, 0] = -psi_xx
        grad[m, 1, 1] = -psi_xy


_marker_sums = _twins(_marker_sums_py)


def marker_sums(block, kxs, kys, weights, positions, mean_velocity):
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    vel = np.empty_like(positions)
    grad = np.empty((positions.shape[0], 2, 2))
    _marker_sums[positions.shape[0] * block.size >= PARALLEL_MIN_MARKER_WORK](
        np.ascontiguousarray(block), kxs, kys, weights, positions, float(mean_velocity[0]),
        float(mean_velocity[1]), vel, grad)
    return vel, grad
