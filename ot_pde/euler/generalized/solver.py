r"""Generalized incompressible flows by multi-marginal entropic transport (Sinkhorn, log domain).

Brenier's two-point problem, discretized in time with ``K`` steps :math:`t_k = k/K` and in
space on ``N`` grid points :math:`x_j` of equal mass :math:`\mu_j = 1/N` (Benamou, Carlier &
Nenna 2019): find a coupling :math:`\gamma` on paths :math:`(j_0, \dots, j_K)` minimizing

.. math::

    \sum \gamma\, C + \varepsilon \sum \gamma (\log \gamma - 1), \qquad
    C(j_0, \dots, j_K) = \sum_{k=0}^{K-1} \frac{|x_{j_{k+1}} - x_{j_k}|^2}{2\,\Delta t},

subject to: the law of :math:`j_k` is :math:`\mu` for :math:`k = 1, \dots, K-1`
(incompressibility) and :math:`(j_0, j_K)` has law :math:`(\mathrm{id}, \sigma)_\# \mu`. The
minimizer has the Gibbs form

.. math::

    \gamma = \exp\Big(\big(\psi(j_0) + \sum_{k=1}^{K-1} u_k(j_k) - C\big)/\varepsilon\Big)
    \,\mathbb 1[j_K = \sigma(j_0)],

with dual potentials :math:`u_k` (the pressure: :math:`p_k = u_k / \Delta t` up to a constant)
and :math:`\psi`. Sinkhorn's algorithm updates one potential at a time so that its marginal is
exact; every marginal is a chain of Gaussian kernel products, done in the log domain
(:mod:`._logsum`, numba twin in :mod:`._kernels_numba`) so that no :math:`\varepsilon` under- or
overflows. :math:`\varepsilon` is decreased geometrically (ε-scaling), the potentials being
kept from one value to the next. Nothing here reads files or prints.
"""
from __future__ import annotations

import numpy as np

from ...backends import NUMBA, NUMPY, Backend
from ...errors import NumericalError
from ._logsum import log_apply_numpy


def epsilon_schedule(start: float, final: float, factor: float) -> list[float]:
    """``start, start*factor, ...`` while above ``final``, then ``final``."""
    values = []
    e = float(start)
    while e > final * (1.0 + 1e-9):
        values.append(e)
        e *= factor
    values.append(float(final))
    return values


def _logsumexp0(a: np.ndarray) -> np.ndarray:
    """log-sum-exp over axis 0 (max-shifted; -inf where every term is -inf)."""
    peak = a.max(axis=0)
    safe = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(under="ignore", divide="ignore"):
        return np.where(np.isfinite(peak), safe + np.log(np.exp(a - safe).sum(axis=0)), peak)


def _numba_log_apply():
    from ._kernels_numba import log_apply_numba

    return log_apply_numba


class GeneralizedGeodesicSolver:
    r"""Multi-marginal Sinkhorn iterations with ε-scaling (one sweep per :meth:`step`).

    Parameters
    ----------
    axes : list of ndarray
        Point coordinates along each space axis; the grid is their tensor product, flattened
        row-major (``N = prod(len(a))`` points, each of mass ``1/N``).
    sigma : ndarray of int, shape (N,)
        The measure-preserving map as a permutation of the flat point indices.
    steps : int
        Number ``K >= 2`` of time steps.
    backend : Backend
        ``numpy`` or ``numba`` (the kernel products); the arrays are NumPy in both cases.
    epsilon, epsilon_start, epsilon_factor : float
        Final blur, first blur and the factor between consecutive values (ε-scaling).
    stage_tol, stage_max_iterations : float, int
        Move to the next ε when the marginal error is below ``stage_tol`` or after
        ``stage_max_iterations`` sweeps at the current one.
    tol, max_iterations : float, int
        Stop at the final ε when the marginal error is below ``tol``; iteration cap.

    Notes
    -----
    One sweep (Gauss-Seidel order): the backward products
    :math:`B_k(l, \cdot)` (paths from time :math:`k` to the end point :math:`l` at time
    :math:`K`) with the current potentials, the update of :math:`\psi`, then forward products
    :math:`F_k(i, \cdot)` (paths from :math:`i` at time 0) updating :math:`u_1, \dots, u_{K-1}`
    in turn:

    .. math::

        u_k(j)/\varepsilon \leftarrow \log\mu_j
            - \log\sum_i \exp\big(F_k(i, j) + B_k(\sigma(i), j)\big).

    The marginal error of a sweep is the largest L1 distance to :math:`\mu` among the
    constraints, each measured just before its update (zero at the fixed point). A sweep costs
    about :math:`2K` kernel products of :math:`N \times N` arrays along each axis,
    :math:`O(K N^2 \sum_a n_a)`.
    """

    def __init__(self, axes, sigma, steps: int, backend: Backend, *, epsilon: float,
                 epsilon_start: float, epsilon_factor: float, stage_tol: float,
                 stage_max_iterations: int, tol: float, max_iterations: int):
        self.axes = [np.asarray(a, dtype=np.float64) for a in axes]
        self.shape = tuple(len(a) for a in self.axes)
        self.ndim = len(self.shape)
        self.n_points = int(np.prod(self.shape))
        sigma = np.asarray(sigma, dtype=np.int64)
        if sigma.shape != (self.n_points,) or not np.array_equal(np.sort(sigma),
                                                                  np.arange(self.n_points)):
            raise ValueError("sigma must be a permutation of the grid points")
        self.sigma = sigma
        self.steps = int(steps)
        if self.steps < 2:
            raise ValueError("at least two time steps are needed")
        self.dt = 1.0 / self.steps
        self.backend = backend
        self.epsilons = epsilon_schedule(epsilon_start, epsilon, epsilon_factor)
        self.stage_tol = float(stage_tol)
        self.stage_max_iterations = int(stage_max_iterations)
        self.tol = float(tol)
        self.max_iterations = int(max_iterations)
        self._log_apply = backend.bind({NUMPY: lambda: log_apply_numpy, NUMBA: _numba_log_apply})
        self._sq_dist = [(a[:, None] - a[None, :]) ** 2 for a in self.axes]
        delta = np.full((self.n_points, self.n_points), -np.inf)
        np.fill_diagonal(delta, 0.0)
        self._delta = delta.reshape((self.n_points,) + self.shape)
        self._log_mu = -np.log(self.n_points)
        # state
        self.u = np.zeros((self.steps - 1,) + self.shape)
        self.psi = np.zeros(self.n_points)
        self.iteration = 0
        self.stage = 0
        self.stage_iteration = 0
        self.stage_action = np.full(len(self.epsilons), np.nan)
        self.stage_sweeps = np.zeros(len(self.epsilons), dtype=np.int64)
        self.error = np.inf
        self.converged = False
        self._cache = None

    # -- kernel products ------------------------------------------------------------------------
    @property
    def epsilon(self) -> float:
        """The blur of the current stage."""
        return self.epsilons[self.stage]

    def _kernels(self, eps: float) -> list[np.ndarray]:
        return [-d2 / (2.0 * self.dt * eps) for d2 in self._sq_dist]

    def _chain(self, F, kernels):
        """Apply the full Gaussian kernel (a product over axes) to every row of ``F``."""
        for axis, G in enumerate(kernels):
            F = self._log_apply(F, G, axis + 1)
        return F

    def _l1_error(self, log_marginal) -> float:
        with np.errstate(over="ignore"):
            return float(np.abs(np.exp(log_marginal) - np.exp(self._log_mu)).sum())

    # -- iteration ------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One Sinkhorn sweep over all constraints; returns its diagnostics."""
        eps = self.epsilon
        K, N = self.steps, self.n_points
        kernels = self._kernels(eps)
        U = self.u / eps
        psi = self.psi / eps
        back = [None] * K
        back[K - 1] = self._chain(self._delta, kernels)
        for k in range(K - 1, 0, -1):
            back[k - 1] = self._chain(back[k] + U[k - 1][None], kernels)
        path = back[0].reshape(N, N)[self.sigma, np.arange(N)]
        errors = [self._l1_error(psi + path)]
        psi = self._log_mu - path
        self._check(psi, 0, "psi (time 0)")
        F = self._chain(psi.reshape((N,) + (1,) * self.ndim) + self._delta, kernels)
        for k in range(1, K):
            L = _logsumexp0(F + back[k][self.sigma])
            errors.append(self._l1_error(U[k - 1] + L))
            U[k - 1] = self._log_mu - L
            self._check(U[k - 1], k, f"u at time step k = {k}")
            if k < K - 1:
                F = self._chain(F + U[k - 1][None], kernels)
        self.u = U * eps
        self.psi = psi * eps
        self.error = max(errors)
        if not np.isfinite(self.error):
            bad = int(np.argmin(np.isfinite(errors)))
            raise NumericalError(f"Sinkhorn iteration {self.iteration + 1} (epsilon = {eps:g}): "
                                 f"non-finite marginal error at time step k = {bad}")
        self.iteration += 1
        self.stage_iteration += 1
        self.stage_sweeps[self.stage] += 1
        self._cache = None
        diag = {"marginal_error": self.error, "epsilon": eps, "stage": float(self.stage)}
        if self.stage == len(self.epsilons) - 1:
            if self.error < self.tol:
                self.converged = True
                self.stage_action[self.stage] = self.action()
        elif self.error < self.stage_tol or self.stage_iteration >= self.stage_max_iterations:
            self.stage_action[self.stage] = self.action()
            self.stage += 1
            self.stage_iteration = 0
            self._cache = None
        return diag

    def _check(self, values, k: int, what: str) -> None:
        if not np.all(np.isfinite(values)):
            raise NumericalError(f"Sinkhorn iteration {self.iteration + 1} (epsilon = "
                                 f"{self.epsilon:g}): non-finite dual potential {what}")

    @property
    def finished(self) -> bool:
        return self.converged or self.iteration >= self.max_iterations

    # -- results --------------------------------------------------------------------------------
    def _products(self):
        """Forward ``F_k`` and backward ``B_k`` (k = 0..K) with the current potentials."""
        if self._cache is not None:
            return self._cache
        K, N = self.steps, self.n_points
        eps = self.epsilon
        kernels = self._kernels(eps)
        zero = np.zeros(self.shape)
        U = [zero] + [self.u[k] / eps for k in range(K - 1)] + [zero]
        F = [self.psi.reshape((N,) + (1,) * self.ndim) / eps + self._delta]
        for k in range(K):
            F.append(self._chain(F[k] + U[k][None], kernels))
        back = [None] * (K + 1)
        back[K] = self._delta
        for k in range(K - 1, -1, -1):
            back[k] = self._chain(back[k + 1] + U[k + 1][None], kernels)
        self._cache = (F, back, U, kernels)
        return self._cache

    def coupling(self) -> np.ndarray:
        r"""Masses :math:`\gamma_{0k}(i, j)` of the coupling between times 0 and :math:`t_k`,
        shape ``(K+1, N, *shape)`` (row ``i``: the start point, flat)."""
        F, back, U, _ = self._products()
        with np.errstate(under="ignore"):
            return np.stack([np.exp(F[k] + U[k][None] + back[k][self.sigma])
                             for k in range(self.steps + 1)])

    def action(self) -> float:
        r"""Kinetic action :math:`\sum_k \mathbb E|x_{k+1} - x_k|^2 / (2\Delta t)` of the coupling."""
        F, back, U, kernels = self._products()
        total = 0.0
        for k in range(self.steps):
            ahead = back[k + 1][self.sigma] + U[k + 1][None]
            here = F[k] + U[k][None]
            for axis in range(self.ndim):
                with np.errstate(divide="ignore"):
                    weighted = [G + np.log(self._sq_dist[a]) if a == axis else G
                                for a, G in enumerate(kernels)]
                H = self._chain(ahead, weighted)
                with np.errstate(under="ignore"):
                    total += float(np.exp(here + H).sum())
        return total / (2.0 * self.dt)

    def pressure(self) -> np.ndarray:
        """:math:`p_k = u_k/\\Delta t` at the interior times, zero mean at each, ``(K-1, *shape)``."""
        p = self.u / self.dt
        axes = tuple(range(1, p.ndim))
        return p - p.mean(axis=axes, keepdims=True)

    # -- restart --------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"u": self.u.copy(), "psi": self.psi.copy(), "iteration": np.int64(self.iteration),
                "stage": np.int64(self.stage), "stage_iteration": np.int64(self.stage_iteration),
                "stage_action": self.stage_action.copy(), "stage_sweeps": self.stage_sweeps.copy(),
                "error": np.float64(self.error), "converged": np.int64(self.converged)}

    def load_state(self, state) -> None:
        self.u = np.array(state["u"], dtype=np.float64)
        self.psi = np.array(state["psi"], dtype=np.float64)
        self.iteration = int(state["iteration"])
        self.stage = int(state["stage"])
        self.stage_iteration = int(state["stage_iteration"])
        self.stage_action = np.array(state["stage_action"], dtype=np.float64)
        self.stage_sweeps = np.array(state["stage_sweeps"], dtype=np.int64)
        self.error = float(state["error"])
        self.converged = bool(int(state["converged"]))
        self._cache = None
