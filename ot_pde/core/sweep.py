"""Parameter sweeps: one case run at every point of a grid of key values.

``ot-pde sweep CASE.toml --vary sec.key=v1,v2 [--vary sec.other=w1,w2,w3]`` runs the Cartesian
product of the values (the last ``--vary`` varies fastest). Each run writes its own result
file into a folder beside the sweep file; the sweep file gathers one ``/history`` row per
point (the varied values, every numeric summary scalar and the run's status) and links each
run's file under ``/runs`` (HDF5 external links, so ``h5py.File(sweep)["runs/000/summary"]``
reads a run's summary). Under ``mpiexec -n P`` the points are dealt round the ranks
(:func:`~ot_pde.core.ensemble.spread`) and every run is the serial computation, so the sweep
file holds the same numbers as a serial sweep.

A run that fails numerically (exit 1) does not stop the sweep: its row says ``failed`` and its
file keeps every step written; the command then exits 1. Bad input stops the sweep before
anything runs: every point's case is validated first.
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Case
from ..errors import InputError, NumericalError
from ..io import ResultWriter
from ..io.finalize import link_external
from .building import prepare
from .converge import SHOWN, split_vary, vary_override
from .ensemble import spread
from .runner import run_case

log = logging.getLogger("ot_pde")

STATUS_CODES = {"completed": 0, "interrupted": 1, "failed": 2}


@dataclass
class Sweep:
    keys: list[str]
    points: list[tuple]
    runs: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.runs)

    def as_json(self) -> dict:
        return {"keys": self.keys, "points": [list(p) for p in self.points], "runs": self.runs}

    def numeric_keys(self) -> list[str]:
        """The float summary scalars of the runs (wall time aside), in the runs' order."""
        return list(dict.fromkeys(k for r in self.runs for k, v in r["summary"].items()
                                  if isinstance(v, float) and k != "wall_seconds"))

    def table(self, keys: list[str] | None = None) -> str:
        names = keys or default_keys(self.numeric_keys(), [r["summary"] for r in self.runs])
        widths = [max(10, len(k)) for k in self.keys]
        columns = [max(12, len(n)) for n in names]
        head = "".join(f"{k:>{w}} " for k, w in zip(self.keys, widths)) + f"{'status':>10}" + \
            "".join(f"  {n:>{c}}" for n, c in zip(names, columns))
        lines = [head, "-" * len(head)]
        for point, run in zip(self.points, self.runs):
            row = "".join(f"{v!s:>{w}} " for v, w in zip(point, widths)) + f"{run['status']:>10}"
            row += "".join(f"  {run['summary'].get(n, math.nan):{c}.6g}"
                           for n, c in zip(names, columns))
            lines.append(row)
        hidden = [n for n in self.numeric_keys() if n not in names]
        if hidden:
            lines.append(f"({len(hidden)} more summary values: choose with --keys "
                         f"{','.join(hidden)}; all in --json and the sweep file)")
        return "\n".join(lines)


def default_keys(names: list[str], summaries: list[dict]) -> list[str]:
    """The scalars worth a column: those that change across the runs, error measures
    first; at most :data:`~ot_pde.core.converge.SHOWN`."""
    def varies(n):
        values = np.array([s.get(n, math.nan) for s in summaries], dtype=np.float64)
        values = values[np.isfinite(values)]
        return values.size > 0 and np.ptp(values) > 0

    moving = [n for n in names if varies(n)]
    errors = [n for n in moving if "error" in n or n.endswith("_rel")]
    return (errors + [n for n in moving if n not in errors])[:SHOWN]


def parse_sweep(varies: list[str], case: Case) -> tuple[list[str], list[tuple], list[Case]]:
    """The keys, the points (Cartesian product) and each point's validated case."""
    keys, columns = [], []
    for text in varies:
        key, items = split_vary(text)
        if key in keys:
            raise InputError("this key is varied twice", source="--vary", key=key)
        keys.append(key)
        columns.append(items)
    points, cases = [], []
    for combo in itertools.product(*columns):
        run = vary_override(case, [f"{k}={v}" for k, v in zip(keys, combo)])
        points.append(tuple(run.get(k) for k in keys))
        cases.append(run)
    return keys, points, cases


def _run_name(keys: list[str], point: tuple, index: int) -> str:
    label = "_".join(f"{k.split('.', 1)[1]}={v}" for k, v in zip(keys, point))
    safe = "".join(c if c.isalnum() or c in "=.-_" else "-" for c in label)
    return f"{index:03d}_{safe}.h5"


def run_sweep(case: Case, varies: list[str], output: Path, *, backend: str | None = None,
              comm=None) -> Sweep | None:
    """Run every point of the sweep; rank 0 (or a serial call) returns the :class:`Sweep`,
    whose runs' files lie in ``<output stem>_runs/``; other ranks return None."""
    keys, points, cases = parse_sweep(varies, case)
    # every point resolved once, before the first run: bad input of any point stops the sweep
    setups = [prepare(run, backend) for run in cases]
    folder = output.with_name(f"{output.stem}_runs")

    def run_point(i: int) -> dict:
        out = folder / _run_name(keys, points[i], i)
        label = f"run {i + 1} of {len(points)}"
        log.info("sweep, %s: %s", label, ", ".join(f"{k} = {v}" for k, v in zip(keys, points[i])))
        try:
            result = run_case(setups[i], out, overwrite=True, label=label)
            summary, status = result.summary, result.status
        except NumericalError as exc:  # recorded; the sweep goes on
            log.error("sweep point %d failed: %s", i + 1, exc)
            summary, status = {}, "failed"
        return {"values": list(points[i]), "output": str(out), "summary": summary,
                "status": status}

    runs = spread(len(points), run_point, comm)
    if runs is None:
        return None
    return Sweep(keys=keys, points=points, runs=runs)


def write_sweep(sweep: Sweep, case: Case, path: Path, backend: str) -> None:
    """The sweep file: ``/history`` rows = points, ``/runs/NNN`` links to the runs' files."""
    writer = ResultWriter(path, problem=case.kind, case_toml=case.to_toml(), backend=backend,
                          seed=case.get("run.seed"), file_kind="sweep")
    rows: dict[str, np.ndarray] = {"iteration": np.arange(len(sweep.points), dtype=np.int64)}
    for j, key in enumerate(sweep.keys):
        values = [p[j] for p in sweep.points]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            rows[key.replace(".", "_")] = np.asarray(values, dtype=np.float64)
    rows["status_code"] = np.array([STATUS_CODES[r["status"]] for r in sweep.runs],
                                   dtype=np.float64)
    names = sorted({k for r in sweep.runs for k, v in r["summary"].items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for name in names:
        rows[name] = np.array([float(r["summary"].get(name, math.nan)) for r in sweep.runs])
    with writer.batch() as f:
        writer.append_history(rows)
        writer.write_summary({"runs": len(sweep.points), "failed_runs": sweep.failed})
        writer.set_attrs(sweep_keys=",".join(sweep.keys),
                         sweep_status_codes="completed=0, interrupted=1, failed=2")
        group = f.require_group("runs")
        for i, run in enumerate(sweep.runs):
            # relative to the sweep file, so the file and its folder can move together
            link_external(group, f"{i:03d}", Path(run["output"]), path)
    writer.set_status("completed" if not sweep.failed else "failed",
                      message=f"{sweep.failed} of {len(sweep.runs)} runs failed"
                      if sweep.failed else "")


def plot_sweep(rf, png: Path, keys: list[str] | None = None) -> None:
    """The summary scalars of ``keys`` (default: :func:`default_keys`) against the first
    varied key, one line per value of the others (``ot-pde plot SWEEP.h5``); failed points
    are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rf.history()
    varied = str(rf.h5.attrs["sweep_keys"]).split(",")
    columns = [k.replace(".", "_") for k in varied]
    n = len(rows["iteration"])
    x = rows.get(columns[0], np.arange(n, dtype=np.float64))
    others = [c for c in columns[1:] if c in rows]
    skip = {"iteration", "wall_seconds", "status_code", "iterations", *columns}
    ok = rows["status_code"] != STATUS_CODES["failed"]
    # the scalars that change across the sweep (constants such as exact values say nothing)
    candidates = [k for k in rows if k not in skip]
    names = keys or default_keys(candidates, [{k: rows[k][i] for k in candidates}
                                              for i in np.flatnonzero(ok)])
    groups = sorted({tuple(rows[c][i] for c in others) for i in range(n)})
    ncols = min(3, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        for group in groups:
            pick = ok & np.all([rows[c] == v for c, v in zip(others, group)], axis=0)
            label = ", ".join(f"{c} = {v:g}" for c, v in zip(others, group)) or None
            ax.plot(x[pick], rows[name][pick], "o-", label=label)
        ax.set_xlabel(varied[0] if columns[0] in rows else "point")
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    if others:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
