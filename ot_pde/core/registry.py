"""The registry of problem kinds.

Each kind lives in its own module, which calls :func:`register` once at import. Adding a
kind means writing that module and adding one line to ``_KIND_MODULES``. Modules are
imported lazily so that ``ot-pde`` starts fast and a kind's heavy imports cost nothing
until it is used.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

from ..backends import BACKENDS, CPU_BACKENDS, default_backend
from ..config.case import set_default_schema_for
from ..errors import BackendError, InputError

if TYPE_CHECKING:
    from ..config import Case, Schema
    from .problem import Problem

#: problem kind -> module that registers it (the one line to add per kind)
_KIND_MODULES = {
    "benamou_brenier": "ot_pde.transport.benamou_brenier",
    "monge_ampere_flow": "ot_pde.flows.monge_ampere",
    "ising_variational": "ot_pde.ising.variational",
    "generalized_geodesic": "ot_pde.euler.generalized",
    "flow_comparison": "ot_pde.flows.comparison",
    "otreg_flow": "ot_pde.flows.otreg",
    "gp_flow": "ot_pde.flows.gp",
    "euler_lagrangian": "ot_pde.euler.lagrangian",
    "euler_spectral": "ot_pde.euler.spectral",
    "entropic_potentials": "ot_pde.transport.entropic",
    "monge_ampere_grid": "ot_pde.transport.monge_ampere_grid",
}

_KINDS: dict[str, "ProblemKind"] = {}


@dataclass(frozen=True)
class ProblemKind:
    """What the frame needs to know about a problem kind.

    Attributes
    ----------
    name : str
        The ``[case] problem`` value.
    title : str
        One line for ``ot-pde cases`` and the docs.
    schema : Schema
        Case-file schema (common sections merged in).
    build : callable
        ``build(case) -> Problem``.
    plot : callable
        ``plot(result_file, png_path)``: the kind's standard figure.
    backends : tuple of str, or callable
        The backends the kind runs on (names from :data:`ot_pde.backends.BACKENDS`), or
        ``backends(case) -> tuple`` where that depends on the case (its docstring says in a
        few words when the set is narrower; a refusal quotes it). Default: the CPU ones. A
        run on any other backend is refused (exit 2) before anything is built.
    """

    name: str
    title: str
    schema: "Schema"
    build: Callable[["Case"], "Problem"]
    plot: Callable
    backends: Union[tuple[str, ...], Callable[["Case"], tuple[str, ...]]] = CPU_BACKENDS

    def __post_init__(self):
        if not callable(self.backends):
            _check_names(self.name, self.backends)

    def supported_backends(self, case: "Case") -> tuple[str, ...]:
        """The backends this kind runs ``case`` on."""
        names = tuple(self.backends(case) if callable(self.backends) else self.backends)
        _check_names(self.name, names)
        return names

    def backend_for(self, case: "Case", requested: str | None = None) -> str:
        """The backend name a run of ``case`` uses: ``requested`` (``--backend``), else the
        case's ``run.backend``; ``auto`` picks the preferred CPU backend the kind supports.

        Raises
        ------
        BackendError
            The kind does not run this case on that backend (the message names the ones it
            does). Whether the backend is usable on this machine is
            :func:`ot_pde.backends.get_backend`'s question, asked after this one.
        """
        key = "--backend" if requested else "run.backend"
        name = requested or case.get("run.backend")
        supported = self.supported_backends(case)
        if name is None or name == "auto":
            preferred = default_backend()
            return preferred if preferred in supported else supported[0]
        if name in BACKENDS and name not in supported:
            raise BackendError(f"problem kind {self.name!r} does not run on backend {name!r}"
                               f"{_narrowed_because(self)}; supported: {', '.join(supported)}",
                               source=case.source, key=key)
        return name


def _check_names(kind: str, names) -> None:
    unknown = [n for n in names if n not in BACKENDS]
    if not names or unknown:
        raise ValueError(f"kind {kind!r} declares backends {tuple(names)!r}; expected a "
                         f"non-empty subset of {BACKENDS}")


def _narrowed_because(kind: "ProblemKind") -> str:
    """' (why)' from the docstring of a kind's ``backends(case)``, else ''."""
    if callable(kind.backends) and getattr(kind.backends, "__doc__", None):
        return f" ({kind.backends.__doc__.strip().rstrip('.')})"
    return ""


def register(kind: ProblemKind) -> ProblemKind:
    _KINDS[kind.name] = kind
    return kind


def kind_names() -> list[str]:
    return sorted(_KIND_MODULES)


def get_kind(name: str) -> ProblemKind:
    """The registered kind ``name``; an unknown name is an :class:`InputError`."""
    if name not in _KINDS:
        module = _KIND_MODULES.get(name)
        if module is None:
            import difflib

            close = difflib.get_close_matches(name, _KIND_MODULES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"unknown problem kind {name!r}{hint} (known: "
                             f"{', '.join(kind_names())})", key="case.problem")
        importlib.import_module(module)
    return _KINDS[name]


def _schema_of(kind: str) -> "Schema":
    return get_kind(kind).schema


# Case files name their kind; the case loader finds its schema here (the loader sits below the
# registry in the layers, so the registry hands it the lookup rather than being imported by it).
set_default_schema_for(_schema_of)
