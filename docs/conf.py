"""Sphinx configuration of the ot_pde documentation (``make docs``).

Extensions that ship with Sphinx, ``sphinx-mathjax-offline`` (MathJax copied into the built
pages, so formulas render without a network), and the local ``_ext/ot_pde_docs.py`` which
renders case-file schemas, the shipped cases and their figures from the code itself, so
those pages cannot drift. The build needs no network.
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
    "sphinx-mathjax-offline",
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

# `make docs` builds with -n -W: every reference to an object of ot_pde must resolve. Targets
# outside the package (numpy, h5py, pathlib, xarray: intersphinx would need the network) and
# numpydoc's plain-language types ("array_like", "optional", "shape (n, d)") cannot, and are
# ignored; so are the private base classes autodoc names in "Bases:" (never documented).
nitpick_ignore_regex = [
    (r"py:.*", r"(?!ot_pde\.).*"),
    (r"py:class", r"ot_pde\..*\._\w+"),
]
