"""The ``ising_variational`` problem kind: variational free energy of the 2D Ising model."""
from ...core.registry import ProblemKind, register
from .plot import plot
from .problem import SCHEMA, IsingVariationalProblem, build

KIND = register(ProblemKind(
    name="ising_variational",
    title="2D Ising model: Monge-Ampere flow on the continuous relaxation, variational and "
          "importance estimates of ln Z against brute force / Kaufman",
    schema=SCHEMA,
    build=build,
    plot=plot,
))

__all__ = ["IsingVariationalProblem", "KIND"]
