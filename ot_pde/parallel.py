"""MPI helpers: detect an ``mpiexec`` launch without importing mpi4py needlessly.

mpi4py is optional (``pip install 'ot_pde[mpi]'``). ``from mpi4py import MPI`` initializes MPI,
so it is imported only when the launcher's environment says there is more than one rank
(MPICH/Hydra and Intel MPI set ``PMI_SIZE``, Open MPI ``OMPI_COMM_WORLD_SIZE``, MVAPICH
``MV2_COMM_WORLD_SIZE``); a plain serial run never touches it.
"""
from __future__ import annotations

import os

_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")


def block_range(n: int, parts: int, k: int) -> tuple[int, int]:
    """Items ``[lo, hi)`` of part ``k`` when ``n`` items are cut into ``parts`` contiguous
    blocks whose sizes differ by at most one (the first ``n % parts`` get one more): a
    rank's grid rows or spectral columns, a shard's samples, a rank's shards."""
    base, extra = divmod(n, parts)
    lo = k * base + min(k, extra)
    return lo, lo + base + (1 if k < extra else 0)


def launched_size() -> int:
    """World size announced by the MPI launcher's environment (1 when not under mpiexec)."""
    for var in _SIZE_VARS:
        try:
            return max(1, int(os.environ[var]))
        except (KeyError, ValueError):
            continue
    return 1


def world_comm():
    """``MPI.COMM_WORLD`` when launched on more than one rank with mpi4py importable, else None."""
    if launched_size() <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def mpi_info() -> dict:
    """The MPI library, world size and rank (for ``ot-pde info``); initializes MPI if present."""
    try:
        import mpi4py
        from mpi4py import MPI
    except ImportError:
        return {"mpi": "mpi4py not installed", "mpi_size": None, "mpi_rank": None}
    lines = MPI.Get_library_version().strip().splitlines()
    comm = MPI.COMM_WORLD
    library = " ".join(lines[0].split()) if lines else "unknown"
    return {"mpi": f"{library} (mpi4py {mpi4py.__version__})",
            "mpi_size": comm.Get_size(), "mpi_rank": comm.Get_rank()}


def share_cores(comm) -> int | None:
    """Give each rank of a node its share of the cores for numba's threads.

    Without this every rank starts one numba thread per core and ``mpiexec -n 2`` on two
    cores runs ten times slower than serial. A ``NUMBA_NUM_THREADS`` set by the user wins.
    Returns the thread count chosen (None when left alone).
    """
    import sys

    if "NUMBA_NUM_THREADS" in os.environ:
        return None
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    per_node = local.Get_size()
    local.Free()
    threads = max(1, (os.cpu_count() or 1) // per_node)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:  # read by numba when it is imported
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    return threads
