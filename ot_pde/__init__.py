"""ot_pde: grid and particle PDE solvers for optimal transport and the flows built on it."""
from ._version import __version__

__all__ = ["__version__"]
