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
from .building import prepare
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

    def default_keys(self) -> list[str]:
        """The measures shown unless ``--keys`` says otherwise: relative errors of the
        summary scalars, then the fields' L2 errors; at most :data:`SHOWN`."""
        names = list(self.errors)
        # names read back from a study file have "_" for " " (see write_study)
        ranked = [n for n in names if n.replace("_", " ").endswith(" rel")] + \
            [n for n in names if n.replace("_", " ").endswith(" L2")]
        return (ranked or names)[:SHOWN]

    def table(self, keys: list[str] | None = None) -> str:
        names = keys or self.default_keys()
        orders = self.orders()
        widths = [max(11, len(n)) for n in names]
        width = max(8, len(self.key))
        head = f"{self.key:>{width}} {'h':>10}" + "".join(
            f"  {n:>{w}} {'order':>5}" for n, w in zip(names, widths))
        lines = [head, "-" * len(head)]
        for i, (v, h) in enumerate(zip(self.values, self.h)):
            row = f"{v!s:>{width}} {h:10.3e}"
            for n, w in zip(names, widths):
                p = "" if i == 0 else f"{orders[n][i - 1]:5.2f}"
                row += f"  {self.errors[n][i]:{w}.4e} {p:>5}"
            lines.append(row)
        hidden = len(self.errors) - len(names)
        if hidden > 0:
            lines.append(f"({hidden} more error measures: choose with --keys "
                         f"{','.join(n.replace(' ', '_') for n in self.errors)}; all in --json)")
        return "\n".join(lines)


#: Columns of a study's or a sweep's table (and series of its plot) unless --keys says.
SHOWN = 4


def pick_keys(available: list[str], keys: str | None) -> list[str] | None:
    """``--keys a,b`` -> the names among ``available`` (a space may be written ``_``:
    ``rho_L2`` for ``rho L2``); None when ``keys`` is None (the defaults then)."""
    if keys is None:
        return None
    by_name = {**{n.replace(" ", "_"): n for n in available}, **{n: n for n in available}}
    chosen = []
    for key in (k.strip() for k in keys.split(",")):
        if key not in by_name:
            raise InputError("unknown key; choose from "
                             + ", ".join(n.replace(" ", "_") for n in available),
                             source="--keys", key=key)
        chosen.append(by_name[key])
    if not chosen:
        raise InputError("no key given", source="--keys")
    return chosen


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


def split_vary(text: str) -> tuple[str, list[str]]:
    """``sec.key=v1,v2,...`` -> (key, the values as text): the one reader of ``--vary``
    (``converge`` and ``sweep``); the values are validated by applying them to the case."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise InputError("expected sec.key=v1,v2,...", source="--vary", key=text)
    key, raw = (s.strip() for s in text.split("=", 1))
    items = [s.strip() for s in raw.split(",") if s.strip()]
    if not items:
        raise InputError("no values given", source="--vary", key=key)
    return key, items


def parse_vary(text: str, case: Case) -> tuple[str, list]:
    """``sec.key=v1,v2,...`` -> (key, validated values), with the resolution's direction known."""
    key, items = split_vary(text)
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


def _run_one(case: Case, key: str, v, folder: Path, backend: str | None,
             keep: bool, label: str) -> tuple[dict[str, float], dict]:
    """One run of a study: its errors (name -> value) and its run record."""
    run = prepare(case.with_overrides([f"{key}={v!r}" if isinstance(v, str) else f"{key}={v}"]),
                  backend)
    reference = run.problem.reference()
    if reference is None:
        raise InputError(f"problem kind {case.kind!r} has no exact reference for this "
                         "case (convergence studies need one)", source=case.source,
                         key="case.problem")
    out = folder / f"{Path(case.source).stem}_{key}={v}.h5"
    log.info("convergence study, %s: %s = %s", label, key, v)
    result = run_case(run, out, overwrite=True, label=label)
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
    get_kind(case.kind).backend_for(case, backend)  # refused before any run is built
    h = np.array([mesh_size(case, key, v) for v in values])
    order = np.argsort(-h)  # coarse to fine, whatever order the user gave
    values = [values[i] for i in order]
    h = h[order]
    with tempfile.TemporaryDirectory(prefix="ot_pde_converge_") as tmp:
        folder = Path(workdir) if workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        outcomes = spread(len(values), lambda i: _run_one(
            case, key, values[i], folder, backend, workdir is not None,
            f"run {i + 1} of {len(values)}"), comm)
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
                          seed=case.get("run.seed"), file_kind="study")
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


def plot_study(study: Study, png: Path, keys: list[str] | None = None) -> None:
    """Log-log errors against mesh size with reference slopes 1, 2 and 4; the measures of
    ``keys`` (default :meth:`Study.default_keys`), the legend beside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = keys or study.default_keys()
    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    markers = "osD^vP*X"
    for i, name in enumerate(names):
        e = study.errors[name]
        ok = e > 0
        ax.loglog(study.h[ok], e[ok], marker=markers[i % len(markers)], ls="-", label=name)
    h = study.h
    anchor = min((study.errors[n][-1] for n in names if study.errors[n][-1] > 0), default=1.0)
    for p, style in ((1, ":"), (2, "--"), (4, "-.")):
        ax.loglog(h, anchor * (h / h[-1]) ** p, "k" + style, lw=0.8, label=f"slope {p}")
    ax.set_xlabel(f"h (from {study.key})")
    ax.set_ylabel("error against the exact reference")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
