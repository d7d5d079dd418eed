"""numba compilation of the Laguerre-cell kernel (imported only when numba is installed).

The very same Python source as the ``numpy`` backend's (:func:`._cells.clip_cells`), compiled
without ``fastmath``: the two backends give the same bits.
"""
from __future__ import annotations

import numba

from ._cells import clip_cells

clip_cells_numba = numba.njit(cache=True)(clip_cells)
