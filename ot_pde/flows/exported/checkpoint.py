r"""Checkpoints of exported flows: ``.npz`` (read with ``allow_pickle=False``) or safetensors.

A checkpoint holds three things:

``metadata``
    A JSON record (see :data:`REQUIRED_METADATA`): the format tag and version, the model type
    (``realnvp``, ``otflow`` or ``monge_ampere``), the dimension, the layer sizes, the hidden
    activation, the direction of the stored map (``latent_to_data`` or ``data_to_latent``),
    the integrator and its number of steps (ODE flows), the dtype the framework computed in,
    and a ``config`` table of model-specific settings.
``param/<name>``
    The weights, float arrays named as in :mod:`.models`.
``reference/input``, ``reference/output``, ``reference/log_density``
    A few pairs computed by the framework that trained the model (PyTorch): the map of the
    stated direction applied to ``input`` and the model's log-density at the data-side point.

In a ``.npz`` file the metadata is the UTF-8 JSON text as a ``uint8`` array under the key
``metadata``; in a safetensors file it is the string ``ot_pde`` of the header's
``__metadata__`` table. Safetensors files are parsed here (an 8-byte little-endian header
length, a JSON header, raw little-endian buffers): no extra dependency. Nothing is ever
unpickled.

Every defect of a file (unreadable, truncated, missing or mis-shaped array, wrong dtype,
metadata that disagrees with the arrays) is an :class:`~ot_pde.errors.InputError` naming the
file and the key.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...io.arrays import check_regular_file, load_npz
from ...limits import check_allocation

FORMAT = "ot_pde.flow_checkpoint"
FORMAT_VERSION = 1
MODEL_TYPES = ("realnvp", "otflow", "monge_ampere")
DIRECTIONS = ("latent_to_data", "data_to_latent")
DTYPES = ("float32", "float64")
REFERENCE_KEYS = ("input", "output", "log_density")

#: metadata key -> (python types, description)
REQUIRED_METADATA = {
    "format": (str, f"the string {FORMAT!r}"),
    "format_version": (int, f"the integer {FORMAT_VERSION}"),
    "model_type": (str, f"one of {', '.join(MODEL_TYPES)}"),
    "dim": (int, "the dimension d >= 1"),
    "layer_sizes": (list, "a list of integers"),
    "activation": (str, "the hidden activation"),
    "direction": (str, f"one of {', '.join(DIRECTIONS)}"),
    "integrator": ((str, type(None)), "a scheme name or null"),
    "steps": ((int, type(None)), "an integer >= 1 or null"),
    "dtype": (str, f"one of {', '.join(DTYPES)}"),
    "config": (dict, "a table of model settings"),
}

_ST_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "I64": np.dtype("<i8"),
              "I32": np.dtype("<i4"), "U8": np.dtype("u1")}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``path``, ``meta`` (dict), ``params`` and ``reference`` arrays."""

    path: str
    meta: dict
    params: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] = field(default_factory=dict)

    def param(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The weight ``name`` as float64, checked to have ``shape``."""
        if name not in self.params:
            raise InputError(f"missing array (model_type {self.meta['model_type']!r} needs it; "
                             f"the file has {', '.join(sorted(self.params)) or 'none'})",
                             source=self.path, key=f"param/{name}")
        arr = self.params[name]
        if arr.shape != tuple(shape):
            raise InputError(f"expected shape {tuple(shape)} (from the metadata), got "
                             f"{arr.shape}", source=self.path, key=f"param/{name}")
        return arr.astype(np.float64)

    def config(self, key: str, types, check=None, expected: str = ""):
        """A value of the metadata's ``config`` table, type-checked."""
        cfg = self.meta["config"]
        if key not in cfg:
            raise InputError("missing metadata entry", source=self.path, key=f"config.{key}")
        value = cfg[key]
        bad = not isinstance(value, types) or isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,))
        if bad or (check is not None and not check(value)):
            raise InputError(f"expected {expected or types}, got {value!r}", source=self.path,
                             key=f"config.{key}")
        return value


# -- writing ------------------------------------------------------------------------------------
def save_checkpoint(path, meta: dict, params: dict, reference: dict | None = None) -> Path:
    """Write a checkpoint; ``.safetensors`` by suffix, else ``.npz`` (uncompressed).

    ``meta`` gets ``format`` and ``format_version`` filled in; it is validated like a loaded
    file (so a writer cannot produce a file the reader refuses).
    """
    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    _check_metadata(meta, str(path))
    arrays = {f"param/{k}": np.ascontiguousarray(v) for k, v in params.items()}
    for k, v in (reference or {}).items():
        arrays[f"reference/{k}"] = np.ascontiguousarray(v)
    text = json.dumps(meta, sort_keys=True)
    if path.suffix == ".safetensors":
        _write_safetensors(path, arrays, text)
    else:
        arrays["metadata"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    return path


def _write_safetensors(path: Path, arrays: dict, text: str) -> None:
    header, offset, blobs = {"__metadata__": {"ot_pde": text}}, 0, []
    for name, arr in arrays.items():
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        if arr.dtype not in _ST_NAMES:
            raise ValueError(f"{name}: dtype {arr.dtype} not supported")
        blob = arr.tobytes()
        header[name] = {"dtype": _ST_NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)


# -- reading ------------------------------------------------------------------------------------
def load_checkpoint(path) -> Checkpoint:
    """Read and validate a checkpoint (``.npz`` or ``.safetensors``).

    Raises
    ------
    InputError
        The file is missing, unreadable, truncated or inconsistent; the message names the
        file and the key at fault.
    """
    where = str(path)
    path = Path(path)
    # a regular file (a FIFO would block the reader), of a size a machine can hold
    size = check_regular_file(path, source=where, key="model.path",
                              expected="an .npz or .safetensors checkpoint").st_size
    check_allocation((size,), 1, what="the checkpoint file", source=where, key="model.path")
    if path.suffix == ".safetensors":
        arrays, text = _read_safetensors(path, where)
    else:
        arrays, text = _read_npz(path, where)
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"metadata is not valid JSON ({exc})", source=where,
                         key="metadata") from None
    if not isinstance(meta, dict):
        raise InputError("metadata must be a JSON object", source=where, key="metadata")
    _check_metadata(meta, where)
    params, reference = {}, {}
    for name, arr in arrays.items():
        group, _, leaf = name.partition("/")
        if group == "param" and leaf:
            params[leaf] = arr
        elif group == "reference" and leaf in REFERENCE_KEYS:
            reference[leaf] = arr
        else:
            raise InputError("unexpected array (expected metadata, param/<name> or "
                             "reference/{input,output,log_density})", source=where, key=name)
    for name, arr in params.items():
        if arr.dtype != np.dtype(meta["dtype"]):
            raise InputError(f"dtype {arr.dtype} disagrees with metadata dtype "
                             f"{meta['dtype']!r}", source=where, key=f"param/{name}")
        if not np.all(np.isfinite(arr)):
            raise InputError("holds non-finite values", source=where, key=f"param/{name}")
    _check_reference(reference, meta, where)
    return Checkpoint(where, meta, params, reference)


def _read_npz(path: Path, where: str) -> tuple[dict, str]:
    arrays = load_npz(path, source=where, key="file")  # the one safe array reader
    if "metadata" not in arrays:
        raise InputError("no metadata record (not an ot_pde flow checkpoint?)",
                         source=where, key="metadata")
    meta = arrays.pop("metadata")
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise InputError(f"expected UTF-8 JSON bytes (uint8, 1-D), got {meta.dtype} "
                         f"{meta.shape}", source=where, key="metadata")
    try:
        return arrays, meta.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("metadata is not UTF-8", source=where, key="metadata") from None


def _read_safetensors(path: Path, where: str) -> tuple[dict, str]:
    data = path.read_bytes()
    if len(data) < 8:
        raise InputError("truncated safetensors file (no header)", source=where, key="file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise InputError(f"truncated safetensors file (header of {n} bytes, file of "
                         f"{len(data)})", source=where, key="file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"bad safetensors header: {exc}", source=where, key="file") from None
    if not isinstance(header, dict):
        raise InputError(f"bad safetensors header: expected a JSON object, got "
                         f"{type(header).__name__}", source=where, key="file")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not isinstance(meta.get("ot_pde"), str):
        raise InputError("no __metadata__.ot_pde record (not an ot_pde flow checkpoint?)",
                         source=where, key="metadata")
    body = memoryview(data)[8 + n:]
    arrays = {}
    for name, info in header.items():
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                       for v in [*info["shape"], *info["data_offsets"]]):
                raise ValueError("shape and offsets must be non-negative integers")
            shape = tuple(info["shape"])
            start, stop = info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad or unsupported tensor entry in the header ({exc})",
                             source=where, key=name) from None
        if stop > len(body) or stop - start != math.prod(shape) * dtype.itemsize or start < 0:
            raise InputError(f"tensor data out of range or truncated (bytes {start}..{stop} "
                             f"of {len(body)})", source=where, key=name)
        arrays[name] = np.frombuffer(body[start:stop], dtype=dtype).reshape(shape).astype(
            dtype.newbyteorder("="))
    return arrays, meta["ot_pde"]


def _check_metadata(meta: dict, where: str) -> None:
    for key, (types, expected) in REQUIRED_METADATA.items():
        if key not in meta:
            raise InputError("missing metadata entry", source=where, key=f"metadata.{key}")
        value = meta[key]
        if not isinstance(value, types) or (isinstance(value, bool) and types is int):
            raise InputError(f"expected {expected}, got {value!r}", source=where,
                             key=f"metadata.{key}")
    checks = {
        "format": meta["format"] == FORMAT,
        "format_version": meta["format_version"] == FORMAT_VERSION,
        "model_type": meta["model_type"] in MODEL_TYPES,
        "dim": meta["dim"] >= 1,
        "layer_sizes": all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                           for s in meta["layer_sizes"]),
        "direction": meta["direction"] in DIRECTIONS,
        "steps": meta["steps"] is None or meta["steps"] >= 1,
        "dtype": meta["dtype"] in DTYPES,
    }
    for key, ok in checks.items():
        if not ok:
            raise InputError(f"expected {REQUIRED_METADATA[key][1]}, got {meta[key]!r}",
                             source=where, key=f"metadata.{key}")


def _check_reference(reference: dict, meta: dict, where: str) -> None:
    if not reference:
        return
    missing = [k for k in REFERENCE_KEYS if k not in reference]
    if missing:
        raise InputError("incomplete reference pairs", source=where,
                         key=f"reference/{missing[0]}")
    d = meta["dim"]
    x, y, lp = (reference[k] for k in REFERENCE_KEYS)
    n = x.shape[0] if x.ndim >= 1 else 1
    for name, arr, shape in (("input", x, (n, d)), ("output", y, (n, d)),
                             ("log_density", lp, (n,))):
        if arr.ndim != len(shape) or arr.shape != shape:
            raise InputError(f"expected shape {shape} (dim {d} from the metadata), got "
                             f"{arr.shape}", source=where, key=f"reference/{name}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"expected floats, got {arr.dtype}", source=where,
                             key=f"reference/{name}")
