"""Read a result file: :class:`ResultFile` and :func:`open_result` (layout:
:mod:`ot_pde.io.layout`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import InputError
from .integrity import verify_checkpoint
from .layout import StateValue, is_scale, to_python, user_attrs

__all__ = ["ResultFile", "open_result"]


def open_result(path: str | os.PathLike[str]) -> ResultFile:
    """Open a result file read-only; use as ``with open_result(p) as r: r.to_xarray()``.

    Raises
    ------
    InputError
        Not a readable ot_pde result file.
    """
    return ResultFile(path)


def _open_read_only(path: Path) -> h5py.File:
    """Read-only, without HDF5's file lock (a running writer holds it); when the same process
    already has the file open with the lock (``xarray.open_dataset`` does), HDF5 refuses a
    second open with other locking flags, so that one is opened with the default flags."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc):
            raise
        return h5py.File(path, "r")


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
            self._file = _open_read_only(self.path)
        except OSError as exc:
            raise InputError(f"cannot read result file: {exc}", source=source) from exc
        try:
            if "ot_pde_version" not in self._file.attrs:
                raise InputError("not an ot_pde result file (no ot_pde_version attribute)",
                                 source=source)
            self.attrs: dict[str, Any] = {k: to_python(v) for k, v in self._file.attrs.items()}
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
        return user_attrs(self._file["summary"]) if "summary" in self._file else {}

    def grid(self) -> dict[str, np.ndarray]:
        """All ``/grid`` axes, by name."""
        return {name: ds[()] for name, ds in self._file.get("grid", {}).items()}

    def grid_attrs(self, name: str) -> dict[str, Any]:
        """The ``units``, ``description`` and ``kind`` of grid axis ``name``."""
        return user_attrs(self._dataset("grid", name))

    def field(self, name: str) -> np.ndarray:
        """The array ``/fields/<name>``."""
        return self._dataset("fields", name)[()]

    def field_names(self) -> list[str]:
        """Names of the fields in ``/fields`` (not the coordinates linked there)."""
        return [name for name, ds in self._file.get("fields", {}).items() if not is_scale(ds)]

    def field_dims(self, name: str) -> tuple[str, ...]:
        """The ``/grid`` axis attached to each dimension of field ``name``."""
        ds = self._dataset("fields", name)
        return tuple(dim[0].name.rsplit("/", 1)[-1] for dim in ds.dims)

    def field_attrs(self, name: str) -> dict[str, Any]:
        """The user attributes (``units``, ``description``) of field ``name``."""
        return user_attrs(self._dataset("fields", name))

    def particles(self, name: str) -> np.ndarray:
        """The array ``/particles/<name>``."""
        return self._dataset("particles", name)[()]

    @property
    def format_version(self) -> int:
        """The layout version (1 for files written before the attribute existed)."""
        return int(self.attrs.get("format_version", 1))

    @property
    def file_kind(self) -> str:
        """``run``, ``study`` (``ot-pde converge -o``), ``sweep`` or ``rank``; files of
        format version 1 are told apart by their attributes."""
        if "file_kind" in self.attrs:
            return str(self.attrs["file_kind"])
        if "sweep_keys" in self.attrs:
            return "sweep"
        return "study" if "convergence_key" in self.attrs else "run"

    def to_xarray(self):
        """The file as one :class:`xarray.Dataset` (needs the ``xarray`` extra).

        Returns
        -------
        xarray.Dataset
            The fields under their own names, on their ``/grid`` coordinates; the history
            columns as ``history_<name>`` along the coordinate ``iteration``; particle
            arrays as ``particles_<name>`` (dimensions ``<name>_index``, ``<name>_dim``);
            attributes: the root attributes and the summary scalars as
            ``summary_<name>``. Values are read into memory.
        """
        from .xarray_view import to_xarray

        return to_xarray(self)

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
            state[key] = to_python(value) if scalar else np.asarray(value)
        return state, iteration
