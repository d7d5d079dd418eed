"""Sphinx configuration of the ot_pde documentation (``make docs``).

Only extensions that ship with Sphinx, plus the local ``_ext/ot_pde_docs.py`` which renders
case-file schemas and the shipped cases from the code itself, so those pages cannot drift.
The build needs no network: MathJax is loaded by the reader's browser.
"""
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))  # the repository root: import ot_pde from the tree
sys.path.insert(0, os.path.join(DOCS, "_ext"))

from ot_pde._version import __version__  # noqa: E402

project = "ot_pde"
author = "the ot_pde developers"
copyright = "the ot_pde developers"
version = __version__
release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "ot_pde_docs",
]

exclude_patterns = ["_build"]
root_doc = "index"
language = "en"

# numpydoc-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}

html_theme = "alabaster"
html_title = f"ot_pde {release}"
html_theme_options = {
    "description": "PDE solvers for optimal transport",
    "fixed_sidebar": True,
}
