"""ot_pde: grid and particle PDE solvers for optimal transport and the flows built on it."""
from ._version import __version__

# Importing the registry installs the kind lookup of the case loader (ot_pde.config.case).
from .core import registry as _registry  # noqa: F401

__all__ = ["__version__", "open_result"]


def open_result(path):
    """Open a result file read-only (:class:`ot_pde.io.reader.ResultFile`): ``with
    ot_pde.open_result("r.h5") as r: ds = r.to_xarray()``.

    Imported on use, so that ``import ot_pde`` stays light.
    """
    from .io import open_result as _open

    return _open(path)
