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

from .solver import SpaceTimeGrid, _average, _average_adjoint


def _linear_at(values: np.ndarray, idx: list) -> np.ndarray:
    """Multilinear interpolation of ``values`` at the fractional indices ``idx`` (one array
    per axis, all of one shape), the end values beyond the first and last entries: what
    ``scipy.ndimage.map_coordinates(values, idx, order=1, mode="nearest")`` gives, written
    here because importing scipy.ndimage costs ~0.2 s, a tenth of a small run."""
    base, frac = [], []
    for k, c in enumerate(idx):
        n = values.shape[k]
        c = np.clip(c, 0.0, n - 1)
        i = np.minimum(np.floor(c).astype(np.int64), max(n - 2, 0))
        base.append(i)
        frac.append(c - i)
    out = np.zeros(np.shape(idx[0]))
    for corner in np.ndindex(*(2,) * values.ndim):
        weight = 1.0
        for f, bit in zip(frac, corner):
            weight = weight * (f if bit else 1.0 - f)
        at = tuple(np.minimum(i + bit, n - 1)
                   for i, bit, n in zip(base, corner, values.shape))
        out += weight * values[at]
    return out


def sym_sqrt(c: np.ndarray) -> np.ndarray:
    """The symmetric positive square root of a symmetric positive semi-definite matrix."""
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
    r0 = sym_sqrt(cov0)
    r0_inv = np.linalg.inv(r0)
    a = r0_inv @ sym_sqrt(r0 @ cov1 @ r0) @ r0_inv
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
        vals = _linear_at(rho, idx)
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
    return _with_multipliers(zu, v, gamma)


def _with_multipliers(zu: list, v: np.ndarray, gamma: float):
    """The splitting state ``(z_u, z_v)`` of the primal ``zu`` (f on the time faces, momenta on
    the space faces) with the multipliers of the velocity ``v`` (nt, *shape, d) at the cell
    centres, for the absolute proximal step ``gamma``."""
    # (z_V - x_V) / gamma = -grad J = (|v|^2/2, -v), and z_U - x_U = -I^*(z_V - x_V)
    dual = [0.5 * np.sum(v * v, axis=-1)] + [-v[..., k] for k in range(v.shape[-1])]
    xv = [_average(u, axis) for axis, u in enumerate(zu)]
    zv = [x + gamma * w for x, w in zip(xv, dual)]
    zu = [u - gamma * _average_adjoint(w, axis, np) for axis, (u, w) in enumerate(zip(zu, dual))]
    return zu, zv


# -- the displacement interpolation of the grid Monge-Ampere map ------------------------------

#: density floor of the Monge-Ampere solve, relative to the larger peak density: the log form
#: needs positive densities. The floor moves mass into the tails and biases the map (on the
#: product case at 64^2 the start's W2^2 is 13 % low with 1e-2, 0.4 % high with 1e-4)
MA_FLOOR = 1e-4
#: the floors Newton passes through on the coarsest grid, each from the previous solution:
#: from 1e-4 at once it stalls on Gaussian tails (measured on the product case)
MA_FLOOR_LADDER = (1e-1, 1e-2, 1e-3)


def _deposit(points: np.ndarray, weights: np.ndarray, grid: SpaceTimeGrid,
             face_axis: int | None) -> np.ndarray:
    """Cloud-in-cell deposit of ``weights`` (per cell volume) at ``points`` (N, d) onto the
    cell centres, or onto the faces along ``face_axis``; the centres' weights are reflected at
    the walls (no mass leaves the box), the faces' clamped."""
    d = grid.ndim
    shape = list(grid.shape)
    s = (points - np.asarray(grid.lower)) / np.asarray(grid.spacing) - 0.5
    if face_axis is not None:
        s[:, face_axis] += 0.5
        shape[face_axis] += 1
    base = np.floor(s).astype(np.int64)
    frac = s - base
    out = np.zeros(int(np.prod(shape)))
    for corner in np.ndindex(*(2,) * d):
        flat, w = 0, weights
        for k in range(d):
            i = base[:, k] + corner[k]
            w = w * (frac[:, k] if corner[k] else 1.0 - frac[:, k])
            n = shape[k]
            if k == face_axis:
                i = np.clip(i, 0, n - 1)
            else:
                i = np.where(i < 0, -1 - i, np.where(i >= n, 2 * n - 1 - i, i))
            flat = flat * n + i
        out += np.bincount(flat, w, minlength=out.size)
    return out.reshape(shape)


def brenier_displacement(rho0, rho1, grid: SpaceTimeGrid, *, floor: float = MA_FLOOR,
                         tol: float = 1e-6, coarsest: int = 16) -> np.ndarray:
    r"""The displacement :math:`\nabla\psi` of the Brenier map :math:`x + \nabla\psi(x)` at the
    cell centres, shape ``(*grid.shape, d)``: the grid Monge-Ampere equation on the box
    (:mod:`ot_pde.spacetime.monge_ampere`, damped Newton, second boundary condition) between
    the two densities raised by ``floor`` times the larger peak and renormalized.

    Coarse to fine: Newton first solves on the grid halved while every axis stays even and
    ``>= coarsest`` (its damped first steps, a dozen or more on bimodal data, are cheap there),
    lowering the floor along :data:`MA_FLOOR_LADDER`; each finer grid starts from the coarser
    potential interpolated by its cubic spline (a few full steps). Raises
    :class:`~ot_pde.errors.NumericalError` when Newton fails."""
    from ..errors import NumericalError
    from .cellgrid import CellGrid, CubicSpline
    from .monge_ampere import MongeAmpereEquation, NewtonSolver
    from .multilevel import restrict_density

    peak = max(rho0.max(), rho1.max())
    levels = [(grid.shape, [rho0, rho1])]
    while all(n % 2 == 0 and n // 2 >= coarsest for n in levels[-1][0]):
        shape, pair = levels[-1]
        levels.append((tuple(n // 2 for n in shape), [restrict_density(r) for r in pair]))
    psi = None
    for shape, pair in levels[::-1]:
        cells = CellGrid(grid.lower, grid.upper, shape, "reflect")
        ladder = [f for f in MA_FLOOR_LADDER if f > floor] if psi is None else []
        for level_floor in ladder + [floor]:
            raised = [r + level_floor * peak for r in pair]
            equation = MongeAmpereEquation(cells, *[r / (r.sum() * cells.cell_volume)
                                                    for r in raised])
            if isinstance(psi, CubicSpline):
                psi = psi(cells.mesh())[0].ravel()
                psi = _convex_part(equation, psi - psi.mean())
            newton = NewtonSolver(equation, tol=tol, max_iterations=60, psi0=psi)
            while not newton.finished:
                newton.step()
            if not newton.converged:
                raise NumericalError(f"Monge-Ampere Newton on {shape} cells (density floor "
                                     f"{level_floor:g}): residual {newton.residual:.3g} after "
                                     f"{newton.iteration} iterations")
            psi = newton.psi
        psi = CubicSpline(cells, psi.reshape(shape))
    return np.stack([g.reshape(grid.shape) for g in newton.ev["grad"]], axis=-1)


def _convex_part(equation, psi: np.ndarray) -> np.ndarray:
    """``s psi`` for the largest ``s`` in 1, 0.9, .., 0 whose ``I + s D^2 psi`` is positive
    definite on every cell: an interpolated potential can lose discrete convexity where the
    map compresses most, and Newton needs a convex start (s = 0 always is)."""
    for s in np.linspace(1.0, 0.0, 11):
        if equation.evaluate(s * psi)["convex"]:
            return s * psi
    return 0.0 * psi


def _particles(grid: SpaceTimeGrid, disp: np.ndarray, rho0: np.ndarray, per_axis: int):
    """``per_axis``^d particles per cell, evenly inside it: positions (N, d), displacements
    (linear interpolation of the centre values ``disp``), masses per cell volume (the cell's
    value shared equally, so the deposits keep every cell's mass)."""
    d = grid.ndim
    offsets = (np.arange(per_axis) + 0.5) / per_axis - 0.5  # in cells
    axes = [grid.centers(k)[:, None] + grid.spacing[k] * offsets[None, :] for k in range(d)]
    x = np.stack(np.meshgrid(*[a.ravel() for a in axes], indexing="ij"), axis=-1)
    idx = [(x[..., k] - grid.lower[k]) / grid.spacing[k] - 0.5 for k in range(d)]
    moved = np.stack([_linear_at(disp[..., k], idx) for k in range(d)], axis=-1)
    mass = rho0
    for k in range(d):
        mass = np.repeat(mass, per_axis, axis=k)
    return x.reshape(-1, d), moved.reshape(-1, d), mass.reshape(-1) / per_axis ** d


def monge_ampere_start(rho0, rho1, grid: SpaceTimeGrid, gamma: float, *,
                       floor: float = MA_FLOOR, particles: int = 2):
    r"""``(z_u, z_v)``: the splitting state of the displacement interpolation of the grid
    Monge-Ampere map and its multipliers, for the absolute proximal step ``gamma``.

    Each cell holds ``particles``\ :sup:`d` particles sharing its mass
    :math:`\rho_0\,|\text{cell}|`, each moving on the straight line :math:`x + t\nabla\psi(x)`
    (:func:`brenier_displacement`, interpolated linearly between the centres);
    :math:`f` and the momentum :math:`m = \rho v` on the faces are their cloud-in-cell deposits
    (exact masses, both time boundaries set exactly). The multipliers are those of
    :func:`affine_start` with the velocity :math:`v` at the cell centres, the deposited
    momentum over the deposited density of the same particles weighted by the raised
    densities, so that it is defined where :math:`\rho_0` vanishes too. The fixed point, hence
    the result, is that of the plain method; only the start is better.
    """
    rho0 = np.asarray(rho0, dtype=np.float64)
    rho1 = np.asarray(rho1, dtype=np.float64)
    d = grid.ndim
    disp = brenier_displacement(rho0, rho1, grid, floor=floor)
    x, disp, mass = _particles(grid, disp, rho0, particles)
    raised = mass + floor * max(rho0.max(), rho1.max()) / particles ** d
    f = np.stack([_deposit(x + t * disp, mass, grid, None) for t in grid.time_faces()])
    f[0], f[-1] = rho0, rho1
    zu = [f]
    for k in range(d):
        zu.append(np.stack([_deposit(x + t * disp, mass * disp[:, k], grid, k)
                            for t in grid.time_centers()]))
        zu[-1][(slice(None),) * (k + 1) + (0,)] = 0.0  # no flux through the walls
        zu[-1][(slice(None),) * (k + 1) + (-1,)] = 0.0
    v = []
    for t in grid.time_centers():
        weight = _deposit(x + t * disp, raised, grid, None)
        safe = np.where(weight > 0, weight, 1.0)  # no particle near: v = 0 there
        v.append(np.stack([_deposit(x + t * disp, raised * disp[:, k], grid, None) / safe
                           for k in range(d)], axis=-1))
    return _with_multipliers(zu, np.stack(v), gamma)
