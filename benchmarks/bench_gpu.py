"""The cupy backend against numba on the same machine, in the same process, at sizes where a
GPU matters: seconds per solver step of each kind with a cupy path.

1. Benamou-Brenier, 256^2 space x 64 time cells: one Douglas-Rachford iteration.
2. Spectral Euler, 2048^2: one RK4 step (CFL-adaptive) of the fluid alone, without markers
   (their exact Fourier sums cost markers x 2048^2 per evaluation, a separate question).
3. Monge-Ampere flow for the Ising model, L = 16 (cases/ising_L16_critical.toml): one
   training iteration (reverse KL through RK4 and its adjoint, batch 64, the whole symmetry
   group); the base is fitted with 5 iterations only (its quality does not change the cost of
   a step), no annealing.
4. Entropic potentials, 512^2: one log-domain Sinkhorn iteration.

Each step is timed at the problem level (case file -> kind -> problem -> solver, the path
``ot-pde run`` takes), so the numbers follow the solvers through rewrites. After two warm-up
steps (JIT compilation, FFT plans, CUDA kernels), steps are repeated until about
``--seconds`` have passed (at least 2); the GPU is synchronized before the clock is read.
``speed-up`` is numba's time over cupy's. numba runs on all the machine's cores unless
``NUMBA_NUM_THREADS`` says otherwise (its value is printed).

Without a usable cupy backend the group says why and exits 0 (``make bench`` on a CPU
machine). ``--backends numpy,numba --tiny`` runs the same code at small sizes on a CPU, which
is how this script is checked where there is no GPU.

Run ``python benchmarks/bench_gpu.py [--json OUT.json]`` or ``python benchmarks/run.py --only
gpu``; ``tools/gpu_check.sh`` runs it and puts its table in the GPU report.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ot_pde.backends import BACKENDS, available_backends, get_backend
from ot_pde.config import load_case
from ot_pde.core.registry import get_kind

CASES = Path(__file__).resolve().parent.parent / "cases"
_FOREVER = ["solver.tol=1e-15", "solver.max_iterations=100000000"]

#: (label, what one step is, case, overrides at full size, overrides at --tiny size)
CONFIGS = [
    ("Benamou-Brenier 256^2 x 64", "Douglas-Rachford iteration", "bb_gaussian_2d.toml",
     ["grid.n=256", "time.nt=64", *_FOREVER], ["grid.n=24", "time.nt=8", *_FOREVER]),
    ("spectral Euler 2048^2", "RK4 step", "euler_random_512.toml",
     ["grid.n=2048", "time.t_final=1e6", "particles.n=0"],
     ["grid.n=64", "time.t_final=1e6", "particles.n=0"]),
    ("MA flow Ising L = 16", "training iteration", "ising_L16_critical.toml",
     ["estimate.ais_chains=0", "base.fit_iterations=5", "training.iterations=100000000"],
     ["estimate.ais_chains=0", "base.fit_iterations=5", "training.iterations=100000000",
      "lattice.L=4", "base.couplings=1", "training.batch_size=16"]),
    ("entropic potentials 512^2", "Sinkhorn iteration", "ek_checkerboard_2d.toml",
     ["grid.n=512", "flow.samples=0", *_FOREVER], ["grid.n=24", "flow.samples=0", *_FOREVER]),
]


def _sync(backend) -> None:
    if backend.on_gpu:
        backend.xp.cuda.Device().synchronize()


def time_steps(case_file: str, overrides: list[str], backend_name: str,
               seconds: float) -> dict:
    """Set-up time and seconds per step of ``case_file`` on ``backend_name``."""
    case = load_case(CASES / case_file, overrides=overrides)
    kind = get_kind(case.kind)
    backend = get_backend(kind.backend_for(case, backend_name))
    start = time.perf_counter()
    solver = kind.build(case).make_solver(backend)
    _sync(backend)
    setup = time.perf_counter() - start
    for _ in range(2):
        solver.step()
    _sync(backend)
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        solver.step()
        steps += 1
        if steps % 4 == 0:  # do not let the GPU queue run far ahead of the clock
            _sync(backend)
    _sync(backend)
    return {"setup_s": setup, "step_s": (time.perf_counter() - start) / steps,
            "steps": steps}


def _device() -> str:
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception as exc:  # no device: said in the report
        return f"none ({type(exc).__name__})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="numba,cupy",
                   help="comma-separated; the last is compared with the first (default "
                        "numba,cupy)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="time each measurement for about this long (default 5)")
    p.add_argument("--tiny", action="store_true", help="small sizes (a check of the script)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    names = args.backends.split(",")
    bad = [b for b in names if b not in BACKENDS]
    if len(names) != 2 or bad:
        p.error(f"--backends: expected two of {', '.join(BACKENDS)}, got {args.backends!r}")
    usable = available_backends()
    report: dict = {"backends": names, "tiny": args.tiny,
                    "numba_threads": os.environ.get("NUMBA_NUM_THREADS", "all cores"),
                    "cpu_count": os.cpu_count(), "results": []}
    report["complete"] = False

    def save():  # after each row, so that a run cut short keeps what it measured
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))

    missing = [b for b in names if b not in usable]
    if missing:
        why = (f"backend(s) {', '.join(missing)} not usable here (usable: "
               f"{', '.join(usable)})")
        print(f"GPU benchmarks skipped: {why}")
        report["skipped"] = why
    else:
        if "cupy" in names:
            report["device"] = _device()
            print(f"device: {report['device']}")
        ref, other = names
        if args.tiny:
            print("--tiny: small sizes, not the ones the labels name")
        print(f"seconds per step; numba threads: {report['numba_threads']} "
              f"({report['cpu_count']} cores)")
        print(f"{'case':>28} {'step':>27} {ref:>10} {other:>10} {'speed-up':>9}")
        for label, unit, case, full, tiny in CONFIGS:
            row = {"name": label, "unit": unit, "case": case,
                   "overrides": tiny if args.tiny else full}
            try:
                for b in names:
                    row[b] = time_steps(case, row["overrides"], b, args.seconds)
                row["speedup"] = row[ref]["step_s"] / row[other]["step_s"]
                print(f"{label:>28} {unit:>27} {row[ref]['step_s']:9.4f}s "
                      f"{row[other]['step_s']:9.4f}s {row['speedup']:8.2f}x", flush=True)
            except Exception as exc:  # one failing kind must not hide the others' numbers
                row["error"] = f"{type(exc).__name__}: {exc}"
                print(f"{label:>28} FAILED: {row['error']}", flush=True)
            report["results"].append(row)
            save()
    report["complete"] = True
    save()
    return 1 if any("error" in r for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
