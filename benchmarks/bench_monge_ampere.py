"""``make bench --only ma``: the grid Monge-Ampere solver (``monge_ampere_grid``) beside
Benamou-Brenier and POT's exact discrete OT, as ratios in one run (issue 20).

1. Damped Newton at 256^2 on the torus (cases/ma_torus_constructed_2d.toml) and on the box
   (cases/ma_box_gaussian_2d.toml) to a residual of 1e-10: wall time (target <= 10 s on
   2 cores), Newton and GMRES iterations.
   The machine may be shared: the process's CPU time is printed beside the wall time. The
   group runs in a child process with one BLAS/OpenMP thread (see ``main``).
2. At 64^2 on the box Gaussian densities (the same grid values for all three): Newton to
   1e-10, Benamou-Brenier (64^2 x 32, tolerance 1e-5, numba) and ``ot.emd2`` between the
   point masses at the cell centres; W2^2 of each and the time ratios against Newton.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import numpy as np

from ot_pde.backends import available_backends, get_backend
from ot_pde.config import load_case
from ot_pde.core.registry import get_kind

CASES = pathlib.Path(__file__).resolve().parent.parent / "cases"


def newton(case_file, n):
    case = load_case(CASES / case_file, overrides=[f"grid.n={n}"])
    problem = get_kind(case.kind).build(case)  # densities, spline set-up: not timed
    start, cpu = time.perf_counter(), time.process_time()
    solver = problem.make_solver(get_backend("numpy"))
    while not solver.finished:
        solver.step()
    solver.cpu_seconds = time.process_time() - cpu
    return problem, solver, time.perf_counter() - start


def main(quick: bool = False) -> None:
    """Runs itself in a child process with one BLAS/OpenMP thread (set before numpy loads):
    the solver's BLAS work is vector operations of 256^2 entries, where OpenBLAS's worker
    threads only spin (measured on the loaded 2-core machine: 4.6 s CPU with the default
    threads against 0.6 s with one, for the same 256^2 solve)."""
    if os.environ.get("OT_PDE_BENCH_MA_CHILD") != "1":
        env = dict(os.environ, OT_PDE_BENCH_MA_CHILD="1", OPENBLAS_NUM_THREADS="1",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        args = [sys.executable, __file__] + (["--quick"] if quick else [])
        subprocess.check_call(args, env=env)
        return
    print("(one BLAS/OpenMP thread in this process; numba keeps its default thread count)")
    n_big = 128 if quick else 256
    print(f"Monge-Ampere on the grid: damped Newton at {n_big}^2 to max |residual| <= 1e-10")
    for case_file in ("ma_torus_constructed_2d.toml", "ma_box_gaussian_2d.toml"):
        newton(case_file, 32)  # warm-up (imports, caches)
        _, solver, t = newton(case_file, n_big)
        print(f"  {case_file:32} {t:7.2f} s wall ({solver.cpu_seconds:.2f} s CPU)  "
              f"{solver.iteration} Newton iterations, "
              f"{solver.linear_iterations_total} GMRES iterations, residual "
              f"{solver.residual:.1e}", flush=True)

    n = 32 if quick else 64
    problem, solver, t_ma = newton("ma_box_gaussian_2d.toml", n)
    g = problem.grid_
    print(f"\nW2^2 on the same {n}^2 grid densities (cases/ma_box_gaussian_2d.toml; exact, "
          f"truncation included: {problem.summary(solver)['W2_squared_exact']:.6f})")
    print(f"  Monge-Ampere Newton  W2^2 = {solver.w2_squared():.6f}  {t_ma:8.3f} s   1")
    from ot_pde.spacetime import BenamouBrenierSolver, SpaceTimeGrid

    bb_backend = "numba" if "numba" in available_backends() else "numpy"
    grid = SpaceTimeGrid(g.lower, g.upper, g.shape, n // 2)
    start = time.perf_counter()
    bb = BenamouBrenierSolver(problem.source.values, problem.target.values, grid,
                              get_backend(bb_backend), gamma=0.3, relaxation=1.8, tol=1e-5,
                              max_iterations=5000)
    while not bb.finished:
        bb.step()
    t_bb = time.perf_counter() - start
    print(f"  Benamou-Brenier      W2^2 = {bb.w2_squared():.6f}  {t_bb:8.3f} s   "
          f"{t_bb / t_ma:8.1f}x  ({n}^2 x {n // 2}, {bb.iteration} it, {bb_backend})")
    try:
        import ot
    except ImportError:
        print("  POT not installed: skipping emd2 (pip install pot)")
        return
    a = (problem.source.values * g.cell_volume).ravel()
    b = (problem.target.values * g.cell_volume).ravel()
    pts = np.stack(g.mesh(), axis=-1).reshape(-1, 2)
    start = time.perf_counter()
    w_emd = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(pts, pts), numItermax=50_000_000)
    t_emd = time.perf_counter() - start
    print(f"  POT emd2             W2^2 = {w_emd:.6f}  {t_emd:8.3f} s   {t_emd / t_ma:8.1f}x  "
          f"({len(a)}^2 costs)")


if __name__ == "__main__":
    main("--quick" in sys.argv)
