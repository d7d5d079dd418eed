r"""The one primitive of the Sinkhorn solver: a log-domain kernel product along one axis.

``log_apply(F, G, axis)`` returns

.. math::

    \mathrm{out}[\dots, j', \dots] = \log \sum_j \exp\big(F[\dots, j, \dots] + G[j, j']\big)

along ``axis`` of ``F``, for a *symmetric* log-kernel ``G`` (so ``G[j, j'] = G[j', j]``). A
kernel that is a sum over grid axes (the Gaussian kernel of the squared distance) is applied
axis by axis. This module is the NumPy reference; ``_kernels_numba`` has the compiled twin.
"""
from __future__ import annotations

import numpy as np

#: terms more than this below the running maximum are skipped by the numba kernel
#: (exp(-50) = 2e-22: far below double round-off even summed over 10^4 terms)
CUTOFF = 50.0

#: at most this many float64 temporaries per NumPy chunk (32 MiB)
_CHUNK_ELEMENTS = 1 << 22


def log_apply_numpy(F: np.ndarray, G: np.ndarray, axis: int) -> np.ndarray:
    """Log-sum-exp product of ``F`` with the symmetric log-kernel ``G`` along ``axis``."""
    moved = np.moveaxis(F, axis, -1)
    shape = moved.shape
    rows = moved.reshape(-1, shape[-1])
    n = shape[-1]
    out = np.empty_like(rows)
    step = max(1, _CHUNK_ELEMENTS // (n * n))
    for start in range(0, rows.shape[0], step):
        block = rows[start:start + step, :, None] + G[None, :, :]  # (r, j, j')
        peak = block.max(axis=1)
        finite = np.isfinite(peak)
        safe = np.where(finite, peak, 0.0)
        with np.errstate(under="ignore"):
            total = np.exp(block - safe[:, None, :]).sum(axis=1)
        with np.errstate(divide="ignore"):
            out[start:start + step] = np.where(finite, safe + np.log(total), peak)
    return np.moveaxis(out.reshape(shape), -1, axis)
