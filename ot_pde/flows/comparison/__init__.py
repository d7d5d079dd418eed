"""The ``flow_comparison`` problem kind: exported neural flows against OT references.

The kind itself (:mod:`.problem`); the checkpoints and models it evaluates are the library
:mod:`ot_pde.flows.exported`, the discrete-OT estimate :mod:`ot_pde.flows.discrete_ot`.
"""
from ...backends import BACKENDS
from ...core.registry import ProblemKind, register
from .plot import plot
from .problem import SCHEMA, FlowComparisonProblem, build

KIND = register(ProblemKind(
    name="flow_comparison",
    title="exported neural flow (RealNVP, OT-Flow, Monge-Ampere) vs optimal transport: "
          "transport cost, discrete-OT bound, Benamou-Brenier W2^2 (2D), log-likelihood",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=BACKENDS,
))

__all__ = ["FlowComparisonProblem", "KIND"]
