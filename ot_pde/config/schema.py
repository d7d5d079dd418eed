"""Case-file schemas: typed fields, sections (with variants) and their validation.

A problem kind describes its case file as a :class:`Schema`: named :class:`Section` s of
typed :class:`Field` s. Validation turns the raw dict read from TOML into a fully resolved
dict (every section present, defaults filled, values normalized) or raises one
:class:`~ot_pde.errors.InputError` whose one-line message names the source (file or
``--set``), the dotted key, what was expected and what was got.

Resolved data model
-------------------
``{section: {key: value}}`` with every section and every key of the schema present, in
schema order. An optional key with no value (``default=None``, not given) is stored as
``None``; :func:`ot_pde.config.case.to_toml` leaves such keys out. Values are plain Python
``int``, ``float``, ``str``, ``bool``, ``list`` (of those) and ``list`` of ``list`` of
``float``; paths are absolute path strings.
"""
from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from ot_pde.backends import BACKEND_CHOICES
from ot_pde.errors import InputError

__all__ = [
    "COMMON_SECTIONS",
    "FIELD_TYPES",
    "OVERRIDE_SOURCE",
    "REQUIRED",
    "Field",
    "Schema",
    "Section",
    "make_schema",
]

#: The ``source`` named in errors about values given by ``--set sec.key=value``.
OVERRIDE_SOURCE = "--set"

FIELD_TYPES = (
    "int", "float", "str", "bool", "path", "float_list", "int_list", "str_list", "float_matrix",
)
_SCALAR_TYPES = ("int", "float", "str", "bool", "path")
_NUMERIC_ELEMENTS = ("int", "float")
_CHOICE_ELEMENTS = ("int", "str")
_RESOLUTIONS = (None, "inverse", "direct")
# (singular with article, plural) names used in "expected ..." phrases.
_NOUNS = {
    "int": ("an integer", "integers"),
    "float": ("a float", "floats"),
    "str": ("a string", "strings"),
    "bool": ("a boolean (true or false)", "booleans"),
    "path": ("a path (a string)", "paths"),
}
# Longer reprs are cut so that an error message stays one readable line.
_MAX_SHOWN = 80


class _Required:
    """Type of :data:`REQUIRED`: the default of a key that the case file must give."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: Default marking a key as required.
REQUIRED: Any = _Required()


class _Reject(Exception):
    """A value failed a check; ``text`` is the whole error message (without source/key)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


def _show(value: Any, *, typed: bool) -> str:
    """Render a bad value; its Python type is added when the type itself was wrong."""
    text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text if typed else f"{text} ({type(value).__name__})"


def _number(x: float) -> str:
    """Render a bound: ``0`` rather than ``0.0`` for integral floats, ``inf`` as is."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Field:
    """One typed key of a case-file section.

    Parameters
    ----------
    type : str
        One of :data:`FIELD_TYPES`: ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"path"``,
        ``"float_list"``, ``"int_list"``, ``"str_list"``, ``"float_matrix"`` (a list of
        equal-length lists of floats).
    default : object, optional
        :data:`REQUIRED` (the default): the key must be given. ``None``: optional, with no
        value when not given. Anything else: the value used when the key is not given; it is
        validated like a given value (so ``1`` for a float field becomes ``1.0`` and a
        relative path default resolves against the case file's directory).
    minimum, maximum, exclusive_minimum, exclusive_maximum : float, optional
        Bounds of a numeric value, or of each element of a numeric list or matrix. Floats are
        finite unless an inclusive bound is itself infinite (``maximum=math.inf`` admits
        ``inf``); ``nan`` is always rejected.
    choices : sequence, optional
        Allowed values of an ``int``/``str`` field or of each element of an
        ``int_list``/``str_list``.
    length, min_length : int, optional
        Required (or least) number of elements of a list (rows of a ``float_matrix``).
    doc : str
        One-line description, for generated documentation.
    resolution : {None, "inverse", "direct"}
        How the value sets the mesh size ``h`` in convergence studies: ``"inverse"`` for a
        count (cells, steps: ``h`` ∝ 1/value), ``"direct"`` for a step size (``h`` ∝ value).
        Only stored here.
    must_exist : bool
        For ``"path"`` fields: the resolved path must exist.
    """

    type: str
    default: Any = REQUIRED
    _: KW_ONLY
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: Sequence[Any] | None = None
    length: int | None = None
    min_length: int | None = None
    doc: str = ""
    resolution: str | None = None
    must_exist: bool = False

    def __post_init__(self) -> None:
        # Schema mistakes are programming errors (ValueError), caught when the kind's module
        # is imported rather than when a user's case file happens to reach them.
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r}; expected one of {FIELD_TYPES}")
        if self.resolution not in _RESOLUTIONS:
            raise ValueError(f"resolution must be one of {_RESOLUTIONS}, got {self.resolution!r}")
        bounds = (self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum)
        has_bounds = any(b is not None for b in bounds)
        if has_bounds and self._element not in _NUMERIC_ELEMENTS:
            raise ValueError(f"bounds given for a {self.type!r} field")
        if self.choices is not None:
            if self._element not in _CHOICE_ELEMENTS or self.type == "float_matrix":
                raise ValueError(f"choices given for a {self.type!r} field")
            if has_bounds:
                raise ValueError("a field takes choices or bounds, not both")
            object.__setattr__(self, "choices", tuple(self.choices))
        if (self.length is not None or self.min_length is not None) and \
                self.type in _SCALAR_TYPES:
            raise ValueError(f"length given for a {self.type!r} field")
        if self.must_exist and self.type != "path":
            raise ValueError(f"must_exist given for a {self.type!r} field")
        if self.default is REQUIRED or self.default is None:
            return
        if self.type == "path":
            # Resolution and existence depend on the case file's directory: checked at use.
            if not isinstance(self.default, str):
                raise ValueError(f"default of a path field must be a str, got {self.default!r}")
            return
        try:
            self.validate(self.default, source="<schema>", key="default", base_dir=".")
        except InputError as err:
            raise ValueError(f"invalid default {self.default!r}: {err.message}") from None

    @property
    def required(self) -> bool:
        """Whether the key must be given."""
        return self.default is REQUIRED

    @property
    def _element(self) -> str:
        """Type of the scalar or of each element: ``"float"`` for ``"float_list"`` etc."""
        return self.type.split("_")[0]

    @property
    def expected(self) -> str:
        """What the field accepts, as the phrase after "expected" in error messages."""
        limits = self._limits()
        if self.type in _SCALAR_TYPES:
            return limits if self.choices else f"{_NOUNS[self.type][0]} {limits}".rstrip()
        count = f"{self.length} " if self.length is not None else \
            f"at least {self.min_length} " if self.min_length else ""
        if self.type == "float_matrix":
            text = f"a matrix (a list of {count}equal-length lists of floats)"
        else:
            text = f"a list of {count}{_NOUNS[self._element][1]}"
        return f"{text}, each {limits}" if limits else text

    def _limits(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = []
        for op, bound in ((">=", self.minimum), (">", self.exclusive_minimum),
                          ("<=", self.maximum), ("<", self.exclusive_maximum)):
            if bound is not None:
                parts.append(f"{op} {_number(bound)}")
        return " and ".join(parts)

    def validate(self, value: Any, *, source: str | None, key: str | None,
                 base_dir: str | os.PathLike[str]) -> Any:
        """Check and normalize one value.

        Parameters
        ----------
        value : object
            The value as read from TOML (or parsed from an override).
        source, key : str
            Named in the error: where the value came from and its dotted key.
        base_dir : path-like
            Directory that relative paths are resolved against (the case file's directory for
            values from a file, the working directory for overrides).

        Returns
        -------
        object
            The normalized value: ints promoted to float for float fields, integral floats
            made int for int fields, tuples made lists, paths made absolute strings.

        Raises
        ------
        InputError
            With a one-line message saying what was expected and what was got.
        """
        try:
            if self.type in _SCALAR_TYPES:
                return self._scalar(value, base_dir, "")
            if self.type == "float_matrix":
                return self._matrix(value)
            return self._list(value, base_dir)
        except _Reject as reject:
            raise InputError(reject.text, source=source, key=key) from None

    def _reject(self, value: Any, *, typed: bool, at: str = "", hint: str = "") -> _Reject:
        return _Reject(f"expected {self.expected}, got {_show(value, typed=typed)}{at}{hint}")

    def _scalar(self, value: Any, base_dir: str | os.PathLike[str], at: str) -> Any:
        """Check one scalar, or one element of a list whose position ``at`` ends messages."""
        kind = self._element
        given = value  # messages show the value as given, before normalization
        if kind == "bool" or isinstance(value, bool):
            # bool is an int subclass in Python; TOML keeps them apart, and so do we.
            if isinstance(value, bool) != (kind == "bool"):
                raise self._reject(given, typed=False, at=at)
            return value
        if kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            elif not isinstance(value, int):
                raise self._reject(given, typed=False, at=at)
        elif kind == "float":
            if not isinstance(value, (int, float)):
                raise self._reject(given, typed=False, at=at)
            try:
                value = float(value)
            except OverflowError:  # an int too large for a double
                raise self._reject(given, typed=True, at=at) from None
            if math.isnan(value):
                raise self._reject(given, typed=True, at=at)
            if math.isinf(value) and value != (self.maximum if value > 0 else self.minimum):
                raise self._reject(given, typed=True, at=at,
                                   hint="; infinite values are not allowed here")
        elif not isinstance(value, str) or (kind == "path" and not value):
            raise self._reject(given, typed=isinstance(value, str), at=at)
        if kind in _NUMERIC_ELEMENTS and not self._in_range(value):
            raise self._reject(given, typed=True, at=at)
        if self.choices is not None and value not in self.choices:
            hint = ""
            if isinstance(value, str):
                hint = _did_you_mean(value, [c for c in self.choices if isinstance(c, str)])
            raise self._reject(given, typed=True, at=at, hint=hint)
        if kind == "path":
            value = os.path.abspath(os.path.join(os.fspath(base_dir), os.path.expanduser(value)))
            if self.must_exist and not os.path.exists(value):
                raise _Reject(f"file not found: {value}")
        return value

    def _in_range(self, x: float) -> bool:
        return ((self.minimum is None or x >= self.minimum)
                and (self.maximum is None or x <= self.maximum)
                and (self.exclusive_minimum is None or x > self.exclusive_minimum)
                and (self.exclusive_maximum is None or x < self.exclusive_maximum))

    def _sequence(self, value: Any) -> list[Any]:
        # Python callers may pass tuples; TOML only yields lists.
        if not isinstance(value, (list, tuple)):
            raise self._reject(value, typed=False)
        if (self.length is not None and len(value) != self.length) or (
                self.min_length is not None and len(value) < self.min_length):
            raise _Reject(f"expected {self.expected}, got {len(value)} items")
        return list(value)

    def _list(self, value: Any, base_dir: str | os.PathLike[str]) -> list[Any]:
        items = self._sequence(value)
        return [self._scalar(v, base_dir, f" at index {i}") for i, v in enumerate(items)]

    def _matrix(self, value: Any) -> list[list[float]]:
        rows = self._sequence(value)
        for i, row in enumerate(rows):
            if not isinstance(row, (list, tuple)):
                raise self._reject(row, typed=False, at=f" at row {i}")
        widths = sorted({len(row) for row in rows})
        if len(widths) > 1:
            raise _Reject(f"expected {self.expected}, got rows of lengths "
                          + ", ".join(str(w) for w in widths))
        return [[self._scalar(v, ".", f" at [{i}][{j}]") for j, v in enumerate(row)]
                for i, row in enumerate(rows)]


class Section:
    """A ``[section]`` of a case file: its fields, optionally in variants.

    Parameters
    ----------
    fields : dict of str to Field
        Keys every variant of the section has.
    variants : dict of str to dict of str to Field, optional
        Extra keys by variant name. The discriminator key selects the variant; keys of the
        other variants are then unknown keys.
    discriminator : str
        Name of the key selecting the variant (a string whose choices are the variant names).
    default_variant : str, optional
        Variant used when the discriminator is not given; without it the discriminator is
        required.
    doc : str
        One-line description, for generated documentation.
    """

    def __init__(self, fields: Mapping[str, Field], *,
                 variants: Mapping[str, Mapping[str, Field]] | None = None,
                 discriminator: str = "type", default_variant: str | None = None,
                 doc: str = ""):
        self.fields = dict(fields)
        self.variants = {name: dict(extra) for name, extra in (variants or {}).items()}
        self.discriminator = discriminator
        self.default_variant = default_variant
        self.doc = doc
        if default_variant is not None and default_variant not in self.variants:
            raise ValueError(f"default_variant {default_variant!r} is not a variant")
        if self.variants:
            clash = [name for name, extra in self.variants.items()
                     if discriminator in self.fields or discriminator in extra
                     or set(extra) & set(self.fields)]
            if clash:
                raise ValueError(f"variants {clash} redefine the discriminator or common keys")

    def __repr__(self) -> str:
        return (f"Section(fields={list(self.fields)}, variants={list(self.variants)}, "
                f"discriminator={self.discriminator!r})")

    @property
    def discriminator_field(self) -> Field | None:
        """The field selecting the variant, or ``None`` for a section without variants."""
        if not self.variants:
            return None
        default = REQUIRED if self.default_variant is None else self.default_variant
        return Field("str", default, choices=tuple(self.variants),
                     doc="which variant of this section")

    def fields_for(self, variant: str | None = None) -> dict[str, Field]:
        """Fields allowed with ``variant``: discriminator first, then common, then the variant's."""
        selector = self.discriminator_field
        if selector is None:
            return dict(self.fields)
        return {self.discriminator: selector, **self.fields, **self.variants.get(variant, {})}

    def all_keys(self) -> list[str]:
        """Every key the section may hold in some variant, in declaration order."""
        keys = list(self.fields_for())
        for extra in self.variants.values():
            keys += [k for k in extra if k not in keys]
        return keys

    def validate(self, raw: Mapping[str, Any], *, name: str, source: str,
                 base_dir: str | os.PathLike[str],
                 overridden: Mapping[str, str | os.PathLike[str]] | None = None
                 ) -> dict[str, Any]:
        """Resolve one section (see :meth:`Schema.validate`); ``name`` prefixes the keys."""
        overridden = overridden or {}

        def origin(key: str) -> tuple[str, str | os.PathLike[str]]:
            dotted = f"{name}.{key}"
            if dotted in overridden:
                return OVERRIDE_SOURCE, overridden[dotted]
            return source, base_dir

        resolved: dict[str, Any] = {}
        variant = None
        selector = self.discriminator_field
        if selector is not None:
            # The variant decides which keys are known, so it is resolved first.
            variant = self._resolve(selector, raw, self.discriminator, name, origin)
            resolved[self.discriminator] = variant
        fields = self.fields_for(variant)
        for key in raw:
            if key not in fields:
                raise InputError(self._unknown(key, variant, list(fields)), source=origin(key)[0],
                                 key=f"{name}.{key}")
        for key, spec in fields.items():
            if key not in resolved:
                resolved[key] = self._resolve(spec, raw, key, name, origin)
        return resolved

    def _resolve(self, spec: Field, raw: Mapping[str, Any], key: str, name: str,
                 origin: Any) -> Any:
        where, directory = origin(key)
        if key in raw:
            return spec.validate(raw[key], source=where, key=f"{name}.{key}", base_dir=directory)
        if spec.required:
            raise InputError("required key is missing", source=where, key=f"{name}.{key}")
        if spec.default is None:
            return None
        return spec.validate(spec.default, source=where, key=f"{name}.{key}", base_dir=directory)

    def _unknown(self, key: str, variant: str | None, known: list[str]) -> str:
        known_text = f"(known keys: {', '.join(known)})"
        if variant is None:
            return f"unknown key{_did_you_mean(key, known)} {known_text}"
        selected = f"{self.discriminator} = {variant!r}"
        owners = [v for v, extra in self.variants.items() if key in extra]
        if owners:
            where = " or ".join(f"{self.discriminator} = {v!r}" for v in owners)
            return f"unknown key for {selected}; it belongs to {where} {known_text}"
        return f"unknown key for {selected}{_did_you_mean(key, known)} {known_text}"


class Schema:
    """All sections a problem kind's case file may hold.

    Parameters
    ----------
    sections : dict of str to Section
        In the order they are written out (:func:`~ot_pde.config.case.to_toml`).
    """

    def __init__(self, sections: Mapping[str, Section]):
        self.sections = dict(sections)

    def __repr__(self) -> str:
        return f"Schema(sections={list(self.sections)})"

    def check_key(self, section: str, key: str, *, source: str) -> None:
        """Raise the "unknown section/key" error if no variant of ``section`` has ``key``.

        Used for overrides, whose keys are checked before their values are applied.
        """
        if section not in self.sections:
            raise InputError(self._unknown_section(section), source=source, key=section)
        known = self.sections[section].all_keys()
        if key not in known:
            raise InputError(f"unknown key{_did_you_mean(key, known)} "
                             f"(known keys: {', '.join(known)})",
                             source=source, key=f"{section}.{key}")

    def validate(self, raw: Mapping[str, Any], *, source: str,
                 base_dir: str | os.PathLike[str],
                 overridden: Mapping[str, str | os.PathLike[str]] | None = None
                 ) -> dict[str, dict[str, Any]]:
        """Resolve a raw case dict against the schema.

        Parameters
        ----------
        raw : dict
            ``{section: {key: value}}`` as read from TOML (overrides applied).
        source : str
            Named in errors (the case file's path, or ``"<string>"``).
        base_dir : path-like
            Directory that relative paths given in the file resolve against.
        overridden : dict of str to path-like, optional
            Dotted keys whose values came from ``--set``, each mapped to the directory its
            relative paths resolve against; errors about them name ``--set`` as source.

        Returns
        -------
        dict of str to dict
            Every section and key of the schema, in schema order; optional keys without a
            value are ``None``.

        Raises
        ------
        InputError
            For the first problem found: an unknown section or key (with a did-you-mean
            hint), a section that is not a table, a missing required key or a bad value.
        """
        for name, value in raw.items():
            if name in self.sections:
                if not isinstance(value, Mapping):
                    raise InputError(f"expected a table [{name}], got {_show(value, typed=False)}",
                                     source=source, key=name)
            elif isinstance(value, Mapping):
                raise InputError(self._unknown_section(name), source=source, key=name)
            else:
                raise InputError(self._stray_key(name), source=source, key=name)
        return {name: section.validate(raw.get(name, {}), name=name, source=source,
                                       base_dir=base_dir, overridden=overridden)
                for name, section in self.sections.items()}

    def _unknown_section(self, name: str) -> str:
        known = list(self.sections)
        return f"unknown section{_did_you_mean(name, known)} (known sections: {', '.join(known)})"

    def _stray_key(self, name: str) -> str:
        """Message for a key written above the first ``[section]`` header."""
        homes = [f"{s}.{name}" for s, section in self.sections.items()
                 if name in section.all_keys()]
        hint = f"; did you mean {homes[0]!r}?" if homes else ""
        return (f"key outside any [section]{hint} "
                f"(known sections: {', '.join(self.sections)})")


COMMON_SECTIONS: dict[str, Section] = {
    "case": Section({
        "problem": Field("str", doc="the problem kind"),
        "description": Field("str", "", doc="what the case shows"),
    }, doc="what this case is"),
    "run": Section({
        "backend": Field("str", "auto", choices=BACKEND_CHOICES,
                         doc="array backend; auto: numba if importable, else numpy"),
        "seed": Field("int", 0, minimum=0, doc="seed of every random generator"),
        "max_wall_seconds": Field("float", None, exclusive_minimum=0,
                                  doc="stop cleanly after this much wall time (none: no limit)"),
        "progress": Field("str", "auto", choices=("auto", "bar", "log", "none"),
                          doc="progress display; auto: bar on a terminal, else log"),
        "progress_seconds": Field("float", 2.0, exclusive_minimum=0,
                                  doc="seconds between progress log lines"),
    }, doc="how to run"),
    "output": Section({
        "path": Field("path", None, doc="HDF5 output file (none: chosen by the CLI)"),
        "every": Field("int", 100, minimum=1, doc="flush/checkpoint every this many iterations"),
        "xdmf": Field("bool", True, doc="also write an XDMF file for ParaView/VisIt"),
    }, doc="what to write"),
}
# Common sections that come after a kind's own sections in written case files (architecture
# docs, order: case, run, discretization and data sections, solver, output).
_TRAILING_COMMON = ("output",)


def _merge(common: Section, kind: Section) -> Section:
    """A kind's section extending a common one: its fields are added or override."""
    return Section({**common.fields, **kind.fields}, variants=kind.variants,
                   discriminator=kind.discriminator, default_variant=kind.default_variant,
                   doc=kind.doc or common.doc)


def make_schema(kind_sections: Mapping[str, Section]) -> Schema:
    """Build a kind's schema: :data:`COMMON_SECTIONS` plus the kind's own sections.

    Parameters
    ----------
    kind_sections : dict of str to Section
        The kind's sections. One named like a common section extends it: its fields are
        added to the common ones or replace those of the same name (e.g. a kind adds
        ``output.fields`` or changes the default of ``output.every``).

    Returns
    -------
    Schema
        Sections ordered ``case``, ``run``, the kind's own sections, ``output``.
    """
    merged = {name: _merge(section, kind_sections[name]) if name in kind_sections else section
              for name, section in COMMON_SECTIONS.items()}
    order = [n for n in COMMON_SECTIONS if n not in _TRAILING_COMMON]
    order += [n for n in kind_sections if n not in COMMON_SECTIONS]
    order += list(_TRAILING_COMMON)
    return Schema({name: merged[name] if name in merged else kind_sections[name]
                   for name in order})

