"""Build a case's problem and solver under the size and arithmetic checks (one place).

``ot-pde check`` and ``ot-pde run`` (and the runs of ``converge`` and ``sweep``) build
through these two functions, so a case that ``run`` would refuse for its sizes or its
magnitudes is refused by ``check`` first, with exit 2; see :mod:`ot_pde.limits`.
"""
from __future__ import annotations

from ..limits import check_footprint, guarded
from .registry import get_kind

__all__ = ["build_problem", "build_solver"]


def build_problem(case):
    """``kind.build(case)`` with MemoryError, OverflowError and NumPy's size errors made
    InputError naming the case file."""
    kind = get_kind(case.kind)
    with guarded(f"building the {case.kind} case", source=case.source):
        return kind.build(case)


def build_solver(problem, backend, case):
    """``problem.make_solver(backend)`` under the same guard, then its arrays counted
    against the machine's memory (:func:`~ot_pde.limits.check_footprint`)."""
    with guarded(f"setting up the {case.kind} solver", source=case.source):
        solver = problem.make_solver(backend)
    check_footprint(solver, what=f"the {case.kind} solver", source=case.source)
    return solver
