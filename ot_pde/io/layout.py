"""The result file's layout: its names, version, and the small helpers both sides share.

Layout (format_version 2; documented in ``docs/output.rst``)::

    /                 attrs: ot_pde_version, format_version, file_kind (run | study |
                             sweep | rank), problem, case_toml, backend, created_utc,
                             status (running -> completed | failed | interrupted),
                             [status_message], seed
    /summary          attrs: headline scalars (float, int, bool)
    /grid/<axis>      1D coordinates, HDF5 dimension scales; attrs units, description,
                      kind ("space" | "time" | "other")
    /fields/<name>    arrays with a dimension scale attached on every axis; attrs units,
                      description; compressed (gzip with shuffle)
    /fields/<axis>    the /grid axes the fields use, as hard links (the same datasets), so
                      that netCDF-4 readers, which see only a group's own and its
                      ancestors' dimensions, find the coordinates (format_version 2)
    /particles/<name> arrays such as (N, d); attrs units, description
    /history/<name>   1D, chunked and resizable, one row per recorded iteration; always
                      holds ``iteration``, the dimension scale of the others (version 2)
    /checkpoint       restart state while the run is unfinished (running, interrupted,
                      failed): one dataset per entry (0-d ones with attr ``scalar`` when
                      they were Python scalars), each with attr ``checksum``; attrs
                      iteration, checksum (see .integrity). A completed run's file is
                      rewritten without it (:func:`~ot_pde.io.finalize.compact`).
    /checkpoint_tmp   scratch buffer for the next checkpoint (the previous one; never read)

Format versions: 1 (ot_pde 0.1): no ``format_version``/``file_kind`` attributes, coordinates
only in ``/grid``, nothing compressed, the restart state kept in completed files. 2 (ot_pde
0.2): this layout; every version-1 reader call still works on it.
"""
from __future__ import annotations

from typing import Any, Union

import h5py
import numpy as np

__all__ = ["FORMAT_VERSION", "FILE_KINDS", "STATUSES", "GRID_KINDS", "RESTART_GROUPS",
           "put_dataset"]

#: Changes with the layout (see the module docstring).
FORMAT_VERSION = 2
#: What a file holds: one run, a convergence study, a sweep, or one MPI rank's blocks.
FILE_KINDS = ("run", "study", "sweep", "rank")
STATUSES = ("running", "completed", "failed", "interrupted")
GRID_KINDS = ("space", "time", "other")
#: Groups that hold restart state only; a completed file has none of them.
RESTART_GROUPS = ("checkpoint", "checkpoint_tmp")

#: Attributes HDF5's dimension-scale API keeps on datasets; not user metadata.
SCALE_ATTRS = frozenset({"CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST",
                         "DIMENSION_LABELS"})

#: Fields of at least this many values are stored compressed; smaller ones cost more in
#: chunk index than they save.
COMPRESS_MIN_SIZE = 1024
#: gzip (readable by every HDF5 build, unlike lzf) at level 4 after byte shuffling: the
#: shuffle groups the slowly varying exponent bytes of float64 data, which gzip then packs.
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}

Scalar = Union[bool, int, float, str]
StateValue = Union[np.ndarray, Scalar]


def host(data: Any) -> np.ndarray:
    """Return ``data`` as a NumPy array, copying CuPy arrays to the host.

    CuPy refuses implicit conversion (``np.asarray`` raises), so results computed on the
    GPU backend need an explicit ``.get()``.
    """
    if type(data).__module__.split(".")[0] == "cupy":
        data = data.get()
    return np.asarray(data)


def is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, np.generic))


def to_python(value: Any) -> Any:
    """Turn what h5py returns for a scalar (NumPy scalar, bytes) into a Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def user_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {k: to_python(v) for k, v in obj.attrs.items() if k not in SCALE_ATTRS}


def set_attr(obj: h5py.HLObject, name: str, value: Any) -> None:
    """Set an attribute without growing the file at every output step.

    Assigning a string attribute anew stores the text in a fresh 4 KiB global-heap
    collection each time the file is reopened, and the old one is never reclaimed;
    rewriting the existing attribute in place (``modify``) reuses its collection.
    """
    attrs = obj.attrs
    if isinstance(value, (str, np.bytes_)) and name in attrs and h5py.check_string_dtype(
        attrs.get_id(name).dtype
    ):
        if attrs[name] != value:
            attrs.modify(name, value)
    else:
        attrs[name] = value


def is_scale(obj: Any) -> bool:
    """Whether ``obj`` is a dataset made an HDF5 dimension scale (a coordinate)."""
    return isinstance(obj, h5py.Dataset) and obj.attrs.get("CLASS") == b"DIMENSION_SCALE"


def link_scale(group: h5py.Group, scale: h5py.Dataset) -> None:
    """Make ``scale`` (a ``/grid`` axis) visible in ``group`` under its own name, as a hard
    link to the same dataset: netCDF-4 (and so xarray) sees a group's dimensions only when
    they live in it or in an ancestor, never in a sibling such as ``/grid``. A field of the
    axis' name would shadow it: then the link is left out."""
    name = scale.name.rsplit("/", 1)[-1]
    if name not in group:
        group[name] = scale


def check_summary_value(key: str, value: Any) -> Any:
    """Summaries are plain JSON numbers, stored with their exact type."""
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (int, np.integer)):
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    raise ValueError(
        f"summary value {key!r} must be a float, int or bool, not {type(value).__name__}"
    )


def put_dataset(group: h5py.Group, name: str, data: np.ndarray, *,
                compress: bool = False) -> h5py.Dataset:
    """Write ``data`` to ``group[name]``, in place when shape and dtype allow.

    In-place writes keep the file from growing: HDF5 does not reuse the space of a
    dataset deleted in an earlier session. ``compress``: a new dataset is chunked and
    compressed (:data:`COMPRESSION`).
    """
    if name in group:
        ds = group[name]
        if ds.shape == data.shape and ds.dtype == data.dtype:
            ds[()] = data
            return ds
        # Detach first: a deleted dataset would otherwise stay listed in its scales'
        # REFERENCE_LIST.
        for dim in ds.dims:
            for scale in dim.values():
                dim.detach_scale(scale)
        del group[name]
    if compress and data.ndim:
        return group.create_dataset(name, data=data, **COMPRESSION)
    return group.create_dataset(name, data=data)
