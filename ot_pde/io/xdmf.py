"""XDMF 3 sidecar for a result file, so ParaView and VisIt open its grid fields directly.

As with Athena++'s HDF5 output, the ``.xmf`` file holds only the light data (mesh
description, times, HDF5 dataset paths); the values stay in the ``.h5`` file, named by a
path relative to the sidecar (``bb.h5:/fields/rho``), so the pair can be moved together.

Mapping
-------
- ``/grid`` axes with ``kind == "space"`` make a rectilinear mesh (``2DRectMesh`` with
  ``VXVY``, ``3DRectMesh`` with ``VXVYVZ``), values at the nodes.
- A field whose dimensions are all space axes becomes an ``Attribute`` of one ``Uniform``
  grid; fields on the same axes share it.
- A field whose first dimension is a ``time`` axis and whose others are space axes
  becomes a ``Temporal`` collection with one grid per time value, each reading its slice
  through a ``HyperSlab``. Each (time axis, space axes) pair gets its own collection, so
  fields at ``t`` (faces) and at ``t_mid`` (cell centres) each play at their own times.
- 1D space fields are drawn on a ``2DRectMesh`` with a singleton second axis at 0, so
  ParaView's "Plot Over Line" and VisIt's curve plots work on them.
- Anything else (an ``other`` axis such as a vector component, more than three space
  axes, complex or boolean values) is left out, with an XML comment saying why.

Axis order: XDMF lists dimensions slowest-varying first and takes the fastest-varying one
as X. Fields are stored in C order with dimension ``i`` along ``dims[i]``, so ParaView's
X, Y, Z are a field's *last*, middle and first space axes; each coordinate ``DataItem``
carries the ``/grid`` axis name to make that visible. (Relabelling cannot be avoided
without storing the arrays transposed.)
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np

from .hdf5 import ResultFile

__all__ = ["write_xdmf"]

_NUMBER_TYPES = {"f": "Float", "i": "Int", "u": "UInt"}


def _number_attrs(dtype: np.dtype) -> dict[str, str] | None:
    kind = _NUMBER_TYPES.get(dtype.kind)
    if kind is None:
        return None
    return {"NumberType": kind, "Precision": str(dtype.itemsize)}


def _dims_text(shape: tuple[int, ...]) -> str:
    return " ".join(str(n) for n in shape)


def _hdf_item(ds: h5py.Dataset, h5_ref: str, **extra: str) -> ET.Element:
    item = ET.Element("DataItem", Dimensions=_dims_text(ds.shape), Format="HDF",
                      **_number_attrs(ds.dtype), **extra)
    item.text = f"{h5_ref}:{ds.name}"
    return item


def _mesh(parent: ET.Element, axes: list[h5py.Dataset], h5_ref: str) -> None:
    """Append the Topology and Geometry of the rectilinear mesh on ``axes`` (C order)."""
    shape = tuple(ax.shape[0] for ax in axes)
    if len(axes) == 1:
        shape = (1,) + shape
    topology = "3DRectMesh" if len(shape) == 3 else "2DRectMesh"
    ET.SubElement(parent, "Topology", TopologyType=topology, Dimensions=_dims_text(shape))
    geometry = ET.SubElement(parent, "Geometry",
                             GeometryType="VXVYVZ" if len(shape) == 3 else "VXVY")
    # VX is the fastest-varying (last) axis; see the module docstring.
    for ax in reversed(axes):
        geometry.append(_hdf_item(ax, h5_ref, Name=ax.name.rsplit("/", 1)[-1]))
    if len(axes) == 1:
        singleton = ET.SubElement(geometry, "DataItem", Name="singleton", Dimensions="1",
                                  NumberType="Float", Precision="8", Format="XML")
        singleton.text = "0"


def _attribute(parent: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(parent, "Attribute", Name=name, AttributeType="Scalar", Center="Node")


def _time_slice(ds: h5py.Dataset, index: int, h5_ref: str) -> ET.Element:
    """A HyperSlab DataItem selecting ``ds[index]`` (first axis = time)."""
    rank = ds.ndim
    slab = ET.Element("DataItem", ItemType="HyperSlab", Dimensions=_dims_text(ds.shape[1:]),
                      Type="HyperSlab")
    selection = ET.SubElement(slab, "DataItem", Dimensions=f"3 {rank}", Format="XML")
    start = [index] + [0] * (rank - 1)
    stride = [1] * rank
    count = [1, *ds.shape[1:]]
    selection.text = " ".join(str(v) for v in start + stride + count)
    slab.append(_hdf_item(ds, h5_ref))
    return slab


def write_xdmf(
    h5_path: str | os.PathLike[str], xmf_path: str | os.PathLike[str] | None = None
) -> Path | None:
    """Write an XDMF 3 description of the grid fields of a result file.

    Parameters
    ----------
    h5_path : str or os.PathLike
        The result file (see :mod:`ot_pde.io.hdf5`).
    xmf_path : str or os.PathLike, optional
        Where to write; default: ``h5_path`` with suffix ``.xmf``.

    Returns
    -------
    pathlib.Path or None
        The sidecar written, or None (and nothing written) when no field can be
        described (e.g. a particle-only run).

    Raises
    ------
    InputError
        ``h5_path`` is not a readable ot_pde result file.
    """
    h5_path = Path(h5_path)
    xmf_path = h5_path.with_suffix(".xmf") if xmf_path is None else Path(xmf_path)
    h5_ref = Path(os.path.relpath(h5_path.resolve(), xmf_path.resolve().parent)).as_posix()

    domain = ET.Element("Domain")
    # (time axis or None, space axes) -> field names; dicts keep the file's order.
    groups: dict[tuple[str | None, tuple[str, ...]], list[str]] = {}
    with ResultFile(h5_path) as result:
        f = result.h5
        kinds = {name: ds.attrs.get("kind", "other") for name, ds in f.get("grid", {}).items()}
        for name in result.field_names():
            ds = f["fields"][name]
            dims = result.field_dims(name)
            dim_kinds = [kinds.get(axis) for axis in dims]
            time = dims[0] if dim_kinds[:1] == ["time"] else None
            space = dims[1:] if time else dims
            if _number_attrs(ds.dtype) is None:
                reason = f"dtype {ds.dtype} has no XDMF number type"
            elif not 1 <= len(space) <= 3 or any(kinds.get(a) != "space" for a in space):
                reason = f"dims {dims} are not 1-3 space axes after an optional time axis"
            else:
                groups.setdefault((time, space), []).append(name)
                continue
            domain.append(ET.Comment(f" field {name!r} left out: {reason} "))

        for (time, space), names in groups.items():
            axes = [f["grid"][a] for a in space]
            label = ",".join(space)
            if time is None:
                grid = ET.SubElement(domain, "Grid", Name=f"({label})", GridType="Uniform")
                _mesh(grid, axes, h5_ref)
                for name in names:
                    _attribute(grid, name).append(_hdf_item(f["fields"][name], h5_ref))
                continue
            series = ET.SubElement(domain, "Grid", Name=f"{time}({label})",
                                   GridType="Collection", CollectionType="Temporal")
            for index, value in enumerate(f["grid"][time][()]):
                step = ET.SubElement(series, "Grid", Name=f"{time}={value:.6g}",
                                     GridType="Uniform")
                ET.SubElement(step, "Time", Value=repr(float(value)))
                _mesh(step, axes, h5_ref)
                for name in names:
                    _attribute(step, name).append(_time_slice(f["fields"][name], index, h5_ref))

    if not groups:
        return None
    root = ET.Element("Xdmf", Version="3.0")
    root.append(domain)
    ET.indent(root)
    text = ('<?xml version="1.0" ?>\n<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>\n'
            + ET.tostring(root, encoding="unicode") + "\n")
    # Write-then-rename: ParaView never sees a truncated sidecar.
    tmp = xmf_path.with_name(xmf_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, xmf_path)
    return xmf_path
