"""Reading and writing run output: the HDF5 result file and its XDMF sidecar."""
from .layout import FORMAT_VERSION, GRID_KINDS, STATUSES
from .reader import ResultFile, open_result
from .writer import ResultWriter
from .xdmf import write_xdmf

__all__ = ["FORMAT_VERSION", "GRID_KINDS", "STATUSES", "ResultFile", "ResultWriter",
           "open_result", "write_xdmf"]
