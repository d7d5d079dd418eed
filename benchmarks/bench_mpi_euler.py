"""Slab-decomposed 2D Euler under MPI: RK4 steps per second on 1 and 2 ranks, strong scaling.

The same 512^2 run (``SlabSpectralEulerSolver``, no markers) is launched with ``mpiexec -n 1``
and ``mpiexec -n 2`` (the ``mpiexec`` beside ``sys.executable``: the MPICH wheel's), beside the
serial ``SpectralEulerSolver`` in its own process as the reference. Each process keeps one
thread per rank unless the environment says otherwise (``OMP_NUM_THREADS`` etc. are passed
through; numba's threads are shared among the ranks as ``ot-pde run`` does). A step is 26 real
2D FFTs; on P ranks each 2D FFT of a batch of fields is two 1D FFT passes on 1/P of the data
and one ``Alltoallw`` moving (P - 1)/P of it. The time per step is the slowest rank's, the
best of 3 rounds after a warm-up step.

``speedup`` is 1-rank time / P-rank time of the slab solver (strong scaling); ``vs serial`` is
the serial solver's time / this one's (the 1-rank slab run pays for the transposes' copies).

Run ``python benchmarks/bench_mpi_euler.py [--quick] [--n N] [--ranks 1 2 4]`` or
``python benchmarks/run.py --only mpi``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _omega(n: int) -> np.ndarray:
    x = 2 * np.pi * np.arange(n) / n
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return np.sin(3 * xx) * np.cos(2 * yy) + np.cos(xx + 5 * yy) + 0.5 * np.sin(7 * yy)


def _seconds_per_step(step, rounds_of: int, sync=lambda: None) -> float:
    """Best of 3 rounds of ``rounds_of`` steps, after a warm-up step (JIT, FFT plans)."""
    step()
    best = np.inf
    for _ in range(3):
        sync()
        start = time.perf_counter()
        for _ in range(rounds_of):
            step()
        sync()
        best = min(best, (time.perf_counter() - start) / rounds_of)
    return best


def worker(args) -> None:
    """One timed run; prints one JSON line (rank 0 under MPI)."""
    from ot_pde.backends import get_backend
    from ot_pde.euler.spectral import SlabSpectralEulerSolver, SpectralEulerSolver
    from ot_pde.parallel import block_range

    backend = get_backend(args.backend)
    options = dict(t_final=1e9, dt=1e-4, max_cfl=10.0)
    if args.serial:
        solver = SpectralEulerSolver(_omega(args.n), backend, **options)
        seconds = _seconds_per_step(solver.step, args.steps)
        print(json.dumps({"seconds": seconds}), flush=True)
        return
    from mpi4py import MPI

    from ot_pde.parallel import share_cores

    comm = MPI.COMM_WORLD
    share_cores(comm)
    lo, hi = block_range(args.n, comm.Get_size(), comm.Get_rank())
    solver = SlabSpectralEulerSolver(_omega(args.n)[lo:hi], backend, comm, **options)
    seconds = _seconds_per_step(solver.step, args.steps, comm.Barrier)
    slowest = comm.allreduce(seconds, op=MPI.MAX)
    if comm.Get_rank() == 0:
        print(json.dumps({"seconds": slowest}), flush=True)


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _launch(prefix, args, backend: str, serial: bool = False) -> float:
    cmd = [*prefix, sys.executable, str(Path(__file__).resolve()), "--worker", "--n",
           str(args.n), "--steps", str(args.steps), "--backend", backend]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent
                                          / ".numba_cache"))
    proc = subprocess.run(cmd + (["--serial"] if serial else []), capture_output=True,
                          text=True, env=env, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps")
    p.add_argument("--n", type=int, default=512, help="grid points per axis")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=None, help="steps per timed round")
    p.add_argument("--backend", action="append", help="numpy, numba (default: both, if "
                                                      "installed)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serial", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 3 if args.quick else 16
    if args.worker:
        args.backend = args.backend[0]
        worker(args)
        return 0
    from ot_pde.backends import available_backends

    mpiexec = _mpiexec()
    if mpiexec is None:
        print("MPI Euler benchmark skipped: no mpiexec (pip install -e '.[mpi]')")
        return 0
    backends = args.backend or [b for b in ("numpy", "numba") if b in available_backends()]
    print(f"2D Euler {args.n}², slab decomposition (rows / ky columns, Alltoallw transposes), "
          f"RK4 without markers; {os.cpu_count()} cores")
    print(f"{'run':>22} {'backend':>8} {'step':>10} {'steps/s':>8} {'speedup':>8} "
          f"{'vs serial':>9}")
    for backend in backends:
        serial = _launch([], args, backend, serial=True)
        print(f"{'SpectralEulerSolver':>22} {backend:>8} {serial * 1e3:8.1f}ms "
              f"{1 / serial:8.2f} {'':>8} {1.0:8.2f}x", flush=True)
        one = None
        for ranks in args.ranks:
            t = _launch([mpiexec, "-n", str(ranks)], args, backend)
            one = t if one is None else one
            print(f"{f'slab, mpiexec -n {ranks}':>22} {backend:>8} {t * 1e3:8.1f}ms "
                  f"{1 / t:8.2f} {one / t:7.2f}x {serial / t:8.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
