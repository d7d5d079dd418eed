"""CUDA kernels of the Benamou-Brenier solver (imported only when CuPy is usable)."""
from __future__ import annotations

import cupy

from ._prox import MAX_NEWTON

# Same bracket and Newton iteration as _prox.cubic_root_numpy (see its docstring).
_cubic_prox = cupy.ElementwiseKernel(
    "float64 ft, float64 msq, float64 gamma",
    "float64 f, float64 scale",
    f"""
    double c = 0.5 * gamma * msq;
    double f0 = ft > 0.0 ? ft : 0.0;
    double x;
    if (ft < 0.0 && -ft * gamma * gamma - c >= 0.0) {{
        x = 0.0;
    }} else if (c <= 0.0) {{
        x = f0;
    }} else {{
        x = f0 + fmin(c / ((f0 + gamma) * (f0 + gamma)), cbrt(c));
        for (int it = 0; it < {MAX_NEWTON}; ++it) {{
            double xg = x + gamma;
            double p = (x - ft) * xg * xg - c;
            double dp = xg * (3.0 * x + gamma - 2.0 * ft);
            double xn = x - p / dp;
            if (!(xn < x)) break;
            x = xn;
        }}
    }}
    f = x;
    scale = x / (x + gamma);
    """,
    "ot_pde_bb_cubic_prox",
)


def kinetic_prox_cupy(ft, mt, gamma):
    """Same contract as :func:`._prox.kinetic_prox_numpy`."""
    msq = sum(m * m for m in mt)
    f, scale = _cubic_prox(ft, msq, float(gamma))
    return f, [scale * m for m in mt]
