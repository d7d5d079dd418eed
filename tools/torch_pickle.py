"""Read a PyTorch ``.pth``/``.pt`` file without running its pickle: a restricted unpickler.

``torch.save`` files are pickles, and unpickling runs whatever callables the file names
(``os.system`` included). This reader executes none of them: :class:`RestrictedUnpickler`
resolves only the few globals a tensor state dict needs and maps each to a harmless stand-in
of ours, so neither torch nor any module named by the file is imported or called:

===================================  ==================================================
global in the file                   resolved to
===================================  ==================================================
``collections.OrderedDict``          ``collections.OrderedDict``
``torch._utils._rebuild_tensor_v2``  a record (storage, offset, size, stride)
``torch._utils._rebuild_parameter``  the same record (a Parameter is its data)
``torch.{Double,Float,Half,Long,``   a storage-type marker with its numpy dtype
``Int,Short,Char,Byte,Bool}Storage``
``argparse.Namespace``               :class:`Namespace`, a plain attribute holder
===================================  ==================================================

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``numpy`` objects...)
raises :class:`RefusedPickle` at the moment the pickle names it, before it could be called.
Storages are read as raw little-endian bytes by ``persistent_load`` and become numpy arrays.

Both of torch's layouts are read: the legacy one (torch < 1.6; magic number, protocol,
system info, the object, the storage keys, then each storage as an 8-byte element count and
its bytes) and the zip archive (``<name>/data.pkl`` plus ``<name>/data/<key>``).

Pure Python + numpy: no torch needed. Used by ``tools/convert_otflow.py`` and
``tools/convert_realnvp.py``; never imported by ``ot_pde``.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class RefusedPickle(pickle.UnpicklingError):
    """The file asks for something a tensor state dict does not need."""


class Namespace:
    """Stand-in for ``argparse.Namespace``: attributes only, no behaviour."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise RefusedPickle("argparse.Namespace state is not a dict")
        self.__dict__.update(state)

    def __repr__(self):
        return f"Namespace({self.__dict__!r})"


class _StorageType:
    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


class _Storage:
    def __init__(self, stype: _StorageType, key: str, numel: int):
        self.stype, self.key, self.numel, self.data = stype, key, numel, None


class _TensorRecord:
    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise RefusedPickle("a tensor whose storage is not a storage")
        for name, v in (("size", size), ("stride", stride)):
            if not isinstance(v, tuple) or not all(isinstance(i, int) and i >= 0 for i in v):
                raise RefusedPickle(f"tensor {name} {v!r} is not a tuple of integers")
        if not isinstance(offset, int) or offset < 0 or len(size) != len(stride):
            raise RefusedPickle("bad tensor offset or stride")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise pickle.UnpicklingError(f"storage {self.storage.key!r} has no data")
        if not self.size:
            return data[self.offset].copy()
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=data.dtype)
        if last >= data.size:
            raise pickle.UnpicklingError(f"tensor reaches past the end of storage "
                                         f"{self.storage.key!r}")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride),
                                               writeable=False)
        return np.array(view).astype(data.dtype.newbyteorder("="))


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    return _TensorRecord(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    if not isinstance(data, _TensorRecord):
        raise RefusedPickle("a Parameter whose data is not a tensor")
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the whitelist above (see the module notes)."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("argparse", "Namespace"):
            return Namespace
        raise RefusedPickle(f"refused to load the global {module}.{name}: a tensor state "
                            f"dict does not need it (the file may be malicious)")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int)):
            raise RefusedPickle(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid[:5]
        if key not in self.storages:
            self.storages[key] = _Storage(stype, key, numel)
        return self.storages[key]


def _unpickle(f, storages):
    return RestrictedUnpickler(f, storages).load()


def _resolve(obj):
    """Replace tensor records by numpy arrays, recursively through dicts/lists/Namespace."""
    if isinstance(obj, _TensorRecord):
        return obj.to_numpy()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    if isinstance(obj, Namespace):
        return Namespace(**{k: _resolve(v) for k, v in obj.__dict__.items()})
    return obj


def _load_legacy(f) -> object:
    storages: dict = {}
    magic = _unpickle(f, storages)
    if magic != LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a torch file (bad magic number)")
    _unpickle(f, storages)  # protocol version
    _unpickle(f, storages)  # system info (endianness, type sizes)
    obj = _unpickle(f, storages)
    keys = _unpickle(f, storages)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise RefusedPickle("storage key list is not a list of strings")
    for key in keys:
        if key not in storages:
            raise pickle.UnpicklingError(f"storage {key!r} listed but never used")
        st = storages[key]
        head = f.read(8)
        if len(head) != 8:
            raise pickle.UnpicklingError(f"file truncated before storage {key!r}")
        (numel,) = struct.unpack("<q", head)
        nbytes = numel * st.stype.dtype.itemsize
        raw = f.read(nbytes)
        if numel != st.numel or len(raw) != nbytes:
            raise pickle.UnpicklingError(f"storage {key!r} truncated or of the wrong size")
        st.data = np.frombuffer(raw, dtype=st.stype.dtype)
    return obj


def _load_zip(path) -> object:
    storages: dict = {}
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise pickle.UnpicklingError("zip archive without a single data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        obj = _unpickle(io.BytesIO(zf.read(pkl[0])), storages)
        for key, st in storages.items():
            raw = zf.read(f"{prefix}data/{key}")
            if len(raw) != st.numel * st.stype.dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key!r} of the wrong size")
            st.data = np.frombuffer(raw, dtype=st.stype.dtype)
    return obj


def load(path):
    """The object of a torch file with every tensor as a numpy array.

    Raises
    ------
    RefusedPickle
        The pickle names a global outside the whitelist (nothing was called).
    pickle.UnpicklingError, EOFError, ValueError
        The file is not a readable torch file (or nests objects too deeply).
    """
    try:
        if zipfile.is_zipfile(path):
            return _resolve(_load_zip(path))
        with open(path, "rb") as f:
            return _resolve(_load_legacy(f))
    except RecursionError:  # containers nested thousands deep: no state dict is
        raise pickle.UnpicklingError("objects nested too deeply for a tensor state dict "
                                     "(the file may be malicious)") from None
    except (pickle.UnpicklingError, EOFError, OSError):  # RefusedPickle included
        raise
    except Exception as exc:  # a damaged zip (BadZipFile, "encrypted", bad CRC), opcodes
        # whose arguments do not fit (TypeError, IndexError, struct.error)...
        raise pickle.UnpicklingError(f"not a readable torch file ({type(exc).__name__}: "
                                     f"{exc})") from None


def converted(src, what: str, convert):
    """``convert()``, or None after a one-line error on stderr when the file is refused,
    unreadable, or needs torch that is not installed (the converters then exit 2)."""
    try:
        return convert()
    except RefusedPickle as exc:
        message = f"{exc}; nothing was converted"
    except ModuleNotFoundError as exc:
        message = (f"the reference pairs are computed by torch, which is not installed ({exc}; "
                   "pip install torch==2.13.0); nothing was converted")
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError) as exc:
        message = f"not a readable {what} ({type(exc).__name__}: {exc})"
    print(f"error: {src}: {message}", file=sys.stderr)
    return None
