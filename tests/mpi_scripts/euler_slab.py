"""Driver for ``mpiexec -n P python euler_slab.py``: the slab-decomposed spectral Euler solver
against the serial one (tests/test_mpi_euler.py; also the 512^2 acceptance check).

``--mode solver`` (default): the serial solver (rank 0) and the slab solver (all ranks) from the
same random field with markers; after ``--steps`` RK4 steps every diagnostic row, the gathered
vorticity and velocity, the markers and F agree with the serial ones to ``--rtol``; the rows and
markers are bit-identical on every rank; ``state()`` has the serial keys and shapes, and
checkpoints cross both ways (serial -> P ranks, P ranks -> serial) and continue identically;
a CFL violation and a NaN on one rank raise NumericalError on every rank at the same step.

``--mode problem``: the ``euler_spectral`` kind with ``comm`` set: each rank's initial vorticity
(random, shear layer) is its rows of the serial one, ``fields()`` carry offsets, ``summary()``
is the same on every rank and equal to the serial summary to round-off.

Rank 0 prints one JSON line with the largest relative differences measured. Any failure aborts
the whole job (no rank is left waiting in a collective).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
from pathlib import Path

import numpy as np
from mpi4py import MPI

from ot_pde.backends import get_backend
from ot_pde.config import load_case
from ot_pde.core.registry import get_kind
from ot_pde.errors import NumericalError
from ot_pde.euler.spectral import SlabSpectralEulerSolver, SpectralEulerSolver
from ot_pde.parallel import block_range

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
CASES = Path(__file__).resolve().parents[2] / "cases"
#: diagnostics compared relatively; the others (drifts, |div u|, |det F - 1|) are round-off
#: sized and compared absolutely
RELATIVE_KEYS = ("t", "dt", "cfl", "energy", "enstrophy", "casimir")


def _abort_on_error(kind, value, tb):
    traceback.print_exception(kind, value, tb)
    sys.stderr.flush()
    COMM.Abort(1)


def rel(a, b) -> float:
    """max |a - b| / max |b| (0 when both vanish)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = float(np.abs(b).max()) if b.size else 0.0
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    return diff / scale if scale else diff


def gather_rows(block):
    """The whole grid field on rank 0 from every rank's rows (None elsewhere)."""
    blocks = COMM.gather(np.asarray(block), root=0)
    return np.concatenate(blocks, axis=0) if RANK == 0 else None


def same_everywhere(value) -> None:
    """Assert a picklable value is identical on every rank (bits for floats)."""
    every = COMM.allgather(value)
    for other in every[1:]:
        if isinstance(value, np.ndarray):
            assert np.array_equal(other, value, equal_nan=True), "differs between ranks"
        else:
            assert other == value, (other, value)


def initial_field(n: int, seed: int = 7) -> np.ndarray:
    """A random vorticity, the same on every rank: 32 Fourier modes with |k_x|, |k_y| up to
    16 (or the grid's cut-off) and amplitudes ~ 1/|k|, plus grid-scale noise (removed by the
    2/3 rule, so the first projection is tested too)."""
    rng = np.random.default_rng(seed)
    x = 2 * np.pi * np.arange(n) / n
    xx, yy = np.meshgrid(x, x, indexing="ij")
    omega = 1e-3 * rng.standard_normal((n, n))
    top = min(16, (n - 1) // 3)
    for _ in range(32):
        kx, ky = rng.integers(-top, top + 1, size=2)
        amp = rng.standard_normal() / max(1.0, math.hypot(kx, ky))
        omega += amp * np.cos(kx * xx + ky * yy + rng.uniform(0, 2 * np.pi))
    return omega


def compare_rows(slab_row, serial_row, rtol, worst) -> None:
    same_everywhere(slab_row)
    if RANK:
        return
    assert slab_row.keys() == serial_row.keys()
    for key, value in serial_row.items():
        if key in RELATIVE_KEYS:
            err = abs(slab_row[key] - value) / max(abs(value), 1e-300)
        else:
            err = abs(slab_row[key] - value)
        worst["rows"] = max(worst["rows"], err)
        assert err <= rtol, (key, slab_row[key], value)


def compare_state(slab, serial, rtol, worst, tag) -> None:
    """Gathered fields, markers and F of ``slab`` against ``serial`` (rank 0)."""
    omega = gather_rows(slab.vorticity())
    u, v = slab.velocity()
    u, v = gather_rows(u), gather_rows(v)
    markers, deformation = slab.marker_positions(), slab.deformation_gradients()
    same_everywhere(markers)
    same_everywhere(deformation)
    if RANK:
        return
    su, sv = serial.velocity()
    errors = {"omega": rel(omega, serial.vorticity()), "u": rel(u, su), "v": rel(v, sv),
              "time": rel(slab.time, serial.time)}  # adaptive steps: sums of dt's
    if serial.markers is not None:
        errors["markers"] = rel(markers, serial.marker_positions())
        errors["deformation"] = rel(deformation, serial.deformation_gradients())
    else:
        assert markers is None and deformation is None, tag
    for name, err in errors.items():
        worst[name] = max(worst.get(name, 0.0), err)
        assert err <= rtol, (tag, name, err)
    assert slab.iteration == serial.iteration, tag


def check_failures(n: int, backend) -> None:
    """A CFL violation (fixed dt) and a NaN on the last rank only: every rank raises the same
    NumericalError at step 1, then still answers collectives."""
    lo, hi = block_range(n, SIZE, RANK)
    omega = initial_field(n)[lo:hi]
    cases = [(omega, dict(dt=10.0)), (omega.copy(), dict(dt=1e-3))]
    if RANK == SIZE - 1:
        cases[1][0][0, 0] = np.nan
    for field, options in cases:
        solver = SlabSpectralEulerSolver(field, backend, COMM, t_final=100.0, **options)
        try:
            solver.step()
            message = None
        except NumericalError as exc:
            message = str(exc)
        same_everywhere(message)
        assert message is not None and message.startswith("step 1 "), message
    COMM.Barrier()


def run_solver_mode(args) -> dict:
    n, backend = args.n, get_backend(args.backend)
    lo, hi = block_range(n, SIZE, RANK)
    full = initial_field(n)
    a = (np.arange(args.markers) + 0.5) * 2 * np.pi / args.markers
    ax, ay = np.meshgrid(a, a, indexing="ij")
    markers = np.stack([ax.ravel(), ay.ravel()], axis=1) if args.markers else None
    options = dict(t_final=1.0, mean_velocity=(0.3, -0.2), markers=markers)
    if args.cfl:
        options["cfl"] = 0.5
    else:  # the fixed step of CFL 0.45 for the initial velocity
        options["dt"] = 1.0
        if RANK == 0:
            u, v = SpectralEulerSolver(full, backend, **options).velocity()
            options["dt"] = 0.45 * (2 * np.pi / n) / float(np.max(np.abs(u) + np.abs(v)))
        options["dt"] = COMM.bcast(options["dt"], root=0)

    def serial_solver():
        return SpectralEulerSolver(full, backend, **options) if RANK == 0 else None

    def slab_solver():
        return SlabSpectralEulerSolver(full[lo:hi], backend, COMM, **options)

    serial, slab = serial_solver(), slab_solver()
    worst = {"rows": 0.0}
    same_everywhere(slab.initial)
    if RANK == 0:
        for key, value in serial.initial.items():
            assert abs(slab.initial[key] - value) <= args.rtol * abs(value), key
    for _ in range(args.steps):
        row = slab.step()
        compare_rows(row, serial.step() if RANK == 0 else None, args.rtol, worst)
    compare_state(slab, serial, args.rtol, worst, "after the steps")

    # checkpoints: the serial keys, shapes and dtypes; serial -> slab and slab -> serial
    gathered = slab.state()
    if RANK == 0:
        reference = serial.state()
        assert gathered.keys() == reference.keys()
        for key, value in reference.items():
            assert np.shape(gathered[key]) == np.shape(value), key
            assert np.asarray(gathered[key]).dtype == np.asarray(value).dtype, key
        worst["state"] = rel(gathered["omega_hat"], reference["omega_hat"])
        assert worst["state"] <= args.rtol
    else:
        assert gathered == {}
    restarted = slab_solver()
    restarted.load_state(COMM.bcast(serial.state() if RANK == 0 else None, root=0))
    back = serial_solver()
    if RANK == 0:
        back.load_state(gathered)
        assert restarted.initial == serial.initial and restarted.running == serial.running
        assert back.initial == slab.initial and back.running == slab.running
    same_everywhere((restarted.iteration, restarted.time, restarted.running))
    for _ in range(args.restart_steps):
        row = restarted.step()
        compare_rows(row, serial.step() if RANK == 0 else None, args.rtol, worst)
        slab.step()
        if RANK == 0:
            back.step()
    compare_state(restarted, serial, args.rtol, worst, "serial checkpoint -> slab")
    compare_state(slab, back, args.rtol, worst, "slab checkpoint -> serial")
    check_failures(n, backend)
    return worst


def run_problem_mode(args) -> dict:
    worst = {}
    backend = get_backend(args.backend)
    dt = 0.32 / args.n  # CFL below 0.5 in both fixed-step cases, 3 steps
    steps = [f"time.dt={dt!r}", f"time.t_final={3 * dt!r}"]
    for case_file, overrides in [
            ("euler_shear_layer.toml", ["particles.n=3", "time.t_final=0.02"]),
            ("euler_shifted_taylor_green.toml", ["particles.n=2"] + steps),
            ("euler_shifted_taylor_green.toml", ['initial.type="random"', "particles.n=3"]
             + steps)]:
        case = load_case(CASES / case_file, overrides=[f"grid.n={args.n}"] + overrides)
        kind = get_kind(case.kind)
        problem = kind.build(case)
        assert problem.mpi_mode == "distributed"
        problem.comm = COMM
        lo, hi = problem.rows()
        assert (lo, hi) == block_range(args.n, SIZE, RANK)
        solver = problem.make_solver(backend)
        assert isinstance(solver, SlabSpectralEulerSolver)
        while not solver.finished:
            solver.step()
        fields = problem.fields(solver)
        for f in fields:
            if f.name in ("omega", "u", "v"):
                assert f.offset == (lo, 0) and f.global_shape == (args.n, args.n), f.name
                assert f.data.shape == (hi - lo, args.n), f.name
            else:
                assert f.offset is None and f.global_shape is None, f.name
        summary = problem.summary(solver)
        same_everywhere(summary)
        initial = gather_rows(problem.initial_vorticity())
        omega = {f.name: gather_rows(f.data) for f in fields if f.offset is not None}
        if RANK:
            continue
        serial_problem = kind.build(case)
        serial = serial_problem.make_solver(backend)
        assert type(serial) is SpectralEulerSolver
        tag = f"{case_file} {case.get('initial.type')}"
        worst[f"initial {tag}"] = rel(initial, serial_problem.initial_vorticity())
        while not serial.finished:
            serial.step()
        for f in serial_problem.fields(serial):
            err = rel(omega[f.name], f.data) if f.name in omega else rel(
                [x for x in fields if x.name == f.name][0].data, f.data)
            worst[f"{f.name} {tag}"] = err
        want = serial_problem.summary(serial)
        assert summary.keys() == want.keys()
        for key, value in want.items():
            err = abs(summary[key] - value)
            # drifts, |div u|, |det F - 1| and the exact-solution errors are round-off sized
            worst[f"summary {tag}"] = max(worst.get(f"summary {tag}", 0.0), err / max(
                abs(value), 1.0))
            assert err <= args.rtol * max(abs(value), 1.0), (tag, key, summary[key], value)
        for name, err in worst.items():
            assert err <= args.rtol, (name, err)
        assert math.isfinite(summary["energy"])
    return worst


def main() -> None:
    sys.excepthook = _abort_on_error
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("solver", "problem"), default="solver")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--restart-steps", type=int, default=3)
    p.add_argument("--markers", type=int, default=4, help="markers per axis")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--cfl", action="store_true", help="adaptive step (CFL 0.5), not dt")
    p.add_argument("--rtol", type=float, default=1e-12)
    args = p.parse_args()
    worst = run_solver_mode(args) if args.mode == "solver" else run_problem_mode(args)
    if RANK == 0:
        print(json.dumps({"ranks": SIZE, "n": args.n, "backend": args.backend,
                          "mode": args.mode, "max_rel_diff": worst}), flush=True)


if __name__ == "__main__":
    main()
