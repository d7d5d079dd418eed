"""Particle scheme à la Brenier for 2D incompressible Euler (Gallouët & Mérigot 2018)."""
from ...backends import CPU_BACKENDS
from ...core.registry import ProblemKind, register
from .plot import plot
from .problem import SCHEMA, EulerLagrangianProblem, build
from .projection import AssignmentProjection, LaguerreDiagram, SemiDiscreteProjection
from .solver import LagrangianEulerSolver

KIND = register(ProblemKind(
    name="euler_lagrangian",
    title="particle Euler scheme a la Brenier (semi-discrete OT projection): rotation of the "
          "square, RMS error to the exact flow",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=CPU_BACKENDS,
))

__all__ = ["AssignmentProjection", "EulerLagrangianProblem", "LagrangianEulerSolver",
           "LaguerreDiagram", "SemiDiscreteProjection", "KIND"]
