"""Distributed fields under MPI: each rank writes its blocks to a file of its own, and the
main file joins them with HDF5 virtual datasets (no parallel-HDF5 build needed; the h5py
``VirtualLayout`` way of Dedalus' merged output).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from .layout import FORMAT_VERSION, link_scale, set_attr
from .writer import ResultWriter

__all__ = ["rank_file", "write_rank_blocks", "write_virtual_field"]


def rank_file(output: Path, rank: int) -> Path:
    """The file of one MPI rank's blocks of the distributed fields, beside ``output``."""
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def write_rank_blocks(output: Path, rank: int, problem: str,
                      blocks: Sequence[Any]) -> dict[str, tuple]:
    """Write this rank's ``blocks`` (objects with ``name``, ``data``, ``offset``) to
    :func:`rank_file`; returns each field's source ``(file name, dataset, offset, shape)``
    for :func:`write_virtual_field`."""
    path = rank_file(output, rank)
    mine = {}
    with h5py.File(path, "w", locking=False) as f:
        f.attrs["ot_pde_version"] = __version__
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["file_kind"] = "rank"
        f.attrs["problem"] = problem
        f.attrs["rank"] = rank
        f.attrs["main_file"] = output.name
        for fld in blocks:
            ds = f.create_dataset(f"fields/{fld.name}", data=np.ascontiguousarray(fld.data))
            ds.attrs["offset"] = np.asarray(fld.offset, dtype=np.int64)
            mine[fld.name] = (path.name, f"fields/{fld.name}", tuple(fld.offset),
                              tuple(fld.data.shape))
    return mine


def write_virtual_field(
    writer: ResultWriter,
    name: str,
    sources: Sequence[tuple[str, str, Sequence[int], Sequence[int]]],
    *,
    shape: Sequence[int],
    dims: Sequence[str],
    units: str = "",
    description: str = "",
    dtype: Any = np.float64,
) -> None:
    """Write ``/fields/<name>`` as a virtual dataset joining blocks held in other files.

    Under MPI each rank writes its block of a distributed field to its own file (no
    parallel-HDF5 build needed); this joins them, so readers see one array.

    Parameters
    ----------
    name : str
        Field name.
    sources : sequence of (file, dataset, offset, block shape)
        One entry per block. ``file`` is a name relative to this file's folder (HDF5
        looks for relative source files beside the virtual dataset's file, so the
        files can be moved together).
    shape : sequence of int
        The whole field's shape. Points no block covers read as NaN.
    dims, units, description
        As in :meth:`ResultWriter.write_field`.
    """
    shape = tuple(int(n) for n in shape)
    dims = tuple(dims)
    if len(dims) != len(shape):
        raise ValueError(f"field {name!r} has {len(shape)} dimensions but dims names "
                         f"{len(dims)}: {dims}")
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    for file, dataset, offset, block in sources:
        window = tuple(slice(o, o + n) for o, n in zip(offset, block))
        layout[window] = h5py.VirtualSource(file, dataset, shape=tuple(block))
    with writer.batch() as f:
        fields = f.require_group("fields")
        if name in fields:
            del fields[name]
        ds = fields.create_virtual_dataset(name, layout, fillvalue=np.nan)
        grid = f.get("grid", {})
        for i, axis in enumerate(dims):
            if axis not in grid or grid[axis].shape[0] != shape[i]:
                raise ValueError(f"field {name!r}: axis {i} of length {shape[i]} does not "
                                 f"match a /grid axis {axis!r}")
            ds.dims[i].attach_scale(grid[axis])
            ds.dims[i].label = axis
            link_scale(fields, grid[axis])
        set_attr(ds, "units", units)
        set_attr(ds, "description", description)
