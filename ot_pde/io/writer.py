"""Write a result file step by step: the incremental, crash-safe :class:`ResultWriter`.

The layout is in :mod:`ot_pde.io.layout`; the reader is :mod:`ot_pde.io.reader`.

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
last history row in some datasets and not others; :meth:`~ot_pde.io.reader.ResultFile.history`
cuts the datasets to their common length.

A checkpoint is written into ``/checkpoint_tmp``, flushed, and only then swapped with
``/checkpoint`` by renames in the same session, so ``/checkpoint`` names one complete
state, the new one or the previous one, even when the kill comes while the file closes. The
previous checkpoint's group becomes the next scratch buffer and its datasets are overwritten
in place: HDF5 does not reuse space freed in an earlier session, so deleting and recreating
the state at every checkpoint would grow the file by one checkpoint each time. For the same
reason a completed run's file is rewritten without its restart state
(:func:`~ot_pde.io.finalize.compact`) rather than having it deleted.

Both sides open files with HDF5 file locking off. A run's writer is the only writer of
its file by construction (:class:`~ot_pde.io.lock.OutputLock`), and with locking on, any
reader holding the file open (a notebook, ParaView through the XDMF sidecar, ``h5ls`` at
the wrong moment) would make the next output step of the run fail; file systems without
lock support (some NFS and Lustre mounts) would refuse the file altogether.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike

from .._version import __version__
from ..errors import InputError
from .integrity import digest, group_digest
from .layout import (COMPRESS_MIN_SIZE, FILE_KINDS, FORMAT_VERSION, GRID_KINDS, STATUSES,
                     StateValue, check_summary_value, host, is_scalar, is_scale, link_scale,
                     put_dataset, set_attr, to_python)

__all__ = ["ResultWriter"]

#: Rows per chunk of a ``/history`` dataset: 8 KiB of float64, so appending one row per
#: output step rewrites a small chunk rather than a large one.
_HISTORY_CHUNK = 1024


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
    file_kind : {"run", "study", "sweep"}, optional
        What the file holds (root attribute ``file_kind``); default ``"run"``.
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
        file_kind: str = "run",
        restart: bool = False,
    ) -> None:
        if file_kind not in FILE_KINDS:
            raise ValueError(f"file_kind must be one of {FILE_KINDS}, got {file_kind!r}")
        self.path = Path(path)
        self._file: h5py.File | None = None
        if restart:
            self._reopen(problem)
        else:
            self._create(problem=problem, case_toml=case_toml, backend=backend, seed=seed,
                         file_kind=file_kind)

    def _create(self, *, problem: str, case_toml: str, backend: str, seed: int,
                file_kind: str) -> None:
        try:
            # like `mkdir -p`: `-o out/run.h5` should work on a fresh checkout
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = h5py.File(self.path, "w", locking=False)
        except OSError as exc:
            raise InputError(f"cannot write output file: {exc}", source=str(self.path),
                             key="output.path") from exc
        with f:
            f.attrs["ot_pde_version"] = __version__
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["file_kind"] = file_kind
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
                found = to_python(f.attrs.get("problem"))
                if found != problem:
                    raise InputError(
                        f"cannot restart: file holds a {found!r} run, not {problem!r}",
                        source=source, key="--restart",
                    )
                set_attr(f, "writer_pid", np.int64(os.getpid()))
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
        data = host(coords)
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
            ds = put_dataset(grid, name, data)
            if not ds.is_scale:
                ds.make_scale(name)
            set_attr(ds, "units", units)
            set_attr(ds, "description", description)
            set_attr(ds, "kind", kind)

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
        array = host(data)
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
            if name in fields and is_scale(fields[name]):  # a field of an axis' name: it
                del fields[name]  # replaces the coordinate's link (the axis stays in /grid)
            ds = put_dataset(fields, name, array, compress=array.size >= COMPRESS_MIN_SIZE)
            for i, axis in enumerate(dims):
                link_scale(fields, grid[axis])
                # compared as objects: a scale's .name may say /grid/x or its /fields link
                if list(ds.dims[i].values()) != [grid[axis]]:
                    for scale in ds.dims[i].values():
                        ds.dims[i].detach_scale(scale)
                    ds.dims[i].attach_scale(grid[axis])
                if ds.dims[i].label != axis:
                    ds.dims[i].label = axis
            set_attr(ds, "units", units)
            set_attr(ds, "description", description)

    def write_particles(
        self, name: str, data: ArrayLike, *, units: str = "", description: str = ""
    ) -> None:
        """Write ``/particles/<name>`` (positions ``(N, d)``, weights ``(N,)``, ...).

        An existing array of the same shape and dtype is overwritten in place.
        """
        with self.batch() as f:
            ds = put_dataset(f.require_group("particles"), name, host(data))
            set_attr(ds, "units", units)
            set_attr(ds, "description", description)

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
        columns = {key: np.atleast_1d(host(value)) for key, value in rows.items()}
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
            fresh = not len(history)
            for key, col in columns.items():
                if key not in history:
                    history.create_dataset(key, data=col, maxshape=(None,),
                                           chunks=(_HISTORY_CHUNK,))
                    continue
                ds = history[key]
                n_old = ds.shape[0]
                ds.resize((n_old + n_new,))
                ds[n_old:] = col
            if fresh:  # ``iteration`` is the coordinate of every other column
                scale = history["iteration"]
                scale.make_scale("iteration")
                for key in columns:
                    if key != "iteration":
                        history[key].dims[0].attach_scale(scale)
                        history[key].dims[0].label = "iteration"

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
                    ds = put_dataset(tmp, key, np.array(value, dtype=h5py.string_dtype()))
                    digests[key] = digest(key, value)
                else:
                    data = host(value)
                    ds = put_dataset(tmp, key, data)
                    digests[key] = digest(key, np.asarray(data, dtype=ds.dtype))
                ds.attrs["scalar"] = is_scalar(value)
                # fixed-length bytes: rewritten in place, the file does not grow
                set_attr(ds, "checksum", np.bytes_(digests[key]))
            tmp.attrs["iteration"] = np.int64(iteration)
            set_attr(tmp, "checksum", np.bytes_(group_digest(iteration, digests)))
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
        values = {key: check_summary_value(key, value) for key, value in summary.items()}
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
            set_attr(f, "status", status)
            if message:
                set_attr(f, "status_message", message)
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
                set_attr(f, key, value)
