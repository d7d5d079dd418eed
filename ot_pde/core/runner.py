"""Drive a problem's solver: progress, output cadence, checkpoints, restart, stop conditions.

Modelled on Dedalus' main loop: ``while not solver.finished`` with stop conditions on wall
time and iterations inside try/finally, logging at a cadence and ending with run statistics.

The output file is written through :class:`~ot_pde.io.ResultWriter`, which opens and closes
the file at every flush, so a run killed at any moment leaves every flushed step readable.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .._version import __version__
from ..backends import get_backend
from ..config import Case, load_case_text
from ..errors import InputError, NumericalError
from ..io import ResultFile, ResultWriter, write_xdmf
from .progress import Progress
from .registry import get_kind

log = logging.getLogger("ot_pde")

#: keys that may differ between a run and its restart (they do not change the numerics)
RESTART_MUTABLE_KEYS = {
    ("run", "max_wall_seconds"), ("run", "progress"), ("run", "progress_seconds"),
    ("output", "path"), ("output", "xdmf"), ("solver", "max_iterations"),
}

_STATE_WALL = "runner_wall_seconds"


@dataclass
class RunResult:
    problem: str
    case: str
    output: Path
    backend: str
    summary: dict
    status: str

    def as_json(self) -> dict:
        """The JSON summary of the CLI contract."""
        return {"problem": self.problem, "case": self.case, "output": str(self.output),
                "backend": self.backend, "summary": self.summary, "status": self.status}


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag the main loop checks between iterations.

    An exception raised inside ``solver.step()`` could leave the solver half-updated and its
    checkpoint inconsistent; a flag stops the run at the next iteration boundary instead. A
    second signal raises :class:`KeyboardInterrupt` at once (the escape hatch).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: str | None = None
        self.forced = False  # a second signal interrupted an iteration midway
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            self.forced = True
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: the caller handles signals
            self._previous.clear()
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def default_output_path(case: Case) -> Path:
    """``output.path`` of the case, else ``<case file stem>.h5`` in the working directory."""
    if case.get("output.path"):
        return Path(case.get("output.path"))
    stem = Path(case.source).stem if case.source != "<string>" else case.kind
    return Path(f"{stem}.h5")


def _check_restart_case(stored: Case, current: Case, path: Path) -> None:
    for section, values in current.data.items():
        for key, value in values.items():
            if (section, key) in RESTART_MUTABLE_KEYS:
                continue
            old = stored.data.get(section, {}).get(key)
            if old != value:
                raise InputError(f"cannot restart: {section}.{key} is {value!r} here but "
                                 f"{old!r} in the file's case", source=str(path),
                                 key=f"{section}.{key}")


class _NoWriter:
    """The writer of an MPI rank other than 0: rank 0 writes the file, the others nothing."""

    @contextlib.contextmanager
    def batch(self):
        yield None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _on_root(comm, make):
    """``make()`` on rank 0, its result or its InputError sent to every rank (the others
    would otherwise wait in the next collective call for a rank that has given up)."""
    if comm is None:
        return make()
    value, error = None, None
    if comm.Get_rank() == 0:
        try:
            value = make()
        except InputError as exc:
            error = exc
    error = comm.bcast(error, root=0)
    if error is not None:
        raise error
    return value


def rank_file(output: Path, rank: int) -> Path:
    """The file of one MPI rank's blocks of the distributed fields, beside ``output``."""
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def run_case(case: Case, output: Path | None = None, *, backend: str | None = None,
             restart: bool = False, comm=None) -> RunResult:
    """Run ``case`` to completion (or to a stop condition), writing ``output``.

    With an MPI communicator ``comm`` of more than one rank every rank calls this: the kind
    must have an ``mpi_mode`` (see :class:`~ot_pde.core.problem.Problem`); the ranks step
    in lockstep and stop together (signals and the wall-time limit are shared at each
    iteration); rank 0 writes ``output``, and the blocks of distributed fields go to one
    file per rank (:func:`rank_file`) joined in ``output`` by HDF5 virtual datasets.

    Raises
    ------
    InputError
        Bad case, backend or output path (nothing is run).
    NumericalError
        The solver produced non-finite values; the file is marked ``failed``.
    KeyboardInterrupt
        Ctrl-C or SIGTERM; the file is marked ``interrupted`` and holds a checkpoint.
    """
    kind = get_kind(case.kind)
    output = Path(output) if output is not None else default_output_path(case)
    backend_obj = get_backend(kind.backend_for(case, backend),  # the kind's refusal first
                              source="--backend" if backend else "run.backend")
    problem = kind.build(case)
    root = comm is None or comm.Get_rank() == 0
    if comm is not None:
        if problem.mpi_mode is None:
            raise InputError(f"problem kind {case.kind!r} does not run on several MPI ranks; "
                             "run it serially (a study's runs spread over ranks with "
                             "'ot-pde converge' or 'ot-pde sweep')", source=case.source,
                             key="case.problem")
        problem.comm = comm

    state = None
    if restart:  # every rank reads the checkpoint (read-only), then rank 0 reopens the file
        state = _restart_state(case, output, backend_obj.name)
        if comm is not None:
            comm.Barrier()
    fresh = state is None
    writer = _on_root(comm, lambda: ResultWriter(
        output, problem=case.kind, case_toml=case.to_toml(), backend=backend_obj.name,
        seed=case.get("run.seed"), restart=not fresh))
    if not root:
        writer = _NoWriter()
    solver = problem.make_solver(backend_obj)
    wall_before = 0.0
    if fresh:
        with writer.batch():
            for axis in problem.grid():
                writer.write_grid(axis.name, axis.coords, units=axis.units,
                                  description=axis.description, kind=axis.kind)
    else:
        wall_before = float(state.pop(_STATE_WALL, 0.0))
        solver.load_state(state)
        writer.truncate_history(solver.iteration)
        log.info("restarting %s from iteration %d", output, solver.iteration)

    log.info("%s: %s on backend %s -> %s", case.kind, problem.describe(), backend_obj.name,
             output)
    every = case.get("output.every")
    max_wall = case.get("run.max_wall_seconds")
    progress = Progress(mode=case.get("run.progress") if root else "none",
                        cadence=case.get("run.progress_seconds"),
                        total=problem.max_iterations(), start=solver.iteration)
    rows: list[tuple[int, float, dict]] = []
    started = time.perf_counter()

    def elapsed() -> float:
        return wall_before + time.perf_counter() - started

    def flush(checkpoint: bool) -> None:
        with writer.batch():
            if rows:
                names = rows[0][2].keys()
                table = {"iteration": np.array([r[0] for r in rows], dtype=np.int64),
                         "wall_seconds": np.array([r[1] for r in rows])}
                table.update({n: np.array([r[2][n] for r in rows], dtype=np.float64)
                              for n in names})
                writer.append_history(table)
                rows.clear()
            if checkpoint:
                snapshot = solver.state()
                snapshot[_STATE_WALL] = np.float64(elapsed())
                writer.write_checkpoint(snapshot, solver.iteration)

    status, message = "failed", ""
    consistent = True  # False when the solver may have stopped midway through an iteration
    with _StopSignals() as signals:
        try:
            stop_reason = ""
            while not solver.finished:
                out_of_time = max_wall is not None and elapsed() >= max_wall
                if comm is not None:  # stop together, or the others wait forever
                    flags = comm.allgather((signals.received, out_of_time))
                    signals.received = next((f[0] for f in flags if f[0]), None)
                    out_of_time = any(f[1] for f in flags)
                if signals.received:
                    raise KeyboardInterrupt
                if out_of_time:
                    stop_reason = f"wall-time limit of {max_wall:g} s reached"
                    break
                diag = solver.step()
                rows.append((solver.iteration, elapsed(), dict(diag)))
                progress.update(solver.iteration, diag)
                if solver.iteration % every == 0:
                    flush(checkpoint=True)
            flush(checkpoint=True)
            if stop_reason:
                status, message = "interrupted", stop_reason
                log.warning("%s at iteration %d; continue with --restart", stop_reason,
                            solver.iteration)
            else:
                status = "completed"
        except KeyboardInterrupt:
            # raised between iterations unless a second signal forced it (see _StopSignals)
            consistent = signals.received is not None and not signals.forced
            flush(checkpoint=consistent)
            status, message = "interrupted", f"interrupted by {signals.received or 'signal'}"
            raise
        except BaseException as exc:  # NumericalError, or a bug: keep what was computed
            consistent = False
            flush(checkpoint=False)
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            if isinstance(exc, NumericalError):  # the CLI's --json reports the failed run
                exc.run_result = RunResult(problem=case.kind, case=case.source, output=output,
                                           backend=backend_obj.name, summary={},
                                           status="failed")
            raise
        finally:
            progress.close()
            summary = {}
            if consistent and status in ("completed", "interrupted"):
                try:
                    if status == "interrupted":
                        # The summary may take a while (the Ising estimators sample afresh);
                        # a second signal skips it and still marks the file.
                        log.warning("%s: writing the summary of iteration %d (signal again "
                                    "to skip it)", message, solver.iteration)
                    summary = _write_results(problem, solver, writer, case, output, elapsed(),
                                             comm)
                except KeyboardInterrupt:
                    if status != "interrupted":
                        raise
                    summary = {}
                    log.warning("summary skipped; the checkpoint of iteration %d is kept",
                                solver.iteration)
            writer.set_status(status, message=message)
    log.info("%s in %d iterations, %.2f s", status, solver.iteration, elapsed())
    return RunResult(problem=case.kind, case=case.source, output=output,
                     backend=backend_obj.name, summary=summary, status=status)


def _write_results(problem, solver, writer, case: Case, output: Path, wall: float,
                   comm=None) -> dict:
    """Summary, fields and particles of the solver's current state into the file.

    Under MPI every rank calls this (the problem's methods are collective); the blocks of
    distributed fields are written by their ranks (:func:`_write_blocks`).
    """
    summary = problem.summary(solver)
    summary["iterations"] = int(solver.iteration)
    if comm is not None:  # rank 0's clock, so that every rank reports the same summary
        wall = comm.bcast(wall, root=0)
    summary["wall_seconds"] = float(wall)
    fields = problem.fields(solver)
    blocks = [f for f in fields if f.offset is not None]
    layouts = _write_blocks(blocks, output, comm, case.kind) if blocks else {}
    with writer.batch():
        for fld in fields:
            if fld.offset is None:
                writer.write_field(fld.name, fld.data, dims=fld.dims, units=fld.units,
                                   description=fld.description)
            elif layouts:  # rank 0 joins the blocks (the other ranks have no writer)
                writer.write_virtual_field(fld.name, layouts[fld.name],
                                           shape=fld.global_shape, dims=fld.dims,
                                           units=fld.units, description=fld.description)
        for part in problem.particles(solver):
            writer.write_particles(part.name, part.data, units=part.units,
                                   description=part.description)
        writer.write_summary(summary)
    # the sidecar reads the file: on rank 0 only, which wrote it (another rank would read it
    # while rank 0 writes)
    if case.get("output.xdmf") and (comm is None or comm.Get_rank() == 0):
        write_xdmf(output)
    return summary


def _write_blocks(blocks, output: Path, comm, problem: str) -> dict:
    """Each rank writes its blocks to its own file; returns, for rank 0, each field's
    sources ``[(file name, dataset, offset, shape), ...]`` over all ranks."""
    rank = 0 if comm is None else comm.Get_rank()
    path = rank_file(output, rank)
    mine = {}
    with h5py.File(path, "w", locking=False) as f:
        f.attrs["ot_pde_version"] = __version__
        f.attrs["problem"] = problem
        f.attrs["rank"] = rank
        f.attrs["main_file"] = output.name
        for fld in blocks:
            ds = f.create_dataset(f"fields/{fld.name}", data=np.ascontiguousarray(fld.data))
            ds.attrs["offset"] = np.asarray(fld.offset, dtype=np.int64)
            mine[fld.name] = (path.name, f"fields/{fld.name}", tuple(fld.offset),
                              tuple(fld.data.shape))
    parts = [mine] if comm is None else comm.gather(mine, root=0)
    if parts is None:
        return {}
    return {name: [part[name] for part in parts] for name in mine}


def _restart_state(case: Case, output: Path, backend: str) -> dict | None:
    """The checkpoint of ``output`` after checking it belongs to this case (None: start over)."""
    if not output.exists():
        log.warning("--restart: %s does not exist; starting from the beginning", output)
        return None
    with ResultFile(output) as old:
        if old.status == "completed":
            raise InputError("the run in this file already completed; nothing to restart",
                             source=str(output), key="--restart")
        if old.backend != backend:
            raise InputError(f"cannot restart on backend {backend!r}: the file was written by "
                             f"{old.backend!r} (bit-for-bit continuation needs the same one)",
                             source=str(output), key="--restart")
        stored = load_case_text(old.case_toml, source=str(output))
        _check_restart_case(stored, case, output)
        checkpoint = old.checkpoint()
    if checkpoint is None:
        log.warning("--restart: %s holds no checkpoint yet; starting from the beginning", output)
        return None
    state, _ = checkpoint
    return dict(state)
