"""Brenier's generalized incompressible flows by multi-marginal entropic transport (BCN 2019)."""
from ...backends import CPU_BACKENDS
from ...core.registry import ProblemKind, register
from .plot import plot
from .problem import (
                      SCHEMA,
                      GeneralizedGeodesicProblem,
                      build,
                      discrete_factor,
                      exact_conditional_cdf,
)
from .solver import GeneralizedGeodesicSolver, epsilon_schedule

KIND = register(ProblemKind(
    name="generalized_geodesic",
    title="Brenier's generalized incompressible flow from id to a measure-preserving map "
          "(multi-marginal Sinkhorn): action, law of x(t), pressure",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=CPU_BACKENDS,
))

__all__ = ["GeneralizedGeodesicProblem", "GeneralizedGeodesicSolver", "KIND", "discrete_factor",
           "epsilon_schedule", "exact_conditional_cdf"]
