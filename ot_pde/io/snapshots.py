"""Fields in time, Dedalus-style: snapshots appended along a growing time axis.

A kind that offers snapshots (``problem.snapshot(solver)``, e.g. ``euler_spectral``'s
``output.every_time``) has them appended to ``/fields/<name>`` of shape ``(writes, ...)`` on
the time axis ``/grid/<axis>`` at each flush with a checkpoint; the count written goes into
the checkpoint, so a restart cuts the snapshots back to the checkpoint's and writes each one
once.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .layout import COMPRESSION, host, link_scale
from .writer import ResultWriter

__all__ = ["SNAPSHOT_AXIS", "append_snapshots", "truncate_snapshots"]

#: The time axis of the snapshots in ``/grid``.
SNAPSHOT_AXIS = "t_snap"


def append_snapshots(writer: ResultWriter, axis: str, times: Sequence[float],
                     fields: Mapping[str, tuple[np.ndarray, Sequence[str], str, str]]
                     ) -> None:
    """Append snapshots in time: ``/grid/<axis>`` (kind ``time``, growing) gets
    ``times``, each ``/fields/<name>`` (dims ``(axis, *dims)``, growing along the first,
    compressed) the stacked arrays of ``fields[name] = (data (len(times), ...), dims,
    units, description)``."""
    times = np.asarray(times, dtype=np.float64)
    with writer.batch() as f:
        grid, group = f.require_group("grid"), f.require_group("fields")
        if axis not in grid:
            scale = grid.create_dataset(axis, shape=(0,), maxshape=(None,),
                                        dtype=np.float64, chunks=(1024,))
            scale.make_scale(axis)
            scale.attrs.update(units="time", description="snapshot times", kind="time")
        scale = grid[axis]
        n_old = scale.shape[0]
        scale.resize((n_old + len(times),))
        scale[n_old:] = times
        for name, (data, dims, units, description) in fields.items():
            data = host(data)
            if name not in group:
                ds = group.create_dataset(name, shape=(0, *data.shape[1:]),
                                          maxshape=(None, *data.shape[1:]),
                                          dtype=data.dtype, chunks=(1, *data.shape[1:]),
                                          **COMPRESSION)
                for i, dim in enumerate((axis, *dims)):
                    ds.dims[i].attach_scale(grid[dim])
                    ds.dims[i].label = dim
                    link_scale(group, grid[dim])
                ds.attrs.update(units=units, description=description)
            ds = group[name]
            ds.resize((n_old + len(times), *ds.shape[1:]))
            ds[n_old:] = data

def truncate_snapshots(writer: ResultWriter, axis: str, n: int) -> None:
    """Keep the first ``n`` snapshots on ``axis`` (for restarts); no-op without it."""
    with writer.batch() as f:
        if axis not in f.get("grid", {}):
            return
        f["grid"][axis].resize((n,))
        for ds in f.get("fields", {}).values():
            if ds.ndim and ds.dims[0].label == axis and ds.maxshape[0] is None:
                ds.resize((n, *ds.shape[1:]))
