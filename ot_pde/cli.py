"""The ``ot-pde`` command line (also ``python -m ot_pde``); see :doc:`/cli`.

Exit codes: 0 ok, 2 bad input, 1 numerical failure, 130 interrupted. With ``--json`` exactly
one JSON object goes to stdout; logs always go to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path

from ._version import __version__
from .errors import InputError, NumericalError, OtPdeError

log = logging.getLogger("ot_pde")

#: The shipped cases: package data, so that an installed wheel has them (in a source
#: checkout ``ot_pde/cases`` is a link to the top-level ``cases/``).
CASES_DIR = Path(__file__).resolve().parent / "cases"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse exits with 2 on bad arguments already; keep its message on one line."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: argument: {message}\n")


def _json_number(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no inf/nan
    return v


class _JsonState:
    """Whether this process owes stdout its one JSON object (``--json``, MPI rank 0)."""

    printed = False
    rank0 = True


def _print_json(obj) -> None:
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return _json_number(o)

    if _JsonState.printed:  # exactly one object per process
        return
    _JsonState.printed = True
    sys.stdout.write(json.dumps(clean(obj)) + "\n")
    sys.stdout.flush()


def _error_json(args, exc: BaseException, status: str, code: int) -> dict:
    """The one JSON object of a command that ended in an error, a signal or a bug."""
    run_result = getattr(exc, "run_result", None)
    if run_result is not None:
        obj = run_result.as_json()
        obj["status"] = status
    else:
        obj = {"problem": None, "case": getattr(args, "case", None),
               "output": getattr(args, "output", None), "summary": {}, "status": status}
    obj["error"] = getattr(exc, "reason", None) or str(exc) or (
        "interrupted" if isinstance(exc, KeyboardInterrupt) else type(exc).__name__)
    obj["exit_code"] = code
    return obj


def resolve_case_path(name: str) -> str:
    """``name`` itself when it is a file (or looks like a path), else the shipped case of
    that name (``bb_translation_1d`` or ``bb_translation_1d.toml``), so that ``ot-pde run
    bb_translation_1d`` works from any folder; an unknown name is left for the loader to
    report as missing."""
    if os.path.exists(name) or os.sep in name or (os.altsep and os.altsep in name):
        return name
    shipped = CASES_DIR / (name if name.endswith(".toml") else f"{name}.toml")
    return str(shipped) if shipped.is_file() else name


def _load(args):
    from .config import load_case

    args.case = resolve_case_path(args.case)
    return load_case(args.case, overrides=args.set or ())


def cmd_run(args) -> int:
    from .core.runner import run_case

    comm = _mpi_comm()
    rank = 0 if comm is None else comm.Get_rank()

    def work():
        return run_case(_load(args), args.output, backend=args.backend,
                        restart=args.restart, comm=comm, overwrite=args.overwrite,
                        keep_checkpoint=args.keep_checkpoint)

    # under MPI every rank fails at the same step: rank 0 reports it
    result, code = _on_every_rank(comm, work, quiet=(InputError, NumericalError))
    if code is not None:
        return code
    if rank != 0:
        return 0
    if args.json:
        _print_json(result.as_json())
    else:
        print(f"{result.problem}: {result.status} -> {result.output}")
        for k, v in result.summary.items():
            print(f"  {k:28s} {v:.10g}" if isinstance(v, float) else f"  {k:28s} {v}")
    return 0


def cmd_check(args) -> int:
    case = _load(args)
    from .backends import get_backend
    from .core.building import build_problem, build_solver
    from .core.registry import get_kind

    kind = get_kind(case.kind)
    kind.backend_for(case)  # run.backend is one the kind runs on (usable here or not)
    # densities, shapes and files are checked by the build, sizes by building the solver
    # (on the reference backend: no kernels compiled), as `run` does before its first step
    problem = build_problem(case)
    build_solver(problem, get_backend("numpy"), case)
    print(f"{args.case}: ok ({case.kind})")
    return 0


def cmd_converge(args) -> int:
    from .backends import get_backend
    from .core.converge import pick_keys, plot_study, run_study, write_study

    _check_outputs(args, ("output", "HDF5 file"), ("plot", "PNG file"))
    comm = _mpi_comm()
    case, study, code = _ensemble(args, comm, lambda case: run_study(
        case, args.vary, backend=args.backend, comm=comm))
    if code is not None:
        return code
    keys = pick_keys(list(study.errors), args.keys)
    if args.output:
        backend = get_backend(args.backend or case.get("run.backend")).name
        write_study(study, case, Path(args.output), backend)
    if args.plot:
        plot_study(study, Path(args.plot), keys)
        log.info("convergence plot written to %s", args.plot)
    if args.json:
        _print_json({"problem": case.kind, "case": args.case, "status": "completed",
                     **study.as_json()})
    else:
        print(study.table(keys))
    return 0


def cmd_sweep(args) -> int:
    from .backends import get_backend
    from .core.converge import pick_keys
    from .core.sweep import run_sweep, write_sweep

    comm = _mpi_comm()
    output = Path(args.output) if args.output else Path(f"{Path(args.case).stem}_sweep.h5")
    _check_outputs(argparse.Namespace(output=output, case=args.case), ("output", "HDF5 file"))

    case, sweep, code = _ensemble(args, comm, lambda case: run_sweep(
        case, args.vary, output, backend=args.backend, comm=comm))
    if code is not None:
        return code
    write_sweep(sweep, case, output, get_backend(args.backend or case.get("run.backend")).name)
    if args.json:
        _print_json({"problem": case.kind, "case": args.case, "output": str(output),
                     "status": "failed" if sweep.failed else "completed", **sweep.as_json()})
    else:
        print(sweep.table(pick_keys(sweep.numeric_keys(), args.keys)))
        print(f"sweep of {len(sweep.runs)} runs -> {output}")
    if sweep.failed:
        log.error("%d of %d sweep runs failed numerically", sweep.failed, len(sweep.runs))
        return 1
    return 0


def _ensemble(args, comm, run):
    """``(case, run(case), None)`` for the case of ``args``, on every rank; ``(None, None,
    exit code)`` where this rank has nothing more to do: an error said by rank 0, or a rank
    other than 0 (``run`` returned None: its runs went to rank 0)."""
    def work():
        case = _load(args)
        return case, run(case)

    outcome, code = _on_every_rank(comm, work)
    if code is None and outcome[1] is None:
        code = 0
    return (None, None, code) if code is not None else (*outcome, None)


def _on_every_rank(comm, work, quiet=(InputError,)):
    """``(work(), None)``, called on every rank of ``comm`` (or serially).

    On a rank other than 0 an error of a ``quiet`` type (one every rank raises alike, such as
    bad input) or one another rank reported (:class:`~ot_pde.core.ensemble.RemoteRunError`)
    gives ``(None, exit code)``: rank 0 says it once. Any other exception on one rank aborts
    all of them, which would otherwise wait for it in their next collective call.
    """
    from .core.ensemble import RemoteRunError

    rank = 0 if comm is None else comm.Get_rank()
    try:
        return work(), None
    except (RemoteRunError, *quiet) as exc:
        if rank != 0:
            return None, exc.exit_code
        raise
    except (OtPdeError, KeyboardInterrupt):
        raise
    except Exception:
        if comm is None:
            raise
        log.exception("rank %d failed; aborting all ranks", rank)
        comm.Abort(1)


def _mpi_comm():
    """The world communicator under ``mpiexec -n P`` (P > 1; rank-prefixed logs, numba
    threads shared among a node's ranks), else None (mpi4py is then never imported)."""
    from .parallel import share_cores, world_comm

    comm = world_comm()
    if comm is not None:
        _JsonState.rank0 = comm.Get_rank() == 0
        _rank_logging(comm.Get_rank(), comm.Get_size())
        threads = share_cores(comm)
        if threads is not None:
            log.debug("numba threads per rank: %d", threads)
    return comm


def _rank_logging(rank: int, size: int) -> None:
    """Under MPI, prefix every log line with the rank (all of them go to stderr)."""
    for handler in log.handlers:
        handler.setFormatter(logging.Formatter(f"[rank {rank}/{size}] %(levelname)s %(message)s"))


def _check_outputs(args, *names) -> None:
    """``-o``/``--plot`` paths: regular files (or new), never the case file."""
    from .io.lock import check_output_path

    for attr, what in names:
        path = getattr(args, attr, None)
        if path:
            check_output_path(path, case_source=getattr(args, "case", None),
                              key=f"--{attr}" if attr != "output" else "-o",
                              what=f"a {what}")


def cmd_plot(args) -> int:
    from .core.registry import get_kind
    from .io import ResultFile

    _check_outputs(args, ("output", "PNG file"))

    with ResultFile(args.result) as rf:
        png = Path(args.output) if args.output else Path(args.result).with_suffix(".png")
        if rf.file_kind in ("sweep", "study"):
            from .core.converge import pick_keys, plot_study, study_from_file
            from .core.sweep import plot_sweep

            if rf.file_kind == "sweep":  # summaries against the varied keys
                plot_sweep(rf, png, pick_keys(list(rf.history()), args.keys))
            else:  # a study of converge -o: errors against h
                study = study_from_file(rf)
                plot_study(study, png, pick_keys(list(study.errors), args.keys))
        else:
            get_kind(rf.problem).plot(rf, png)
    print(f"figure written to {png}")
    return 0


def shipped_cases() -> list[tuple[Path, str]]:
    """Shipped case files with their one-line descriptions."""
    from .config.case import tomllib

    out = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        with open(path, "rb") as f:
            desc = tomllib.load(f).get("case", {}).get("description", "")
        out.append((path, desc))
    return out


def cmd_cases(args) -> int:
    cases = shipped_cases()
    if not cases:  # a broken install: say so rather than print nothing and succeed
        raise InputError("no shipped case files found (the package data is missing; "
                         "reinstall ot_pde)", source=str(CASES_DIR))
    if args.json:
        _print_json({"cases": [{"name": path.stem, "path": str(path), "description": desc}
                               for path, desc in cases]})
        return 0
    width = max(len(path.stem) for path, _ in cases)
    for path, desc in cases:
        print(f"{path.stem:{width}s}  {desc}")
    print(f"({len(cases)} cases in {CASES_DIR}; run one by name: ot-pde run NAME)")
    return 0


def cmd_info(args) -> int:
    import platform

    import h5py
    import numpy
    import scipy

    from .backends import available_backends, cupy_device_count, default_backend

    info = {"ot_pde": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}
    for mod in ("numba", "cupy", "mpi4py"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    info["backends"] = available_backends()
    info["default_backend"] = default_backend()
    info["gpus"] = cupy_device_count()
    from .parallel import mpi_info

    info.update(mpi_info())  # the MPI library's first line, world size and rank
    if args.json:
        _print_json(info)
    else:
        for k, v in info.items():
            print(f"{k:16s} {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKEND_CHOICES

    p = _ArgumentParser(prog="ot-pde", description="PDE solvers for optimal transport.")
    p.add_argument("--version", action="version", version=f"ot_pde {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    # the same flags after the command; SUPPRESS keeps the top-level value when absent
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    def add(name, help):
        return sub.add_parser(name, help=help, parents=[common])

    def case_args(sp):
        sp.add_argument("case", help="case file (TOML), or the name of a shipped case "
                        "(see 'ot-pde cases')")
        sp.add_argument("--set", action="append", metavar="SEC.KEY=VALUE",
                        help="override a case value (validated like the file)")

    r = add("run", "run a case, write HDF5, print a summary")
    case_args(r)
    r.add_argument("-o", "--output", help="output HDF5 file (default: output.path or CASE.h5)")
    r.add_argument("--backend", choices=BACKEND_CHOICES)
    r.add_argument("--json", action="store_true", help="one JSON object on stdout")
    r.add_argument("--restart", action="store_true", help="continue from the file's checkpoint")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing file holding an unfinished run (or not ot_pde's)")
    r.add_argument("--keep-checkpoint", action="store_true",
                   help="keep the restart state in the completed file (by default it is "
                        "dropped: a completed run cannot be restarted)")
    r.set_defaults(func=cmd_run)

    c = add("check", "validate a case file only")
    case_args(c)
    c.set_defaults(func=cmd_check)

    v = add("converge", "convergence study against the exact reference")
    case_args(v)
    v.add_argument("--vary", required=True, metavar="SEC.KEY=V1,V2,...")
    v.add_argument("--backend", choices=BACKEND_CHOICES)
    v.add_argument("--json", action="store_true")
    v.add_argument("--plot", metavar="PNG", help="log-log plot with reference slopes")
    v.add_argument("-o", "--output", help="HDF5 file for the study")
    v.add_argument("--keys", metavar="NAME,...",
                   help="columns of the table and series of the plot, comma-separated "
                        "(default: the error measures, at most 4; the table lists the rest)")
    v.set_defaults(func=cmd_converge)

    w = add("sweep", "run a case at every point of a grid of parameter values")
    case_args(w)
    w.add_argument("--vary", required=True, action="append", metavar="SEC.KEY=V1,V2,...",
                   help="values of one key; repeat for a Cartesian product")
    w.add_argument("--backend", choices=BACKEND_CHOICES)
    w.add_argument("--json", action="store_true")
    w.add_argument("-o", "--output",
                   help="sweep HDF5 file (default: CASE_sweep.h5; runs in OUTPUT_runs/)")
    w.add_argument("--keys", metavar="NAME,...",
                   help="summary values in the table, comma-separated (default: those that "
                        "change across the runs, errors first, at most 4)")
    w.set_defaults(func=cmd_sweep)

    pl = add("plot", "the problem kind's standard figure")
    pl.add_argument("result", help="result HDF5 file")
    pl.add_argument("-o", "--output", help="PNG path (default: RESULT.png)")
    pl.add_argument("--keys", metavar="NAME,...",
                    help="for a sweep or study file: the values to plot (comma-separated)")
    pl.set_defaults(func=cmd_plot)

    cs = add("cases", "list shipped cases (run one by name: ot-pde run NAME)")
    cs.add_argument("--json", action="store_true",
                    help='one JSON object: {"cases": [{"name", "path", "description"}]}')
    cs.set_defaults(func=cmd_cases)
    i = add("info", "versions, backends, GPU, MPI")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    return p


def _sigterm(signum, frame):
    raise KeyboardInterrupt  # the runner installs its own handler while a run steps


def main(argv=None) -> int:
    """The command line; every ending (error, signal, bug, closed pipe) is an exit code, and
    with ``--json`` exactly one JSON object on stdout."""
    _JsonState.printed = False
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread
        pass
    want_json = getattr(args, "json", False)
    try:
        return args.func(args)
    except OtPdeError as exc:
        prefix = "error" if isinstance(exc, InputError) else "numerical failure"
        code, status, err = exc.exit_code, "failed", exc
        _say(f"{prefix}: {exc}")
    except KeyboardInterrupt as exc:
        code, status, err = 130, "interrupted", exc
        _say("interrupted")
    except BrokenPipeError:
        return _closed_stdout()
    except Exception as exc:  # a bug: one line, the traceback under -v
        log.debug("internal error", exc_info=True)
        code, status, err = 1, "failed", exc
        _say(f"internal error (please report it): {type(exc).__name__}: {exc}"
             + ("" if args.verbose else " (run with -v for the traceback)"))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if want_json and _JsonState.rank0 and not _JsonState.printed:
        try:
            _print_json(_error_json(args, err, status, code))
        except BrokenPipeError:
            _closed_stdout()
    return code


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass


def _closed_stdout() -> int:
    """The reader of stdout went away (``ot-pde cases | head -3``): not an error of ours.
    Point stdout at /dev/null so that Python's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 0
