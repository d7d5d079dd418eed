"""The version is said in one place and repeated, checked, where tools read it."""
from __future__ import annotations

import re

from ot_pde import __version__
from ot_pde.cli import CASES_DIR

from .conftest import CASES, ROOT


def test_citation_and_changelog_carry_the_package_version():
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(rf'^version: "{re.escape(__version__)}"$', citation, re.M), citation
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## (\S+)", changelog, re.M)
    assert first and first.group(1) == __version__


def test_the_package_data_holds_every_shipped_case_and_checkpoint():
    # ot_pde/cases and ot_pde/checkpoints are links to the top-level folders (package data)
    assert sorted(p.name for p in CASES_DIR.glob("*.toml")) == sorted(
        p.name for p in CASES.glob("*.toml"))
    assert sorted(p.name for p in (CASES_DIR.parent / "checkpoints").glob("*.npz")) == sorted(
        p.name for p in (ROOT / "checkpoints").glob("*.npz"))
