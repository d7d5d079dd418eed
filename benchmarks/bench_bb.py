"""Benamou-Brenier: time to a relative accuracy of W2^2, beside POT, in one run.

On the shipped smooth non-Gaussian pair (``cases/bb_product_2d.toml``) at several grids:

* ours: the whole ``ot-pde run`` process (start-up, numba cache load, set-up, solve, HDF5
  output) with ``solver.rtol`` (default 1e-3), for the plain ``douglas_rachford`` method from
  each start (``--starts``: linear, affine, monge_ampere), and the ``multilevel`` one
  (``--multilevel``); iterations (all levels, and on the finest grid) and wall time;
* with ``--holdout K`` the same on K random smooth bimodal product pairs made here (seeded,
  not in the repository), so that nothing is tuned to the shipped pair;
* the grid's converged value (``--reference-rtol``, default 1e-4, plain method, not timed) and
  the error of each timed run against it: the accuracy the time bought;
* POT ``emd2`` (exact discrete OT between the same histograms at the cell centres, a
  different discretization: it differs by O(h^2)) where it fits ``--emd-max`` cells;
* POT ``sinkhorn2`` (log-domain) with ``reg`` set so that its entropic bias is comparable
  (``--sinkhorn-reg``, in units of the squared box size; the bias against emd2 is printed).

Ratios are ours / POT, measured in the same process on the same (loaded) machine.

``--counts`` prints instead the iterations to the stop at ``rtol`` per grid (2D 32^2 to 256^2,
3D 16^3 to 48^3, ``nt = n/2``) on the product pair, the sharp Gaussian of ``make demo`` and
the 3D Gaussian case, with each start: is the count flat in the grid?
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "cases" / "bb_product_2d.toml"


def random_product_pair(seed: int) -> list[str]:
    """Overrides of ``bb_product_2d`` for a hold-out pair of smooth random bimodal product
    densities (components >= 4 std inside the box; seeded, made here, not shipped)."""
    rng = np.random.default_rng(seed)
    out = []
    for side in ("source", "target"):
        stds = rng.uniform(0.06, 0.1, (2, 2))
        means = rng.uniform(0.0, 1.0, (2, 2)) * (1 - 8 * stds) + 4 * stds
        weights = rng.uniform(0.3, 1.0, (2, 2))
        for key, val in (("means", means), ("stds", stds), ("weights", weights)):
            out.append(f"{side}.{key}=" + str(np.round(val, 4).tolist()))
    return out


def ot_pde_run(n: int, *overrides: str, case: Path = CASE) -> tuple[dict, float]:
    """``ot-pde run`` in a subprocess: (summary, wall seconds of the whole process)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "ot_pde", "run", str(case), "-o", f"{tmp}/r.h5", "--json",
               "-q", "--set", f"grid.n={n}"]
        for o in overrides:
            cmd += ["--set", o]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wall = time.perf_counter() - start
    return json.loads(out.stdout)["summary"], wall


def histograms(n: int, pair: list[str]):
    from ot_pde.config import load_case
    from ot_pde.core.registry import get_kind

    case = load_case(CASE, overrides=[f"grid.n={n}", *pair])
    problem = get_kind(case.kind).build(case)
    g = problem.grid_
    a = (problem.source.values * g.cell_volume).ravel()
    b = (problem.target.values * g.cell_volume).ravel()
    points = np.stack(g.mesh(), axis=-1).reshape(-1, 2)
    return a / a.sum(), b / b.sum(), points


#: (label, case, grids, overrides): the iteration-count study of ``--counts``
COUNT_RUNS = (
    ("product 2D, linear", "bb_product_2d.toml", (32, 64, 128, 256), ("solver.start=linear",)),
    ("product 2D, affine", "bb_product_2d.toml", (32, 64, 128, 256), ("solver.start=affine",)),
    ("product 2D, M.-A.", "bb_product_2d.toml", (32, 64, 128, 256),
     ("solver.start=monge_ampere", "solver.gamma=0.1")),
    ("Gaussian 2D, linear", "bb_gaussian_2d.toml", (32, 64),
     ("solver.start=linear", "solver.max_iterations=20000")),
    ("Gaussian 2D, affine", "bb_gaussian_2d.toml", (32, 64, 128, 256), ("solver.start=affine",)),
    ("Gaussian 3D, affine", "bb_gaussian_3d.toml", (16, 24, 32, 48), ("solver.start=affine",)),
)


def iteration_counts(rtol: float, grid_max: int, max_3d: int) -> None:
    print(f"Iterations to the stop at rtol = {rtol:g} (nt = n/2; whole `ot-pde run` process)")
    head = (f"{'data, start':>22} {'n':>4} {'iters':>6} {'conv':>5} {'W2^2':>11} "
            f"{'err vs exact':>12} {'time s':>7}")
    print(head)
    print("-" * len(head))
    for label, case, grids, overrides in COUNT_RUNS:
        cap = max_3d if "3D" in label else grid_max
        for n in (g for g in grids if g <= cap):
            s, wall = ot_pde_run(n, f"time.nt={n // 2}", f"solver.rtol={rtol}", *overrides,
                                 case=ROOT / "cases" / case)
            err = s.get("relative_error")
            err = f"{err:12.2e}" if err is not None else f"{'-':>12}"
            print(f"{label:>22} {n:4d} {s['iterations']:6d} {str(s['converged']):>5} "
                  f"{s['W2_squared']:11.8f} {err} {wall:7.2f}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grids", default="32,64,128")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--reference-rtol", type=float, default=1e-4)
    p.add_argument("--reference-max", type=int, default=64,
                   help="largest n with a converged reference run (they are slow)")
    p.add_argument("--emd-max", type=int, default=64, help="largest n given to POT emd2")
    p.add_argument("--sinkhorn-reg", type=float, default=2e-3)
    p.add_argument("--sinkhorn-max", type=int, default=32,
                   help="largest n given to POT sinkhorn2 (126 s at 32 on the loaded machine; "
                        "its cost grows like n^4)")
    p.add_argument("--counts", action="store_true",
                   help="print the iteration counts per grid instead (see the module doc)")
    p.add_argument("--counts-max", type=int, default=256, help="largest 2D n of --counts")
    p.add_argument("--counts-max-3d", type=int, default=48, help="largest 3D n of --counts")
    p.add_argument("--holdout", type=int, default=0,
                   help="also this many random bimodal product pairs (seeds 1, 2, ..), made "
                        "here and not shipped, at every grid")
    p.add_argument("--starts", default="linear,affine,monge_ampere",
                   help="starts of the plain douglas_rachford method to time")
    p.add_argument("--multilevel", action="store_true", help="also time the multilevel method")
    args = p.parse_args(argv)
    if args.counts:
        iteration_counts(args.rtol, args.counts_max, args.counts_max_3d)
        return 0
    try:
        import ot
    except ImportError:
        print("POT not installed (pip install pot, a test extra): skipping")
        return 0
    grids = [int(v) for v in args.grids.split(",")]
    print(f"Benamou-Brenier to rtol = {args.rtol:g} on {CASE.name} (whole `ot-pde run` "
          "process), beside POT on the same histograms")
    head = (f"{'n':>4} {'method':>17} {'iters':>6} {'finest':>6} {'time s':>7} {'W2^2':>11} "
            f"{'err vs grid':>11} {'est':>8} | {'emd2 s':>7} {'ours/emd2':>9} | "
            f"{'sinkhorn s':>10} {'bias':>8} {'ours/sk':>7}")
    print(head)
    print("-" * len(head))
    pairs = [("shipped", [])] + [(f"hold-out {k}", random_product_pair(k))
                                 for k in range(1, args.holdout + 1)]
    runs = [("douglas_rachford", start) for start in args.starts.split(",")]
    if args.multilevel:
        runs.append(("multilevel", "linear"))
    for (label, pair), n in ((p_, n_) for p_ in pairs for n_ in grids):
        print(f"-- {label} pair, n = {n}", flush=True)
        converged = None
        if n <= args.reference_max:
            ref, _ = ot_pde_run(n, "solver.method=douglas_rachford",
                                f"solver.rtol={args.reference_rtol}",
                                "solver.max_iterations=40000", *pair)
            converged = ref["W2_squared"] if ref["converged"] else None
        a, b, pts = histograms(n, pair)
        cost = ot.dist(pts, pts) if n <= max(args.emd_max, args.sinkhorn_max) else None
        t_emd = w_emd = None
        if n <= args.emd_max:
            start = time.perf_counter()
            w_emd = ot.emd2(a, b, cost, numItermax=100_000_000)
            t_emd = time.perf_counter() - start
        t_sk = w_sk = None
        if n <= args.sinkhorn_max:
            start = time.perf_counter()
            w_sk = float(ot.sinkhorn2(a, b, cost, args.sinkhorn_reg, method="sinkhorn_log",
                                      numItermax=20000, stopThr=1e-9))
            t_sk = time.perf_counter() - start
        for method, start in runs:
            # a smaller proximal step suits the warm starts (docs: the starts)
            step = () if start == "linear" else ("solver.gamma=0.1",)
            s, wall = ot_pde_run(n, f"solver.method={method}", f"solver.start={start}",
                                 f"solver.rtol={args.rtol}", *step, *pair)
            method = f"{'DR' if method == 'douglas_rachford' else method}/{start[:6]}"
            err = (f"{abs(s['W2_squared'] - converged) / converged:11.2e}" if converged
                   else f"{'-':>11}")
            emd = (f"{t_emd:7.2f} {wall / t_emd:9.2f}" if t_emd is not None
                   else f"{'skipped':>7} {'-':>9}")
            bias = f"{(w_sk - w_emd) / w_emd:8.1e}" if w_emd and w_sk else f"{'-':>8}"
            sk = (f"{t_sk:10.2f} {bias} {wall / t_sk:7.2f}" if t_sk is not None
                  else f"{'skipped':>10} {'-':>8} {'-':>7}")
            print(f"{n:4d} {method:>17} {s['iterations']:6d} {s['iterations_finest']:6d} "
                  f"{wall:7.2f} {s['W2_squared']:11.8f} {err} {s['accuracy_estimate']:8.1e} | "
                  f"{emd} | {sk}"
                  + ("" if s["converged"] else "  NOT CONVERGED"), flush=True)
        if w_emd is not None:
            sk = "skipped" if w_sk is None else f"{w_sk:.8f}"
            print(f"{'':>4} POT emd2 W2^2 = {w_emd:.8f}, sinkhorn2 (reg {args.sinkhorn_reg:g}) "
                  f"W2^2 = {sk}; grid's converged BB value "
                  f"{converged if converged else float('nan'):.8f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
