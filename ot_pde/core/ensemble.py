"""Ensembles of independent runs spread over MPI ranks (``converge``, ``sweep``).

Run ``i`` of an ensemble goes to rank ``i % size`` (rank-strided: the runs of a study are
ordered coarse to fine, so the costly ones are dealt round the ranks rather than piled on the
last). Each run is the same computation as in the serial ensemble, so the results are the
same to the bit; they are gathered on rank 0.
"""
from __future__ import annotations

import time
from typing import Callable

from ..errors import OtPdeError


class RemoteRunError(OtPdeError):
    """A run of an MPI ensemble failed on another rank (which reports the error itself)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def idle_barrier(comm, poll: float = 0.05) -> None:
    """Wait for every rank without busy-polling (MPICH spins in blocking collectives, which
    would steal a core from the ranks still computing)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(poll)


def spread(count: int, run: Callable[[int], object], comm=None) -> list | None:
    """``[run(0), ..., run(count - 1)]``, the calls dealt round the ranks of ``comm``.

    Returns the list on rank 0 (and in a serial call) and None on the other ranks. An
    exception in a run raises on every rank: the original one on the rank that ran it,
    :class:`RemoteRunError` (same exit code) elsewhere, so no rank waits for a dead one.
    """
    if comm is None:
        return [run(i) for i in range(count)]
    rank, size = comm.Get_rank(), comm.Get_size()
    mine: list[tuple] = []  # (index, True, result) or (index, False, (exit code, message))
    failure: BaseException | None = None
    for i in range(rank, count, size):
        try:  # a failure must still reach the collective below
            mine.append((i, True, run(i)))
        except Exception as exc:
            failure = exc
            mine.append((i, False, (getattr(exc, "exit_code", 1), str(exc))))
            break
    idle_barrier(comm)
    outcomes = sorted((o for part in comm.allgather(mine) for o in part), key=lambda o: o[0])
    failed = [o for o in outcomes if not o[1]]
    if failed:
        if failure is not None:
            raise failure
        code, message = failed[0][2]
        raise RemoteRunError(f"a run failed on another rank: {message}", code)
    return [o[2] for o in outcomes] if rank == 0 else None
