r"""Particle scheme à la Brenier for the incompressible Euler equations.

Gallouët & Mérigot, "A Lagrangian scheme à la Brenier for the incompressible Euler
equations", Found. Comput. Math. 18 (2018). :math:`N` particles of mass :math:`1/N` move under
the Hamiltonian

.. math:: H(X, V) = \frac{1}{2N}\sum_i |V_i|^2 + \frac{1}{2N\varepsilon^2} \sum_i
          |X_i - P(X)_i|^2,

where :math:`P(X)` is the projection of the cloud onto the measure-preserving configurations
(:mod:`.projection`). The force on particle :math:`i` is :math:`(P(X)_i - X_i)/\varepsilon^2`
(the gradient of the squared distance to the set, Gallouët-Mérigot Prop. 3.2), a stiff spring
towards incompressibility whose pressure is the Lagrange multiplier in the limit
:math:`\varepsilon \to 0`. Time stepping is symplectic (one projection per step):

* ``symplectic_euler`` (the authors' script): :math:`V \leftarrow V + \tau A(X)`,
  :math:`X \leftarrow X + \tau V`;
* ``verlet`` (velocity Verlet): half kick, drift, new force, half kick.

Nothing here reads files or prints.
"""
from __future__ import annotations

import numpy as np

from ...errors import NumericalError

INTEGRATORS = ("symplectic_euler", "verlet")


class LagrangianEulerSolver:
    r"""Time stepping of the particle scheme; one :meth:`step` is one time step.

    Parameters
    ----------
    x0, v0 : (N, 2) ndarray
        Initial positions and velocities.
    projection : callable
        ``projection(X, weights) -> (P(X), weights, info)`` (see :mod:`.projection`).
    epsilon : float
        Penalization length :math:`\varepsilon`.
    dt : float
        Time step.
    steps : int
        Number of steps (final time ``steps * dt``).
    integrator : {"symplectic_euler", "verlet"}
    exact : (steps + 1, N, 2) ndarray, optional
        Exact positions at the step times, for the per-step RMS error.
    """

    def __init__(self, x0, v0, projection, *, epsilon: float, dt: float, steps: int,
                 integrator: str = "symplectic_euler", exact=None):
        if integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {integrator!r}")
        self.x0 = np.array(x0, dtype=np.float64)
        self.projection = projection
        self.epsilon = float(epsilon)
        self.dt = float(dt)
        self.steps = int(steps)
        self.integrator = integrator
        self.exact = exact
        self.iteration = 0
        self.x = self.x0.copy()
        self.v = np.array(v0, dtype=np.float64)
        self.weights = None
        self.newton_total = 0
        self.p = self._project(self.x)
        self.energy0 = self.energy()[0]

    # -- numerics -------------------------------------------------------------------------
    def _project(self, x) -> np.ndarray:
        if not np.all(np.isfinite(x)):
            raise NumericalError("particle positions are not finite (time step too large for "
                                 "epsilon?)")
        p, self.weights, info = self.projection(x, self.weights)
        self.last_info = info
        self.newton_total += info.newton_iterations
        return p

    def force(self) -> np.ndarray:
        return (self.p - self.x) / self.epsilon ** 2

    def step(self) -> dict[str, float]:
        k = self.iteration + 1
        try:
            tau = self.dt
            if self.integrator == "symplectic_euler":
                self.v = self.v + tau * self.force()
                self.x = self.x + tau * self.v
                self.p = self._project(self.x)
            else:
                v_half = self.v + 0.5 * tau * self.force()
                self.x = self.x + tau * v_half
                self.p = self._project(self.x)
                self.v = v_half + 0.5 * tau * self.force()
            if not (np.all(np.isfinite(self.v)) and np.all(np.isfinite(self.p))):
                raise NumericalError("non-finite velocities or projection")
        except NumericalError as exc:
            raise NumericalError(f"step {k} (t = {k * self.dt:.6g}): {exc}") from None
        self.iteration = k
        energy, kinetic, potential = self.energy()
        row = {"time": k * self.dt, "energy": energy, "kinetic": kinetic,
               "potential": potential,
               "energy_drift": (energy - self.energy0) / self.energy0 if self.energy0 else energy,
               "newton_iterations": float(self.last_info.newton_iterations),
               "mass_error": self.last_info.mass_error}
        if self.exact is not None:
            row["rms_error"] = self.rms_error()
        if not np.isfinite(energy):
            raise NumericalError(f"step {k} (t = {k * self.dt:.6g}): non-finite energy")
        return row

    # -- diagnostics ----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.iteration >= self.steps

    @property
    def time(self) -> float:
        return self.iteration * self.dt

    def energy(self) -> tuple[float, float, float]:
        """(total, kinetic, potential) per unit mass."""
        kinetic = 0.5 * float(np.mean(np.einsum("ij,ij->i", self.v, self.v)))
        d = self.x - self.p
        potential = float(np.mean(np.einsum("ij,ij->i", d, d))) / (2 * self.epsilon ** 2)
        return kinetic + potential, kinetic, potential

    def errors(self) -> np.ndarray:
        """Distance of each particle to its exact position at the current time."""
        d = self.x - self.exact[self.iteration]
        return np.sqrt(np.einsum("ij,ij->i", d, d))

    def rms_error(self) -> float:
        return float(np.sqrt(np.mean(self.errors() ** 2)))

    # -- restart --------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        out = {"x": self.x.copy(), "v": self.v.copy(), "p": self.p.copy(),
               "iteration": np.int64(self.iteration), "newton_total": np.int64(self.newton_total),
               "energy0": np.float64(self.energy0)}
        if self.weights is not None and len(self.weights):
            out["weights"] = self.weights.copy()
        return out

    def load_state(self, state) -> None:
        self.x = np.array(state["x"], dtype=np.float64)
        self.v = np.array(state["v"], dtype=np.float64)
        self.p = np.array(state["p"], dtype=np.float64)
        if self.x.shape != self.x0.shape:
            raise ValueError(f"checkpoint holds {self.x.shape[0]} particles, the case "
                             f"{self.x0.shape[0]}")
        self.weights = np.array(state["weights"], dtype=np.float64) if "weights" in state \
            else self.weights
        self.iteration = int(state["iteration"])
        self.newton_total = int(state["newton_total"])
        self.energy0 = float(state["energy0"])
