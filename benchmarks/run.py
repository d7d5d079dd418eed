"""``make bench``: side-by-side timings, reported as ratios against a reference run in the
same process (never as assertions in tests).

1. Benamou-Brenier time per Douglas-Rachford iteration, numpy vs numba, at 32^3 space-time
   cells (32^2 space x 32 time steps), 64^2 x 32, and 32^3 space x 16 time steps (3D).
   Target (issue 2): 1000 iterations at 32^3 in <= 2 s with numba on 2 cores.
2. Time to a relative accuracy of W2^2 (``bench_bb.py``) at 32^2, 64^2, 128^2 on smooth
   non-Gaussian data, multilevel and plain Douglas-Rachford (from the linear and the affine
   start), beside POT's ``emd2`` and ``sinkhorn2`` on the same histograms, as ratios
   (``bench_bb.py --counts``: the iterations to the stop per grid, 2D and 3D).
3. Monge-Ampere flow potential (``bench_flows.py``): value + gradient + Laplacian and one RK4
   trajectory at batch 64, d = 256, width 512, numpy vs numba vs PyTorch autograd (optional);
   one reverse-KL training iteration at L = 16 (50 RK4 steps), ours in float64 and float32
   against the PyTorch twin with the hand-coded Laplacian in both precisions.

4. Pseudo-spectral 2D Euler (``bench_euler.py``): RK4 steps per second at 256^2 and 1024^2
   beside the time of the step's FFTs alone (how close to the FFT bound), numpy/numba/cupy.

5. Exported flows (``bench_comparison.py``): RealNVP and OT-Flow inference (forward and
   log-density) with numpy and numba vs PyTorch CPU (optional) on the same batch.

6. Entropic potentials (``bench_entropic.py``): log-domain separable Sinkhorn per iteration,
   numpy vs numba up to 256^2, beside POT's ``sinkhorn`` and ``convolutional_barycenter2d``.

7. MPI strong scaling (``bench_mpi_euler.py``): the slab-decomposed 2D Euler solver at 512^2
   under ``mpiexec -n 1`` and ``-n 2``, RK4 steps per second and the speed-up, beside the
   serial solver (skipped without an ``mpiexec``).

8. Annealed importance sampling for the Ising model (``bench_ising_ais.py``): where one
   temperature's time goes at L = 16 (flow evaluations, base, cluster move), and the numba
   Swendsen-Wang update beside a scipy csgraph reference.

9. The cupy backend against numba (``bench_gpu.py``): seconds per step at sizes where a GPU
   matters (Benamou-Brenier 256^2 x 64, spectral Euler 2048^2, the L = 16 Ising training
   step, entropic 512^2); says why and does nothing without a usable cupy backend.

10. Monge-Ampere on the grid (``bench_monge_ampere.py``): damped Newton at 256^2 (torus and
    box), and at 64^2 beside Benamou-Brenier and POT's ``emd2`` on the same grid densities.

``--only bb`` runs 1 and 2, ``--only flows`` runs 3, ``--only euler`` runs 4,
``--only comparison`` runs 5, ``--only entropic`` runs 6, ``--only mpi`` runs 7,
``--only ising`` runs 8, ``--only gpu`` runs 9, ``--only ma`` runs 10.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
from bench_bb import main as bench_bb_accuracy
from bench_comparison import main as bench_comparison
from bench_entropic import main as bench_entropic
from bench_euler import main as bench_euler
from bench_flows import (
    main as bench_flows,  # benchmarks/ is sys.path[0] when run as a script
)
from bench_gpu import main as bench_gpu
from bench_ising_ais import main as bench_ising_ais
from bench_monge_ampere import main as bench_monge_ampere
from bench_mpi_euler import main as bench_mpi_euler

from ot_pde.backends import available_backends, get_backend
from ot_pde.spacetime import BenamouBrenierSolver, SpaceTimeGrid


def _densities(grid):
    pts = np.stack(grid.mesh(), axis=-1)
    r0 = np.exp(-np.sum((pts - 0.35) ** 2, -1) / (2 * 0.07 ** 2))
    r1 = np.exp(-np.sum((pts - 0.65) ** 2, -1) / (2 * 0.05 ** 2))
    return r0 / (r0.sum() * grid.cell_volume), r1 / (r1.sum() * grid.cell_volume)


def time_per_iteration(grid, backend, iterations):
    r0, r1 = _densities(grid)
    solver = BenamouBrenierSolver(r0, r1, grid, get_backend(backend))
    for _ in range(3):  # JIT compilation and caches
        solver.step()
    start = time.perf_counter()
    for _ in range(iterations):
        solver.step()
    return (time.perf_counter() - start) / iterations


def bench_iterations(quick: bool):
    configs = [("32^3 (32^2 x 32)", (32, 32), 32, 200),
               ("64^2 x 32", (64, 64), 32, 50),
               ("32^3 x 16 (3D)", (32, 32, 32), 16, 10)]
    backends = [b for b in ("numpy", "numba", "cupy") if b in available_backends()]
    print("Benamou-Brenier: time per Douglas-Rachford iteration")
    print(f"{'grid':>20} " + " ".join(f"{b:>12}" for b in backends)
          + "   numba speed-up   1000 it (numba)")
    for name, shape, nt, its in configs:
        its = max(3, its // 5) if quick else its
        grid = SpaceTimeGrid((0.0,) * len(shape), (1.0,) * len(shape), shape, nt)
        t = {b: time_per_iteration(grid, b, its) for b in backends}
        row = f"{name:>20} " + " ".join(f"{t[b] * 1e3:10.2f}ms" for b in backends)
        if "numba" in t:
            row += f"   {t['numpy'] / t['numba']:14.2f}x   {t['numba'] * 1000:13.2f} s"
        print(row, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer iterations, smaller POT problem")
    p.add_argument("--only", choices=("bb", "flows", "euler", "comparison", "entropic", "mpi",
                                      "ising", "gpu", "ma"),
                   help="run only one group: Benamou-Brenier (bb), flow potentials (flows), "
                        "spectral Euler (euler), exported flows (comparison), entropic "
                        "potentials (entropic), spectral Euler under MPI (mpi), annealed "
                        "importance sampling for the Ising model (ising), cupy against "
                        "numba (gpu) or Monge-Ampere on the grid (ma)")
    args = p.parse_args(argv)
    if args.only is None:
        # Each group in its own process: numba's parallel kernels of group 1 leave worker
        # threads that compete with torch's OpenMP threads (measured: torch 0.9 ms -> 8 ms
        # for (a) after the Benamou-Brenier runs), which would flatter numba 10x.
        for group in ("bb", "flows", "euler", "comparison", "entropic", "mpi", "ising", "gpu",
                      "ma"):
            cmd = [sys.executable, __file__, "--only", group] + (["--quick"] if args.quick
                                                                 else [])
            code = subprocess.call(cmd)
            if code:
                return code
        return 0
    if args.only == "bb":
        bench_iterations(args.quick)
        print()
        bench_bb_accuracy(["--grids", "32", "--sinkhorn-max", "0"] if args.quick else [])
    elif args.only == "euler":
        bench_euler(args.quick)
    elif args.only == "comparison":
        bench_comparison(args.quick)
    elif args.only == "entropic":
        bench_entropic(args.quick)
    elif args.only == "mpi":
        return bench_mpi_euler(["--quick"] if args.quick else [])
    elif args.only == "ising":
        bench_ising_ais(args.quick)
    elif args.only == "gpu":
        return bench_gpu(["--seconds", "1"] if args.quick else [])
    elif args.only == "ma":
        bench_monge_ampere(args.quick)
    else:
        bench_flows(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
