"""One safe reader for every array file the package reads (densities, samples, data sets).

:func:`load_array` reads one real numeric array from a ``.npy`` file, one member of an
``.npz`` archive or one dataset of an HDF5 file, and turns every defect of the file into an
:class:`~ot_pde.errors.InputError` that names the file, the case key and what was expected:

* the path is not a regular file (a directory, a FIFO, a device: a FIFO would block the
  reader forever, so nothing is opened before ``stat`` says it is a regular file);
* the container is not what the bytes say (an ``.npz`` named ``.npy``, an HDF5 file named
  ``.npy``): the format is taken from the file's magic bytes, never from its suffix;
* empty or truncated files, corrupt compressed members, headers that claim more data than
  the file holds or more memory than the machine has (checked before any allocation);
* dtypes that are not real numbers: structured/compound, complex (whose imaginary part
  would be dropped), strings (which NumPy would parse as numbers), objects (never
  unpickled);
* HDF5 names that are groups, soft links that dangle, and external links (which would make
  the reader open another file the case does not name).
"""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..limits import check_allocation

__all__ = ["load_array", "load_samples", "check_regular_file", "sniff_format"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: the largest ``.npy`` header read (NumPy's own default limit)
_MAX_HEADER = 10_000


def check_regular_file(path: str | os.PathLike[str], *, source: str | None,
                       key: str | None,
                       expected: str = "a .npy, .npz or HDF5 file") -> os.stat_result:
    """``os.stat(path)`` after checking it is an existing, non-empty regular file (else
    InputError saying ``expected``)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}", source=source, key=key) from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", source=source,
                         key=key) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path} is a directory; expected {expected}", source=source,
                         key=key)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file (a FIFO, socket or device); expected "
                         f"{expected}", source=source, key=key)
    if st.st_size == 0:
        raise InputError(f"{path} is empty", source=source, key=key)
    return st


def sniff_format(path: str | os.PathLike[str]) -> str:
    """``"npy"``, ``"npz"``, ``"hdf5"`` or ``"unknown"``, from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head[:4] in _ZIP_MAGIC:
        return "npz"
    if head == _HDF5_MAGIC:
        return "hdf5"
    return "unknown"


def _check_dtype(dtype: np.dtype, where: str, *, source, key) -> None:
    """Only real numbers (bool, integers, floats) are data; say what else was found."""
    if dtype.names is not None or dtype.kind == "V":
        what = "a structured (compound) dtype"
    elif dtype.kind == "c":
        what = f"complex numbers ({dtype}); their imaginary part would be lost"
    elif dtype.kind in "SUaT":
        what = f"strings ({dtype})"
    elif dtype.kind == "O":
        what = "Python objects (never unpickled)"
    elif dtype.kind not in "biuf":
        what = f"dtype {dtype}"
    else:
        return
    raise InputError(f"{where} holds {what}; expected real numbers", source=source, key=key)


def _read_npy(f, where: str, file_size: int, *, source, key) -> np.ndarray:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(f)
        reader = {(1, 0): npformat.read_array_header_1_0,
                  (2, 0): npformat.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy format version {version}")
        try:
            shape, fortran, dtype = reader(f, max_header_size=_MAX_HEADER)
        except TypeError:  # NumPy < 1.24: no max_header_size
            shape, fortran, dtype = reader(f)
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError, EOFError...
        raise InputError(f"{where}: not a readable .npy header ({type(exc).__name__}: "
                         f"{exc})", source=source, key=key) from None
    _check_dtype(dtype, where, source=source, key=key)
    check_allocation(shape, dtype.itemsize, what=f"the array of {where}", source=source,
                     key=key)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    need = count * dtype.itemsize
    have = file_size - f.tell()
    if need > have:
        raise InputError(f"{where} is truncated: its header says {shape} {dtype} "
                         f"({need} bytes) but {have} bytes follow", source=source, key=key)
    data = f.read(need)
    arr = np.frombuffer(data, dtype=dtype, count=count)
    if fortran:
        return arr.reshape(shape[::-1]).transpose().copy()
    return arr.reshape(shape).copy()


def _load_npy(path: Path, size: int, *, source, key) -> np.ndarray:
    with open(path, "rb") as f:
        return _read_npy(f, str(path), size, source=source, key=key)


def _load_npz(path: Path, member: str | None, *, source, key, dataset_key) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            if member is None:
                if len(names) != 1:
                    raise InputError(f"{path} is an .npz archive of {len(names)} arrays "
                                     f"{sorted(names)}; name one with the dataset key",
                                     source=source, key=dataset_key)
                member = names[0]
            if member not in names:
                raise InputError(f"no array {member!r} in {path} (it has {sorted(names)})",
                                 source=source, key=dataset_key)
            info = zf.getinfo(member + ".npy")
            check_allocation((info.file_size,), 1, what=f"member {member!r} of {path}",
                             source=source, key=key)
            with zf.open(info) as f:
                return _read_npy(f, f"{path}[{member}]", info.file_size, source=source, key=key)
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            RuntimeError, NotImplementedError) as exc:
        raise InputError(f"{path}: not a readable .npz archive (truncated or corrupt: "
                         f"{type(exc).__name__}: {exc})", source=source, key=key) from None
    except Exception as exc:  # zlib.error and the like from a corrupt deflate stream
        raise InputError(f"{path}: corrupt .npz member ({type(exc).__name__}: {exc})",
                         source=source, key=key) from None


def _load_hdf5(path: Path, name: str | None, *, source, key, dataset_key) -> np.ndarray:
    import h5py

    if name is None:
        raise InputError(f"{path} is an HDF5 file: it needs 'dataset' naming the array to "
                         "read", source=source, key=dataset_key)
    try:
        with h5py.File(path, "r", locking=False) as f:
            # walk the path link by link: a dangling or external link is refused by name
            node = f
            parts = [p for p in name.split("/") if p]
            if not parts:
                raise InputError("expected a dataset name, got the root group", source=source,
                                 key=dataset_key)
            for i, part in enumerate(parts):
                here = "/".join(parts[:i + 1])
                if not isinstance(node, h5py.Group) or part not in node.keys():
                    present = sorted(node.keys()) if isinstance(node, h5py.Group) else []
                    raise InputError(f"no dataset {name!r} in {path} ({'/' + here} missing; "
                                     f"present: {present})", source=source, key=dataset_key)
                link = node.get(part, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise InputError(f"{'/' + here} in {path} is an external link to "
                                     f"{link.filename}; only data inside the file is read",
                                     source=source, key=dataset_key)
                target = node.get(part)
                if target is None:
                    raise InputError(f"{'/' + here} in {path} is a dangling link",
                                     source=source, key=dataset_key)
                node = target
            if not isinstance(node, h5py.Dataset):
                raise InputError(f"{name!r} in {path} is a group, not a dataset (it holds "
                                 f"{sorted(node.keys())})", source=source, key=dataset_key)
            if node.is_virtual:
                raise InputError(f"{name!r} in {path} is a virtual dataset (data in other "
                                 "files); only data inside the file is read", source=source,
                                 key=dataset_key)
            where = f"{path}[{name}]"
            _check_dtype(node.dtype, where, source=source, key=dataset_key)
            shape = node.shape if node.shape is not None else ()
            check_allocation(shape, node.dtype.itemsize, what=f"dataset {where}",
                             source=source, key=dataset_key)
            return np.asarray(node[()])
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise InputError(f"cannot read {name!r} from {path} ({type(exc).__name__}: {exc})",
                         source=source, key=key) from None


def load_array(path: str | os.PathLike[str], dataset: str | None = None, *,
               source: str | None, key: str | None,
               dataset_key: str | None = None) -> np.ndarray:
    """One real numeric array from a ``.npy``, ``.npz`` or HDF5 file (format by content).

    Parameters
    ----------
    path : path-like
        The file.
    dataset : str, optional
        The HDF5 dataset (path inside the file) or ``.npz`` member; a ``.npy`` takes none.
    source, key : str
        Named in errors: where the path was given (the case file) and its key
        (``source.path``).
    dataset_key : str, optional
        The key of ``dataset`` (default: ``key``), named in errors about it.

    Returns
    -------
    numpy.ndarray
        A fresh array of bool, integer or float dtype (the caller converts it).

    Raises
    ------
    InputError
        For every defect listed in the module docstring.
    """
    dataset_key = dataset_key or key
    path = Path(path)
    st = check_regular_file(path, source=source, key=key)
    try:
        fmt = sniff_format(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", source=source,
                         key=key) from None
    if fmt == "npy":
        if dataset is not None:
            raise InputError(f"{path} is a .npy file (one array): remove the dataset key",
                             source=source, key=dataset_key)
        return _load_npy(path, st.st_size, source=source, key=key)
    if fmt == "npz":
        return _load_npz(path, dataset, source=source, key=key, dataset_key=dataset_key)
    if fmt == "hdf5":
        return _load_hdf5(path, dataset, source=source, key=key, dataset_key=dataset_key)
    raise InputError(f"{path} is not a .npy, .npz or HDF5 file (unrecognized first bytes)",
                     source=source, key=key)


def load_samples(path: str | os.PathLike[str], dataset: str | None = None, *,
                 dim: int | None = None, source: str | None, key: str | None,
                 dataset_key: str | None = None) -> np.ndarray:
    """Samples ``(N, d)`` as float64 through :func:`load_array`: at least one row and one
    column, ``d == dim`` when given, every value finite (else InputError naming the row)."""
    arr = load_array(path, dataset, source=source, key=key, dataset_key=dataset_key)
    want = f"(N, {dim})" if dim is not None else "(N, d)"
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1 or (
            dim is not None and arr.shape[1] != dim):
        raise InputError(f"{path}: expected samples of shape {want}, got {arr.shape}",
                         source=source, key=key)
    arr = arr.astype(np.float64)
    bad = ~np.all(np.isfinite(arr), axis=1)
    if bad.any():
        raise InputError(f"{path}: {int(bad.sum())} of {arr.shape[0]} samples are not finite "
                         f"(first at row {int(np.argmax(bad))})", source=source, key=key)
    return arr


def load_npz(path: str | os.PathLike[str], *, source: str | None,
             key: str | None = "file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive (each checked as :func:`load_array` does); a
    member that is not an ``.npy`` array, or a file that is not a zip archive, is refused
    naming the member (as key) or ``key``."""
    path = Path(path)
    check_regular_file(path, source=source, key=key)
    if sniff_format(path) != "npz":
        raise InputError(f"{path} is not an .npz archive (a zip of .npy arrays)",
                         source=source, key=key)
    arrays: dict[str, np.ndarray] = {}
    current = None
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                current = info.filename
                if not current.endswith(".npy"):
                    raise InputError("member of the archive is not an .npy array",
                                     source=source, key=current)
                name = current[:-4]
                check_allocation((info.file_size,), 1, what=f"member {name!r} of {path}",
                                 source=source, key=name)
                with zf.open(info) as f:
                    arrays[name] = _read_npy(f, f"{path}[{name}]", info.file_size,
                                             source=source, key=name)
    except InputError:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, OSError ...
        what = f"member {current!r} is truncated or corrupt" if current else \
            "not a readable .npz archive (truncated or not a zip file)"
        raise InputError(f"{what} ({type(exc).__name__}: {exc})", source=source,
                         key=current[:-4] if current and current.endswith(".npy")
                         else current or key) from None
    return arrays
