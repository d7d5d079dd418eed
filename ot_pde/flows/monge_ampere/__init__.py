"""The ``monge_ampere_flow`` problem kind (Zhang, E & Wang 2018): training, sampling, checks."""
from ...backends import BACKENDS
from ...core.registry import ProblemKind, register
from .plot import plot
from .problem import SCHEMA, MongeAmpereFlowProblem, build

KIND = register(ProblemKind(
    name="monge_ampere_flow",
    title="Monge-Ampere flow: particles dx/dt = grad phi, d ln p/dt = -laplacian phi; density "
          "estimation, variational fits, finite-volume cross-check",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=BACKENDS,
))

__all__ = ["MongeAmpereFlowProblem", "KIND"]
