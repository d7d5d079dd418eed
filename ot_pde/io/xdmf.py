"""XDMF 3 sidecar for a result file, so ParaView and VisIt open its grid fields directly.

As with Athena++'s HDF5 output, the ``.xmf`` file holds only the light data (mesh
description, times, HDF5 dataset paths); the values stay in the ``.h5`` file, named by a
path relative to the sidecar (``bb.h5:/fields/rho``), so the pair can be moved together.
``tests/test_xdmf.py`` reads the sidecars back with VTK's XDMF reader (ParaView's).

Mapping
-------
- Physical axis order. XDMF takes a field's fastest-varying (last) axis as X, but the
  fields are stored in C order with their *first* space axis being x. A rectilinear mesh
  would therefore show x and y swapped; 2D and 3D fields are put on a curvilinear mesh
  (``3DSMesh``, one point thick in 2D, where VTK's reader accepts vectors) whose point
  coordinates are stored once per mesh in the result file (``/xdmf/<axes>/<axis>``,
  gzip-compressed), so every point sits where it belongs. 1D fields use a ``2DRectMesh``
  with a singleton second axis at 0 (their only axis is the fastest one), so "Plot Over
  Line" works on them.
- One temporal collection per set of space axes, without gaps: its times are those of its
  longest time axis (the one most fields use on a tie); a field on another time axis
  (Benamou-Brenier's momentum at the cell-centre times ``t_mid``) is interpolated linearly
  in time by XDMF
  ``Function`` items between its two nearest stored slices (the file keeps each field at
  its own times); fields without a time axis are repeated in every step.
- Vectors: fields ``<base>_<axis>`` for every space axis of their mesh (``m_x``, ``m_y``)
  and Euler's velocity ``u``, ``v`` become one ``Vector`` attribute beside the components
  themselves. ParaView's XDMF 2 reader mishandles ``JOIN`` functions, so the vector is
  stored joined, ``(..., 3)`` with a zero third component in 2D, in
  ``/xdmf/<axes>/vector_<name>`` (compressed; a copy for viewers).
- The Euler flow map: fields ``<base>_x``, ``<base>_y`` in units of length on two
  Lagrangian (``other``) axes are the positions of a deformed mesh; its other fields (the
  Jacobian) are drawn on it.
- Anything else (another ``other`` axis, complex or boolean values) is left out, with an
  XML comment saying why.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from .layout import COMPRESSION
from .reader import ResultFile

__all__ = ["write_xdmf"]

_NUMBER_TYPES = {"f": "Float", "i": "Int", "u": "UInt"}
_SPACE_NAMES = ("x", "y", "z")
_VELOCITY = ("u", "v", "w")


def _number_attrs(dtype: np.dtype) -> dict[str, str] | None:
    kind = _NUMBER_TYPES.get(dtype.kind)
    if kind is None:
        return None
    return {"NumberType": kind, "Precision": str(dtype.itemsize)}


def _dims_text(shape: tuple[int, ...]) -> str:
    return " ".join(str(n) for n in shape)


def _hdf_item(ds: h5py.Dataset, h5_ref: str) -> ET.Element:
    item = ET.Element("DataItem", Dimensions=_dims_text(ds.shape), Format="HDF",
                      **_number_attrs(ds.dtype))
    item.text = f"{h5_ref}:{ds.name}"
    return item


def _slice(ds: h5py.Dataset, index: int, h5_ref: str, shape: tuple[int, ...]) -> ET.Element:
    """A HyperSlab DataItem selecting ``ds[index]`` (first axis = time), of ``shape``."""
    rank = ds.ndim
    slab = ET.Element("DataItem", ItemType="HyperSlab", Dimensions=_dims_text(shape),
                      Type="HyperSlab")
    selection = ET.SubElement(slab, "DataItem", Dimensions=f"3 {rank}", Format="XML")
    count = [1, *ds.shape[1:]]
    selection.text = " ".join(str(v) for v in [index] + [0] * (rank - 1) + [1] * rank + count)
    slab.append(_hdf_item(ds, h5_ref))
    return slab


def _function(expression: str, shape: tuple[int, ...], items: list[ET.Element]) -> ET.Element:
    item = ET.Element("DataItem", ItemType="Function", Function=expression,
                      Dimensions=_dims_text(shape))
    item.extend(items)
    return item


class _Source:
    """How one field's values at one time step are read: the dataset itself (no time
    axis), one slice, or a linear interpolation between two slices."""

    def __init__(self, ds: h5py.Dataset, h5_ref: str, times: np.ndarray | None,
                 lead: tuple[int, ...] = ()):
        self.ds, self.h5_ref, self.times = ds, h5_ref, times
        # the shape XDMF is told: a 2D vector is (1, nx, ny, 3) on its 3D mesh
        self.shape = lead + (ds.shape if times is None else ds.shape[1:])

    def at(self, t: float | None) -> ET.Element:
        if self.times is None:
            item = _hdf_item(self.ds, self.h5_ref)
            item.set("Dimensions", _dims_text(self.shape))
            return item
        s = self.times
        j = int(np.searchsorted(s, t))
        if j == 0 or j == len(s) or s[j] == t:  # outside: the nearest end; or exact
            return _slice(self.ds, min(j, len(s) - 1), self.h5_ref, self.shape)
        w = float((t - s[j - 1]) / (s[j] - s[j - 1]))
        return _function(f"{1 - w!r} * $0 + {w!r} * $1", self.shape,
                         [_slice(self.ds, j - 1, self.h5_ref, self.shape),
                          _slice(self.ds, j, self.h5_ref, self.shape)])


def _attribute(parent: ET.Element, name: str, item: ET.Element, kind: str = "Scalar") -> None:
    ET.SubElement(parent, "Attribute", Name=name, AttributeType=kind,
                  Center="Node").append(item)


def _vectors(names: list[str], space: tuple[str, ...]) -> dict[str, list[str]]:
    """Vector name -> its component fields, among ``names`` on a mesh of ``space`` axes."""
    out = {}
    if len(space) < 2:
        return out
    for name in names:
        base, _, axis = name.rpartition("_")
        parts = [f"{base}_{a}" for a in space]
        if axis == space[0] and base and all(p in names for p in parts):
            out[base] = parts
    velocity = list(_VELOCITY[:len(space)])
    if all(v in names for v in velocity) and "velocity" not in out:
        out["velocity"] = velocity
    return out


def _store_heavy(h5_path: Path, meshes: dict) -> None:
    """Store what XDMF cannot compute from the fields (ParaView's XDMF 2 reader mishandles
    ``JOIN`` functions): the point coordinates of each 2D/3D mesh, and each vector as one
    ``(..., 3)`` array (a zero third component in 2D), in ``/xdmf/<axes>/``, compressed."""
    try:
        with h5py.File(h5_path, "r+", locking=False) as f:
            for space, by_time in meshes.items():
                if len(space) < 2:
                    continue
                group = f.require_group(f"xdmf/{','.join(space)}")
                axes = [f["grid"][a][()] for a in space]
                arrays = dict(zip(space, np.meshgrid(*axes, indexing="ij")))
                if len(space) == 2:  # drawn as a 3D mesh one point thick (see _mesh)
                    arrays["z=0"] = np.zeros(tuple(len(a) for a in axes))
                for names in by_time.values():
                    for vector, parts in _vectors(names, space).items():
                        comps = [f["fields"][p][()] for p in parts]
                        comps += [np.zeros_like(comps[0])] * (3 - len(comps))
                        arrays[f"vector_{vector}"] = np.stack(comps, axis=-1)
                for name, data in arrays.items():
                    if name in group and group[name].shape == data.shape:
                        group[name][()] = data
                        continue
                    if name in group:
                        del group[name]
                    group.create_dataset(name, data=data, **COMPRESSION)
    except OSError as exc:
        raise InputError(f"cannot add the mesh coordinates and vectors of the XDMF sidecar: "
                         f"{exc}", source=str(h5_path)) from None


def _plan(result: ResultFile, domain: ET.Element):
    """Group the describable fields: {space axes: {time axis or None: [names]}}, and the
    Lagrangian meshes {label axes: (position fields, other fields)}."""
    f = result.h5
    kinds = {name: ds.attrs.get("kind", "other") for name, ds in f.get("grid", {}).items()}
    kinds = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in kinds.items()}
    meshes: dict[tuple[str, ...], dict[str | None, list[str]]] = {}
    other: dict[tuple[str, ...], list[str]] = {}
    for name in result.field_names():
        ds = f["fields"][name]
        dims = result.field_dims(name)
        dim_kinds = [kinds.get(axis) for axis in dims]
        time = dims[0] if dim_kinds[:1] == ["time"] else None
        space = dims[1:] if time else dims
        if _number_attrs(ds.dtype) is None:
            reason = f"dtype {ds.dtype} has no XDMF number type"
        elif 1 <= len(space) <= 3 and all(kinds.get(a) == "space" for a in space):
            meshes.setdefault(tuple(space), {}).setdefault(time, []).append(name)
            continue
        elif time is None and all(k == "other" for k in dim_kinds) and len(dims) in (2, 3):
            other.setdefault(tuple(dims), []).append(name)
            continue
        else:
            reason = f"dims {dims} are not 1-3 space axes after an optional time axis"
        domain.append(ET.Comment(f" field {name!r} left out: {reason} "))
    lagrangian = {}
    for axes, names in other.items():
        bases = {n.rpartition("_")[0] for n in names if n.endswith("_x")}
        for base in sorted(bases):
            parts = [f"{base}_{c}" for c in _SPACE_NAMES[:len(axes)]]
            if all(p in names and result.field_attrs(p).get("units") == "length"
                   for p in parts):
                lagrangian[axes] = (base, parts, [n for n in names if n not in parts])
                break
        else:
            for name in names:
                domain.append(ET.Comment(f" field {name!r} left out: dims {axes} are not "
                                         "space axes nor the labels of a position field "))
    return meshes, lagrangian


def _mesh(step: ET.Element, space: tuple[str, ...], f: h5py.File, h5_ref: str) -> None:
    shape = tuple(f["grid"][a].shape[0] for a in space)
    if len(space) == 1:
        ET.SubElement(step, "Topology", TopologyType="2DRectMesh",
                      Dimensions=_dims_text((1,) + shape))
        geometry = ET.SubElement(step, "Geometry", GeometryType="VXVY")
        geometry.append(_hdf_item(f["grid"][space[0]], h5_ref))
        singleton = ET.SubElement(geometry, "DataItem", Dimensions="1", NumberType="Float",
                                  Precision="8", Format="XML")
        singleton.text = "0"
        return
    # VTK's XDMF reader takes vectors only on 3D meshes: a 2D mesh is one point thick
    names = list(space) + ["z=0"] * (3 - len(space))
    shape = (1,) * (3 - len(space)) + shape
    ET.SubElement(step, "Topology", TopologyType="3DSMesh", Dimensions=_dims_text(shape))
    geometry = ET.SubElement(step, "Geometry", GeometryType="X_Y_Z")
    for name in names:
        item = _hdf_item(f["xdmf"][",".join(space)][name], h5_ref)
        item.set("Dimensions", _dims_text(shape))
        geometry.append(item)


def _step(parent, label, space, f, h5_ref, sources, vectors, t=None) -> ET.Element:
    """One grid: the mesh, each field's values at ``t``, the vectors (``sources`` too)."""
    step = ET.SubElement(parent, "Grid", Name=label, GridType="Uniform")
    if t is not None:
        ET.SubElement(step, "Time", Value=repr(float(t)))
    _mesh(step, space, f, h5_ref)
    for name, source in sources.items():
        _attribute(step, name, source.at(t))
    for name, source in vectors.items():
        _attribute(step, name, source.at(t), "Vector")
    return step


def write_xdmf(
    h5_path: str | os.PathLike[str], xmf_path: str | os.PathLike[str] | None = None
) -> Path | None:
    """Write an XDMF 3 description of the grid fields of a result file.

    Parameters
    ----------
    h5_path : str or os.PathLike
        The result file (see :mod:`ot_pde.io.layout`); 2D and 3D meshes get their point
        coordinates and joined vectors stored in it (``/xdmf``), so it must be writable.
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
        ``h5_path`` is not a readable ot_pde result file, or cannot take the coordinates.
    """
    h5_path = Path(h5_path)
    xmf_path = h5_path.with_suffix(".xmf") if xmf_path is None else Path(xmf_path)
    h5_ref = Path(os.path.relpath(h5_path.resolve(), xmf_path.resolve().parent)).as_posix()

    domain = ET.Element("Domain")
    with ResultFile(h5_path) as result:
        meshes, lagrangian = _plan(result, domain)
    _store_heavy(h5_path, meshes)
    with ResultFile(h5_path) as result:
        f = result.h5
        for space, by_time in meshes.items():
            label = ",".join(space)
            sources, vectors = {}, {}
            lead = (1,) * (3 - len(space)) if len(space) > 1 else ()  # see _mesh
            for time, names in by_time.items():
                times = None if time is None else f["grid"][time][()]
                for name in names:
                    sources[name] = _Source(f["fields"][name], h5_ref, times, lead=lead)
                for vector in _vectors(names, space):
                    vectors[vector] = _Source(f["xdmf"][label][f"vector_{vector}"], h5_ref,
                                              times, lead=lead)
            timed = [t for t in by_time if t is not None]
            if not timed:
                _step(domain, f"({label})", space, f, h5_ref, sources, vectors)
                continue
            # the longest time axis sets the steps (the one most fields use on a tie)
            main = max(timed, key=lambda t: (f["grid"][t].shape[0], len(by_time[t])))
            series = ET.SubElement(domain, "Grid", Name=f"({label}) over {main}",
                                   GridType="Collection", CollectionType="Temporal")
            for value in f["grid"][main][()]:
                _step(series, f"{main}={value:.6g}", space, f, h5_ref, sources, vectors,
                      t=float(value))
        for axes, (base, parts, names) in lagrangian.items():
            step = ET.SubElement(domain, "Grid", Name=f"{base}({','.join(axes)})",
                                 GridType="Uniform")
            shape = f["fields"][parts[0]].shape
            ET.SubElement(step, "Topology", TopologyType=f"{len(axes)}DSMesh",
                          Dimensions=_dims_text(shape))
            geometry = ET.SubElement(step, "Geometry", GeometryType="_".join(
                c.upper() for c in _SPACE_NAMES[:len(axes)]))
            for part in parts:
                geometry.append(_hdf_item(f["fields"][part], h5_ref))
            for name in names:
                _attribute(step, name, _hdf_item(f["fields"][name], h5_ref))

    if not meshes and not lagrangian:
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
