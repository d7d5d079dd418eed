"""Run output in one HDF5 file: an incremental, crash-safe writer and a read-only reader.

Layout (the contract of DESIGN.md, "HDF5 layout")::

    /                 attrs: ot_pde_version, problem, case_toml, backend, created_utc,
                             status (running -> completed | failed | interrupted),
                             [status_message], seed
    /summary          attrs: headline scalars (float, int, bool)
    /grid/<axis>      1D coordinates, HDF5 dimension scales; attrs units, description,
                      kind ("space" | "time" | "other")
    /fields/<name>    arrays with a dimension scale attached on every axis; attrs units,
                      description
    /particles/<name> arrays such as (N, d); attrs units, description
    /history/<name>   1D, chunked and resizable, one row per recorded iteration; always
                      holds ``iteration``
    /checkpoint       restart state: one dataset per entry (0-d ones with attr
                      ``scalar`` when they were Python scalars), each with attr
                      ``checksum``; attrs iteration, checksum (see .integrity)
    /checkpoint_tmp   scratch buffer for the next checkpoint (the previous one; never read)

Crash safety
------------
The writer never keeps the file open between output steps. Every write method (or every
``with writer.batch():`` block of them) opens the file, writes, and closes it, and HDF5
writes everything out at close. A process killed (even by SIGKILL) between two such
sessions therefore leaves a closed, consistent file holding every completed step, with
``status == "running"``. The files use the library's default (earliest) format, whose
superblock has no "open for writing" flag, so a writer killed *inside* a session leaves
a file that opens without ``h5clear``; that session's writes are lost or partial. HDF5
writes metadata in no fixed order while closing, so a kill at that moment can leave the
last history row in some datasets and not others; :meth:`ResultFile.history` cuts the
datasets to their common length.

A checkpoint is written into ``/checkpoint_tmp``, flushed, and only then swapped with
``/checkpoint`` by renames in the same session, so ``/checkpoint`` names one complete
state, the new one or the previous one, even when the kill comes while the file closes. The previous
checkpoint's group becomes the next scratch buffer and its datasets are overwritten in
place: HDF5 does not reuse space freed in an earlier session, so deleting and recreating
the state at every checkpoint would grow the file by one checkpoint each time.

Both sides open files with HDF5 file locking off. A run's writer is the only writer of
its file by construction, and with locking on, any reader holding the file open (a
notebook, ParaView through the XDMF sidecar, ``h5ls`` at the wrong moment) would make
the next output step of the run fail; file systems without lock support (some NFS and
Lustre mounts) would refuse the file altogether.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import h5py
import numpy as np
from numpy.typing import ArrayLike

from .._version import __version__
from ..errors import InputError
from .integrity import digest, group_digest, verify_checkpoint

__all__ = ["ResultWriter", "ResultFile", "STATUSES", "GRID_KINDS"]

STATUSES = ("running", "completed", "failed", "interrupted")
GRID_KINDS = ("space", "time", "other")

#: Rows per chunk of a ``/history`` dataset: 8 KiB of float64, so appending one row per
#: output step rewrites a small chunk rather than a large one.
_HISTORY_CHUNK = 1024

#: Attributes HDF5's dimension-scale API keeps on datasets; not user metadata.
_SCALE_ATTRS = frozenset({"CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST", "DIMENSION_LABELS"})

Scalar = Union[bool, int, float, str]
StateValue = Union[np.ndarray, Scalar]


def _host(data: Any) -> np.ndarray:
    """Return ``data`` as a NumPy array, copying CuPy arrays to the host.

    CuPy refuses implicit conversion (``np.asarray`` raises), so results computed on the
    GPU backend need an explicit ``.get()``.
    """
    if type(data).__module__.split(".")[0] == "cupy":
        data = data.get()
    return np.asarray(data)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, np.generic))


def _to_python(value: Any) -> Any:
    """Turn what h5py returns for a scalar (NumPy scalar, bytes) into a Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _user_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {k: _to_python(v) for k, v in obj.attrs.items() if k not in _SCALE_ATTRS}


def _set_attr(obj: h5py.HLObject, name: str, value: Any) -> None:
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


def _check_summary_value(key: str, value: Any) -> Any:
    """Summaries are plain JSON numbers (DESIGN.md), stored with their exact type."""
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (int, np.integer)):
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    raise ValueError(
        f"summary value {key!r} must be a float, int or bool, not {type(value).__name__}"
    )


class ResultWriter:
    """Write one run's HDF5 file step by step, leaving it consistent after every step.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    problem : str
        The problem kind (``"benamou_brenier"``, ...).
    case_toml : str
        The resolved case file text (after defaults and overrides).
    backend : str
        The array backend the run uses.
    seed : int
        The run's random seed.
    restart : bool, optional
        False (default): create the file, replacing any existing one, and write the root
        attributes with ``status = "running"``. True: reopen an existing ot_pde file of
        the same problem kind, keep its contents and attributes, and set ``status`` back
        to ``"running"``; ``case_toml``, ``backend`` and ``seed`` are then not written
        (use :meth:`set_attrs` to record new values).

    Raises
    ------
    InputError
        The file cannot be created (key ``output.path``), or for a restart is missing,
        unreadable, not an ot_pde file or of another problem kind (key ``--restart``).

    Notes
    -----
    No file handle is kept between calls; see the module docstring for why. Use
    :meth:`batch` to group the writes of one output step into one open/close. HDF5 will
    not open a file for writing that the same process has open read-only, so close any
    :class:`ResultFile` on the path (e.g. after reading the checkpoint for a restart)
    before writing.

    Examples
    --------
    >>> w = ResultWriter(path, problem="benamou_brenier", case_toml=text,
    ...                  backend="numpy", seed=0)                    # doctest: +SKIP
    >>> with w.batch():                                              # doctest: +SKIP
    ...     w.write_grid("x", x)
    ...     w.append_history({"iteration": [10], "residual": [1e-3]})
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        problem: str,
        case_toml: str,
        backend: str,
        seed: int,
        restart: bool = False,
    ) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        if restart:
            self._reopen(problem)
        else:
            self._create(problem=problem, case_toml=case_toml, backend=backend, seed=seed)

    def _create(self, *, problem: str, case_toml: str, backend: str, seed: int) -> None:
        try:
            # like `mkdir -p`: `-o out/run.h5` should work on a fresh checkout
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = h5py.File(self.path, "w", locking=False)
        except OSError as exc:
            raise InputError(f"cannot write output file: {exc}", source=str(self.path),
                             key="output.path") from exc
        with f:
            f.attrs["ot_pde_version"] = __version__
            f.attrs["problem"] = problem
            f.attrs["case_toml"] = case_toml
            f.attrs["backend"] = backend
            f.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["status"] = "running"
            f.attrs["seed"] = np.int64(seed)
            f.attrs["writer_pid"] = np.int64(os.getpid())  # named when a 2nd writer is refused

    def _reopen(self, problem: str) -> None:
        source = str(self.path)
        if not self.path.is_file():
            raise InputError("cannot restart: file does not exist", source=source, key="--restart")
        if not h5py.is_hdf5(self.path):
            raise InputError("cannot restart: not an HDF5 file", source=source, key="--restart")
        try:
            with self.batch() as f:
                if "ot_pde_version" not in f.attrs:
                    raise InputError("cannot restart: not an ot_pde result file",
                                     source=source, key="--restart")
                found = _to_python(f.attrs.get("problem"))
                if found != problem:
                    raise InputError(
                        f"cannot restart: file holds a {found!r} run, not {problem!r}",
                        source=source, key="--restart",
                    )
                _set_attr(f, "writer_pid", np.int64(os.getpid()))
                self.set_status("running")
        except OSError as exc:
            raise InputError(f"cannot restart: {exc}", source=source, key="--restart") from exc

    @contextmanager
    def batch(self) -> Iterator[h5py.File]:
        """Open the file once for several writes; close (and so flush) it at the end.

        Nested calls, and the write methods called inside, reuse the open handle. The
        file is closed even when the block raises, so what was written stays readable.

        Yields
        ------
        h5py.File
            The open file, for writes this class has no method for.
        """
        if self._file is not None:
            yield self._file
            return
        # "r+" rather than "a": if the file vanished mid-run, fail loudly instead of
        # silently starting an empty one.
        self._file = h5py.File(self.path, "r+", locking=False)
        try:
            yield self._file
        finally:
            f, self._file = self._file, None
            f.close()

    def write_grid(
        self,
        name: str,
        coords: ArrayLike,
        *,
        units: str = "",
        description: str = "",
        kind: str = "space",
    ) -> None:
        """Write ``/grid/<name>``, a 1D coordinate array made an HDF5 dimension scale.

        Parameters
        ----------
        name : str
            Axis name, used by ``dims`` in :meth:`write_field`.
        coords : array_like, 1D
            Coordinate values (cell centres, faces or times).
        units, description : str, optional
            Stored as attributes.
        kind : {"space", "time", "other"}, optional
            What the axis is; the XDMF sidecar builds meshes from ``space`` axes and
            time series from ``time`` axes.

        Raises
        ------
        ValueError
            ``coords`` is not 1D, ``kind`` is unknown, or the axis exists with another
            length while fields use it.
        """
        data = _host(coords)
        if data.ndim != 1:
            raise ValueError(f"grid axis {name!r} must be 1D, got shape {data.shape}")
        if kind not in GRID_KINDS:
            raise ValueError(f"grid kind must be one of {GRID_KINDS}, got {kind!r}")
        with self.batch() as f:
            grid = f.require_group("grid")
            if name in grid and grid[name].shape != data.shape:
                if "REFERENCE_LIST" in grid[name].attrs:
                    raise ValueError(
                        f"grid axis {name!r} has length {grid[name].shape[0]} and fields "
                        f"use it; cannot change it to {data.shape[0]}"
                    )
                del grid[name]
            ds = self._put(grid, name, data)
            if not ds.is_scale:
                ds.make_scale(name)
            _set_attr(ds, "units", units)
            _set_attr(ds, "description", description)
            _set_attr(ds, "kind", kind)

    def write_field(
        self,
        name: str,
        data: ArrayLike,
        *,
        dims: Sequence[str],
        units: str = "",
        description: str = "",
    ) -> None:
        """Write ``/fields/<name>`` and attach the ``/grid`` axes as its dimension scales.

        Parameters
        ----------
        name : str
            Field name.
        data : array_like
            The values; axis ``i`` runs along grid axis ``dims[i]``.
        dims : sequence of str
            One existing ``/grid`` axis per array dimension.
        units, description : str, optional
            Stored as attributes.

        Raises
        ------
        ValueError
            ``len(dims) != data.ndim``, a named axis is missing from ``/grid``, or an
            axis length differs from the array's.

        Notes
        -----
        An existing field of the same shape and dtype is overwritten in place (no new
        space in the file); otherwise it is replaced.
        """
        array = _host(data)
        dims = tuple(dims)
        if len(dims) != array.ndim:
            raise ValueError(
                f"field {name!r} has {array.ndim} dimensions but dims names {len(dims)}: {dims}"
            )
        with self.batch() as f:
            grid = f.get("grid", {})
            for i, axis in enumerate(dims):
                if axis not in grid:
                    raise ValueError(f"field {name!r}: no grid axis {axis!r}; write_grid it first")
                if grid[axis].shape[0] != array.shape[i]:
                    raise ValueError(
                        f"field {name!r}: axis {i} has length {array.shape[i]} but grid "
                        f"axis {axis!r} has length {grid[axis].shape[0]}"
                    )
            fields = f.require_group("fields")
            ds = self._put(fields, name, array)
            for i, axis in enumerate(dims):
                attached = [scale.name for scale in ds.dims[i].values()]
                if attached != [grid[axis].name]:
                    for scale in ds.dims[i].values():
                        ds.dims[i].detach_scale(scale)
                    ds.dims[i].attach_scale(grid[axis])
                if ds.dims[i].label != axis:
                    ds.dims[i].label = axis
            _set_attr(ds, "units", units)
            _set_attr(ds, "description", description)

    def write_virtual_field(
        self,
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
            As in :meth:`write_field`.
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
        with self.batch() as f:
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
            _set_attr(ds, "units", units)
            _set_attr(ds, "description", description)

    def write_particles(
        self, name: str, data: ArrayLike, *, units: str = "", description: str = ""
    ) -> None:
        """Write ``/particles/<name>`` (positions ``(N, d)``, weights ``(N,)``, ...).

        An existing array of the same shape and dtype is overwritten in place.
        """
        with self.batch() as f:
            ds = self._put(f.require_group("particles"), name, _host(data))
            _set_attr(ds, "units", units)
            _set_attr(ds, "description", description)

    def append_history(self, rows: Mapping[str, ArrayLike]) -> None:
        """Append rows to the ``/history`` datasets, creating them on first use.

        Parameters
        ----------
        rows : mapping of str to array_like
            One 1D array (or scalar, for one row) per diagnostic, all of the same length;
            must hold ``"iteration"``. After the first call the same names are required,
            so that every history dataset has one row per recorded iteration.

        Raises
        ------
        ValueError
            ``iteration`` missing, lengths differ, or the names differ from those
            already in the file.
        """
        columns = {key: np.atleast_1d(_host(value)) for key, value in rows.items()}
        if "iteration" not in columns:
            raise ValueError("history rows must include 'iteration'")
        lengths = {key: col.shape for key, col in columns.items()}
        if any(len(shape) != 1 for shape in lengths.values()) or len(set(lengths.values())) != 1:
            raise ValueError(f"history columns must be 1D and of equal length, got {lengths}")
        n_new = next(iter(columns.values())).shape[0]
        with self.batch() as f:
            history = f.require_group("history")
            if len(history) and set(history) != set(columns):
                raise ValueError(
                    f"history columns {sorted(columns)} differ from those in the file "
                    f"{sorted(history)}"
                )
            for key, col in columns.items():
                if key not in history:
                    history.create_dataset(key, data=col, maxshape=(None,),
                                           chunks=(_HISTORY_CHUNK,))
                    continue
                ds = history[key]
                n_old = ds.shape[0]
                ds.resize((n_old + n_new,))
                ds[n_old:] = col

    def truncate_history(self, n_rows: int) -> None:
        """Keep the first ``n_rows`` rows of every ``/history`` dataset (for restarts).

        Raises
        ------
        ValueError
            ``n_rows`` is negative or larger than a dataset's length.
        """
        with self.batch() as f:
            history = f.get("history", {})
            for key in history:
                ds = history[key]
                if not 0 <= n_rows <= ds.shape[0]:
                    raise ValueError(
                        f"cannot truncate history {key!r} of {ds.shape[0]} rows to {n_rows}"
                    )
            for key in history:
                history[key].resize((n_rows,))

    def write_checkpoint(self, state: Mapping[str, StateValue], iteration: int) -> None:
        """Replace ``/checkpoint`` with ``state`` as one atomic step of the file.

        Parameters
        ----------
        state : mapping of str to ndarray or scalar
            Arrays are stored bit-exact with their dtype; Python/NumPy scalars (bool,
            int, float, str) come back from :meth:`ResultFile.checkpoint` as Python
            scalars, 0-d arrays as 0-d arrays.
        iteration : int
            The iteration the state belongs to.

        Notes
        -----
        The state goes into ``/checkpoint_tmp`` first; the swap with ``/checkpoint`` is two
        renames in the same session. See the module docstring.
        """
        with self.batch() as f:
            tmp = f.require_group("checkpoint_tmp")
            for key in set(tmp) - set(state):
                del tmp[key]
            digests = {}
            for key, value in state.items():
                if isinstance(value, str):
                    ds = self._put(tmp, key, np.array(value, dtype=h5py.string_dtype()))
                    digests[key] = digest(key, value)
                else:
                    data = _host(value)
                    ds = self._put(tmp, key, data)
                    digests[key] = digest(key, np.asarray(data, dtype=ds.dtype))
                ds.attrs["scalar"] = _is_scalar(value)
                # fixed-length bytes: rewritten in place, the file does not grow
                _set_attr(ds, "checksum", np.bytes_(digests[key]))
            tmp.attrs["iteration"] = np.int64(iteration)
            _set_attr(tmp, "checksum", np.bytes_(group_digest(iteration, digests)))
            # Put the new state completely on disk before the renames, so that a kill
            # while close() writes metadata can only leave a link pointing at a complete
            # group, never an old group header over new data.
            f.flush()
            if "checkpoint" in f:
                f.move("checkpoint", "checkpoint_swap")
            f.move("checkpoint_tmp", "checkpoint")
            if "checkpoint_swap" in f:
                f.move("checkpoint_swap", "checkpoint_tmp")

    def write_summary(self, summary: Mapping[str, float | int | bool]) -> None:
        """Replace the attributes of ``/summary`` with ``summary``.

        Raises
        ------
        ValueError
            A value is not a float, int or bool.
        """
        values = {key: _check_summary_value(key, value) for key, value in summary.items()}
        with self.batch() as f:
            group = f.require_group("summary")
            for key in list(group.attrs):
                del group.attrs[key]
            for key, value in values.items():
                group.attrs[key] = value

    def set_status(self, status: str, message: str = "") -> None:
        """Set the root ``status`` attribute, and ``status_message`` when one is given.

        Parameters
        ----------
        status : {"running", "completed", "failed", "interrupted"}
        message : str, optional
            Why (e.g. the divergence diagnosis); an empty message removes an old one.

        Raises
        ------
        ValueError
            Unknown status.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self.batch() as f:
            _set_attr(f, "status", status)
            if message:
                _set_attr(f, "status_message", message)
            elif "status_message" in f.attrs:
                del f.attrs["status_message"]

    def set_attrs(self, **attrs: Any) -> None:
        """Set extra root attributes (or overwrite contract ones, e.g. ``case_toml``).

        Raises
        ------
        ValueError
            ``status`` or ``status_message`` given; use :meth:`set_status`.
        """
        if {"status", "status_message"} & set(attrs):
            raise ValueError("use set_status() to change status and status_message")
        with self.batch() as f:
            for key, value in attrs.items():
                _set_attr(f, key, value)

    @staticmethod
    def _put(group: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
        """Write ``data`` to ``group[name]``, in place when shape and dtype allow.

        In-place writes keep the file from growing: HDF5 does not reuse the space of a
        dataset deleted in an earlier session.
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
        return group.create_dataset(name, data=data)


class ResultFile:
    """Read an ot_pde result file (read-only; usable as a context manager).

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file; it may belong to a run still in progress.

    Raises
    ------
    InputError
        The file is missing, not HDF5, unreadable or not an ot_pde result file (source is
        the path). Asking for a field, particle set or axis the file lacks raises it too,
        with the dataset as key.

    Attributes
    ----------
    path : pathlib.Path
    attrs : dict
        Root attributes as Python values.
    problem, status, case_toml, backend : str
        The root attributes of the same names.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        source = str(self.path)
        if not self.path.is_file():
            raise InputError("no such result file", source=source)
        if not h5py.is_hdf5(self.path):
            raise InputError("not an HDF5 file", source=source)
        try:
            self._file = h5py.File(self.path, "r", locking=False)
        except OSError as exc:
            raise InputError(f"cannot read result file: {exc}", source=source) from exc
        try:
            if "ot_pde_version" not in self._file.attrs:
                raise InputError("not an ot_pde result file (no ot_pde_version attribute)",
                                 source=source)
            self.attrs: dict[str, Any] = {k: _to_python(v) for k, v in self._file.attrs.items()}
        except Exception as exc:
            self._file.close()
            if isinstance(exc, InputError):
                raise
            raise InputError(f"cannot read result file: {type(exc).__name__}: {exc}",
                             source=source) from None
        self.problem: str = self.attrs.get("problem", "")
        self.status: str = self.attrs.get("status", "")
        self.case_toml: str = self.attrs.get("case_toml", "")
        self.backend: str = self.attrs.get("backend", "")

    def __enter__(self) -> ResultFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    @property
    def h5(self) -> h5py.File:
        """The open read-only :class:`h5py.File`, to slice large datasets lazily."""
        return self._file

    def _dataset(self, group: str, name: str) -> h5py.Dataset:
        key = f"{group}/{name}"
        if key not in self._file:
            present = sorted(self._file.get(group, {}))
            raise InputError(f"no dataset {key!r}; {group} has {present}", source=str(self.path),
                             key=key)
        return self._file[key]

    def summary(self) -> dict[str, float | int | bool]:
        """The ``/summary`` attributes as Python scalars (empty if not written yet)."""
        return _user_attrs(self._file["summary"]) if "summary" in self._file else {}

    def grid(self) -> dict[str, np.ndarray]:
        """All ``/grid`` axes, by name."""
        return {name: ds[()] for name, ds in self._file.get("grid", {}).items()}

    def grid_attrs(self, name: str) -> dict[str, Any]:
        """The ``units``, ``description`` and ``kind`` of grid axis ``name``."""
        return _user_attrs(self._dataset("grid", name))

    def field(self, name: str) -> np.ndarray:
        """The array ``/fields/<name>``."""
        return self._dataset("fields", name)[()]

    def field_names(self) -> list[str]:
        """Names of the datasets in ``/fields``."""
        return list(self._file.get("fields", {}))

    def field_dims(self, name: str) -> tuple[str, ...]:
        """The ``/grid`` axis attached to each dimension of field ``name``."""
        ds = self._dataset("fields", name)
        return tuple(dim[0].name.rsplit("/", 1)[-1] for dim in ds.dims)

    def field_attrs(self, name: str) -> dict[str, Any]:
        """The user attributes (``units``, ``description``) of field ``name``."""
        return _user_attrs(self._dataset("fields", name))

    def particles(self, name: str) -> np.ndarray:
        """The array ``/particles/<name>``."""
        return self._dataset("particles", name)[()]

    def history(self) -> dict[str, np.ndarray]:
        """All ``/history`` datasets, by name, cut to their common length (empty if none).

        A writer killed while closing the file can leave the last row in some datasets
        only; cutting keeps every returned row complete.
        """
        datasets = dict(self._file.get("history", {}).items())
        n_rows = min((ds.shape[0] for ds in datasets.values()), default=0)
        return {name: ds[:n_rows] for name, ds in datasets.items()}

    def checkpoint(self) -> tuple[dict[str, StateValue], int] | None:
        """The restart state and its iteration, or None if no checkpoint was written.

        Entries written as scalars come back as Python ``bool``/``int``/``float``/``str``.

        Raises
        ------
        InputError
            A dataset or attribute is missing or does not match its checksum (the state
            was altered or corrupted after it was written); the key names the dataset.
        """
        if "checkpoint" not in self._file:
            return None
        group = self._file["checkpoint"]
        if not isinstance(group, h5py.Group):
            raise InputError("/checkpoint is not a group", source=str(self.path),
                             key="checkpoint")
        values, iteration = verify_checkpoint(group, source=str(self.path))
        state: dict[str, StateValue] = {}
        for key, value in values.items():
            # ds[()] of a 0-d dataset is a NumPy scalar; give back what was written.
            scalar = bool(group[key].attrs["scalar"])
            state[key] = _to_python(value) if scalar else np.asarray(value)
        return state, iteration
