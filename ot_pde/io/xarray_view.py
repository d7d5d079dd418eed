"""A result file as one :class:`xarray.Dataset` (the optional ``xarray`` extra).

Built from the file's own metadata (dimension labels, ``units``/``description``
attributes), not through a netCDF engine, so that the history, the particles and the
summary come along with the fields; ``xarray.open_dataset(path, group="fields",
engine="h5netcdf")`` reads the fields alone lazily.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .layout import SCALE_ATTRS, to_python

__all__ = ["to_xarray"]


def _xarray():
    try:
        import xarray
    except ImportError:
        raise InputError("to_xarray() needs xarray: pip install 'ot_pde[xarray]'",
                         source="xarray") from None
    return xarray


def _attrs(ds) -> dict[str, Any]:
    return {k: to_python(v) for k, v in ds.attrs.items() if k not in SCALE_ATTRS}


def to_xarray(result):
    """See :meth:`ot_pde.io.reader.ResultFile.to_xarray` (``result``: an open ResultFile)."""
    xr = _xarray()
    f = result.h5
    coords = {name: (name, ds[()], _attrs(ds)) for name, ds in f.get("grid", {}).items()}
    variables: dict[str, tuple] = {}
    used: set[str] = set()
    for name in result.field_names():
        dims = result.field_dims(name)
        used.update(dims)
        ds = f["fields"][name]
        variables[name] = (dims, ds[()], _attrs(ds))
    history = result.history()
    if history:
        coords["iteration"] = ("iteration", history["iteration"],
                               _attrs(f["history"]["iteration"]))
        used.add("iteration")
        for name, column in history.items():
            if name != "iteration":
                variables[f"history_{name}"] = ("iteration", column,
                                                _attrs(f["history"][name]))
    for name, ds in f.get("particles", {}).items():
        dims = (f"{name}_index", f"{name}_dim")[:ds.ndim]
        variables[f"particles_{name}"] = (dims, ds[()], _attrs(ds))
    attrs = {k: v for k, v in result.attrs.items() if k != "writer_pid"}
    attrs.update({f"summary_{k}": v for k, v in result.summary().items()})
    # numpy bools are not netCDF attribute types: store them as 0/1 so the dataset can be
    # written with to_netcdf
    attrs = {k: int(v) if isinstance(v, (bool, np.bool_)) else v for k, v in attrs.items()}
    return xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used},
                      attrs=attrs)
