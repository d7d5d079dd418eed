"""The ``euler_lagrangian`` problem kind: case schema, initial particles, exact flow, outputs."""
from __future__ import annotations

import numpy as np

from ...config import Field, Section, make_schema
from ...core.problem import GridAxis, ParticleData, Problem, Reference
from ...errors import InputError
from . import exact
from .projection import AssignmentProjection, SemiDiscreteProjection, grid_centres
from .solver import INTEGRATORS, LagrangianEulerSolver

LOWER, UPPER = 0.0, 1.0  # the box of the shipped flow

SCHEMA = make_schema({
    "particles": Section({
        "n": Field("int", minimum=2, resolution="inverse",
                   doc="particles per side: N = n^2 particles of mass 1/N, h = 1/n"),
        "init": Field("str", "grid", choices=("grid", "lloyd"),
                      doc="grid: centres of the n x n cells; lloyd: seeded uniform samples "
                          "moved lloyd_iterations times to their Laguerre-cell centroids "
                          "(the authors' script)"),
        "lloyd_iterations": Field("int", 5, minimum=0, doc="iterations of init = 'lloyd'"),
        "prepare": Field("bool", True,
                         doc="well-prepared start: move each particle by eps^2 grad p so the "
                             "penalty starts at its equilibrium (false: on the points, as "
                             "Gallouet-Merigot)"),
    }, doc="the particles and their initial positions (velocity: the exact field)"),
    "model": Section({
        "flow": Field("str", "rotation_square", choices=("rotation_square",),
                      doc="stationary rotation of [0,1]^2, u = (sin px cos py, -cos px sin py)"),
        "epsilon": Field("float", None, exclusive_minimum=0.0,
                         doc="penalization length; default epsilon_coefficient * "
                             "h^epsilon_exponent"),
        "epsilon_coefficient": Field("float", 0.775, exclusive_minimum=0.0,
                                     doc="epsilon = coefficient * (1/n)^exponent when epsilon "
                                         "is not given"),
        "epsilon_exponent": Field("float", 0.5, minimum=0.0, maximum=1.0,
                                  doc="epsilon ~ h^exponent in convergence studies"),
    }, doc="the flow and the penalization of incompressibility"),
    "time": Section({
        "t_final": Field("float", 1.0, exclusive_minimum=0.0, doc="final time"),
        "steps": Field("int", None, minimum=1, resolution="inverse",
                       doc="time steps; default round(steps_ratio * n)"),
        "steps_ratio": Field("float", 5.0 / 6.0, exclusive_minimum=0.0,
                             doc="time steps per particle per side when steps is not given"),
        "integrator": Field("str", "symplectic_euler", choices=INTEGRATORS,
                            doc="symplectic time stepping, one projection per step"),
    }, doc="time stepping"),
    "solver": Section({
        "projection": Field("str", "semi_discrete", choices=("semi_discrete", "assignment"),
                            doc="semi_discrete: centroids of equal-area Laguerre cells (Newton); "
                                "assignment: optimal assignment to the fixed grid (slow, coarse)"),
        "newton_tol": Field("float", 1e-9, exclusive_minimum=0.0, exclusive_maximum=1.0,
                            doc="relative cell-area tolerance of the semi-discrete Newton"),
        "max_newton": Field("int", 50, minimum=1, doc="Newton iterations per projection"),
    }, doc="the projection onto measure-preserving configurations"),
    "output": Section({
        "every": Field("int", 10, minimum=1, doc="steps between flushes of history and checkpoint"),
    }),
})


class EulerLagrangianProblem(Problem):
    def __init__(self, case):
        super().__init__(case)
        where = case.source
        self.n = case.get("particles.n")
        self.h = (UPPER - LOWER) / self.n
        self.epsilon = case.get("model.epsilon") or (
            case.get("model.epsilon_coefficient") * self.h ** case.get("model.epsilon_exponent"))
        self.t_final = case.get("time.t_final")
        self.steps = case.get("time.steps") or max(1, int(round(case.get("time.steps_ratio")
                                                               * self.n)))
        self.dt = self.t_final / self.steps
        self.integrator = case.get("time.integrator")
        # the penalty is a spring of angular frequency 1/eps: both integrators are stable
        # only for dt < 2 eps
        if self.dt >= 2 * self.epsilon:
            key = "time.steps" if case.get("time.steps") else "time.steps_ratio"
            raise InputError(f"time step {self.dt:.4g} >= 2 epsilon = {2 * self.epsilon:.4g}, "
                             "the stability limit of the penalty's oscillation; take more "
                             "steps or a larger epsilon", source=where, key=key)
        if self.epsilon >= 0.5 * (UPPER - LOWER):
            key = "model.epsilon" if case.get("model.epsilon") else "model.epsilon_coefficient"
            raise InputError(f"epsilon = {self.epsilon:.4g} is not small against the box "
                             f"(expected < {0.5 * (UPPER - LOWER):g})", source=where, key=key)
        if case.get("solver.projection") == "assignment" and self.n > 80:
            raise InputError(f"the assignment projection needs an N x N cost matrix; n = "
                             f"{self.n} (N = {self.n ** 2}) is too large (expected n <= 80)",
                             source=where, key="particles.n")
        self._x0 = None
        self._exact = None

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        return (f"{self.n ** 2} particles ({self.n}^2), eps = {self.epsilon:.4g}, "
                f"{self.steps} {self.integrator} steps to t = {self.t_final:g}, "
                f"{self.case.get('solver.projection')} projection")

    def max_iterations(self) -> int:
        return self.steps

    def _projection(self, backend):
        s = self.case.section("solver")
        if s["projection"] == "assignment":
            return AssignmentProjection(self.n, LOWER, UPPER)
        return SemiDiscreteProjection(backend, LOWER, UPPER, tol=s["newton_tol"],
                                      max_newton=s["max_newton"])

    def initial_positions(self, backend) -> np.ndarray:
        """The particles at t = 0 (deterministic: the grid, or Lloyd from ``run.seed``)."""
        if self._x0 is None:
            if self.case.get("particles.init") == "grid":
                y = grid_centres(self.n, LOWER, UPPER)
            else:
                rng = np.random.default_rng(np.random.SeedSequence(self.case.get("run.seed")))
                y = LOWER + (UPPER - LOWER) * rng.random((self.n ** 2, 2))
                lloyd = SemiDiscreteProjection(backend, LOWER, UPPER)
                w = None
                for _ in range(self.case.get("particles.lloyd_iterations")):
                    y, w, _info = lloyd(y, w)
            if self.case.get("particles.prepare"):
                y = y + self.epsilon ** 2 * exact.pressure_gradient(y)
            self._x0 = y
        return self._x0

    def exact_positions(self, backend=None) -> np.ndarray:
        """Exact positions ``(steps + 1, N, 2)`` at the step times."""
        if self._exact is None:
            times = self.dt * np.arange(self.steps + 1)
            self._exact = exact.exact_positions(self.initial_positions(backend), times)
        return self._exact

    def make_solver(self, backend) -> LagrangianEulerSolver:
        x0 = self.initial_positions(backend)
        return LagrangianEulerSolver(x0, exact.velocity(x0), self._projection(backend),
                                     epsilon=self.epsilon, dt=self.dt, steps=self.steps,
                                     integrator=self.integrator,
                                     exact=self.exact_positions(backend))

    def grid(self) -> list[GridAxis]:
        return [GridAxis("t", self.dt * np.arange(self.steps + 1), "1",
                         "times of the steps (t = 0 is the initial state)", "time")]

    # -- results ----------------------------------------------------------------------------
    def fields(self, solver) -> list:
        return []

    def particles(self, solver) -> list[ParticleData]:
        return [
            ParticleData("x0", solver.x0, "length", "initial positions"),
            ParticleData("x", solver.x, "length", f"positions at t = {solver.time:g}"),
            ParticleData("v", solver.v, "length/time", f"velocities at t = {solver.time:g}"),
            ParticleData("projection", solver.p, "length",
                         "P(x): the projection onto measure-preserving configurations"),
            ParticleData("x_exact", solver.exact[solver.iteration], "length",
                         f"exact flow of x0 at t = {solver.time:g}"),
        ]

    def summary(self, solver) -> dict:
        energy, kinetic, potential = solver.energy()
        err = solver.errors()
        return {
            "rms_error": float(np.sqrt(np.mean(err ** 2))), "max_error": float(err.max()),
            "time": solver.time, "n_particles": int(self.n ** 2), "epsilon": self.epsilon,
            "dt": self.dt, "steps": int(self.steps), "energy_initial": solver.energy0,
            "energy": energy, "kinetic": kinetic, "potential": potential,
            "energy_drift_relative": (energy - solver.energy0) / solver.energy0,
            "newton_iterations_mean": solver.newton_total / max(solver.iteration, 1),
        }

    def reference(self) -> Reference:
        # the exact flow is the reference: the error is the run's RMS distance to it
        return Reference(scalars={"rms_error": 0.0})


def build(case) -> EulerLagrangianProblem:
    return EulerLagrangianProblem(case)
