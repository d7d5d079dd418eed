r"""Laguerre cells clipped to a box: areas, centroids and shared edge lengths.

The Laguerre (power) cell of particle :math:`i` with weight :math:`w_i` is

.. math:: L_i = \{x : |x - X_i|^2 - w_i \le |x - X_j|^2 - w_j \ \forall j\}.

Given the neighbours of every particle in the regular triangulation (CSR arrays ``indptr``,
``indices``), :math:`L_i \cap [lo, hi]^2` is the box clipped by one half-plane per neighbour
(Sutherland-Hodgman on a convex polygon). Each polygon edge remembers which neighbour made it,
so the clip also gives the length of the edge shared with each neighbour, which is what the
Newton matrix of semi-discrete optimal transport needs.

:func:`clip_cells` is plain Python on scalars: the ``numpy`` backend runs it as is (slow, the
reference) and the ``numba`` backend compiles the very same function
(:mod:`._kernels_numba`), so the two agree to the last bit.
"""
from __future__ import annotations

import numpy as np


def clip_cells(points, weights, indptr, indices, visible, lo, hi, area, centroid, edge_len,
               work):
    """Clip every visible particle's Laguerre cell to the box ``[lo, hi]^2``.

    Parameters
    ----------
    points : (N, 2) float64
    weights : (N,) float64
    indptr, indices : int64
        CSR neighbour lists of the regular triangulation.
    visible : (N,) bool
        False for particles absent from the lower hull (empty cells).
    lo, hi : float
        The box.
    area : (N,) float64, out
    centroid : (N, 2) float64, out
        Centroid of each cell (the particle itself for an empty cell).
    edge_len : (nnz,) float64, out
        Length of the edge between particle ``i`` and neighbour ``indices[p]``.
    work : (4, M) float64
        Scratch space for two polygons (x, y) of at most ``M`` vertices; ``M`` >= 4 + twice the
        largest degree. A cell that would need more (impossible for exact convex clipping) gets
        a NaN area, which the caller reports.
    """
    n = points.shape[0]
    cap = work.shape[1]
    # Polygons A (current) and B (clipped): rows 0/1 are x/y of A, rows 2/3 of B; the labels
    # (-1: box side, p >= 0: CSR slot of the neighbour) live in two int arrays.
    lab_a = np.empty(cap, dtype=np.int64)
    lab_b = np.empty(cap, dtype=np.int64)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            edge_len[p] = 0.0
        if not visible[i]:
            area[i] = 0.0
            centroid[i, 0] = points[i, 0]
            centroid[i, 1] = points[i, 1]
            continue
        xi = points[i, 0]
        yi = points[i, 1]
        # the box, in coordinates relative to the particle (better conditioned)
        work[0, 0] = lo - xi
        work[1, 0] = lo - yi
        work[0, 1] = hi - xi
        work[1, 1] = lo - yi
        work[0, 2] = hi - xi
        work[1, 2] = hi - yi
        work[0, 3] = lo - xi
        work[1, 3] = hi - yi
        for k in range(4):
            lab_a[k] = -1
        m = 4
        overflow = False
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            dx = points[j, 0] - xi
            dy = points[j, 1] - yi
            # inside: 2 y.d <= |d|^2 + w_i - w_j
            b = 0.5 * (dx * dx + dy * dy + weights[i] - weights[j])
            out = 0
            for k in range(m):
                k1 = k + 1 if k + 1 < m else 0
                cx = work[0, k]
                cy = work[1, k]
                nx = work[0, k1]
                ny = work[1, k1]
                sc = cx * dx + cy * dy - b
                sn = nx * dx + ny * dy - b
                if sc <= 0.0:
                    work[2, out] = cx
                    work[3, out] = cy
                    lab_b[out] = lab_a[k]
                    out += 1
                    if sn > 0.0:
                        t = sc / (sc - sn)
                        work[2, out] = cx + t * (nx - cx)
                        work[3, out] = cy + t * (ny - cy)
                        lab_b[out] = p
                        out += 1
                elif sn <= 0.0:
                    t = sc / (sc - sn)
                    work[2, out] = cx + t * (nx - cx)
                    work[3, out] = cy + t * (ny - cy)
                    lab_b[out] = lab_a[k]
                    out += 1
                if out + 2 > cap:  # impossible for a convex polygon: flag it, stop clipping
                    overflow = True
                    break
            m = out
            for k in range(m):
                work[0, k] = work[2, k]
                work[1, k] = work[3, k]
                lab_a[k] = lab_b[k]
            if m == 0 or overflow:
                break
        if overflow:
            area[i] = np.nan
            centroid[i, 0] = np.nan
            centroid[i, 1] = np.nan
            continue
        # shoelace area, centroid and edge lengths
        a2 = 0.0
        sx = 0.0
        sy = 0.0
        for k in range(m):
            k1 = k + 1 if k + 1 < m else 0
            cx = work[0, k]
            cy = work[1, k]
            nx = work[0, k1]
            ny = work[1, k1]
            cross = cx * ny - nx * cy
            a2 += cross
            sx += (cx + nx) * cross
            sy += (cy + ny) * cross
            if lab_a[k] >= 0:
                ex = nx - cx
                ey = ny - cy
                edge_len[lab_a[k]] += np.sqrt(ex * ex + ey * ey)
        area[i] = 0.5 * a2
        if a2 > 0.0:
            centroid[i, 0] = xi + sx / (3.0 * a2)
            centroid[i, 1] = yi + sy / (3.0 * a2)
        else:
            centroid[i, 0] = xi
            centroid[i, 1] = yi
