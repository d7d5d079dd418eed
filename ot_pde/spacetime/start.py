r"""A warm start for the Douglas-Rachford splitting: the affine transport of matched moments.

The plain start (the linear interpolation of the densities in time, zero momentum, zero
multipliers) is far from the fixed point in *both* halves of the splitting state
:math:`z = (z_U, z_V)`: the primal iterate has to learn where the mass goes and the scaled
multipliers have to be built up from zero. Measured on the sharp Gaussian of ``make demo``,
starting from the exact geodesic with zero multipliers still costs hundreds of iterations
(the first iterations throw the primal away); starting from the geodesic *and* its
multipliers does not.

This module builds such a start for any pair of densities, from the one transport known in
closed form: the affine (Brenier) map between the Gaussians with the same means and
covariances as :math:`\rho_0, \rho_1`,

.. math::

    T(x) = \mu_1 + A (x - \mu_0), \qquad
    A = \Sigma_0^{-1/2} (\Sigma_0^{1/2} \Sigma_1 \Sigma_0^{1/2})^{1/2} \Sigma_0^{-1/2},

whose interpolation :math:`X_t = \mu_t + A_t (x - \mu_0)`, :math:`A_t = (1-t)\mathrm{Id} + tA`,
has the velocity :math:`v(t, y) = \mu_1 - \mu_0 + (A - \mathrm{Id}) A_t^{-1} (y - \mu_t)`, the
gradient of a solution :math:`\varphi` of :math:`\partial_t \varphi + |\nabla\varphi|^2/2 = 0`.

* primal: :math:`f(t) = (1-t)\,(X_t)_\#\rho_0 + t\,(X_t \circ T^{-1})_\#\rho_1` (the two
  densities pushed along the affine geodesic by linear interpolation of their grid values,
  blended so that both time boundaries hold exactly), :math:`m = f v` on the faces;
* multipliers: at a fixed point of the splitting (see :mod:`ot_pde.spacetime.solver`),
  :math:`x_V - z_V = \gamma \nabla J(x_V) = \gamma(-|v|^2/2, v)` and
  :math:`z_U - x_U = -I^*(z_V - x_V)`; the start uses these with the affine :math:`v`.

For two Gaussians this is the solution of the continuous problem; for any other pair it is
an approximation whose only role is to start closer. The fixed point, hence the
discretization, the constraints and the result, are those of the plain method.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from .solver import SpaceTimeGrid, _average, _average_adjoint


def _sym_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def moments(rho: np.ndarray, grid: SpaceTimeGrid) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a grid density; each cell counts as a uniform box, so the
    covariance has at least :math:`h_k^2/12` on the diagonal (never singular)."""
    pts = np.stack(grid.mesh(), axis=-1).reshape(-1, grid.ndim)
    w = rho.reshape(-1) / rho.sum()
    mean = w @ pts
    diff = pts - mean
    cov = (diff * w[:, None]).T @ diff + np.diag(np.asarray(grid.spacing) ** 2 / 12.0)
    return mean, cov


def affine_map(mean0, cov0, mean1, cov1) -> np.ndarray:
    """The symmetric positive matrix ``A`` of the Brenier map between two Gaussians."""
    r0 = _sym_sqrt(cov0)
    r0_inv = np.linalg.inv(r0)
    a = r0_inv @ _sym_sqrt(r0 @ cov1 @ r0) @ r0_inv
    return 0.5 * (a + a.T)


class AffineGeodesic:
    """The affine interpolation between the moment-matched Gaussians of two grid densities."""

    def __init__(self, rho0, rho1, grid: SpaceTimeGrid):
        self.grid = grid
        self.rho0, self.rho1 = rho0, rho1
        self.m0, c0 = moments(rho0, grid)
        self.m1, c1 = moments(rho1, grid)
        self.a = affine_map(self.m0, c0, self.m1, c1)
        self.eye = np.eye(grid.ndim)

    def _frame(self, t: float):
        at = (1 - t) * self.eye + t * self.a
        return (1 - t) * self.m0 + t * self.m1, at, np.linalg.inv(at)

    def _sample(self, rho, x):
        """Linear interpolation of the cell values of ``rho`` at points ``x`` (..., d);
        zero outside the box."""
        g = self.grid
        idx = [(x[..., k] - g.lower[k]) / g.spacing[k] - 0.5 for k in range(g.ndim)]
        vals = map_coordinates(rho, idx, order=1, mode="nearest")
        inside = np.all([(x[..., k] >= g.lower[k]) & (x[..., k] <= g.upper[k])
                         for k in range(g.ndim)], axis=0)
        return np.where(inside, vals, 0.0)

    def density(self, t: float, y: np.ndarray) -> np.ndarray:
        mt, at, at_inv = self._frame(t)
        rel = (y - mt) @ at_inv.T
        from0 = self._sample(self.rho0, self.m0 + rel) / np.linalg.det(at)
        from1 = self._sample(self.rho1, self.m1 + rel @ self.a.T) * (
            np.linalg.det(self.a) / np.linalg.det(at))
        return (1 - t) * from0 + t * from1

    def velocity(self, t: float, y: np.ndarray) -> np.ndarray:
        mt, _, at_inv = self._frame(t)
        return (self.m1 - self.m0) + (y - mt) @ ((self.a - self.eye) @ at_inv).T


def _points(grid: SpaceTimeGrid, face_axis: int | None) -> np.ndarray:
    """Spatial points (shape + (d,)) of cell centres, or of the faces along ``face_axis``."""
    axes = []
    for k in range(grid.ndim):
        if k == face_axis:
            axes.append(grid.lower[k] + grid.spacing[k] * np.arange(grid.shape[k] + 1))
        else:
            axes.append(grid.centers(k))
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def affine_start(rho0, rho1, grid: SpaceTimeGrid, gamma: float):
    """``(z_u, z_v)`` host arrays: the splitting state of the affine geodesic and its
    multipliers for the absolute proximal step ``gamma`` (see the module docstring)."""
    geo = AffineGeodesic(rho0, rho1, grid)
    centres = _points(grid, None)
    f = np.stack([geo.density(t, centres) for t in grid.time_faces()])
    f[0], f[-1] = rho0, rho1
    zu = [f]
    for k in range(grid.ndim):
        faces = _points(grid, k)
        zu.append(np.stack([geo.density(t, faces) * geo.velocity(t, faces)[..., k]
                            for t in grid.time_centers()]))
        # no flux through the walls
        zu[-1][(slice(None),) * (k + 1) + (0,)] = 0.0
        zu[-1][(slice(None),) * (k + 1) + (-1,)] = 0.0
    v = np.stack([geo.velocity(t, centres) for t in grid.time_centers()])  # (nt, *shape, d)
    # (z_V - x_V) / gamma = -grad J = (|v|^2/2, -v), and z_U - x_U = -I^*(z_V - x_V)
    dual = [0.5 * np.sum(v * v, axis=-1)] + [-v[..., k] for k in range(grid.ndim)]
    xv = [_average(u, axis) for axis, u in enumerate(zu)]
    zv = [x + gamma * w for x, w in zip(xv, dual)]
    zu = [u - gamma * _average_adjoint(w, axis, np) for axis, (u, w) in enumerate(zip(zu, dual))]
    return zu, zv
