"""Entropy-Kantorovich potentials, the entropic interpolation and its flow (1D/2D/3D grids).

Finlay, Gerolin, Oberman & Pooladian, "Learning normalizing flows from Entropy-Kantorovich
potentials" (2020): the potentials of entropic OT, smoothed by the heat semigroup, give the
Schrödinger-bridge interpolation and a continuous normalizing flow.
"""
from ...backends import BACKENDS
from ...core.registry import ProblemKind, register
from .plot import plot
from .problem import (
    SCHEMA,
    EntropicProblem,
    entropic_gaussian,
    entropic_gaussian_interpolation,
)
from .sample_problem import SampleProblem
from .solver import (
    EntropicSolver,
    GaussianConvolution,
    integrate_flow,
    sample_velocity,
    sinkhorn_samples,
)


def build(case):
    """The grid problem, or with ``[potentials] representation = "neural"`` the sample one."""
    if case.get("potentials.representation") == "neural":
        return SampleProblem(case)
    return EntropicProblem(case)


KIND = register(ProblemKind(
    name="entropic_potentials",
    title="entropy-Kantorovich potentials: entropic cost, interpolation rho_t, velocity v_t, "
          "flow of samples",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=BACKENDS,
))

__all__ = ["EntropicSolver", "EntropicProblem", "SampleProblem", "GaussianConvolution",
           "entropic_gaussian",
           "entropic_gaussian_interpolation", "integrate_flow", "sample_velocity",
           "sinkhorn_samples", "KIND"]
