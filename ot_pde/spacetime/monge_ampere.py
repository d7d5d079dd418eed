r"""The Monge-Ampère equation of optimal transport on a grid: damped Newton and the parabolic flow.

With the Brenier potential :math:`u = |x|^2/2 + \psi`, the map :math:`T = \nabla u = x + \nabla\psi`
pushes :math:`\rho_0` to :math:`\rho_1` when, in log form,

.. math::

    F(\psi) = \log\det(I + D^2\psi) + \log\rho_1(x + \nabla\psi) - \log\rho_0(x) = 0,

with :math:`I + D^2\psi` positive definite (u convex). Discretization: second-order centred
differences (:mod:`.operators`) for :math:`D^2\psi` and :math:`\nabla\psi`, and
:math:`\log\rho_1` between grid points by a cubic B-spline of its samples.

On a grid the discrete masses of the two sides need not balance exactly, so the discrete
equation carries one unknown constant: :math:`F(\psi) + c = 0` with :math:`\sum\psi = 0`
(Loeper & Rapetti 2005 do the same); :math:`c = O(h^2)` is reported.

:class:`NewtonSolver`: damped Newton. The Jacobian is
:math:`J\delta = \mathrm{tr}(M^{-1} D^2\delta) + \nabla\log\rho_1(T)\cdot\nabla\delta` with
:math:`M = I + D^2\psi`, assembled as a sparse matrix; each step solves the bordered system
:math:`[J\ 1;\ 1^T/N\ 0]` by GMRES preconditioned with the constant-coefficient operator
:math:`\sum_k \overline{M^{-1}_{kk}} D_{kk}` inverted by FFT (torus) or DCT (box), or by a
sparse direct solve. The step is halved until :math:`I + D^2\psi` stays positive definite on
every cell and the residual's 2-norm decreases (Armijo).

:class:`FlowSolver`: the parabolic Monge-Ampère flow
:math:`\partial_t\psi = F(\psi) - \overline{F(\psi)}` (the mean removed, so that
:math:`\sum\psi = 0` is kept), explicit Euler or semi-implicit (the stiff part
:math:`a\,\Delta_h` implicit, :math:`a` the largest eigenvalue of :math:`M^{-1}` on the grid,
solved by FFT/DCT): its steady state is the Newton solution.

Nothing here reads files or prints.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import NumericalError
from .cellgrid import CellGrid, CubicSpline


def _det_inv(m):
    """Determinant, inverse (as nested lists of arrays) and positive-definiteness of
    symmetric ``d x d`` fields ``m[k][l]`` (d = 1, 2, 3)."""
    d = len(m)
    if d == 1:
        det = m[0][0]
        return det, [[1.0 / det]], det > 0
    if d == 2:
        a, b, c = m[0][0], m[0][1], m[1][1]
        det = a * c - b * b
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = [[c / det, -b / det], [-b / det, a / det]]
        return det, inv, (a > 0) & (det > 0)
    cof = [[None] * 3 for _ in range(3)]
    for i in range(3):
        for j in range(3):
            r = [x for x in range(3) if x != i]
            s = [x for x in range(3) if x != j]
            cof[i][j] = (-1) ** (i + j) * (m[r[0]][s[0]] * m[r[1]][s[1]]
                                           - m[r[0]][s[1]] * m[r[1]][s[0]])
    det = m[0][0] * cof[0][0] + m[0][1] * cof[0][1] + m[0][2] * cof[0][2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = [[cof[j][i] / det for j in range(3)] for i in range(3)]
    pd = (m[0][0] > 0) & (m[0][0] * m[1][1] - m[0][1] ** 2 > 0) & (det > 0)
    return det, inv, pd


class MongeAmpereEquation:
    """The discrete operator :math:`F` between ``rho0`` and ``rho1`` (positive cell values)."""

    def __init__(self, grid: CellGrid, rho0: np.ndarray, rho1: np.ndarray):
        if np.any(rho0 <= 0) or np.any(rho1 <= 0):
            raise ValueError("the log form needs densities positive on every cell")
        self.grid = grid
        self.log_rho0 = np.log(rho0).ravel()
        self.rho0 = np.asarray(rho0, dtype=np.float64).ravel()
        self.log_rho1 = CubicSpline(grid, np.log(rho1))
        self.x = [c.ravel() for c in grid.mesh()]
        self.first = grid.first
        self.second = grid.second

    def evaluate(self, psi: np.ndarray) -> dict:
        """Everything the solvers need at ``psi`` (flat): ``F`` (without the constant), the
        Hessian ``M = I + D^2 psi``, its determinant and inverse, ``grad`` of psi, whether M is
        positive definite everywhere (``convex``) and ``grad_log_rho1`` at the map."""
        d = self.grid.ndim
        m = [[None] * d for _ in range(d)]
        for (k, l), mat in self.second.items():
            m[k][l] = mat @ psi + (1.0 if k == l else 0.0)
            m[l][k] = m[k][l]
        grad = [mat @ psi for mat in self.first]
        det, inv, pd = _det_inv(m)
        convex = bool(np.all(pd))
        out = {"m": m, "det": det, "inv": inv, "grad": grad, "convex": convex}
        if not convex:
            return out
        l1, dl1 = self.log_rho1([self.x[k] + grad[k] for k in range(d)])
        out["F"] = np.log(det) + l1 - self.log_rho0
        out["grad_log_rho1"] = dl1
        return out

    def jacobian(self, ev: dict) -> sp.csr_matrix:
        d = self.grid.ndim
        inv = ev["inv"]
        jac = None
        for (k, l), mat in self.second.items():
            coef = inv[k][l] if k == l else 2 * inv[k][l]
            term = sp.diags(coef) @ mat
            jac = term if jac is None else jac + term
        for k in range(d):
            jac = jac + sp.diags(ev["grad_log_rho1"][k]) @ self.first[k]
        return jac.tocsr()

    def w2_squared(self, ev: dict) -> float:
        """:math:`\\int |\\nabla u - x|^2 \\rho_0` by the rectangle rule."""
        sq = sum(g ** 2 for g in ev["grad"])
        return float(np.sum(sq * self.rho0) * self.grid.cell_volume)

    def coefficient_bound(self, ev: dict) -> float:
        """Largest eigenvalue of :math:`M^{-1}` over the grid (a bound on the diffusion)."""
        inv = ev["inv"]
        d = self.grid.ndim
        if d == 1:
            return float(np.max(inv[0][0]))
        if d == 2:
            a, b, c = inv[0][0], inv[0][1], inv[1][1]
            return float(np.max(0.5 * (a + c) + np.sqrt(0.25 * (a - c) ** 2 + b * b)))
        # 3D: Gershgorin bound (cheap, an upper bound)
        return float(np.max(np.maximum.reduce([
            inv[k][k] + sum(np.abs(inv[k][l]) for l in range(3) if l != k) for k in range(3)])))


class _Stepper:
    """What both solvers share: the state, restart and the final fields."""

    def __init__(self, equation: MongeAmpereEquation, psi0=None):
        self.eq = equation
        n = equation.grid.size
        self.psi = np.zeros(n) if psi0 is None else np.asarray(psi0, float).ravel().copy()
        self.c = 0.0
        self.iteration = 0
        self._ev = None

    @property
    def ev(self) -> dict:
        if self._ev is None:
            self._ev = self.eq.evaluate(self.psi)
            if not self._ev["convex"]:
                raise NumericalError("I + D^2 psi is not positive definite at the current "
                                     "iterate (the potential is not convex)")
        return self._ev

    def fields(self) -> dict[str, np.ndarray]:
        ev = self.ev
        g = self.eq.grid
        out = {"psi": self.psi.reshape(g.shape), "det": ev["det"].reshape(g.shape),
               "residual": (ev["F"] + self.c).reshape(g.shape)}
        for k in range(g.ndim):
            out[f"map_{k}"] = (self.eq.x[k] + ev["grad"][k]).reshape(g.shape)
        return out

    def w2_squared(self) -> float:
        return self.eq.w2_squared(self.ev)

    def _check_finite(self, *arrays):
        for a in arrays:
            if not np.all(np.isfinite(a)):
                raise NumericalError(f"non-finite values at iteration {self.iteration}")


class NewtonSolver(_Stepper):
    """Damped Newton for :math:`F(\\psi) + c = 0`, :math:`\\sum\\psi = 0` (one step per
    iteration); stops at ``max |F + c| <= tol`` or after ``max_iterations``."""

    def __init__(self, equation, *, tol=1e-10, max_iterations=50, linear="gmres",
                 psi0=None):
        super().__init__(equation, psi0)
        if linear not in ("gmres", "direct"):
            raise ValueError(f"linear must be 'gmres' or 'direct', got {linear!r}")
        self.tol = tol
        self.max_iterations = max_iterations
        self.linear = linear
        self.converged = False
        self.linear_iterations_total = 0
        self._update_residual()

    def _update_residual(self):
        self.residual = float(np.max(np.abs(self.ev["F"] + self.c)))
        self.converged = self.residual <= self.tol

    @property
    def finished(self) -> bool:
        return self.converged or self.iteration >= self.max_iterations

    def _preconditioner(self, ev):
        g = self.eq.grid
        n = g.size
        weights = [float(np.mean(ev["inv"][k][k])) for k in range(g.ndim)]
        symbol = g.laplacian_symbol(weights)
        symbol.flat[0] = 1.0  # the mean (zero mode) is set separately

        def apply(v):
            r, s = v[:n], v[n]
            c = float(np.mean(r))
            hat = g.forward((r - c).reshape(g.shape)) / symbol
            hat.flat[0] = 0.0
            delta = g.inverse(hat).ravel() + s
            return np.concatenate([delta, [c]])

        return spla.LinearOperator((n + 1, n + 1), matvec=apply, dtype=np.float64)

    def _solve(self, ev, rhs):
        n = self.eq.grid.size
        jac = self.eq.jacobian(ev)
        if self.linear == "direct":
            ones = sp.csr_matrix(np.ones((n, 1)))
            big = sp.bmat([[jac, ones], [ones.T / n, None]], format="csc")
            sol = spla.spsolve(big, np.concatenate([rhs, [0.0]]))
            return sol[:n], float(sol[n]), 1

        def matvec(v):
            return np.concatenate([jac @ v[:n] + v[n], [np.mean(v[:n])]])

        op = spla.LinearOperator((n + 1, n + 1), matvec=matvec, dtype=np.float64)
        count = [0]

        def callback(_):
            count[0] += 1

        rtol = min(1e-2, max(1e-13, 0.1 * self.residual))
        sol, info = spla.gmres(op, np.concatenate([rhs, [0.0]]), rtol=rtol, atol=0.0,
                               restart=60, maxiter=20, M=self._preconditioner(ev),
                               callback=callback, callback_type="pr_norm")
        if info < 0:
            raise NumericalError(f"GMRES failed (info {info}) at iteration {self.iteration}")
        return sol[:n], float(sol[n]), count[0]

    def step(self) -> dict[str, float]:
        ev = self.ev
        res = ev["F"] + self.c
        delta, dc, its = self._solve(ev, -res)
        self._check_finite(delta)
        self.linear_iterations_total += its
        norm0 = float(np.linalg.norm(res))
        alpha = 1.0
        while True:
            psi = self.psi + alpha * delta
            psi -= psi.mean()  # exact in exact arithmetic; keeps round-off from drifting
            trial = self.eq.evaluate(psi)
            if trial["convex"]:
                new = trial["F"] + self.c + alpha * dc
                if np.all(np.isfinite(new)) and \
                        np.linalg.norm(new) <= (1 - 1e-4 * alpha) * norm0:
                    break
            alpha *= 0.5
            if alpha < 2.0 ** -30:
                raise NumericalError(f"Newton line search failed at iteration "
                                     f"{self.iteration} (residual {self.residual:.3e})")
        self.psi = psi
        self.c += alpha * dc
        self._ev = trial
        self.iteration += 1
        self._update_residual()
        return {"residual": self.residual, "step_length": alpha,
                "linear_iterations": float(its), "mass_constant": self.c,
                "W2_squared": self.w2_squared()}

    def state(self) -> dict[str, np.ndarray]:
        return {"psi": self.psi.copy(), "c": np.float64(self.c),
                "iteration": np.int64(self.iteration),
                "linear_iterations_total": np.int64(self.linear_iterations_total)}

    def load_state(self, state) -> None:
        self.psi = np.asarray(state["psi"], float).ravel().copy()
        self.c = float(state["c"])
        self.iteration = int(state["iteration"])
        self.linear_iterations_total = int(state["linear_iterations_total"])
        self._ev = None
        self._update_residual()


class FlowSolver(_Stepper):
    r"""The parabolic Monge-Ampère flow :math:`\partial_t\psi = F(\psi) - \overline{F}`.

    ``method``: ``"explicit"`` (forward Euler, step ``cfl / (2 a \sum_k h_k^{-2})`` with ``a``
    the largest eigenvalue of :math:`M^{-1}`, recomputed each step) or ``"semi_implicit"``
    (``(I - dt\,a\,\Delta_h)\,\delta = dt\,(F - \overline F)``, fixed ``dt``, unconditionally
    stable for the constant-coefficient part). Stops when ``max |F - mean F| <= tol``, at
    ``t_final`` or after ``max_iterations`` steps.
    """

    def __init__(self, equation, *, method="semi_implicit", dt=None, cfl=0.9, tol=1e-10,
                 t_final=math.inf, max_iterations=100000, psi0=None):
        super().__init__(equation, psi0)
        if method not in ("explicit", "semi_implicit"):
            raise ValueError(f"unknown flow method {method!r}")
        if method == "semi_implicit" and dt is None:
            raise ValueError("the semi-implicit flow needs dt")
        self.method = method
        self.dt_fixed = dt
        self.cfl = cfl
        self.tol = tol
        self.t_final = t_final
        self.max_iterations = max_iterations
        self.time = 0.0
        self.converged = False
        self._update_residual()
        self._times, self._residuals = [0.0], [self.residual]

    def _update_residual(self):
        f = self.ev["F"]
        self.c = -float(np.mean(f))
        self.residual = float(np.max(np.abs(f + self.c)))
        self.converged = self.residual <= self.tol

    @property
    def finished(self) -> bool:
        return (self.converged or self.iteration >= self.max_iterations
                or self.time >= self.t_final * (1 - 1e-12))

    def _dt(self, bound: float) -> float:
        if self.method == "explicit":
            inv_h2 = sum(1.0 / h ** 2 for h in self.eq.grid.spacing)
            dt = self.cfl / (2 * bound * inv_h2)
            if self.dt_fixed is not None:
                dt = min(dt, self.dt_fixed)
        else:
            dt = self.dt_fixed
        return min(dt, self.t_final - self.time)

    def step(self) -> dict[str, float]:
        ev = self.ev
        g = self.eq.grid
        rate = ev["F"] + self.c
        bound = self.eq.coefficient_bound(ev)
        dt = self._dt(bound)
        if self.method == "explicit":
            delta = dt * rate
        else:
            symbol = 1.0 - dt * bound * g.laplacian_symbol([1.0] * g.ndim)
            delta = g.inverse(g.forward((dt * rate).reshape(g.shape)) / symbol).ravel()
        self._check_finite(delta)
        psi = self.psi + delta
        self.psi = psi - psi.mean()
        self._ev = self.eq.evaluate(self.psi)
        self.time += dt
        self.iteration += 1
        if not self._ev["convex"]:
            raise NumericalError(f"the flow left the convex potentials at t = {self.time:.4g} "
                                 "(step too large: lower solver.dt or solver.cfl)")
        self._update_residual()
        self._times.append(self.time)
        self._residuals.append(self.residual)
        return {"residual": self.residual, "time": self.time, "dt": dt,
                "mass_constant": self.c, "W2_squared": self.w2_squared()}

    #: state entries whose shape changes as the run goes on (checked by rank on restart)
    growing_state = ("times", "residuals")

    def state(self) -> dict[str, np.ndarray]:
        return {"psi": self.psi.copy(), "time": np.float64(self.time),
                "iteration": np.int64(self.iteration),
                "times": np.array(self._times), "residuals": np.array(self._residuals)}

    def history_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Times and residuals of every step so far (the initial state first)."""
        return np.array(self._times), np.array(self._residuals)

    def load_state(self, state) -> None:
        self.psi = np.asarray(state["psi"], float).ravel().copy()
        self.time = float(state["time"])
        self.iteration = int(state["iteration"])
        self._ev = None
        self._update_residual()
        self._times = list(np.asarray(state["times"], float))
        self._residuals = list(np.asarray(state["residuals"], float))


def decay_rate(times: np.ndarray, residuals: np.ndarray, floor: float = 1e-11) -> float:
    """Exponential decay rate of the residual, :math:`-d\\log r/dt`, fitted by least squares
    on the tail: the later half of the steps after the residual fell below 1e-2 of its start
    and before it reached ``floor`` (round-off), where the slowest mode dominates. NaN when
    fewer than 3 such steps."""
    times, residuals = np.asarray(times, float), np.asarray(residuals, float)
    if len(residuals) < 3:
        return float("nan")
    keep = (residuals < 1e-2 * residuals[0]) & (residuals > floor)
    if keep.sum() < 6:
        keep = residuals > floor
    index = np.flatnonzero(keep)
    index = index[len(index) // 2:]
    if len(index) < 3:
        return float("nan")
    keep = np.zeros(len(residuals), bool)
    keep[index] = True
    slope = np.polyfit(times[keep], np.log(residuals[keep]), 1)[0]
    return float(-slope)
