#!/usr/bin/env python3
"""Run every shipped case, cut down to seconds, and record or compare their JSON summaries bit for bit.

A refactoring must not change a single result. This runs each case in ``cases/`` through the CLI with the
overrides below (fewer iterations, smaller grids, so that every code path still runs but the whole set takes
minutes), one thread each, and writes ``{case: summary}`` to a JSON file; ``compare`` runs them again and lists
every summary value that differs in its last bit. Timing keys are left out.

    python tools/reproduce_summaries.py record before.json
    python tools/reproduce_summaries.py compare before.json [--only bb_ ...]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Per-case-prefix overrides that make a case cheap while keeping its code paths; the first matching prefix wins.
CHEAP = {
    "bb_gaussian_3d": ["grid.n=12", "solver.max_iterations=40"],
    "bb_": ["grid.n=24", "solver.max_iterations=60"],
    "compare_otflow_miniboone": ["comparison.n_samples=400"],
    "compare_": ["comparison.n_samples=400", "grid.n=24", "solver.max_iterations=40"],
    "ek_samples_gaussians": ["potentials.iterations=40"],
    "ek_samples": ["potentials.iterations=40", "grid.n=24"],
    "ek_": ["grid.n=33", "solver.max_iterations=60"],
    "euler_lagrangian": ["particles.n=16"],
    "euler_random": ["grid.n=64"],
    "euler_shear": ["grid.n=64"],
    "euler_": [],
    "generalized": ["grid.n=16", "solver.max_iterations=200"],
    "gp_": ["solver.max_iterations=2", "solver.n_samples=256"],
    "ising_L16_critical": ["base.fit_iterations=10", "training.iterations=5", "estimate.n_samples=256",
                           "estimate.ais_chains=4", "estimate.ais_steps=3"],
    "ising_beta": ["training.iterations=5", "estimate.n_samples=256", "model.width=16"],
    "ising_": ["training.iterations=5", "estimate.n_samples=256", "model.width=16", "time.n_steps=4",
               "estimate.ais_chains=0", "estimate.logdet_samples=1"],
    "ma_torus_constructed_3d": ["grid.n=16"],
    "ma_torus_flow": ["solver.max_iterations=30"],
    "ma_": ["grid.n=32"],
    "maflow_fixed": ["grid.n=32"],
    "maflow_": ["training.iterations=20", "grid.n=32"],
    "otreg_": ["training.iterations=10", "training.batch_size=64"],
}
TIMING = ("wall", "seconds", "_time")


def overrides(stem):
    for prefix, sets in CHEAP.items():
        if stem.startswith(prefix):
            return sets
    return []


def run_case(case, workdir):
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "ot_pde", "run", str(case), "-o", str(workdir / f"{case.stem}.h5"),
           "--json", "--overwrite"]
    for s in overrides(case.stem):
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"exit_code": proc.returncode, "stderr_tail": proc.stderr[-400:]}
    summary = {k: v for k, v in out.get("summary", {}).items() if not any(t in k for t in TIMING)}
    return {"exit_code": proc.returncode, "status": out.get("status"), "summary": summary}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["record", "compare"])
    ap.add_argument("path", type=pathlib.Path)
    ap.add_argument("--only", nargs="*", default=None, help="case-name prefixes to run")
    args = ap.parse_args()
    cases = sorted((ROOT / "cases").glob("*.toml"))
    if args.only:
        cases = [c for c in cases if any(c.stem.startswith(p) for p in args.only)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            results[case.stem] = run_case(case, pathlib.Path(tmp))
            r = results[case.stem]
            print(f"{case.stem:40s} exit {r['exit_code']} {r.get('status', r.get('stderr_tail', ''))}",
                  file=sys.stderr, flush=True)
    if args.mode == "record":
        args.path.write_text(json.dumps(results, indent=1, sort_keys=True))
        return 0
    # JSON round-trips float64 exactly (shortest repr), so equality here is equality to the bit.
    before = json.loads(args.path.read_text())
    bad = 0
    for stem, now in results.items():
        then = before.get(stem)
        if then is None:
            print(f"{stem}: not in {args.path}")
            continue
        if now != then:
            bad += 1
            keys = set(now.get("summary", {})) | set(then.get("summary", {}))
            diff = [k for k in sorted(keys) if now.get("summary", {}).get(k) != then.get("summary", {}).get(k)]
            print(f"{stem}: DIFFERS (exit {then['exit_code']} -> {now['exit_code']}; keys {diff[:8]})")
    print(f"{len(results) - bad} of {len(results)} cases reproduce their summaries bit for bit")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
