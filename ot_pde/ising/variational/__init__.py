"""The ``ising_variational`` problem kind: variational free energy of the 2D Ising model."""
from ...backends import BACKENDS, CPU_BACKENDS
from ...core.registry import ProblemKind, register
from .plot import plot
from .problem import SCHEMA, IsingVariationalProblem, build


def supported_backends(case) -> tuple[str, ...]:
    """annealed importance sampling (estimate.ais_chains > 0) runs on the CPU only"""
    return CPU_BACKENDS if case.get("estimate.ais_chains") else BACKENDS


KIND = register(ProblemKind(
    name="ising_variational",
    title="2D Ising model: Monge-Ampere flow on the continuous relaxation, variational and "
          "importance estimates of ln Z against brute force / Kaufman",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=supported_backends,
))

__all__ = ["IsingVariationalProblem", "KIND"]
