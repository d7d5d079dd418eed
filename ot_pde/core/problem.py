"""The interface between the frame (runner, writer, convergence studies) and a problem kind.

A kind's :class:`Problem` turns a validated case into a solver and knows what to write. The
solver is pure numerics (:class:`IterativeSolver`): the runner drives it one step at a time,
so progress reporting, wall-time limits, checkpoints and Ctrl-C work the same for every kind.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Mapping, Protocol

import numpy as np

from ..backends import Backend


class IterativeSolver(Protocol):
    """What the runner needs from a solver."""

    iteration: int

    @property
    def finished(self) -> bool:
        """True when the solver has nothing more to do (converged, cap or final time)."""

    def step(self) -> Mapping[str, float]:
        """Advance one iteration and return its diagnostics (one row of ``/history``)."""

    def state(self) -> dict[str, np.ndarray]:
        """Host arrays from which :meth:`load_state` continues bit-for-bit."""

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        ...


@dataclass
class GridAxis:
    name: str
    coords: np.ndarray
    units: str = ""
    description: str = ""
    kind: str = "space"  # "space", "time" or "other"


@dataclass
class FieldData:
    """A field written to ``/fields/<name>``.

    Under MPI a kind whose ``mpi_mode`` is ``"distributed"`` returns each rank's block of a
    distributed field: ``data`` is the block, ``offset`` its first index along each dimension
    and ``global_shape`` the whole field's shape. The runner writes the blocks to one file per
    rank and joins them by an HDF5 virtual dataset. Fields without ``offset`` are the same on
    every rank and written once.
    """

    name: str
    data: np.ndarray
    dims: tuple[str, ...]
    units: str = ""
    description: str = ""
    offset: tuple[int, ...] | None = None
    global_shape: tuple[int, ...] | None = None


@dataclass
class ParticleData:
    """A per-particle array, written to ``/particles/<name>`` (positions ``(N, d)``, ...)."""

    name: str
    data: np.ndarray
    units: str = ""
    description: str = ""


@dataclass
class Reference:
    """Exact values for convergence studies.

    Attributes
    ----------
    scalars : dict
        summary key -> exact value (errors are relative when the exact value is non-zero).
    fields : dict
        field name -> (exact array on the same points as the written field, measure of one
        point), for L1/L2/Linf norms of the error.
    """

    scalars: dict[str, float] = field(default_factory=dict)
    fields: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)


class Problem(abc.ABC):
    """A case turned into numerics. Subclasses are built by their kind's ``build(case)``.

    MPI (``ot-pde run`` under ``mpiexec -n P``, P > 1): the runner sets :attr:`comm` before
    :meth:`make_solver` and every rank drives its own solver in lockstep. ``mpi_mode`` says
    what the kind can do:

    * ``None``: serial only (the runner refuses to start it on more than one rank);
    * ``"replicated"``: every rank holds the same state after each step (data-parallel
      training: each rank computes its share of the batch, the step combines them);
    * ``"distributed"``: the state is split over the ranks (domain decomposition).

    With either mode :meth:`summary`, :meth:`fields`, :meth:`particles` and
    ``solver.state()`` are collective (called on every rank); ``summary`` and the particles
    must be the same on every rank, rank 0's ``state()`` is the checkpoint written (the
    whole state), and ``solver.load_state`` receives that whole state on every rank.
    """

    mpi_mode: str | None = None
    comm = None  # mpi4py communicator of more than one rank, or None (serial)

    def __init__(self, case):
        self.case = case

    def seed_streams(self, *names: str) -> dict[str, np.random.SeedSequence]:
        """Independent random streams, one per name, spawned in this order from ``run.seed``.

        The same names in the same order give the same streams, so restarts, MPI shards and
        a later change that adds a stream at the end reproduce every earlier one.
        """
        children = np.random.SeedSequence(self.case.get("run.seed")).spawn(len(names))
        return dict(zip(names, children))

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the log: what is being solved, at which resolution."""

    @abc.abstractmethod
    def make_solver(self, backend: Backend) -> IterativeSolver:
        ...

    @abc.abstractmethod
    def grid(self) -> list[GridAxis]:
        ...

    @abc.abstractmethod
    def fields(self, solver) -> list[FieldData]:
        ...

    @abc.abstractmethod
    def summary(self, solver) -> dict[str, float | int | bool]:
        """Headline scalars (``/summary`` and the JSON summary)."""

    def particles(self, solver) -> list[ParticleData]:
        """Per-particle results (samples, their log-densities, ...); none by default."""
        return []

    def reference(self) -> Reference | None:
        """Exact reference of this case, or None when it has none."""
        return None

    def max_iterations(self) -> int | None:
        """Iteration cap, for the progress bar (None: unknown)."""
        return None


class EvaluatedOnce:
    """Mixin for a :class:`Problem` whose summary, fields and particles all come from one
    costly evaluation of the solver's state (sampling, discrete OT, ...).

    Subclasses define ``_results(solver) -> (summary, fields, particles)``; it runs once per
    state, as told by :meth:`_results_key` (by default the solver and its iteration), however
    many of the three the frame asks for.
    """

    _results_cache: tuple | None = None

    def _results_key(self, solver) -> tuple:
        return (id(solver), solver.iteration)

    def _evaluated(self, solver) -> tuple:
        key = self._results_key(solver)
        if self._results_cache is None or self._results_cache[0] != key:
            self._results_cache = (key, self._results(solver))
        return self._results_cache[1]

    def summary(self, solver) -> dict:
        return dict(self._evaluated(solver)[0])

    def fields(self, solver) -> list[FieldData]:
        return self._evaluated(solver)[1]

    def particles(self, solver) -> list[ParticleData]:
        return self._evaluated(solver)[2]
