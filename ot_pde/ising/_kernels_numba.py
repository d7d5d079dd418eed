"""numba kernels of the Ising libraries; imported only when the numba backend is chosen."""
from __future__ import annotations

import numba

from ._union_find import swendsen_wang_loops

#: the Swendsen-Wang union-find of :mod:`ot_pde.ising._union_find`, compiled
swendsen_wang_kernel = numba.njit(cache=True)(swendsen_wang_loops)
