"""Local Sphinx directives: pages generated from the code, so they cannot drift from it.

``.. ot-pde-schema:: KIND``
    One table per case-file section of the problem kind ``KIND`` (its registered schema,
    common sections merged in), or of the common sections when ``KIND`` is ``common``.
    Option ``:sections: a, b`` keeps those sections, in that order.

``.. ot-pde-cases::``
    The shipped case files (``cases/*.toml``). Default: one sub-section per case with its
    description, the command that runs it and the whole file (comment header included).
    Option ``:brief:``: a bullet list, one line per case. Option ``:problem: KIND`` keeps
    the cases of one kind.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "cases"

_TYPE_NAMES = {
    "int": "int", "float": "float", "str": "string", "bool": "bool", "path": "path",
    "float_list": "list of floats", "int_list": "list of ints", "str_list": "list of strings",
    "float_matrix": "matrix (list of lists of floats)",
}

#: Meanings for schema keys that carry no ``doc`` in the code (used only when it is empty).
def _literal(value) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = f'"{value}"'
    elif isinstance(value, float) and math.isinf(value):
        text = "inf" if value > 0 else "-inf"
    else:
        text = repr(value)
    return f"``{text}``"


def _bound(x) -> str:
    return repr(int(x)) if isinstance(x, float) and x.is_integer() else repr(x)


def _allowed(field) -> str:
    if field.choices is not None:
        return ", ".join(_literal(c) for c in field.choices)
    parts = []
    if field.minimum is not None:
        parts.append(f"≥ {_bound(field.minimum)}")
    if field.exclusive_minimum is not None:
        parts.append(f"> {_bound(field.exclusive_minimum)}")
    if field.maximum is not None:
        parts.append(f"≤ {_bound(field.maximum)}")
    if field.exclusive_maximum is not None:
        parts.append(f"< {_bound(field.exclusive_maximum)}")
    text = " and ".join(parts)
    if text and field.type.endswith(("_list", "_matrix")):
        text = "each " + text
    if field.length is not None:
        text = (f"{field.length} items" + (f"; {text}" if text else ""))
    if field.must_exist:
        text = "must exist" + (f"; {text}" if text else "")
    return text


def _default(field) -> str:
    if field.required:
        return "**required**"
    if field.default is None:
        return "(none)"
    return _literal(field.default)


def _meaning(section: str, key: str, field, common) -> str:
    doc = field.doc
    if not doc and section in common and key in common[section].fields:
        doc = common[section].fields[key].doc
    if field.resolution == "inverse":
        doc += " (a resolution: ``ot-pde converge`` may vary it, h ∝ 1/value)"
    elif field.resolution == "direct":
        doc += " (a resolution: ``ot-pde converge`` may vary it, h ∝ value)"
    if field.type == "path":
        doc += "; relative paths resolve against the case file's folder"
    return doc


def _cell(text: str) -> str:
    return text if text else " "


def schema_rst(sections, common) -> list[str]:
    """reST for the given ``{name: Section}``: a paragraph and a list-table per section."""
    lines: list[str] = []
    for name, section in sections.items():
        head = f"``[{name}]``"
        if section.doc:
            head += f" — {section.doc}."
        if section.variants:
            variants = ", ".join(_literal(v) for v in section.variants)
            head += (f" The key ``{section.discriminator}`` selects a variant ({variants}); "
                     "the keys of the other variants are then unknown keys.")
        lines += [head, "", ".. list-table::", "   :header-rows: 1",
                  "   :widths: 18 16 14 16 36", "",
                  "   * - key", "     - type", "     - default", "     - allowed",
                  "     - meaning"]
        rows = [(key, field, None) for key, field in section.fields_for(None).items()]
        for variant, extra in section.variants.items():
            rows += [(key, field, variant) for key, field in extra.items()]
        for key, field, variant in rows:
            meaning = _meaning(name, key, field, common)
            if variant is not None:
                meaning = f"*{section.discriminator} =* ``\"{variant}\"`` *only:* {meaning}"
            lines += [f"   * - ``{key}``", f"     - {_TYPE_NAMES[field.type]}",
                      f"     - {_cell(_default(field))}", f"     - {_cell(_allowed(field))}",
                      f"     - {_cell(meaning)}"]
        lines.append("")
    return lines


def case_header(path: Path) -> list[str]:
    """The leading ``#`` comment block of a case file, without the ``#``."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        out.append(line[1:].removeprefix(" "))
    while out and not out[-1].strip():
        out.pop()
    return out


def shipped_cases(problem: str | None = None) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(CASES.glob("*.toml")):
        with open(path, "rb") as f:
            data = tomllib.load(f)
        if problem is None or data.get("case", {}).get("problem") == problem:
            out.append((path, data))
    return out


class SchemaDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {"sections": directives.unchanged}

    def run(self):
        from ot_pde.config import COMMON_SECTIONS

        kind = self.arguments[0]
        if kind == "common":
            sections = dict(COMMON_SECTIONS)
        else:
            from ot_pde.core.registry import get_kind

            sections = dict(get_kind(kind).schema.sections)
        if "sections" in self.options:
            wanted = [s.strip() for s in self.options["sections"].split(",") if s.strip()]
            missing = [s for s in wanted if s not in sections]
            if missing:
                raise self.error(f"no section(s) {missing} in the {kind!r} schema")
            sections = {s: sections[s] for s in wanted}
        return self._parse(schema_rst(sections, COMMON_SECTIONS))

    def _parse(self, lines):
        node = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source="<ot-pde-schema>"), node)
        return node.children


def figure_lines(stem: str, docname: str) -> list[str]:
    """The case's figure (``docs/gallery/<case>.png`` from ``tools/gallery.py``, or the one
    its kind's page shows), or a line saying how to make it."""
    docs = ROOT / "docs"
    depth = "../" * docname.count("/")
    for folder in ("gallery", "kinds"):
        if (docs / folder / f"{stem}.png").is_file():
            return [f".. figure:: {depth}{folder}/{stem}.png", "   :width: 100%", "",
                    f"   ``ot-pde plot`` of ``{stem}`` as shipped."]
    return [f"*No figure in the repository yet (see the run time above):* ``python "
            f"tools/gallery.py --case {stem}`` *makes* ``docs/gallery/{stem}.png``."]


class CasesDirective(SphinxDirective):
    option_spec = {"brief": directives.flag, "problem": directives.unchanged}

    def run(self):
        cases = shipped_cases(self.options.get("problem"))
        lines: list[str] = []
        for path, data in cases:
            self.env.note_dependency(str(path))
            rel = path.relative_to(ROOT).as_posix()
            desc = data.get("case", {}).get("description", "")
            if "brief" in self.options:
                lines.append(f"* ``{rel}`` — {desc}")
                continue
            title = f"``{path.name}``"
            lines += [title, "-" * len(title), "",
                      f"{desc} (problem kind ``{data['case']['problem']}``)", "",
                      ".. code-block:: console", "", "   $ mkdir -p out",
                      f"   $ ot-pde run {rel} -o out/{path.stem}.h5",
                      f"   $ ot-pde plot out/{path.stem}.h5", "",
                      "::", ""]
            header = case_header(path)
            lines += [f"   {line}" if line else "" for line in header]
            body = path.read_text(encoding="utf-8").splitlines()[len(header):]
            while body and (not body[0].strip() or body[0].startswith("#")):
                body.pop(0)
            lines += ["", ".. code-block:: toml", f"   :caption: {rel} (after its header)", ""]
            lines += [f"   {line}" if line else "" for line in body]
            lines += [""] + figure_lines(path.stem, self.env.docname) + [""]
        node = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source="<ot-pde-cases>"), node)
        return node.children


def setup(app):
    app.add_directive("ot-pde-schema", SchemaDirective)
    app.add_directive("ot-pde-cases", CasesDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
