"""The union-find of a Swendsen-Wang update, in code that runs both as Python (the numpy
backend) and compiled by numba (:mod:`ot_pde.ising._kernels_numba`)."""
from __future__ import annotations

import numpy as np
from numba.extending import register_jitable


@register_jitable
def _root(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving keeps the trees shallow
        i = parent[i]
    return i


def swendsen_wang_loops(spins, keep, u_bond, u_flip, out):
    """The union-find of one Swendsen-Wang update, written once: the numpy backend runs it as
    Python, the numba backend compiles it (:mod:`ot_pde.ising._kernels_numba`), so both give the same spins
    for the same random numbers."""
    B, L = spins.shape[0], spins.shape[1]
    parent = np.empty(L * L, np.int64)
    for b in range(B):
        for i in range(L * L):
            parent[i] = i
        for r in range(L):
            for c in range(L):
                for d in range(2):  # the right (d = 0) and the lower (d = 1) bond
                    r2 = r if d == 0 else (r + 1) % L
                    c2 = (c + 1) % L if d == 0 else c
                    if spins[b, r, c] == spins[b, r2, c2] and u_bond[b, r, c, d] < keep:
                        i, j = _root(parent, r * L + c), _root(parent, r2 * L + c2)
                        if i != j:
                            parent[i] = j
        for r in range(L):
            for c in range(L):
                flip = u_flip[b, _root(parent, r * L + c)] < 0.5
                out[b, r, c] = -spins[b, r, c] if flip else spins[b, r, c]
