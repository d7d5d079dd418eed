"""The ``gp_flow`` problem kind: Gaussian-preserving Euler rearrangement of a trained flow.

The 2D Gaussian Euler (lake) equations in Hermite-Galerkin form with particles and the
discrete adjoint (:mod:`.hermite`); for d > 2 the antisymmetric-matrix Gaussian-preserving
fields with the Euler condition as a penalty (:mod:`.antisymmetric`: Hermite polynomials;
:mod:`.neural_field`: an MLP, any d); the shooting optimization and the kind (:mod:`.problem`).
"""
from ...backends import CPU_BACKENDS
from ...core.registry import ProblemKind, register
from .antisymmetric import AntisymmetricGP
from .hermite import HermiteEuler, hermite_table, modes, radial_theta
from .neural_field import NeuralAntisymmetricGP
from .plot import plot
from .problem import (
    SCHEMA,
    GPFlowProblem,
    PenalizedShooting,
    Shooting,
    ShootingRun,
    build,
)

KIND = register(ProblemKind(
    name="gp_flow",
    title="Gaussian-preserving Euler rearrangement of a trained flow (2D: shooting on the "
          "initial velocity; d > 2: penalized Euler): transport cost before/after vs the "
          "discrete-OT bound",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=CPU_BACKENDS,
))

__all__ = ["AntisymmetricGP", "GPFlowProblem", "HermiteEuler", "KIND", "NeuralAntisymmetricGP",
           "PenalizedShooting",
           "Shooting", "ShootingRun",
           "hermite_table", "modes", "radial_theta"]
