"""Case files: reading TOML, applying ``--set`` overrides, validating, writing back.

A :class:`Case` is a validated case file: the problem kind, the resolved data (every key
of the kind's schema, defaults filled) and where it came from. :func:`load_case` reads one
from a file; :func:`load_case_text` from a string (the resolved case stored in an output
file, used on restart). :meth:`Case.to_toml` writes the resolved case back; reading that
text again gives the same data.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ot_pde.config.schema import OVERRIDE_SOURCE, Field, Schema
from ot_pde.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

__all__ = ["Case", "load_case", "load_case_text", "parse_override", "to_toml"]

#: Returns the schema of a problem kind, raising InputError for an unknown kind.
SchemaFor = Callable[[str], Schema]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# TOML basic strings must escape '"', '\\' and control characters other than tab; tab is
# escaped too so that written values stay on one visible line.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


@dataclasses.dataclass(frozen=True)
class Case:
    """A validated case file.

    Attributes
    ----------
    kind : str
        The problem kind (``[case] problem``).
    data : dict of str to dict
        Resolved values: every section and key of the schema, defaults filled, optional keys
        without a value ``None`` (see :mod:`ot_pde.config.schema`). Treat as read-only.
    raw : dict
        The TOML as read, before defaults, with overrides applied.
    source : str
        The case file's path as given, or ``"<string>"``; named in errors.
    base_dir : Path
        Absolute directory that relative paths in the file resolve against.
    schema : Schema
        The kind's schema.
    overridden : dict of str to Path
        Dotted keys set by overrides, each mapped to the working directory at the time (which
        its relative paths resolve against); errors about them name ``--set``.
    """

    kind: str
    data: dict[str, dict[str, Any]]
    raw: dict[str, Any]
    source: str
    base_dir: Path
    schema: Schema = dataclasses.field(repr=False)
    overridden: dict[str, Path] = dataclasses.field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        """The resolved value of ``"section.key"``.

        Raises
        ------
        KeyError
            If the schema has no such key (a programming error, not bad input).
        """
        section, _, key = dotted.partition(".")
        try:
            return self.data[section][key]
        except KeyError:
            raise KeyError(f"no key {dotted!r} in the {self.kind!r} schema") from None

    def section(self, name: str) -> dict[str, Any]:
        """The resolved ``[name]`` section (every key present)."""
        return self.data[name]

    def field(self, dotted: str) -> Field:
        """The schema field of ``"section.key"`` for this case's variant of the section.

        Convergence studies read its ``resolution`` to turn values into mesh sizes.
        """
        section, _, key = dotted.partition(".")
        spec = self.schema.sections[section]
        fields = spec.fields_for(self.data[section].get(spec.discriminator))
        if key not in fields:
            raise KeyError(f"no key {dotted!r} in the {self.kind!r} schema")
        return fields[key]

    def to_toml(self) -> str:
        """The resolved case as TOML (keys without a value left out, schema order)."""
        return to_toml(self.data)

    def with_overrides(self, overrides: Sequence[str]) -> Case:
        """A new case with ``sec.key=value`` overrides applied and everything re-validated.

        Raises
        ------
        InputError
            Naming ``--set`` for a malformed override, an unknown key or a bad value.
        """
        return _build(self.raw, kind=self.kind, schema=self.schema, source=self.source,
                      base_dir=self.base_dir, overrides=overrides, overridden=self.overridden)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``"sec.key=value"`` into ``(section, key, value)``.

    The value is read as a TOML value (``64``, ``1e-3``, ``[1, 2]``, ``"a b"``, ``true``);
    text that is not valid TOML is taken as a bare string, so ``run.backend=numpy`` needs no
    quotes.

    Raises
    ------
    InputError
        ``--set: <text>: expected sec.key=value`` when there is no ``=``, no ``.`` in the key
        or an empty section or key name.
    """
    dotted, equals, value_text = text.partition("=")
    section, dot, key = dotted.strip().partition(".")
    section, key = section.strip(), key.strip()
    if not (equals and dot and section and key):
        raise InputError("expected sec.key=value", source=OVERRIDE_SOURCE, key=text)
    value_text = value_text.strip()
    try:
        parsed = tomllib.loads("v = " + value_text)
    except tomllib.TOMLDecodeError:
        return section, key, value_text
    except RecursionError:
        raise InputError(f"value nested more than {_MAX_DEPTH} levels deep",
                         source=OVERRIDE_SOURCE, key=f"{section}.{key}") from None
    _check_depth(parsed["v"], OVERRIDE_SOURCE, f"{section}.{key}")
    # Text like "1\nx = 2" parses as several keys: it is not one TOML value.
    return section, key, parsed["v"] if list(parsed) == ["v"] else value_text


def load_case(path: str | os.PathLike[str], overrides: Sequence[str] = (),
              schema_for: SchemaFor | None = None) -> Case:
    """Read, override and validate a case file.

    Parameters
    ----------
    path : path-like
        The TOML case file. Relative paths inside it resolve against its directory.
    overrides : sequence of str
        ``sec.key=value`` overrides (``--set``), applied in order; relative paths in them
        resolve against the working directory.
    schema_for : callable, optional
        ``schema_for(kind) -> Schema``; raises InputError for an unknown kind. Default: the
        kind registry (``ot_pde.core.registry.get_kind(kind).schema``).

    Returns
    -------
    Case

    Raises
    ------
    InputError
        Naming the file (or ``--set``) and the key: file missing or unreadable, invalid
        TOML, missing or unknown problem kind, unknown keys, bad values.
    """
    source = os.fspath(path)
    try:
        st = os.stat(source)
        if stat.S_ISDIR(st.st_mode):
            raise InputError("cannot read case file: it is a directory", source=source)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block, /dev/zero never end
            raise InputError("cannot read case file: not a regular file (a FIFO, socket or "
                             "device)", source=source)
        if st.st_size > MAX_CASE_BYTES:
            raise InputError(f"cannot read case file: {st.st_size} bytes, more than a case "
                             f"file's {MAX_CASE_BYTES} (small TOML text)", source=source)
        content = Path(source).read_bytes()
    except FileNotFoundError:
        raise InputError("case file not found", source=source) from None
    except OSError as err:
        raise InputError(f"cannot read case file: {err.strerror or err}", source=source) from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"invalid TOML: not UTF-8 text ({err.reason} at byte {err.start})",
                         source=source) from None
    return load_case_text(text, source=source, base_dir=Path(source).parent,
                          overrides=overrides, schema_for=schema_for)


def load_case_text(text: str, *, source: str = "<string>",
                   base_dir: str | os.PathLike[str] = ".", overrides: Sequence[str] = (),
                   schema_for: SchemaFor | None = None) -> Case:
    """Like :func:`load_case`, from TOML text; ``base_dir`` stands for the file's directory."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"invalid TOML: {err}", source=source) from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise InputError(f"invalid TOML: nested more than {_MAX_DEPTH} levels deep",
                         source=source) from None
    _check_depth(raw, source)
    kind = _kind(raw, source)
    try:
        schema = (schema_for or _registry_schema)(kind)
    except InputError as err:
        # The registry knows nothing of files: say which file asked for the unknown kind.
        raise InputError(err.message, source=source, key="case.problem") from None
    return _build(raw, kind=kind, schema=schema, source=source, base_dir=Path(base_dir),
                  overrides=overrides, overridden={})


#: the largest case file read (shipped ones are a few kB)
MAX_CASE_BYTES = 1 << 20

#: deeper values are refused before validation (no case value nests more than 3 levels)
_MAX_DEPTH = 32


def _check_depth(value: Any, source: str, key: str | None = None) -> None:
    """Refuse values nested deeper than :data:`_MAX_DEPTH` (iteratively: no recursion)."""
    stack = [(value, 0, key)]
    while stack:
        item, depth, where = stack.pop()
        if depth > _MAX_DEPTH:
            raise InputError(f"value nested more than {_MAX_DEPTH} levels deep", source=source,
                             key=where)
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1, f"{where}.{k}" if where else str(k))
                         for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1, where) for v in item)


#: ``schema_for`` of callers that give none. The kind registry installs it when it is imported
#: (``ot_pde/__init__`` imports it first), so this module, below the registry in the layers,
#: never imports it.
_default_schema_for: SchemaFor | None = None


def set_default_schema_for(schema_for: SchemaFor) -> None:
    """Install the kind lookup used by :func:`load_case` and :func:`load_case_text` by default."""
    global _default_schema_for
    _default_schema_for = schema_for


def _registry_schema(kind: str) -> Schema:
    if _default_schema_for is None:
        raise RuntimeError("no kind registry installed: import ot_pde.core.registry first")
    return _default_schema_for(kind)


def _kind(raw: Mapping[str, Any], source: str) -> str:
    """``[case] problem``, checked before the schema (which depends on it) is known."""
    case = raw.get("case", {})
    if not isinstance(case, Mapping):
        raise InputError(f"expected a table [case], got {case!r} ({type(case).__name__})",
                         source=source, key="case")
    if "problem" not in case:
        raise InputError("required key is missing", source=source, key="case.problem")
    kind = case["problem"]
    if not isinstance(kind, str):
        raise InputError(f"expected a string, got {kind!r} ({type(kind).__name__})",
                         source=source, key="case.problem")
    return kind


def _build(raw: Mapping[str, Any], *, kind: str, schema: Schema, source: str, base_dir: Path,
           overrides: Sequence[str], overridden: Mapping[str, Path]) -> Case:
    """Apply overrides to a copy of ``raw``, validate, and make the Case."""
    raw = copy.deepcopy(dict(raw))
    overridden = dict(overridden)
    cwd = Path.cwd()
    for text in overrides:
        section, key, value = parse_override(text)
        schema.check_key(section, key, source=OVERRIDE_SOURCE)
        if (section, key) == ("case", "problem"):
            raise InputError("the problem kind cannot be overridden; edit the case file",
                             source=OVERRIDE_SOURCE, key="case.problem")
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            # The file's own error ("expected a table") is reported by validation.
            continue
        _drop_other_variant(table, schema, section, key, value, overridden)
        table[key] = value
        overridden[f"{section}.{key}"] = cwd
    base_dir = base_dir.absolute()
    data = schema.validate(raw, source=source, base_dir=base_dir, overridden=overridden)
    return Case(kind=kind, data=data, raw=raw, source=source, base_dir=base_dir,
                schema=schema, overridden=overridden)


def _drop_other_variant(table: dict[str, Any], schema: Schema, section: str, key: str,
                        value: Any, overridden: Mapping[str, Path]) -> None:
    """Switching a section's variant by override drops the file's keys of the old variant.

    So ``--set source.type=file --set source.path=x.h5`` works on a case whose file gives a
    Gaussian source with ``mean`` and ``std``, which would otherwise be unknown keys.
    """
    spec = schema.sections[section]
    old = table.get(key)
    if key != spec.discriminator or not isinstance(old, str) or not isinstance(value, str) \
            or old not in spec.variants or value not in spec.variants:
        return
    keep = spec.fields_for(value)
    for name in list(spec.variants[old]):
        if name not in keep and f"{section}.{name}" not in overridden:
            table.pop(name, None)


def to_toml(data: Mapping[str, Any]) -> str:
    """Write ``{section: {key: value}}`` as TOML; ``None`` values are left out.

    Supports the config data model: str, int, float (including ``inf``), bool, lists of
    those and lists of lists; nested dicts become ``[section.sub]`` tables.
    ``tomllib.loads(to_toml(d)) == d`` with ``None`` values removed.

    Raises
    ------
    TypeError
        For values outside the data model (e.g. ``None`` inside a list, a list of tables).
    """
    lines: list[str] = []
    _write_table(lines, (), data)
    return "\n".join(lines).strip("\n") + "\n"


def _write_table(lines: list[str], prefix: tuple[str, ...], table: Mapping[str, Any]) -> None:
    if prefix:
        # A header even for an empty table, so that the table itself round-trips.
        lines.extend(["", "[" + ".".join(_key(k) for k in prefix) + "]"])
    for key, value in table.items():
        if value is not None and not isinstance(value, Mapping):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, Mapping):
            _write_table(lines, (*prefix, key), value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        # repr is the shortest text that reads back to the same double, and valid TOML.
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a TOML value")
