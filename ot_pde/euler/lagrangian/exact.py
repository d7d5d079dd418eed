r"""The stationary rotation of the square: velocity, stream function, exact flow map.

On :math:`\Omega = [0, 1]^2` the field

.. math:: u(x, y) = (\sin\pi x \cos\pi y,\; -\cos\pi x \sin\pi y)
          = (\partial_y\psi, -\partial_x\psi), \qquad \psi = \sin\pi x \sin\pi y / \pi,

is divergence free, tangent to the boundary, and a stationary solution of the incompressible
Euler equations (its vorticity :math:`2\pi^2\psi` is a function of :math:`\psi`). Particles
turn along the level sets of :math:`\psi`. Their exact positions at the requested times are
integrated with DOP853 at ``rtol = 1e-12``; :math:`\psi` is conserved along the computed
trajectories to about 1e-12, far below any discretization error of the particle scheme.
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp


def velocity(x: np.ndarray) -> np.ndarray:
    """``u(x)`` for points ``x`` of shape ``(..., 2)``."""
    px, py = np.pi * x[..., 0], np.pi * x[..., 1]
    return np.stack([np.sin(px) * np.cos(py), -np.cos(px) * np.sin(py)], axis=-1)


def stream_function(x: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * x[..., 0]) * np.sin(np.pi * x[..., 1]) / np.pi


def exact_positions(x0: np.ndarray, times: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Positions ``(len(times), N, 2)`` of the particles starting at ``x0`` (N, 2) at ``times``."""
    n = x0.shape[0]

    def rhs(_t, y):
        return velocity(y.reshape(n, 2)).ravel()

    times = np.asarray(times, dtype=np.float64)
    sol = solve_ivp(rhs, (0.0, float(times[-1])), x0.ravel(), method="DOP853", t_eval=times,
                    rtol=rtol, atol=1e-14)
    if not sol.success:  # pragma: no cover - a smooth bounded field
        raise RuntimeError(f"exact flow integration failed: {sol.message}")
    return np.ascontiguousarray(sol.y.T.reshape(len(times), n, 2))


def pressure(x: np.ndarray) -> np.ndarray:
    r""":math:`p = (\cos 2\pi x + \cos 2\pi y)/4`, so that :math:`(u\cdot\nabla)u = -\nabla p`."""
    return 0.25 * (np.cos(2 * np.pi * x[..., 0]) + np.cos(2 * np.pi * x[..., 1]))


def pressure_gradient(x: np.ndarray) -> np.ndarray:
    return -0.5 * np.pi * np.sin(2 * np.pi * x)
