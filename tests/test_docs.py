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


#: headline results quoted outside their case: (case, the header's pattern, the documents)
HEADLINES = [
    ("ising_L16_maflow", r"relative error\s+([0-9.]+ %)",
     ("README.md", "docs/kinds/ising_variational.rst", "CHANGELOG.md")),
]


def test_headline_numbers_agree_with_their_case_headers():
    """A headline number changed in a case's Expected line is changed where it is quoted."""
    for case, pattern, documents in HEADLINES:
        header = (ROOT / "cases" / f"{case}.toml").read_text(encoding="utf-8")
        expected = re.search(r"^# Expected:(.*?)^# Run time", header, re.M | re.S)
        value = re.search(pattern, expected.group(1).replace("#", " ")).group(1)
        for document in documents:
            text = (ROOT / document).read_text(encoding="utf-8")
            assert value in text, f"{document} does not quote {case}'s {value}"
