"""Checksums of the restart state: what ``--restart`` reads is what was written.

Every ``/checkpoint`` dataset carries a ``checksum`` attribute, the SHA-256 of its name,
dtype, shape and bytes; the group carries one over its iteration and the datasets'
checksums. :func:`verify_checkpoint` recomputes both on restart: one flipped bit in any
dataset (or an altered iteration, a dataset added or removed, a missing attribute) is an
:class:`~ot_pde.errors.InputError` (exit 2) naming the dataset, instead of a run that
silently continues from a different state. (HDF5's Fletcher-32 filter would need chunked
datasets; the 0-d scalars of a state cannot be chunked, hence a stored hash.)
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["digest", "group_digest", "verify_checkpoint"]

ALGORITHM = "sha256"


def _as_stored(value: Any) -> tuple[str, tuple, bytes]:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        return "str", (), value
    arr = np.ascontiguousarray(np.asarray(value))
    if arr.dtype.kind == "O":  # variable-length strings read back as objects
        return "str", arr.shape, b"\0".join(
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.ravel())
    return arr.dtype.str, arr.shape, arr.tobytes()


def digest(name: str, value: Any) -> str:
    """``"sha256:<hex>"`` of one state entry as the file stores it."""
    dtype, shape, data = _as_stored(value)
    h = hashlib.sha256()
    h.update(f"{name}\0{dtype}\0{shape}\0".encode())
    h.update(data)
    return f"{ALGORITHM}:{h.hexdigest()}"


def group_digest(iteration: int, digests: Mapping[str, str]) -> str:
    """The group's checksum: its iteration and the sorted (name, checksum) pairs."""
    h = hashlib.sha256(f"iteration={int(iteration)}\0".encode())
    for name in sorted(digests):
        h.update(f"{name}\0{digests[name]}\0".encode())
    return f"{ALGORITHM}:{h.hexdigest()}"


def verify_checkpoint(group, *, source: str) -> tuple[dict[str, Any], int]:
    """Read every dataset of an h5py ``/checkpoint`` group and check its checksums.

    Returns
    -------
    (raw values by name, iteration)
        Values as h5py returns them (the caller turns scalars into Python values).

    Raises
    ------
    InputError
        A dataset or attribute is missing, unreadable or does not match its checksum; the
        key names the dataset (``checkpoint/<name>``).
    """
    attrs = group.attrs
    for attr in ("iteration", "checksum"):
        if attr not in attrs:
            raise InputError(f"the checkpoint has no {attr!r} attribute (damaged, or written "
                             "by an ot_pde without checksums); cannot restart from it",
                             source=source, key=f"checkpoint@{attr}")
    values, digests = {}, {}
    for name in group:
        key = f"checkpoint/{name}"
        ds = group.get(name)
        if ds is None or not hasattr(ds, "dtype"):
            raise InputError("not a dataset", source=source, key=key)
        for attr in ("scalar", "checksum"):
            if attr not in ds.attrs:
                raise InputError(f"the dataset has no {attr!r} attribute; cannot verify it",
                                 source=source, key=f"{key}@{attr}")
        try:
            value = ds[()]
        except Exception as exc:  # unreadable chunks, truncated file
            raise InputError(f"cannot read the dataset ({type(exc).__name__}: {exc})",
                             source=source, key=key) from None
        stored = ds.attrs["checksum"]
        stored = stored.decode() if isinstance(stored, bytes) else str(stored)
        if digest(name, value) != stored:
            raise InputError("checksum mismatch: the checkpoint was altered or corrupted "
                             "after it was written; cannot restart from it", source=source,
                             key=key)
        values[name], digests[name] = value, stored
    try:
        iteration = int(attrs["iteration"])
    except (TypeError, ValueError):
        raise InputError(f"iteration {attrs['iteration']!r} is not an integer", source=source,
                         key="checkpoint@iteration") from None
    stored = attrs["checksum"]
    stored = stored.decode() if isinstance(stored, bytes) else str(stored)
    if group_digest(iteration, digests) != stored:
        raise InputError("checksum mismatch of the checkpoint's iteration or list of "
                         "datasets (altered after it was written); cannot restart from it",
                         source=source, key="checkpoint@iteration")
    return values, iteration
