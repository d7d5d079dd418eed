"""Monge-Ampère on the grid: the Brenier potential by damped Newton and by the parabolic
Monge-Ampère flow, on the torus (FFT) and on the box with the second boundary condition (DCT)."""
from ...core.registry import ProblemKind, register
from ...spacetime.cellgrid import CellGrid, CubicSpline
from .plot import plot
from .problem import SCHEMA, MongeAmpereGridProblem, build
from ...spacetime.monge_ampere import FlowSolver, MongeAmpereEquation, NewtonSolver

KIND = register(ProblemKind(
    name="monge_ampere_grid",
    title="grid Monge-Ampere for the Brenier potential (Newton, parabolic flow), torus/box",
    schema=SCHEMA,
    build=build,
    plot=plot,
))

__all__ = ["CellGrid", "CubicSpline", "FlowSolver", "MongeAmpereEquation",
           "MongeAmpereGridProblem", "NewtonSolver", "KIND"]
