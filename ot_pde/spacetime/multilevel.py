r"""Coarse-to-fine (multilevel) Douglas-Rachford for the staggered Benamou-Brenier problem.

The same discrete problem as :class:`~.solver.BenamouBrenierSolver` on the finest grid, solved
on a hierarchy of grids: the densities are restricted to coarser grids by averaging blocks of
:math:`2^d` cells (the masses are conserved exactly), the coarsest problem is solved from the
usual start, and the Douglas-Rachford state :math:`z = (z_U, z_V)` of each level, which holds
both the primal iterate and the scaled multipliers, is prolonged to the next finer grid by
linear interpolation along every axis, on the points where each variable lives (time faces or
centres, space faces or centres). Every level runs until its own stopping rule holds (the
accuracy estimate of the solver, see :class:`~.solver.BenamouBrenierSolver`), so the finest
level only corrects the difference between consecutive discretizations, an
:math:`O(h^2)` change, instead of transporting the mass from the linear interpolation.

A coarse iteration costs :math:`2^{-(d+1)}` of a finer one (space and time are halved), so the
coarse levels together cost less than :math:`1/(2^{d+1} - 1)` of the finest level's work per
iteration. The fixed point of the finest level is the one of the plain method: the
discretization, the constraints (exact marginals at the time boundaries, zero normal flux) and
the result are unchanged; only the start is better.
"""
from __future__ import annotations

import numpy as np

from ..backends import Backend
from .solver import BenamouBrenierSolver, SpaceTimeGrid


def grid_hierarchy(grid: SpaceTimeGrid, coarsest: int) -> list[SpaceTimeGrid]:
    """Grids from coarse to fine: space halved while every axis stays even and
    ``>= coarsest`` after halving; time halved with it (rounded up, at least 2 cells)."""
    levels = [grid]
    g = grid
    while all(n % 2 == 0 and n // 2 >= coarsest for n in g.shape):
        g = SpaceTimeGrid(g.lower, g.upper, tuple(n // 2 for n in g.shape),
                          max(2, -(-g.nt // 2)))
        levels.append(g)
    return levels[::-1]


def restrict_density(rho: np.ndarray) -> np.ndarray:
    """Average of each block of :math:`2^d` cells (mass per volume conserved)."""
    out = rho
    for axis in range(rho.ndim):
        lo = [slice(None)] * rho.ndim
        hi = [slice(None)] * rho.ndim
        lo[axis] = slice(0, None, 2)
        hi[axis] = slice(1, None, 2)
        out = 0.5 * (out[tuple(lo)] + out[tuple(hi)])
    return out


def _interpolation_matrix(coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Linear interpolation from points ``coarse`` to points ``fine`` (constant beyond the
    end points), as a dense ``(len(fine), len(coarse))`` matrix."""
    m = np.empty((fine.size, coarse.size))
    eye = np.eye(coarse.size)
    for j in range(coarse.size):
        m[:, j] = np.interp(fine, coarse, eye[j])
    return m


def _points(grid: SpaceTimeGrid, axis: int, faces: bool) -> np.ndarray:
    """Coordinates along space-time ``axis`` (0: time) of faces or centres."""
    if axis == 0:
        return grid.time_faces() if faces else grid.time_centers()
    a, h, n = grid.lower[axis - 1], grid.spacing[axis - 1], grid.shape[axis - 1]
    return a + h * np.arange(n + 1) if faces else a + h * (np.arange(n) + 0.5)


def prolong(arr: np.ndarray, coarse: SpaceTimeGrid, fine: SpaceTimeGrid,
            face_axis: int | None) -> np.ndarray:
    """Interpolate a space-time array living on faces along ``face_axis`` (None: centres
    everywhere) from ``coarse`` to ``fine``."""
    out = arr
    for axis in range(arr.ndim):
        faces = axis == face_axis
        mat = _interpolation_matrix(_points(coarse, axis, faces), _points(fine, axis, faces))
        out = np.moveaxis(np.tensordot(mat, np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return np.ascontiguousarray(out)


class MultilevelSolver:
    """Douglas-Rachford on :func:`grid_hierarchy`, each level warm-started from the previous.

    Same interface as :class:`~.solver.BenamouBrenierSolver` (``step``, ``finished``,
    ``converged``, ``w2_squared``, ``density``, ``momentum``, ``state``/``load_state``);
    results are those of the finest level. ``iteration`` counts the iterations of all levels;
    :attr:`work` counts them in units of one finest-level iteration.
    """

    #: coarse levels stop at this multiple of rtol: their solutions differ from the finest
    #: one by their discretization error anyway, which the finest level corrects
    COARSE_RTOL_FACTOR = 10.0

    def __init__(self, rho0, rho1, grid: SpaceTimeGrid, backend: Backend, *,
                 coarsest: int = 16, max_iterations: int = 10000, **options):
        self.grid = grid
        self.backend = backend
        self.max_iterations = int(max_iterations)
        self._options = options
        self.grids = grid_hierarchy(grid, coarsest)
        rho0 = np.asarray(rho0, dtype=np.float64)
        rho1 = np.asarray(rho1, dtype=np.float64)
        self._densities = [(rho0, rho1)]
        for _ in self.grids[1:]:
            r0, r1 = self._densities[0]
            self._densities.insert(0, (restrict_density(r0), restrict_density(r1)))
        self.level = 0
        self.iteration = 0
        self.level_iterations = [0] * len(self.grids)
        self._solver = self._make(0, None)

    def _make(self, level: int, start) -> BenamouBrenierSolver:
        r0, r1 = self._densities[level]
        options = dict(self._options)
        if level == 0:  # the coarsest level may have its own start (e.g. the affine one)
            start = options.get("start", start)
        options.pop("start", None)
        if level < len(self.grids) - 1 and options.get("rtol") is not None:
            options["rtol"] = options["rtol"] * self.COARSE_RTOL_FACTOR
            options["tol"] = None
        return BenamouBrenierSolver(r0, r1, self.grids[level], self.backend,
                                    max_iterations=self.max_iterations, start=start, **options)

    # -- the finest level's view, as the plain solver ------------------------------------------
    @property
    def gamma(self) -> float:
        return self._solver.gamma

    @property
    def converged(self) -> bool:
        return self.level == len(self.grids) - 1 and self._solver.converged

    @property
    def accuracy_estimate(self) -> float:
        return self._solver.accuracy_estimate

    @property
    def finished(self) -> bool:
        return self.converged or self.iteration >= self.max_iterations

    @property
    def work(self) -> float:
        """Iterations of all levels, each weighted by its cell count relative to the finest."""
        fine = self.grids[-1]
        size = lambda g: g.nt * int(np.prod(g.shape))  # noqa: E731
        return float(sum(k * size(g) / size(fine)
                         for k, g in zip(self.level_iterations, self.grids)))

    def step(self) -> dict[str, float]:
        diag = dict(self._solver.step())
        self.iteration += 1
        self.level_iterations[self.level] += 1
        diag["level"] = float(self.level)
        if self._solver.converged and self.level < len(self.grids) - 1:
            self._refine()
        return diag

    def _prolonged(self, solver: BenamouBrenierSolver, level: int) -> BenamouBrenierSolver:
        """A solver on level ``level + 1`` started from ``solver``'s state, prolonged."""
        coarse, fine = self.grids[level], self.grids[level + 1]
        to_np = self.backend.to_numpy
        zu = [prolong(to_np(a), coarse, fine, axis) for axis, a in enumerate(solver._zu)]
        zv = [prolong(to_np(a), coarse, fine, None) for a in solver._zv]
        return self._make(level + 1, (zu, zv))

    def _refine(self) -> None:
        """Prolong the converged level's state to the next grid and continue there."""
        self._solver = self._prolonged(self._solver, self.level)
        self.level += 1

    def _finest(self) -> BenamouBrenierSolver:
        """The finest level's solver; when the run stopped on a coarser level (iteration cap
        or wall time), its state prolonged to the finest grid, without changing this one."""
        solver, level = self._solver, self.level
        while level < len(self.grids) - 1:
            solver = self._prolonged(solver, level)
            level += 1
        return solver

    def w2_squared(self) -> float:
        return self._finest().w2_squared()

    def density(self) -> np.ndarray:
        return self._finest().density()

    def momentum(self) -> np.ndarray:
        return self._finest().momentum()

    # -- restart --------------------------------------------------------------------------------
    @property
    def growing_state(self) -> tuple[str, ...]:
        """Every entry changes shape with the level (checked by rank on restart)."""
        return tuple(self.state())

    def state(self) -> dict[str, np.ndarray]:
        out = {f"level_{k}": v for k, v in self._solver.state().items()}
        out["level"] = np.int64(self.level)
        out["level_iterations"] = np.asarray(self.level_iterations, dtype=np.int64)
        out["iteration"] = np.int64(self.iteration)
        return out

    def load_state(self, state) -> None:
        self.level = int(state["level"])
        self.level_iterations = [int(k) for k in np.asarray(state["level_iterations"])]
        self.iteration = int(state["iteration"])
        self._solver = self._make(self.level, None)
        self._solver.load_state({k[len("level_"):]: v for k, v in state.items()
                                 if k.startswith("level_") and k != "level_iterations"})
