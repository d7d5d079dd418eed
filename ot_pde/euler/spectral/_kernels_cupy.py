"""CUDA kernels of the spectral Euler solver (imported only when CuPy is usable).

The advection product and the CFL rate in one pass over the grid (the numpy version makes
four temporaries); FFTs are cupy.fft, the marker sums the matrix-product form of
``marker_sums_xp`` (cuBLAS).
"""
from __future__ import annotations

import cupy

_product = cupy.ElementwiseKernel(
    "float64 psi_y, float64 m_psi_x, float64 w_x, float64 w_y, float64 ux, float64 uy",
    "float64 out, float64 speed",
    """
    double u = psi_y + ux;
    double v = m_psi_x + uy;
    out = u * w_x + v * w_y;
    speed = fabs(u) + fabs(v);
    """,
    "ot_pde_euler_advection",
)


def advection(grid4, ux, uy, inv_dx):
    out, speed = _product(grid4[0], grid4[1], grid4[2], grid4[3], ux, uy)
    return out, float(speed.max()) * inv_dx
