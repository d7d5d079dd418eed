"""Convergence studies: run a case at several resolutions, measure errors, observed orders.

As in Oceananigans' ``validation/convergence_tests`` and Athena++'s regression scripts: each
run's errors against the kind's exact reference (relative error of summary scalars, L1/L2/Linf
norms of field errors), the observed order between consecutive runs
:math:`p = \\log(e_i/e_{i+1}) / \\log(h_i/h_{i+1})`, and a log-log plot with reference slopes.

A run whose summary says ``converged = false`` stops the study with an
:class:`~ot_pde.errors.InputError` (exit 2): its error is not a discretization error, and an
order fitted through it would be meaningless.
"""
from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Case
from ..config.schema import OVERRIDE_SOURCE
from ..errors import InputError
from ..io import ResultFile, ResultWriter
from .building import build_problem
from .ensemble import spread
from .registry import get_kind
from .runner import run_case

log = logging.getLogger("ot_pde")


@dataclass
class Study:
    key: str
    values: list
    h: np.ndarray
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)

    def orders(self) -> dict[str, np.ndarray]:
        """Observed order per consecutive pair, for every error measure."""
        out = {}
        ratio_h = np.log(self.h[:-1] / self.h[1:])
        for name, e in self.errors.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                out[name] = np.log(e[:-1] / e[1:]) / ratio_h
        return out

    def as_json(self) -> dict:
        orders = self.orders()
        return {
            "vary": self.key, "values": self.values, "h": self.h.tolist(),
            "errors": {k: v.tolist() for k, v in self.errors.items()},
            "orders": {k: [None if not math.isfinite(x) else x for x in v.tolist()]
                       for k, v in orders.items()},
            "runs": self.runs,
        }

    def table(self) -> str:
        names = list(self.errors)
        orders = self.orders()
        head = f"{self.key:>14} {'h':>11}" + "".join(f" {n:>24} {'order':>6}" for n in names)
        lines = [head, "-" * len(head)]
        for i, (v, h) in enumerate(zip(self.values, self.h)):
            row = f"{v!s:>14} {h:11.4e}"
            for n in names:
                p = "" if i == 0 else f"{orders[n][i - 1]:6.2f}"
                row += f" {self.errors[n][i]:24.6e} {p:>6}"
            lines.append(row)
        return "\n".join(lines)


def vary_override(case: Case, overrides: list[str]) -> Case:
    """``case.with_overrides(overrides)`` with errors about the values named ``--vary``
    (the values come from ``--vary``, not from ``--set``)."""
    try:
        return case.with_overrides(overrides)
    except InputError as err:
        if err.source == OVERRIDE_SOURCE and err.key and any(
                o.startswith(err.key + "=") for o in overrides):
            raise InputError(err.message, source="--vary", key=err.key) from None
        raise


def parse_vary(text: str, case: Case) -> tuple[str, list]:
    """``sec.key=v1,v2,...`` -> (key, validated values), with the resolution's direction known."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise InputError("expected sec.key=v1,v2,...", source="--vary", key=text)
    key, raw = text.split("=", 1)
    key = key.strip()
    items = [s.strip() for s in raw.split(",") if s.strip()]
    if len(items) < 2:
        raise InputError("a convergence study needs at least two values", source="--vary",
                         key=key)
    values = [vary_override(case, [f"{key}={s}"]).get(key) for s in items]
    resolution = vary_override(case, [f"{key}={items[0]}"]).field(key).resolution
    if resolution is None:
        raise InputError("this key is not a resolution parameter (a cell count or step size)",
                         source="--vary", key=key)
    return key, values


def mesh_size(case: Case, key: str, value) -> float:
    resolution = case.field(key).resolution
    return 1.0 / value if resolution == "inverse" else float(value)


def _run_one(case: Case, kind, key: str, v, folder: Path, backend: str | None,
             keep: bool) -> tuple[dict[str, float], dict]:
    """One run of a study: its errors (name -> value) and its run record."""
    run = case.with_overrides([f"{key}={v!r}" if isinstance(v, str) else f"{key}={v}"])
    problem = build_problem(run)
    reference = problem.reference()
    if reference is None:
        raise InputError(f"problem kind {case.kind!r} has no exact reference for this "
                         "case (convergence studies need one)", source=case.source,
                         key="case.problem")
    out = folder / f"{Path(case.source).stem}_{key}={v}.h5"
    log.info("convergence study: %s = %s", key, v)
    result = run_case(run, out, backend=backend, overwrite=True)
    if result.summary.get("converged") is False:
        raise InputError(
            f"the run at {key} = {v} stopped before its solver converged (summary: converged "
            f"= false after {result.summary.get('iterations')} iterations); its error mixes "
            "the discretization error with the solver's, so no order is fitted through it. "
            "Raise the iteration cap (or loosen the solver tolerance) and run the study "
            "again", source=case.source, key=key)
    errors: dict[str, float] = {}
    with ResultFile(out) as rf:
        for name, exact in reference.scalars.items():
            got = result.summary[name]
            errors[f"{name} rel"] = abs(got - exact) / abs(exact) if exact else abs(got)
        for name, (exact, weight) in reference.fields.items():
            diff = np.abs(rf.field(name) - exact)
            errors[f"{name} L1"] = float(diff.sum() * weight)
            errors[f"{name} L2"] = float(np.sqrt((diff ** 2).sum() * weight))
            errors[f"{name} Linf"] = float(diff.max())
    record = {"value": v, "output": str(out) if keep else None,
              "summary": result.summary, "status": result.status}
    return errors, record


def run_study(case: Case, vary: str, *, backend: str | None = None,
              workdir: Path | None = None, comm=None) -> Study | None:
    """Run ``case`` at each value of ``vary`` and compare with the kind's exact reference.

    With an MPI communicator ``comm`` of more than one rank the runs (coarse to fine) are
    spread over the ranks by :func:`~ot_pde.core.ensemble.spread`: the errors are identical
    to the bit, rank 0 returns the study and the other ranks None.
    """
    key, values = parse_vary(vary, case)
    kind = get_kind(case.kind)
    kind.backend_for(case, backend)  # refused before any run is built
    h = np.array([mesh_size(case, key, v) for v in values])
    order = np.argsort(-h)  # coarse to fine, whatever order the user gave
    values = [values[i] for i in order]
    h = h[order]
    with tempfile.TemporaryDirectory(prefix="ot_pde_converge_") as tmp:
        folder = Path(workdir) if workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        outcomes = spread(len(values), lambda i: _run_one(case, kind, key, values[i], folder,
                                                          backend, workdir is not None), comm)
    if outcomes is None:  # an MPI rank other than 0: its runs went to rank 0
        return None
    study = Study(key=key, values=values, h=h)
    errors: dict[str, list[float]] = {}
    for run_errors, record in outcomes:
        for name, e in run_errors.items():
            errors.setdefault(name, []).append(e)
        study.runs.append(record)
    study.errors = {k: np.array(v) for k, v in errors.items()}
    return study


def write_study(study: Study, case: Case, path: Path, backend: str) -> None:
    """Store the study in an HDF5 file of the common layout (``/history`` rows = runs)."""
    writer = ResultWriter(path, problem=case.kind, case_toml=case.to_toml(), backend=backend,
                          seed=case.get("run.seed"))
    safe = {name: name.replace(" ", "_") for name in study.errors}
    with writer.batch():
        rows = {"iteration": np.arange(len(study.values), dtype=np.int64), "h": study.h}
        numeric = [v for v in study.values if isinstance(v, (int, float))]
        if len(numeric) == len(study.values):
            rows["value"] = np.asarray(study.values, dtype=np.float64)
        rows.update({safe[n]: e for n, e in study.errors.items()})
        writer.append_history(rows)
        finest = {f"order_{safe[n]}": float(p[-1]) for n, p in study.orders().items()}
        writer.write_summary({**finest, "runs": len(study.values)})
        writer.set_attrs(convergence_key=study.key)
    writer.set_status("completed")


def study_from_file(rf: ResultFile) -> Study:
    """The study stored by :func:`write_study` (for ``ot-pde plot STUDY.h5``)."""
    rows = rf.history()
    skip = {"iteration", "h", "value", "wall_seconds"}
    values = rows["value"].tolist() if "value" in rows else list(range(len(rows["h"])))
    return Study(key=str(rf.h5.attrs["convergence_key"]), values=values, h=rows["h"],
                 errors={name: e for name, e in rows.items() if name not in skip})


def plot_study(study: Study, png: Path) -> None:
    """Log-log errors against mesh size, with reference slopes 1 and 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for name, e in study.errors.items():
        ok = e > 0
        ax.loglog(study.h[ok], e[ok], "o-", label=name)
    h = study.h
    anchor = min((e[-1] for e in study.errors.values() if e[-1] > 0), default=1.0)
    for p, style in ((1, ":"), (2, "--"), (4, "-.")):
        ax.loglog(h, anchor * (h / h[-1]) ** p, "k" + style, lw=0.8, label=f"slope {p}")
    ax.set_xlabel(f"h (from {study.key})")
    ax.set_ylabel("error")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
