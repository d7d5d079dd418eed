"""Benamou-Brenier dynamic optimal transport on staggered space-time grids (1D/2D/3D)."""
from ...backends import BACKENDS
from ...core.registry import ProblemKind, register
from ...spacetime import BenamouBrenierSolver, SpaceTimeGrid
from .plot import plot
from .problem import (
    SCHEMA,
    BenamouBrenierProblem,
    build,
    bures_w2_squared,
    gaussian_geodesic,
)

KIND = register(ProblemKind(
    name="benamou_brenier",
    title="grid dynamic OT (Benamou-Brenier), 1D/2D/3D: W2^2, geodesic rho(t), momentum m(t)",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=BACKENDS,
))

__all__ = ["BenamouBrenierSolver", "BenamouBrenierProblem", "SpaceTimeGrid", "bures_w2_squared",
           "gaussian_geodesic", "KIND"]
