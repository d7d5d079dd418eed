"""Conventions shared by the exact Ising references: argument checks, the lattice, constants."""
from __future__ import annotations

import math
import numbers

import numpy as np

BETA_C = math.log(1.0 + math.sqrt(2.0)) / 2.0
"""Critical inverse temperature of the square lattice for :math:`J = 1`."""

_LOG2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)
_BRUTE_MAX_L = 4
_CHUNK = 1 << 14  # states per chunk: (2^14, 16) float64 is 2 MiB
# Kaufman's formula needs sinh(2K) and 1/sinh(2K)^2 to stay finite and normal.
_K_MIN, _K_MAX = 1e-100, 300.0
# Its K-derivative is N coth 2K ~ N / 2K minus a sum of nearly the same size: relative error
# ~4e-17 / K^2 (measured 4e-7 at K = 1e-5, 1e-9 at 1e-4, 6e-11 at 1e-3), so below this the
# energy is refused rather than returned with few digits.
_K_MIN_ENERGY = 1e-3


# -- argument checks ---------------------------------------------------------------------------
def _check_L(L, max_L=None):
    if isinstance(L, bool) or not isinstance(L, numbers.Integral):
        raise ValueError(f"L must be an integer >= 2, got {L!r}")
    L = int(L)
    if L < 2:
        raise ValueError(f"L must be >= 2 (periodic L x L lattice), got {L}")
    if max_L is not None and L > max_L:
        raise ValueError(f"brute force enumerates 2^(L*L) states and is limited to "
                         f"L <= {max_L}, got L = {L}")
    return L


def _check_real(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _check_beta_J(beta, J):
    return _check_real("beta", beta, positive=True), _check_real("J", J)




# -- lattice -----------------------------------------------------------------------------------
def adjacency(L):
    r"""Bond-count matrix of the periodic :math:`L\times L` lattice.

    Parameters
    ----------
    L : int
        Linear size, :math:`L \ge 2`.

    Returns
    -------
    ndarray, shape (N, N), float64
        Symmetric, :math:`A_{ij}` the number of bonds between sites :math:`i` and :math:`j`
        (row-major indices), zero diagonal. Each row sums to 4; for :math:`L = 2` the two
        neighbours of a site carry 2 bonds each. :math:`\sum_{\rm bonds} s_is_j
        = \tfrac12 s^\top A s`.
    """
    L = _check_L(L)
    N = L * L
    idx = np.arange(N).reshape(L, L)
    A = np.zeros((N, N))
    # One += per bond, so the doubled bonds of L = 2 (right == left neighbour) count twice.
    for nb in (np.roll(idx, -1, axis=1), np.roll(idx, -1, axis=0)):
        np.add.at(A, (idx.ravel(), nb.ravel()), 1.0)
        np.add.at(A, (nb.ravel(), idx.ravel()), 1.0)
    return A


def _spin_states(N, start, stop):
    """Spin configurations ``start .. stop-1`` of N sites as float64 +-1, bit i -> site i."""
    codes = np.arange(start, stop, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(N, dtype=np.int64)) & 1
    return (2 * bits - 1).astype(np.float64)


def _log2cosh(x):
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2.0 * ax))
