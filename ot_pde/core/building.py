"""A run's life starts here: a case resolved once into its kind, backend and problem.

:func:`prepare` turns a case into a :class:`Setup` (the kind looked up, the backend resolved
and refused first when the kind does not run on it, the problem built); ``ot-pde run``,
each run of ``converge`` and of ``sweep``, and MPI ensembles hand that one object to
:func:`~ot_pde.core.runner.run_case`, so nothing is looked up or built twice. Problems and
solvers are built under the size and arithmetic checks, so a case that ``run`` would refuse
for its sizes or its magnitudes is refused by ``check`` first, with exit 2; see
:mod:`ot_pde.limits`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..backends import Backend, get_backend
from ..limits import check_footprint, guarded
from .registry import ProblemKind, get_kind

__all__ = ["Setup", "build_problem", "build_solver", "prepare"]


@dataclass(frozen=True)
class Setup:
    """A case with its kind, its resolved backend and its built problem."""

    case: object
    kind: ProblemKind
    backend: Backend
    problem: object


def prepare(case, backend: str | None = None) -> Setup:
    """Resolve ``case`` once: the kind, the backend (``backend`` overrides ``run.backend``;
    the kind's refusal comes before any library is asked), then the problem."""
    kind = get_kind(case.kind)
    resolved = get_backend(kind.backend_for(case, backend),
                           source="--backend" if backend else "run.backend")
    return Setup(case, kind, resolved, build_problem(case, kind))


def build_problem(case, kind: ProblemKind | None = None):
    """``kind.build(case)`` with MemoryError, OverflowError and NumPy's size errors made
    InputError naming the case file."""
    kind = kind or get_kind(case.kind)
    with guarded(f"building the {case.kind} case", source=case.source):
        return kind.build(case)


def build_solver(problem, backend, case):
    """``problem.make_solver(backend)`` under the same guard, then its arrays counted
    against the machine's memory (:func:`~ot_pde.limits.check_footprint`)."""
    with guarded(f"setting up the {case.kind} solver", source=case.source):
        solver = problem.make_solver(backend)
    check_footprint(solver, what=f"the {case.kind} solver", source=case.source)
    return solver
