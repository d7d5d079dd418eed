"""The ``gp_flow`` problem kind: Gaussian-preserving Euler rearrangement of a trained flow.

The 2D Gaussian Euler (lake) equations in Hermite-Galerkin form with particles and the
discrete adjoint (:mod:`.hermite`), the shooting optimization and the kind (:mod:`.problem`).
"""
from ...core.registry import ProblemKind, register
from .hermite import HermiteEuler, hermite_table, modes, radial_theta
from .plot import plot
from .problem import SCHEMA, GPFlowProblem, Shooting, ShootingRun, build

KIND = register(ProblemKind(
    name="gp_flow",
    title="Gaussian-preserving Euler rearrangement of a trained 2D flow (shooting on the "
          "initial velocity): transport cost before/after vs the discrete-OT bound",
    schema=SCHEMA,
    build=build,
    plot=plot,
))

__all__ = ["GPFlowProblem", "HermiteEuler", "KIND", "Shooting", "ShootingRun",
           "hermite_table", "modes", "radial_theta"]
