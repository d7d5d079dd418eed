"""The ``otreg_flow`` problem kind: transport-regularized potential flows (OT-Flow objective).

The objective and its exact discrete adjoint (:mod:`.objective`), the export to the
``flow_comparison`` checkpoint format (:mod:`.export`) and the kind itself (:mod:`.problem`).
"""
from ...backends import CPU_BACKENDS
from ...core.registry import ProblemKind, register
from .export import checkpoint_arrays
from .objective import TERMS, OTRegularized, integrate_ot, ot_loss, ot_loss_and_grad
from .plot import plot
from .problem import SCHEMA, OTRegFlowProblem, build

KIND = register(ProblemKind(
    name="otreg_flow",
    title="transport-regularized potential flow (OT-Flow objective: transport cost + NLL + HJB "
          "residual, exact discrete adjoint); distance of the trained map to optimal transport",
    schema=SCHEMA,
    build=build,
    plot=plot,
    backends=CPU_BACKENDS,
))

__all__ = ["KIND", "OTRegFlowProblem", "OTRegularized", "TERMS", "checkpoint_arrays",
           "integrate_ot", "ot_loss", "ot_loss_and_grad"]
