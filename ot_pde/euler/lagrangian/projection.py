r"""Projections of a particle cloud onto the measure-preserving configurations of a box.

Gallouët & Mérigot (2018) replace the constraint "X is a measure-preserving map" by the
distance of the cloud :math:`X = (X_1..X_N)` to the set of such maps: its projection
:math:`P(X)` is given by optimal transport between the uniform measure on the box and the
particles, each of mass :math:`1/N`.

:class:`SemiDiscreteProjection` (the scheme's projection, and the default)
    Semi-discrete OT onto the Lebesgue measure: find weights :math:`w` such that every
    Laguerre cell :math:`L_i(w) \cap \Omega` has area :math:`|\Omega|/N`, by the damped Newton
    method of Kitagawa, Mérigot & Thibert (2019) on the concave dual; :math:`P(X)_i` is the
    centroid of cell :math:`i`. The Laguerre diagram comes from the lower convex hull of the
    lifted points :math:`(X_i, |X_i|^2 - w_i)` (``scipy.spatial.ConvexHull``), its cells are
    clipped to the box by :func:`._cells.clip_cells`, and the Newton matrix (a weighted graph
    Laplacian with weights :math:`|\partial L_i \cap \partial L_j| / (2|X_i - X_j|)`) is solved
    by sparse LU.

:class:`AssignmentProjection`
    Fully discrete OT: the optimal assignment of the particles to a fixed uniform grid of
    :math:`N` cell centres (``scipy.optimize.linear_sum_assignment``); :math:`P(X)_i` is the grid
    point assigned to particle :math:`i`. Kept for the measurements of the documentation
    (it is slower and far less accurate, see ``docs/kinds/euler_lagrangian.rst``).

Nothing here reads files or prints.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.linalg import spsolve
from scipy.spatial import ConvexHull, QhullError

from ...backends import NUMBA, Backend
from ...errors import NumericalError
from ._cells import clip_cells

#: qhull options: triangulated output (cocircular particles, e.g. a grid, give triangles)
_QHULL_OPTIONS = "Qt Qbb Qc"


@dataclass
class ProjectionInfo:
    """Diagnostics of one projection."""

    newton_iterations: int = 0
    mass_error: float = 0.0  # max_i |area_i - |Omega|/N| / (|Omega|/N)


def _numba_cells():
    from ._kernels_numba import clip_cells_numba

    return clip_cells_numba


def _cell_kernel(backend: Backend):
    return backend.bind({NUMBA: _numba_cells}, default=lambda: clip_cells)


def grid_centres(n: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Centres of the ``n x n`` uniform cells of ``[lo, hi]^2``, x fastest, shape ``(n*n, 2)``."""
    c = lo + (hi - lo) * (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(c, c, indexing="xy")
    return np.column_stack([x.ravel(), y.ravel()])


class LaguerreDiagram:
    """Laguerre cells of ``points`` with ``weights`` clipped to ``[lo, hi]^2``.

    Attributes after construction: ``area`` (N,), ``centroid`` (N, 2), and the CSR neighbour
    graph ``indptr``, ``indices`` with the shared edge lengths ``edge_len``.
    """

    def __init__(self, points, weights, lo: float, hi: float, kernel=clip_cells):
        n = points.shape[0]
        lifted = np.empty((n, 3))
        lifted[:, :2] = points
        lifted[:, 2] = np.einsum("ij,ij->i", points, points) - weights
        try:
            hull = ConvexHull(lifted, qhull_options=_QHULL_OPTIONS)
        except QhullError as exc:
            raise NumericalError(f"power diagram failed (qhull: {str(exc).splitlines()[0]})"
                                 ) from None
        lower = hull.simplices[hull.equations[:, 2] < 0.0]
        visible = np.zeros(n, dtype=bool)
        visible[lower.ravel()] = True
        a = lower[:, [0, 1, 2]].ravel()
        b = lower[:, [1, 2, 0]].ravel()
        key = np.unique(np.concatenate([a * n + b, b * n + a]))
        rows, cols = key // n, key % n
        self.indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=self.indptr[1:])
        self.indices = cols.astype(np.int64)
        self.rows = rows
        self.visible = visible
        self.area = np.empty(n)
        self.centroid = np.empty((n, 2))
        self.edge_len = np.empty(len(self.indices))
        degree = int(np.diff(self.indptr).max()) if n else 0
        work = np.empty((4, 2 * degree + 8))
        kernel(points, weights, self.indptr, self.indices, visible, float(lo), float(hi),
               self.area, self.centroid, self.edge_len, work)
        self.points = points

    def hessian(self) -> sp.csr_matrix:
        r"""Jacobian of the cell areas in the weights: :math:`\partial m_i / \partial w_j`."""
        d = self.points[self.rows] - self.points[self.indices]
        off = -self.edge_len / (2.0 * np.sqrt(np.einsum("ij,ij->i", d, d)))
        n = len(self.area)
        h = sp.csr_matrix((off, self.indices, self.indptr), shape=(n, n))
        return h - sp.diags(np.asarray(h.sum(axis=1)).ravel())


class SemiDiscreteProjection:
    """Centroids of the equal-area Laguerre cells (semi-discrete OT onto Lebesgue measure).

    Parameters
    ----------
    backend : Backend
        ``numba`` compiles the cell kernel; ``numpy`` runs it as plain Python (slow, exact twin).
    lo, hi : float
        The box ``[lo, hi]^2``.
    tol : float
        Stop Newton when every cell area is within ``tol`` (relative) of ``|Omega|/N``.
    max_newton : int
        Newton iterations allowed per projection (more is a :class:`NumericalError`).
    """

    def __init__(self, backend: Backend, lo: float = 0.0, hi: float = 1.0, *,
                 tol: float = 1e-9, max_newton: int = 50):
        self.kernel = _cell_kernel(backend)
        self.lo, self.hi = float(lo), float(hi)
        self.tol = tol
        self.max_newton = max_newton

    def diagram(self, points, weights) -> LaguerreDiagram:
        return LaguerreDiagram(points, weights, self.lo, self.hi, self.kernel)

    def __call__(self, points, weights=None):
        """Return ``(P(X), weights, info)``; ``weights`` warm-starts Newton (None: zeros)."""
        n = points.shape[0]
        target = (self.hi - self.lo) ** 2 / n
        w, diag = self._initial(points, weights)
        err = self._error(diag, target)
        floor = 0.5 * min(diag.area.min(), target)
        info = ProjectionInfo()
        while err > self.tol:
            if info.newton_iterations >= self.max_newton:
                raise NumericalError(f"semi-discrete OT: Newton did not reach the tolerance "
                                     f"{self.tol:g} in {self.max_newton} iterations (relative "
                                     f"mass error {err:.3g})")
            if not floor > 0.0:
                raise NumericalError("semi-discrete OT: a particle has an empty Laguerre cell "
                                     "(coincident particles?)")
            info.newton_iterations += 1
            h = diag.hessian()
            rhs = target - diag.area
            # the matrix is a connected graph Laplacian: fix the gauge w_0 += 0
            delta = np.zeros(n)
            delta[1:] = spsolve(h[1:, 1:].tocsc(), rhs[1:])
            if not np.all(np.isfinite(delta)):
                raise NumericalError("semi-discrete OT: singular Newton system")
            norm0 = np.linalg.norm(rhs)
            step = 1.0
            while True:  # Kitagawa-Merigot-Thibert damping
                trial = self.diagram(points, w + step * delta)
                if (trial.area.min() >= floor
                        and np.linalg.norm(target - trial.area) <= (1 - step / 2) * norm0):
                    break
                step *= 0.5
                if step < 1e-10:
                    raise NumericalError("semi-discrete OT: damped Newton step vanished")
            w = w + step * delta
            diag = trial
            err = self._error(diag, target)
        info.mass_error = err
        return diag.centroid.copy(), w, info

    def _initial(self, points, weights):
        """A start of Newton where no cell is empty (Kitagawa-Merigot-Thibert need one).

        In order: the given weights (the previous time step's: usually one or two Newton steps
        from the solution), the same weights halved a few times, zero (the Voronoi diagram),
        and the weights of the cloud shrunk into the box about its mean (every cell non-empty,
        as in Gallouet and Merigot's ``estimate_dual_variable``).
        """
        n = points.shape[0]
        tries = []
        if weights is not None and len(weights) == n:
            w = np.array(weights, dtype=np.float64)
            tries += [w, 0.5 * w, 0.25 * w]
        tries.append(np.zeros(n))
        for w in tries:
            diag = self.diagram(points, w)
            if diag.area.min() > 0.0:
                return w, diag
        centre = 0.5 * (self.lo + self.hi)
        mean = points.mean(axis=0)
        spread = np.abs(points - mean).max()
        r = min(0.45 * (self.hi - self.lo) / spread, 1.0) if spread > 0 else 1.0
        # psi(y) = r/2 |y - mean|^2 + centre . y sends y to centre + r (y - mean)
        shift = np.array([centre, centre])
        psi = 0.5 * r * np.einsum("ij,ij->i", points - mean, points - mean) + points @ shift
        w = np.einsum("ij,ij->i", points, points) - 2.0 * psi
        return w, self.diagram(points, w)

    @staticmethod
    def _error(diag: LaguerreDiagram, target: float) -> float:
        err = float(np.max(np.abs(diag.area - target))) / target
        if not np.isfinite(err):
            raise NumericalError("semi-discrete OT: non-finite Laguerre cell (particles not "
                                 "finite?)")
        return err


class AssignmentProjection:
    """The grid point optimally assigned to each particle (discrete OT, exact).

    The targets are the ``n x n`` cell centres of ``[lo, hi]^2`` (``N = n^2`` particles).
    """

    def __init__(self, n: int, lo: float = 0.0, hi: float = 1.0):
        self.targets = grid_centres(n, lo, hi)

    def __call__(self, points, weights=None):
        if not np.all(np.isfinite(points)):
            raise NumericalError("assignment: particle positions are not finite")
        d = points[:, None, :] - self.targets[None, :, :]
        cost = np.einsum("ijk,ijk->ij", d, d)
        rows, cols = linear_sum_assignment(cost)
        out = np.empty_like(points)
        out[rows] = self.targets[cols]
        return out, np.zeros(0) if weights is None else weights, ProjectionInfo()
