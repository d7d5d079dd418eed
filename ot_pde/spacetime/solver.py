r"""Dynamic optimal transport (Benamou-Brenier) by proximal splitting on a staggered grid.

The problem (Benamou & Brenier 2000) is

.. math::

    W_2^2(\rho_0, \rho_1) = \min_{\rho, m} \int_0^1 \int_\Omega \frac{|m|^2}{\rho}\,dx\,dt
    \quad\text{s.t.}\quad \partial_t \rho + \nabla\cdot m = 0,\;
    \rho(0) = \rho_0,\; \rho(1) = \rho_1,\; m\cdot n = 0 \text{ on } \partial\Omega .

The discretization and the algorithm are those of Papadakis, Peyré & Oudet, "Optimal
transport with proximal splitting", SIAM J. Imaging Sci. 7 (2014):

* staggered variables :math:`U = (f, m_1..m_d)`: ``f`` on the ``nt+1`` time faces of every
  spatial cell, ``m_k`` on the ``n_k+1`` faces along axis ``k`` of every space-time cell;
* centred variables :math:`V = (\bar f, \bar m)` on the ``nt x n_1 x .. x n_d`` cells;
* Douglas-Rachford splitting of :math:`G_1(U,V) = J(V) + \iota_C(U)` and
  :math:`G_2(U,V) = \iota_{V = I U}`, where :math:`C` is the continuity equation with its
  boundary conditions (projection: a Neumann Poisson problem solved by a DCT-II) and
  :math:`J(V) = \sum |\bar m|^2 / (2\bar f)` (proximal map: largest root of a cubic per cell).

The arrays live on the backend's array module ``xp`` (numpy or cupy); the per-cell proximal
map has numba and CUDA kernels. Nothing here reads files or prints.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType

import numpy as np

from ..backends import Backend, get_array_module
from ..errors import NumericalError
from . import _prox
from .box import Box


@dataclass(frozen=True)
class SpaceTimeGrid(Box):
    """A box ``[lower, upper]`` with ``shape`` cells in space and ``nt`` cells in time on [0, 1]."""

    nt: int

    @property
    def tau(self) -> float:
        return 1.0 / self.nt

    def time_faces(self) -> np.ndarray:
        return np.arange(self.nt + 1) * self.tau

    def time_centers(self) -> np.ndarray:
        return (np.arange(self.nt) + 0.5) * self.tau

    def marginals(self, rho0, rho1) -> tuple[np.ndarray, np.ndarray]:
        """The two end densities as float64 arrays of this grid's spatial shape (``ValueError``
        otherwise): the first check of every solver on the grid."""
        rho0 = np.asarray(rho0, dtype=np.float64)
        rho1 = np.asarray(rho1, dtype=np.float64)
        if rho0.shape != self.shape or rho1.shape != self.shape:
            raise ValueError(f"densities of shape {rho0.shape}, {rho1.shape} do not match grid "
                             f"{self.shape}")
        return rho0, rho1


def _averaging_solver_weights(n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Signs and DCT-II weights that apply :math:`(\mathrm{Id} + A^T A)^{-1}` along one axis.

    ``A`` averages ``n_faces`` values onto the ``n_faces - 1`` midpoints. :math:`A^T A` is a
    quarter of the *signless* Laplacian of a path, :math:`S L S` with :math:`L` the Neumann
    Laplacian and :math:`S = \mathrm{diag}((-1)^i)`. The DCT-II diagonalizes :math:`L`
    (eigenvalues :math:`2 - 2\cos(\pi k / n)`), so the solve is a sign flip, a DCT, a
    scaling and the inverse transform: :math:`O(n \log n)` and the same on every backend.
    """
    k = np.arange(n_faces)
    signs = np.where(k % 2 == 0, 1.0, -1.0)
    weights = 1.0 / (1.0 + 0.25 * (2.0 - 2.0 * np.cos(np.pi * k / n_faces)))
    return signs, weights


def _lower_upper(ndim: int, axis: int, n: int) -> tuple[tuple, tuple]:
    """Index tuples selecting entries ``0..n-2`` and ``1..n-1`` along ``axis``."""
    lo = [slice(None)] * ndim
    hi = [slice(None)] * ndim
    lo[axis] = slice(0, n - 1)
    hi[axis] = slice(1, n)
    return tuple(lo), tuple(hi)


def _average(u, axis: int):
    """Average of neighbouring faces along ``axis`` (faces -> centres)."""
    lo, hi = _lower_upper(u.ndim, axis, u.shape[axis])
    return 0.5 * (u[lo] + u[hi])


def _average_adjoint(v, axis: int, xp):
    """Adjoint of :func:`_average` (centres -> faces)."""
    shape = list(v.shape)
    shape[axis] += 1
    out = xp.zeros(shape, dtype=v.dtype)
    lo, hi = _lower_upper(v.ndim, axis, shape[axis])
    out[lo] += 0.5 * v
    out[hi] += 0.5 * v
    return out


def _diff(u, axis: int):
    """Difference of neighbouring entries along ``axis``."""
    lo, hi = _lower_upper(u.ndim, axis, u.shape[axis])
    return u[hi] - u[lo]


def _residual_sq_norms_xp(xs, ys, x_prevs):
    """(|x|^2, |y - x|^2, |x - x_prev|^2) summed over lists of arrays (numpy/cupy)."""
    # sum(a * a) rather than vdot: vdot copies strided arrays (the DCT outputs) first.
    def sq(arrays):
        return float(sum((a * a).sum() for a in arrays))
    return (sq(xs), sq([y - x for y, x in zip(ys, xs)]),
            sq([x - p for x, p in zip(xs, x_prevs)]))


def _dr_update_xp(zs, ys, xs, x_prevs, alpha):
    """``z + alpha (y - x)`` for each array, and the three squared norms of the residuals."""
    return ([z + alpha * (y - x) for z, y, x in zip(zs, ys, xs)],
            _residual_sq_norms_xp(xs, ys, x_prevs))


def _reflect_xp(xs, zs):
    return [2.0 * x - z for x, z in zip(xs, zs)]


def _kinetic_sum_xp(f, ms):
    r""":math:`\sum |\bar m|^2/\bar f` over the cells with :math:`\bar f > 0`."""
    # numpy without get_array_module's look-up for cupy (31 us, every iteration)
    xp = np if isinstance(f, np.ndarray) else get_array_module(f)
    msq = sum(m * m for m in ms)
    positive = f > 0
    safe = xp.where(positive, f, 1.0)
    return float(xp.sum(xp.where(positive, msq / safe, 0.0)))


def _with_energy(prox):
    """The prox_energy entry of :class:`_Kernels` from a kinetic prox: ``(f, ms)`` and their
    kinetic sum (:func:`_kinetic_sum_xp`)."""
    def prox_energy(ft, mt, gamma):
        f, ms = prox(ft, mt, gamma)
        return f, ms, _kinetic_sum_xp(f, ms)
    return prox_energy


def _divergence_xp(u, inv_h):
    div = 0.0
    for axis, (ua, h) in enumerate(zip(u, inv_h)):
        div = div + _diff(ua, axis) * h
    return div


def _add_gradient_xp(u, lam, inv_h):
    """Interior faces of ``u_k`` += ``D_k^T``-step of ``lam`` along axis ``k``, in place."""
    for axis, h in enumerate(inv_h):
        idx = [slice(None)] * u[axis].ndim
        idx[axis] = slice(1, -1)
        u[axis][tuple(idx)] += _diff(lam, axis) * h


@dataclass(frozen=True)
class _Kernels:
    """The per-backend pieces of one iteration (see :func:`_select_kernels`)."""

    prox_energy: Callable              # (f, ms, kinetic sum): _prox.kinetic_prox_numpy and the sum
    fft: ModuleType                    # scipy.fft, cupyx.scipy.fft or ._dct (the Poisson solve)
    dct_workers: dict                  # extra keywords of its dctn/idctn (threads on the CPU)
    interpolation_lines: Callable | None = None  # O(n) line solves (and the reflections)
    thomas_factors: Callable | None = None       # their factorization, per axis length
    # fused passes (numba) or array expressions: same contracts as the _xp functions above
    dr_update: Callable = _dr_update_xp
    kinetic_sum: Callable = _kinetic_sum_xp
    divergence: Callable = _divergence_xp
    add_gradient: Callable = _add_gradient_xp


#: space-time cells from which the numba backend runs threaded (below, waking the threads
#: costs more than the work: its kernels run serially and the DCTs on one thread)
THREADS_FROM = 1 << 16
#: space-time cells from which the numba backend runs its compiled kernels at all. Below,
#: it runs the numpy ones (and both CPU backends the DCTs of :mod:`._dct`, on numpy's FFT,
#: instead of scipy.fft): importing numba and loading the kernels from its cache costs
#: 0.8-1 s per process (measured: 0.4 s the import, 0.6 s the first call, at load ~5), while
#: the numpy kernels cost at most ~1 ms more per iteration there (2048 cells: 0.85 ms against
#: 1.07 ms in 1D, 2.5 against 1.4 ms in 2D; 8192 cells in 1D: 4.0 against 2.2 ms), so the
#: load would pay only after about a thousand iterations.
COMPILED_FROM = 1 << 13


def _passive_openmp_workers() -> None:
    """Let numba's OpenMP workers sleep at the end of a parallel region (``OMP_WAIT_POLICY =
    PASSIVE``) unless the user chose a policy.

    An iteration alternates numba's threaded kernels with scipy's threaded DCTs. By default the
    OpenMP workers spin for a while after each kernel and take the cores the DCT workers need:
    measured on two cores at 128^2 x 64, 9.8 and 6.0 ms for the two transforms after a kernel
    against 5.8 and 4.7 ms with passive workers (50 -> 45 ms per iteration). OpenMP reads the
    variable when numba first starts its threads, so it acts only if no threaded numba kernel
    ran earlier in the process (the policy then stays what it was: slower, same results).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _select_kernels(backend: Backend, cells: int) -> _Kernels:
    """The one table binding the solver's kernels to a backend (``cells``: the grid size)."""
    if cells < COMPILED_FROM and backend.name in ("numpy", "numba"):
        # numpy's FFT, not scipy.fft, whose import (0.4-0.6 s) also outweighs the work here
        from . import _dct

        return _Kernels(_with_energy(_prox.kinetic_prox_numpy), _dct, {})
    import scipy.fft

    if backend.name == "numba":
        from . import _kernels_numba as nb

        # scipy's DCT threads over the lines of the transform: worth it on the numba
        # backend, which is the one that runs its other kernels in parallel too
        parallel = cells >= THREADS_FROM
        if parallel:
            _passive_openmp_workers()
        threads = nb.numba.config.NUMBA_NUM_THREADS if parallel else 1
        return _Kernels(partial(nb.kinetic_prox_energy_numba, parallel=parallel),
                        scipy.fft, {"workers": threads},
                        partial(nb.interpolation_projection_numba, parallel=parallel),
                        nb.thomas_factors, partial(nb.dr_update_numba, parallel=parallel),
                        partial(nb.kinetic_sum_numba, parallel=parallel),
                        partial(nb.divergence_numba, parallel=parallel),
                        partial(nb.add_gradient_numba, parallel=parallel))
    if backend.name == "cupy":
        import cupyx.scipy.fft

        from ._kernels_cupy import kinetic_prox_cupy

        return _Kernels(_with_energy(kinetic_prox_cupy), cupyx.scipy.fft, {})
    return _Kernels(_with_energy(_prox.kinetic_prox_numpy), scipy.fft, {})


class BenamouBrenierSolver:
    r"""Douglas-Rachford iterations for the staggered Benamou-Brenier problem.

    Parameters
    ----------
    rho0, rho1 : ndarray
        Densities at the cell centres of ``grid`` (host arrays), non-negative, with equal mass
        :math:`\sum \rho\, \Delta x`.
    grid : SpaceTimeGrid
    backend : Backend
    gamma : float
        Proximal step of the kinetic energy, relative to the larger peak of the two densities
        (the algorithm is not scale invariant; this keeps the default usable for any density).
    relaxation : float
        Douglas-Rachford relaxation :math:`\alpha \in (0, 2)`.
    tol : float or None
        Residual criterion: both relative residuals (see :meth:`step`) below ``tol``.
    rtol : float or None
        Accuracy criterion: the estimate :attr:`accuracy_estimate` of the relative error of
        :math:`W_2^2` below ``rtol`` (see the notes). The run is
        converged when every criterion given holds; at least one must be given.
    max_iterations : int
        Iteration cap.
    start : tuple, callable or None
        ``(z_u, z_v)`` host arrays to start from instead of the linear interpolation in time
        (a warm start, e.g. prolonged from a coarser grid), or a callable
        ``start(rho0, rho1, grid, gamma)`` returning them for the absolute proximal step
        ``gamma`` (e.g. :func:`.start.affine_start`).

    Notes
    -----
    Each :meth:`step` performs

    .. math::

        x = \mathrm{proj}_{V = IU}(z), \quad y = \mathrm{prox}_{\gamma G_1}(2x - z),
        \quad z \leftarrow z + \alpha (y - x),

    and reports the primal residual :math:`\|y - x\| / \|x\|` (the gap between the two
    constraint sets, zero at a fixed point) and the dual residual
    :math:`\|x_k - x_{k-1}\| / \|x_k\|`.

    The accuracy estimate after :math:`k \ge` ``MIN_ITERATIONS`` iterations is the larger of
    two relative quantities, each an estimate of the relative error of :math:`W_2^2 = W_k`:

    * the *history spread* :math:`\max_{k/4 \le j \le k} |W_j - W_k| / W_k` over the last
      three quarters of the history. If the error :math:`e_j = |W_j - W_*|` decreases
      monotonically and at least halves when the iteration count quadruples (any rate at least
      :math:`O(k^{-1/2})`, geometric included), then
      :math:`e_k \le e_{k/4} - e_k \le |W_{k/4} - W_k|`; taking the maximum over the window
      also catches an objective that oscillates around its limit (over-relaxed splittings
      do), whose amplitude bounds the error of its centre. (A window of the last half, which
      assumes a rate of :math:`O(1/k)`, stopped 2.5e-3 from the grid's value after the
      Monge-Ampere start at 32^2, where the iterate drifts like :math:`k^{-0.6}` from the
      continuous solution to the grid's);
    * the primal residual :math:`\|y - x\| / \|x\|`: the kinetic energy is positively
      1-homogeneous in :math:`(f, m)`, so a relative perturbation :math:`\epsilon` of the
      iterate changes it by :math:`O(\epsilon)` relatively; this catches iterates that
      overshoot and come back (after a warm start), where the first one alone is too small.

    It is an estimate, not a certificate: the assumptions are checked empirically (tests,
    and the error at stop in the docs), not proven for every iterate.
    """

    #: iterations before the accuracy estimate is trusted
    MIN_ITERATIONS = 20

    def __init__(self, rho0, rho1, grid: SpaceTimeGrid, backend: Backend, *, gamma: float = 1.0,
                 relaxation: float = 1.0, tol: float | None = 1e-8, rtol: float | None = None,
                 max_iterations: int = 10000, start=None):
        rho0, rho1 = grid.marginals(rho0, rho1)
        self.grid = grid
        self.backend = backend
        self.xp = xp = backend.xp
        self.relaxation = float(relaxation)
        if tol is None and rtol is None:
            raise ValueError("give tol, rtol or both (the stopping criteria)")
        self.tol = None if tol is None else float(tol)
        self.rtol = None if rtol is None else float(rtol)
        self.accuracy_estimate = float("inf")
        self._w_buffer = np.empty(64)
        self._w_count = 0
        self.max_iterations = int(max_iterations)
        self.gamma = float(gamma) * float(max(rho0.max(), rho1.max()))
        self.iteration = 0
        self.converged = False
        d, nt = grid.ndim, grid.nt

        self._rho0 = xp.asarray(rho0)
        self._rho1 = xp.asarray(rho1)
        # inverse mesh sizes: axis 0 is time, axes 1..d are space
        self._inv_h = (1.0 / grid.tau,) + tuple(1.0 / h for h in grid.spacing)
        self._avg_solve = []
        for axis, n in enumerate((nt,) + grid.shape):
            shape = [1] * (d + 1)
            shape[axis] = n + 1
            signs, weights = _averaging_solver_weights(n + 1)
            self._avg_solve.append((xp.asarray(signs.reshape(shape)),
                                    xp.asarray(weights.reshape(shape))))
        self._laplacian_eigs = self._neumann_eigenvalues()
        kernels = _select_kernels(backend, nt * int(np.prod(grid.shape)))
        self._kernels = kernels
        self._prox_energy = kernels.prox_energy
        self._fft, self._dct_workers = kernels.fft, kernels.dct_workers
        self._interp_lines = kernels.interpolation_lines
        self._thomas = None
        if self._interp_lines is not None:
            self._thomas = [kernels.thomas_factors(n + 1) for n in (nt,) + grid.shape]

        # Initial point: linear interpolation of the densities in time, zero momentum.
        t = xp.asarray(grid.time_faces()).reshape((nt + 1,) + (1,) * d)
        f = (1.0 - t) * self._rho0[None] + t * self._rho1[None]
        ms = [xp.zeros(self._momentum_shape(k)) for k in range(d)]
        self._zu = [f] + ms
        self._zv = [_average(u, axis) for axis, u in enumerate(self._zu)]
        if callable(start):
            start = start(rho0, rho1, grid, self.gamma)
        if start is not None:
            zu, zv = start
            for a, b in zip(list(zu) + list(zv), self._zu + self._zv):
                if tuple(np.shape(a)) != tuple(b.shape):
                    raise ValueError(f"start arrays of shape {np.shape(a)}, expected {b.shape}")
            # copies: the iterations update z in place
            self._zu = [xp.array(np.asarray(a, dtype=np.float64)) for a in zu]
            self._zv = [xp.array(np.asarray(a, dtype=np.float64)) for a in zv]
        self._x_prev = None

    # -- geometry ---------------------------------------------------------------------------
    def _momentum_shape(self, k: int) -> tuple[int, ...]:
        shape = [self.grid.nt] + list(self.grid.shape)
        shape[k + 1] += 1
        return tuple(shape)

    def _neumann_eigenvalues(self):
        """Eigenvalues of the space-time Neumann Laplacian ``D D^T`` in the DCT-II basis."""
        xp = self.xp
        sizes = (self.grid.nt,) + self.grid.shape
        eig = 0.0
        for axis, (n, inv_h) in enumerate(zip(sizes, self._inv_h)):
            k = np.arange(n)
            lam = (2.0 - 2.0 * np.cos(np.pi * k / n)) * inv_h ** 2
            shape = [1] * len(sizes)
            shape[axis] = n
            eig = eig + lam.reshape(shape)
        eig = np.array(eig, dtype=np.float64)
        eig.flat[0] = 1.0  # the constant mode: its coefficient is set to zero below
        return xp.asarray(eig)

    # -- proximal maps ------------------------------------------------------------------------
    def _project_interpolation(self, zu, zv):
        r"""Projection onto :math:`\{V = I U\}`: :math:`U = (\mathrm{Id}+I^*I)^{-1}(U_0 + I^* V_0)`
        by DCTs (numpy, cupy; the numba line solves are in :meth:`_project_and_reflect`)."""
        xp, fft = self.xp, self._fft
        u = []
        for axis, (signs, weights) in enumerate(self._avg_solve):
            rhs = signs * (zu[axis] + _average_adjoint(zv[axis], axis, xp))
            coef = fft.dct(rhs, type=2, norm="ortho", axis=axis) * weights
            u.append(signs * fft.idct(coef, type=2, norm="ortho", axis=axis))
        v = [_average(u[axis], axis) for axis in range(len(u))]
        return u, v

    def _project_and_reflect(self):
        """``x = proj_{V = IU}(z)`` and the reflection ``2 x - z``: ``(xu, xv, wu, wv)``."""
        if self._thomas is not None:  # fused in the line solves
            parts = [self._interp_lines(zu, zv, axis, factors) for axis, (zu, zv, factors)
                     in enumerate(zip(self._zu, self._zv, self._thomas))]
            return tuple([p[k] for p in parts] for k in range(4))
        xu, xv = self._project_interpolation(self._zu, self._zv)
        return xu, xv, _reflect_xp(xu, self._zu), _reflect_xp(xv, self._zv)

    def _divergence(self, u):
        return self._kernels.divergence(u, self._inv_h)

    def _project_continuity(self, u, overwrite: bool = False):
        """Projection onto the continuity equation with its boundary values (DCT Poisson);
        ``overwrite``: ``u`` is a temporary that may hold the result."""
        fft = self._fft
        if not overwrite:
            u = [a.copy() for a in u]
        u[0][0] = self._rho0
        u[0][-1] = self._rho1
        for axis in range(1, len(u)):
            idx = [slice(None)] * u[axis].ndim
            idx[axis] = 0
            u[axis][tuple(idx)] = 0.0
            idx[axis] = -1
            u[axis][tuple(idx)] = 0.0
        rhs = fft.dctn(self._divergence(u), type=2, norm="ortho", **self._dct_workers)
        rhs /= self._laplacian_eigs
        rhs[(0,) * rhs.ndim] = 0.0  # the constant mode (compatible masses)
        lam = fft.idctn(rhs, type=2, norm="ortho", overwrite_x=True, **self._dct_workers)
        # Interior faces only: U_int -= D_int^T lam, D^T lam on face i = (lam[i-1] - lam[i]) / h.
        self._kernels.add_gradient(u, lam, self._inv_h)
        return u

    def _prox_g1(self, wu, wv, overwrite: bool = False):
        """``(U, V, kinetic sum of V)``."""
        u = self._project_continuity(wu, overwrite)
        f, ms, energy = self._prox_energy(wv[0], wv[1:], self.gamma)
        return u, [f] + ms, energy

    # -- iteration ----------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One Douglas-Rachford iteration; returns the diagnostics of this iteration."""
        xu, xv, wu, wv = self._project_and_reflect()
        yu, yv, energy = self._prox_g1(wu, wv, overwrite=True)
        x_all = xu + xv
        z_all, (x_sq, gap_sq, change_sq) = self._kernels.dr_update(
            self._zu + self._zv, yu + yv, x_all, x_all if self._x_prev is None else self._x_prev,
            self.relaxation)
        self._zu, self._zv = z_all[:len(xu)], z_all[len(xu):]
        x_norm, gap = float(np.sqrt(x_sq)), float(np.sqrt(gap_sq))
        change = float("inf") if self._x_prev is None else float(np.sqrt(change_sq))
        self._x_prev = x_all
        self._y = (yu, yv)
        self.iteration += 1
        primal = gap / x_norm
        dual = change / x_norm
        objective = energy * self.grid.tau * self.grid.cell_volume
        if not (np.isfinite(primal) and np.isfinite(objective)):
            raise NumericalError(f"Benamou-Brenier iteration {self.iteration} produced non-finite "
                                 f"values (primal residual {primal}, objective {objective})")
        self._record(objective)
        k = self._w_count
        if k >= self.MIN_ITERATIONS:
            recent = self._w_buffer[(k - 1) // 4:k]
            change = float(np.max(np.abs(recent - objective)))
            change = change / abs(objective) if objective else change
            self.accuracy_estimate = max(change, primal)
        converged = True
        if self.tol is not None:
            converged = primal < self.tol and dual < self.tol
        if self.rtol is not None:
            converged = converged and self.accuracy_estimate <= self.rtol
        self.converged = converged
        return {"primal_residual": primal, "dual_residual": dual, "W2_squared": objective,
                "accuracy_estimate": (self.accuracy_estimate if k >= self.MIN_ITERATIONS
                                      else float("nan"))}

    def _record(self, objective: float) -> None:
        """Append to the objective's history (a buffer grown by doubling)."""
        if self._w_count == self._w_buffer.size:
            self._w_buffer = np.concatenate([self._w_buffer, np.empty(max(64, self._w_count))])
        self._w_buffer[self._w_count] = objective
        self._w_count += 1

    @property
    def finished(self) -> bool:
        return self.converged or self.iteration >= self.max_iterations

    @property
    def level_iterations(self) -> list[int]:
        """Iterations per grid level (one level here; see :mod:`.multilevel`)."""
        return [self.iteration]

    @property
    def work(self) -> float:
        """Iterations in units of one iteration on this grid."""
        return float(self.iteration)

    def _kinetic_energy(self, v) -> float:
        r""":math:`\sum |\bar m|^2/\bar f \;\Delta t\,\Delta x` over cells with :math:`\bar f > 0`."""
        return self._kernels.kinetic_sum(v[0], v[1:]) * self.grid.tau * self.grid.cell_volume

    # -- results ------------------------------------------------------------------------------
    def _current(self):
        """The latest continuity-feasible iterate ``y`` (recomputed after a restart)."""
        if getattr(self, "_y", None) is None:
            _, _, wu, wv = self._project_and_reflect()
            self._y = self._prox_g1(wu, wv, overwrite=True)[:2]
        return self._y

    def w2_squared(self) -> float:
        """Kinetic energy of the current iterate, the discrete :math:`W_2^2`."""
        return self._kinetic_energy(self._current()[1])

    def density(self) -> np.ndarray:
        """:math:`\\rho` on the ``nt+1`` time faces, shape ``(nt+1, *grid.shape)``."""
        return self.backend.to_numpy(self._current()[0][0])

    def momentum(self) -> np.ndarray:
        """Cell-centred momentum, shape ``(d, nt, *grid.shape)``."""
        return np.stack([self.backend.to_numpy(m) for m in self._current()[1][1:]])

    # -- restart --------------------------------------------------------------------------------
    #: state entries whose shape changes as the run goes on (checked by rank on restart)
    growing_state = ("w_history",)

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue bit-for-bit (host arrays)."""
        to_np = self.backend.to_numpy

        def copy(a):  # z is updated in place by the next iteration
            host = to_np(a)
            return host.copy() if host is a else host

        out = {f"z_u{k}": copy(a) for k, a in enumerate(self._zu)}
        out.update({f"z_v{k}": copy(a) for k, a in enumerate(self._zv)})
        if self._x_prev is not None:
            out.update({f"x_prev{k}": to_np(a) for k, a in enumerate(self._x_prev)})
        out["iteration"] = np.int64(self.iteration)
        out["w_history"] = self._w_buffer[:self._w_count].copy()
        out["accuracy_estimate"] = np.float64(self.accuracy_estimate)
        return out

    def load_state(self, state) -> None:
        xp = self.xp
        n = len(self._zu)
        self._zu = [xp.array(np.asarray(state[f"z_u{k}"], dtype=np.float64)) for k in range(n)]
        self._zv = [xp.array(np.asarray(state[f"z_v{k}"], dtype=np.float64)) for k in range(n)]
        if "x_prev0" in state:
            self._x_prev = [xp.asarray(np.asarray(state[f"x_prev{k}"], dtype=np.float64))
                            for k in range(2 * n)]
        else:
            self._x_prev = None
        self.iteration = int(state["iteration"])
        history = np.asarray(state.get("w_history", np.empty(0)), dtype=np.float64)
        self._w_count = history.size
        self._w_buffer = np.concatenate([history, np.empty(64)])
        self.accuracy_estimate = float(state.get("accuracy_estimate", float("inf")))
        self._y = None
