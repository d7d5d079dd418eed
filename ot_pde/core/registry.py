"""The registry of problem kinds.

Each kind lives in its own module, which calls :func:`register` once at import. Adding a
kind means writing that module and adding one line to ``_KIND_MODULES``. Modules are
imported lazily so that ``ot-pde`` starts fast and a kind's heavy imports cost nothing
until it is used.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import InputError

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
    """

    name: str
    title: str
    schema: "Schema"
    build: Callable[["Case"], "Problem"]
    plot: Callable


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
