"""ot_pde: grid and particle PDE solvers for optimal transport and the flows built on it."""
from ._version import __version__

# Importing the registry installs the kind lookup of the case loader (ot_pde.config.case).
from .core import registry as _registry  # noqa: F401

__all__ = ["__version__"]
