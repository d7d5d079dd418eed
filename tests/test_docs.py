"""The documents tell the same story as the code: the problem kinds' statuses agree between
the README, the docs' landing page, the kinds index and each kind's page."""
from __future__ import annotations

import re

from ot_pde.core.registry import kind_names

from .conftest import ROOT


def _readme_statuses() -> dict[str, str]:
    rows = re.findall(r"^\| `(\w+)`:.*\| \*\*([a-z ]+)\*\*", (ROOT / "README.md").read_text(
        encoding="utf-8"), re.M)
    return dict(rows)


def _index_statuses() -> dict[str, str]:
    text = (ROOT / "docs" / "kinds" / "index.rst").read_text(encoding="utf-8")
    return dict(re.findall(r"\* - :doc:`(\w+)`\n\s+- \*\*([a-z ]+)\*\*", text))


def _page_status(kind: str) -> str:
    text = (ROOT / "docs" / "kinds" / f"{kind}.rst").read_text(encoding="utf-8")
    return re.search(r"^\*\*Status: ([a-z ]+)", text, re.M).group(1).strip()


def test_every_kind_has_one_status_everywhere():
    kinds = sorted(kind_names())
    readme, index = _readme_statuses(), _index_statuses()
    assert sorted(readme) == kinds and sorted(index) == kinds
    for kind in kinds:
        assert readme[kind] == index[kind] == _page_status(kind), kind


def test_the_landing_page_names_every_kind_and_its_status():
    text = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    kinds = sorted(kind_names())
    for kind in kinds:
        assert f":doc:`{kind} <kinds/{kind}>`" in text, kind
    statuses = set(_index_statuses().values())
    said = re.search(r"All (\w+) problem kinds are implemented", text)
    if statuses == {"implemented"}:
        words = "zero one two three four five six seven eight nine ten eleven twelve " \
                "thirteen fourteen fifteen".split()
        assert said and words.index(said.group(1)) == len(kinds), said
        assert "planned" not in text
    else:
        assert not said


def test_the_api_page_lists_every_public_module():
    api = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\.\. automodule:: (\S+)$", api, re.M))
    package = ROOT / "ot_pde"
    public = {"ot_pde"}
    for path in package.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            public.add(".".join(parts))
    assert sorted(public - listed) == []
    assert sorted(listed - public) == []
