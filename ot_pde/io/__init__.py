"""Reading and writing run output: the HDF5 result file and its XDMF sidecar."""
from .hdf5 import GRID_KINDS, STATUSES, ResultFile, ResultWriter
from .xdmf import write_xdmf

__all__ = ["GRID_KINDS", "STATUSES", "ResultFile", "ResultWriter", "write_xdmf"]
