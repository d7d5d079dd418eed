"""Drive a problem's solver: progress, output cadence, checkpoints, restart, stop conditions.

Modelled on Dedalus' main loop: ``while not solver.finished`` with stop conditions on wall
time and iterations inside try/finally, logging at a cadence and ending with run statistics.

The output file is written through :class:`~ot_pde.io.writer.ResultWriter`, which opens and closes
the file at every flush, so a run killed at any moment leaves every flushed step readable.
"""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Case, load_case_text
from ..errors import InputError, NumericalError, OtPdeError
from ..io import ResultFile, ResultWriter, write_xdmf
from ..io.blocks import write_rank_blocks, write_virtual_field
from ..io.finalize import compact
from ..io.lock import OutputLock, check_fresh_output, check_output_path
from ..io.snapshots import SNAPSHOT_AXIS, append_snapshots, truncate_snapshots
from ..limits import guarded
from .building import Setup, build_solver, prepare
from .progress import Progress

log = logging.getLogger("ot_pde")

#: keys that may differ between a run and its restart (they do not change the numerics)
RESTART_MUTABLE_KEYS = {
    ("run", "max_wall_seconds"), ("run", "progress"), ("run", "progress_seconds"),
    ("output", "path"), ("output", "xdmf"), ("solver", "max_iterations"),
}

_STATE_WALL = "runner_wall_seconds"
_STATE_SNAPSHOTS = "runner_snapshots"  # snapshots written up to the checkpoint


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


def run_case(case: Case | Setup, output: Path | None = None, *, backend: str | None = None,
             restart: bool = False, comm=None, overwrite: bool = False,
             keep_checkpoint: bool = False, label: str = "") -> RunResult:
    """Run ``case`` to completion (or to a stop condition), writing ``output``.

    ``case`` is a :class:`~ot_pde.core.building.Setup` (:func:`~ot_pde.core.building.prepare`
    resolved it, ``backend`` is then ignored) or a case, prepared here.

    With an MPI communicator ``comm`` of more than one rank every rank calls this: the kind
    must have an ``mpi_mode`` (see :class:`~ot_pde.core.problem.Problem`); the ranks step
    in lockstep and stop together (signals and the wall-time limit are shared at each
    iteration); rank 0 writes ``output``, and the blocks of distributed fields go to one
    file per rank (:func:`~ot_pde.io.blocks.rank_file`) joined in ``output`` by HDF5
    virtual datasets.

    A completed run's file is rewritten without its restart state (it cannot be restarted;
    :func:`~ot_pde.io.finalize.compact`) unless ``keep_checkpoint``; the XDMF sidecar is
    written after that. ``label`` starts every progress line (``run 2 of 4``).

    Rank 0 holds a lock on ``output`` for the whole run (:class:`~ot_pde.io.lock.OutputLock`):
    a second writer is refused. Without ``restart`` an existing file holding an unfinished
    run (or a file that is not an ot_pde result) is refused unless ``overwrite``.

    Raises
    ------
    InputError
        Bad case, backend, output path or checkpoint (nothing is run, the file untouched).
    NumericalError
        The solver or the summary produced non-finite values; the file is marked ``failed``.
    KeyboardInterrupt
        Ctrl-C or SIGTERM; the file is marked ``interrupted`` and holds a checkpoint.
    """
    if isinstance(case, Setup):
        setup = case
        case = setup.case
    else:
        setup = None
    output = Path(output) if output is not None else default_output_path(case)
    check_output_path(output, case_source=case.source)
    setup = setup or prepare(case, backend)
    problem, backend_obj = setup.problem, setup.backend
    if comm is not None:
        if problem.mpi_mode is None:
            raise InputError(f"problem kind {case.kind!r} does not run on several MPI ranks; "
                             "run it serially (a study's runs spread over ranks with "
                             "'ot-pde converge' or 'ot-pde sweep')", source=case.source,
                             key="case.problem")
        problem.comm = comm
    lock = _on_root(comm, lambda: OutputLock(output).acquire())  # None on other ranks
    try:
        result = _run_locked(case, output, problem, backend_obj, restart, comm, overwrite,
                             label)
        if lock is not None:  # rank 0, or a serial run
            if result.status == "completed" and not keep_checkpoint:
                lock.replace_with(compact(output))
            # the sidecar reads the file: on rank 0 only, which wrote it
            if case.get("output.xdmf"):
                write_xdmf(output)
        return result
    finally:
        if lock is not None:
            lock.release()


def _run_locked(case, output, problem, backend_obj, restart, comm, overwrite,
                label) -> RunResult:
    """:func:`run_case` once the output file is locked."""
    root = comm is None or comm.Get_rank() == 0
    state = None
    if restart:  # every rank reads the checkpoint (read-only), then rank 0 reopens the file
        state = _restart_state(case, output, backend_obj.name)
        if comm is not None:
            comm.Barrier()
    else:
        _on_root(comm, lambda: check_fresh_output(output, overwrite))
    fresh = state is None
    # the solver is set up and the checkpoint loaded before the file is touched: a case too
    # large or a damaged checkpoint leaves the file as it was (an interrupted run stays so)
    solver = build_solver(problem, backend_obj, case)
    snapshots = 0
    if not fresh:
        wall_before = _stored_wall(state.pop(_STATE_WALL, 0.0), output)
        snapshots = int(state.pop(_STATE_SNAPSHOTS, 0))
        load_checkpoint_state(solver, state, output)
    writer = _on_root(comm, lambda: ResultWriter(
        output, problem=case.kind, case_toml=case.to_toml(), backend=backend_obj.name,
        seed=case.get("run.seed"), restart=not fresh))
    if not root:
        writer = _NoWriter()
    try:
        if fresh:
            wall_before = 0.0
            with writer.batch():
                for axis in problem.grid():
                    writer.write_grid(axis.name, axis.coords, units=axis.units,
                                      description=axis.description, kind=axis.kind)
        else:
            writer.truncate_history(solver.iteration)
            if root:  # snapshots written after the checkpoint are written again
                truncate_snapshots(writer, SNAPSHOT_AXIS, snapshots)
            log.info("restarting %s from iteration %d", output, solver.iteration)
    except BaseException as exc:  # the file says why it holds no run
        if isinstance(exc, KeyboardInterrupt):
            writer.set_status("interrupted", message="interrupted before the first step")
        else:
            writer.set_status("failed", message=f"{type(exc).__name__}: {exc}")
        raise
    return _main_loop(case, output, problem, solver, writer, backend_obj, wall_before, comm,
                      label, snapshots)


def _main_loop(case, output, problem, solver, writer, backend_obj, wall_before,
               comm, label="", snapshots=0) -> RunResult:
    root = comm is None or comm.Get_rank() == 0
    log.info("%s: %s on backend %s -> %s", case.kind, problem.describe(), backend_obj.name,
             output)
    every = case.get("output.every")
    max_wall = case.get("run.max_wall_seconds")
    progress = Progress(mode=case.get("run.progress") if root else "none",
                        cadence=case.get("run.progress_seconds"),
                        total=problem.max_iterations(), start=solver.iteration, label=label)
    rows: list[tuple[int, float, dict]] = []
    # snapshots in time (a kind's optional ``snapshot(solver)``): held until the next
    # checkpoint, so the file never holds one the checkpoint's state has not reached
    take = getattr(problem, "snapshot", None)
    pending: list = []
    written = [snapshots]
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
                if pending:
                    append_snapshots(writer, SNAPSHOT_AXIS, [t for t, _ in pending], {
                        f.name: (np.stack([p[1][i].data for p in pending]), f.dims, f.units,
                                 f.description) for i, f in enumerate(pending[0][1])})
                    written[0] += len(pending)
                    pending.clear()
                snapshot = solver.state()
                snapshot[_STATE_WALL] = np.float64(elapsed())
                if take is not None:
                    snapshot[_STATE_SNAPSHOTS] = np.int64(written[0])
                writer.write_checkpoint(snapshot, solver.iteration)

    def snap() -> None:
        due = take(solver) if take is not None else None
        if due is not None:
            pending.append(due)

    def result(status: str, summary: dict) -> RunResult:
        return RunResult(problem=case.kind, case=case.source, output=output,
                         backend=backend_obj.name, summary=summary, status=status)

    status, message = "failed", ""
    consistent = True  # False when the solver may have stopped midway through an iteration
    summary: dict = {}
    with _StopSignals() as signals:
        try:
            stop_reason = ""
            snap()  # t = 0 of a fresh run (a restart only tells the kind where it is)
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
                snap()
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
        except KeyboardInterrupt as exc:
            # raised between iterations unless a second signal forced it (see _StopSignals)
            consistent = signals.received is not None and not signals.forced
            status, message = "interrupted", f"interrupted by {signals.received or 'signal'}"
            try:
                flush(checkpoint=consistent)
            finally:
                exc.run_result = result("interrupted", {})
                exc.reason = message
            raise
        except BaseException as exc:  # NumericalError, or a bug: keep what was computed
            consistent = False
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            err = _numerical(exc)
            if isinstance(err, OtPdeError):  # the CLI's --json reports the failed run
                err.run_result = result("failed", {})
            flush(checkpoint=False)
            if err is not exc:
                raise err from exc
            raise
        finally:
            progress.close()
            try:
                if consistent and status in ("completed", "interrupted"):
                    summary = _summary_step(problem, solver, writer, case, output, elapsed(),
                                            comm, status, message)
            except BaseException as exc:
                # an error found while writing the summary: the file says failed, never
                # running; the history and the last checkpoint are kept
                status, message = "failed", f"{type(exc).__name__}: {exc}"
                err = _numerical(exc)
                if isinstance(err, OtPdeError):
                    err.run_result = result("failed", getattr(exc, "summary", {}))
                if err is not exc:
                    raise err from exc
                raise
            finally:
                writer.set_status(status, message=message)
    log.info("%s in %d iterations, %.2f s", status, solver.iteration, elapsed())
    return result(status, summary)


def _numerical(exc: BaseException) -> BaseException:
    """Arithmetic that failed inside a step or the summary (overflow, division by zero, a
    singular matrix, a NumPy RuntimeWarning raised as an error under ``-W error``) is a
    numerical failure of the run (exit 1), not a bug."""
    if isinstance(exc, (ArithmeticError, np.linalg.LinAlgError, RuntimeWarning)):
        return NumericalError(f"{type(exc).__name__}: {exc}")
    return exc


def _summary_step(problem, solver, writer, case, output, wall, comm, status,
                  message) -> dict:
    """The summary, fields and particles, once the loop ended; a second signal during an
    interrupted run's summary skips it (the checkpoint is kept)."""
    try:
        if status == "interrupted":
            # The summary may take a while (the Ising estimators sample afresh);
            # a second signal skips it and still marks the file.
            log.warning("%s: writing the summary of iteration %d (signal again "
                        "to skip it)", message, solver.iteration)
        return _write_results(problem, solver, writer, case, output, wall, comm)
    except KeyboardInterrupt:
        if status != "interrupted":
            raise
        log.warning("summary skipped; the checkpoint of iteration %d is kept",
                    solver.iteration)
        return {}


def check_summary_finite(summary: dict) -> None:
    """The one finiteness check of every run's summary: NumericalError naming the values
    that are NaN or infinite (the summary is written first, so the file shows them)."""
    bad = [k for k, v in summary.items()
           if isinstance(v, (float, np.floating)) and not math.isfinite(v)]
    if bad:
        err = NumericalError("the summary holds non-finite values: "
                             + ", ".join(f"{k} = {summary[k]}" for k in bad))
        err.summary = summary
        raise err


def _write_results(problem, solver, writer, case: Case, output: Path, wall: float,
                   comm=None) -> dict:
    """Summary, fields and particles of the solver's current state into the file.

    Under MPI every rank calls this (the problem's methods are collective); the blocks of
    distributed fields are written by their ranks (:func:`_write_blocks`).
    """
    with guarded("computing the summary", source=case.source):
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
                write_virtual_field(writer, fld.name, layouts[fld.name],
                                    shape=fld.global_shape, dims=fld.dims,
                                    units=fld.units, description=fld.description)
        for part in problem.particles(solver):
            writer.write_particles(part.name, part.data, units=part.units,
                                   description=part.description)
        writer.write_summary(summary)
    check_summary_finite(summary)
    return summary


def _write_blocks(blocks, output: Path, comm, problem: str) -> dict:
    """Each rank writes its blocks to its own file; returns, for rank 0, each field's
    sources ``[(file name, dataset, offset, shape), ...]`` over all ranks."""
    rank = 0 if comm is None else comm.Get_rank()
    mine = write_rank_blocks(output, rank, problem, blocks)
    parts = [mine] if comm is None else comm.gather(mine, root=0)
    if parts is None:
        return {}
    return {name: [part[name] for part in parts] for name in mine}


def _restart_state(case: Case, output: Path, backend: str) -> dict | None:
    """The checkpoint of ``output`` after checking it belongs to this case (None: start over)."""
    if not output.exists() or output.stat().st_size == 0:
        log.warning("--restart: %s does not exist; starting from the beginning", output)
        return None
    try:
        return _read_restart_state(case, output, backend)
    except InputError:
        raise
    except Exception as exc:  # a damaged file: HDF5 errors of every kind
        raise InputError(f"cannot read the file to restart from ({type(exc).__name__}: "
                         f"{exc})", source=str(output), key="--restart") from None


def _read_restart_state(case: Case, output: Path, backend: str) -> dict | None:
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
        checkpoint = old.checkpoint()  # checksums verified here
        rows = {name: ds.shape[0] for name, ds in old.h5.get("history", {}).items()}
    if checkpoint is None:
        log.warning("--restart: %s holds no checkpoint yet; starting from the beginning", output)
        return None
    state, iteration = checkpoint
    if iteration < 0:
        raise InputError(f"the checkpoint's iteration {iteration} is negative", source=str(output),
                         key="checkpoint@iteration")
    short = {name: n for name, n in rows.items() if n < iteration}
    if short:
        name, n = next(iter(short.items()))
        raise InputError(f"the history holds {n} rows, fewer than the checkpoint's iteration "
                         f"{iteration}: the file is inconsistent", source=str(output),
                         key=f"history/{name}")
    state = dict(state)
    state[_ITERATION] = iteration
    return state


_ITERATION = "__checkpoint_iteration__"


def _stored_wall(value, output: Path) -> float:
    """The wall time stored with a checkpoint: one finite, non-negative number."""
    try:
        wall = float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        wall = math.nan
    if not (math.isfinite(wall) and wall >= 0):
        raise InputError(f"expected the run's wall time in seconds, got {value!r}",
                         source=str(output), key=f"checkpoint/{_STATE_WALL}")
    return wall


def load_checkpoint_state(solver, state: dict, output: Path) -> None:
    """``solver.load_state(state)`` after checking the state against the solver's own.

    A freshly built solver's ``state()`` is the template: the checkpoint must hold its
    entries (it may hold more, added as the solver went on), each array with the template's
    shape (only the rank for the entries the solver lists in ``growing_state``, whose shapes
    change as the run goes on) and dtype kind, each scalar of the same type; after loading,
    the solver's
    iteration must be the checkpoint's. Anything else is
    an InputError naming the dataset (the file was tampered with or belongs to another
    version), raised before the file is reopened for writing.
    """
    source = str(output)
    iteration = state.pop(_ITERATION)
    template = solver.state()
    template.pop(_STATE_WALL, None)
    growing = set(getattr(solver, "growing_state", ()))
    # a solver may add entries as it goes (a previous iterate), never drop one
    missing = sorted(set(template) - set(state))
    if missing:
        raise InputError(f"the dataset is missing from the checkpoint (a state holds at "
                         f"least {sorted(template)})", source=source,
                         key=f"checkpoint/{missing[0]}")
    for name, want in template.items():
        got = state[name]
        if isinstance(want, (str, bool, int, float)):  # NumPy scalars included
            kind = next(t for t in (str, bool, int, float) if isinstance(want, t))
            ok = isinstance(got, kind) and (kind is bool or not isinstance(got, bool)) or (
                kind is float and isinstance(got, (int, float, np.number))
                and not isinstance(got, bool))
            if not ok:
                raise InputError(f"expected a {kind.__name__}, got {got!r}",
                                 source=source, key=f"checkpoint/{name}")
            continue
        want_arr = np.asarray(want)
        got_arr = np.asarray(got)
        # entries whose shape changes as the run goes on (histories, the grids of a
        # multilevel solve) are named by the solver: only their rank is fixed
        shape_ok = (got_arr.ndim == want_arr.ndim if name in growing
                    else got_arr.shape == want_arr.shape)
        if not shape_ok or got_arr.dtype.kind != want_arr.dtype.kind:
            raise InputError(f"expected {want_arr.dtype} of shape {want_arr.shape}, got "
                             f"{got_arr.dtype} of shape {got_arr.shape}", source=source,
                             key=f"checkpoint/{name}")
    try:
        with guarded("loading the checkpoint", source=source, key="checkpoint"):
            solver.load_state(state)
    except InputError as exc:  # the kind's own check of its state: say which file
        key = f"checkpoint/{exc.key}" if exc.key else "checkpoint"
        raise InputError(exc.message, source=source, key=key) from None
    except Exception as exc:  # the checksums held: a state of the wrong structure
        raise InputError(f"the checkpoint does not fit this case's solver "
                         f"({type(exc).__name__}: {exc})", source=source,
                         key="checkpoint") from None
    # what the solver holds now must be what the checkpoint held: an entry it ignored, or
    # one it dropped with its partners (a set of arrays missing one member), is refused
    again = solver.state()
    again.pop(_STATE_WALL, None)
    for name in sorted(set(again) ^ set(state)):
        raise InputError("the checkpoint's entries do not match the state the solver holds "
                         f"after loading it ({'ignored' if name in state else 'missing'}); "
                         "it was altered or belongs to another version", source=source,
                         key=f"checkpoint/{name}")
    for name, value in again.items():
        if np.shape(value) != np.shape(state[name]):
            raise InputError(f"loaded with shape {np.shape(value)} but stored with "
                             f"{np.shape(state[name])}", source=source,
                             key=f"checkpoint/{name}")
    if int(solver.iteration) != iteration:
        raise InputError(f"the checkpoint's iteration attribute says {iteration}, its state "
                         f"{solver.iteration}", source=source, key="checkpoint@iteration")
