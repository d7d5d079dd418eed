"""2D incompressible Euler on the torus, pseudo-spectral, with the Lagrangian flow map."""
from ...backends import BACKENDS
from ...core.registry import ProblemKind, register
from .distributed import SlabSpectralEulerSolver
from .plot import plot
from .problem import SCHEMA, SpectralEulerProblem, build, taylor_green_flow_map
from .solver import SpectralEulerSolver, dealias_cutoff

KIND = register(ProblemKind(
    name="euler_spectral",
    title="2D incompressible Euler on the torus, pseudo-spectral RK4 with the flow map: "
          "vorticity, energy/enstrophy/Casimir, det of the flow map",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=BACKENDS,
))

__all__ = ["SpectralEulerSolver", "SlabSpectralEulerSolver", "SpectralEulerProblem",
           "dealias_cutoff", "taylor_green_flow_map", "KIND"]
