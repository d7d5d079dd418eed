"""The ``flow_comparison`` problem kind: exported neural flows against OT references.

Checkpoints (:mod:`.checkpoint`), the models evaluated in numpy/numba (:mod:`.models`), the
discrete-OT estimate (:mod:`.discrete_ot`) and the kind itself (:mod:`.problem`).
"""
from ...backends import BACKENDS
from ...core.registry import ProblemKind, register
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .discrete_ot import assignment_cost, estimate_w2
from .models import CouplingFlow, MongeAmpere, OTFlow, build_flow, flow_from_file
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

__all__ = ["Checkpoint", "CouplingFlow", "FlowComparisonProblem", "KIND", "MongeAmpere",
           "OTFlow", "assignment_cost", "build_flow", "estimate_w2", "flow_from_file",
           "load_checkpoint", "save_checkpoint"]
