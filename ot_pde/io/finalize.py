"""A completed run's file, rewritten without its restart state.

HDF5 never gives back the space of deleted objects, so deleting ``/checkpoint`` would leave
a file as large as before (the state of a Benamou-Brenier run is ten times its fields).
:func:`compact` copies every other object (datasets raw, with their chunking and
compression; links as links) into a new file beside the old one, re-attaches the dimension
scales (object references do not survive a copy between files), and the caller moves it
over the original (:meth:`~ot_pde.io.lock.OutputLock.replace_with`, which keeps the
one-writer lock on the new file).
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py

from .layout import RESTART_GROUPS, SCALE_ATTRS

__all__ = ["compact", "link_external"]


def _copy_group(src: h5py.Group, dst: h5py.Group, copied: dict, pairs: list) -> None:
    for key, value in src.attrs.items():
        if key not in SCALE_ATTRS:
            dst.attrs[key] = value
    for name in src:
        if src.parent == src and name in RESTART_GROUPS:  # the root's restart groups
            continue
        link = src.get(name, getlink=True)
        if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            dst[name] = link
            continue
        obj = src[name]  # h5py objects hash and compare by the HDF5 object they open
        if obj in copied:  # a second hard link (a coordinate linked into /fields)
            dst[name] = copied[obj]
            continue
        if isinstance(obj, h5py.Group):
            new = dst.create_group(name)
            copied[obj] = new
            _copy_group(obj, new, copied, pairs)
            continue
        # raw copy: chunks and filters as they are, virtual layouts as layouts
        src.copy(obj, dst, name=name, without_attrs=True)
        new = dst[name]
        copied[obj] = new
        for key, value in obj.attrs.items():
            if key not in SCALE_ATTRS:
                new.attrs[key] = value
        pairs.append((obj, new))


def compact(path: str | os.PathLike[str]) -> Path:
    """Write ``path`` without its restart groups to ``<path>.compact`` and return that path
    (the caller renames it over ``path``)."""
    path = Path(path)
    out = path.with_name(path.name + ".compact")
    copied: dict = {}
    pairs: list = []
    with h5py.File(path, "r", locking=False) as src, h5py.File(out, "w", locking=False) as dst:
        _copy_group(src, dst, copied, pairs)
        for old, new in pairs:  # coordinates first: a scale must exist before attaching
            if old.attrs.get("CLASS") == b"DIMENSION_SCALE":
                name = old.attrs.get("NAME", b"")
                new.make_scale(name.decode() if isinstance(name, bytes) else str(name))
        for old, new in pairs:
            if "DIMENSION_LIST" not in old.attrs:
                continue
            for i, dim in enumerate(old.dims):
                for scale in dim.values():
                    new.dims[i].attach_scale(copied[scale])
                if dim.label:
                    new.dims[i].label = dim.label
    return out


def link_external(group: h5py.Group, name: str, target: Path, base: Path) -> None:
    """``group[name]``: an external link to the root of ``target``, named relative to the
    folder of ``base`` (the linking file), so the files can move together."""
    relative = Path(target).resolve().relative_to(Path(base).resolve().parent)
    group[name] = h5py.ExternalLink(str(relative), "/")
