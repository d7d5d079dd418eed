"""numba kernels of :class:`~ot_pde.flows.potentials.one_hidden_layer.OneHiddenLayer` (imported only when numba
is installed).

Division of labour, chosen by measurement (B = 64, d = 256, m = 512 on 2 cores):

* matrix products (pre-activations :math:`XW^T`, :math:`UW`, the row sums against fixed
  vectors) stay with BLAS, in the caller or here;
* the transcendental functions (``exp``, ``tanh``, ``log1p``) are numpy's ufuncs, applied in
  place: they are SIMD-vectorized, 5 to 20 times faster than the scalar libm calls a numba
  loop makes (numba's ``math.tanh`` costs ~14 ns per element here, ``np.tanh`` ~0.7 ns);
* the numba loops fuse the remaining algebra and the sums over the batch in one pass over the
  ``(B, m)`` arrays, without temporaries. They are serial and compiled with
  ``error_model="numpy"`` (no zero-division check, the denominators are >= 1) so that LLVM
  vectorizes them; no ``fastmath``.

The loops are deliberately not ``parallel=True``: after each BLAS call OpenBLAS's worker
threads keep spinning, and numba's OpenMP workers woken right after them had to wait for a
scheduler time slice. On 2 cores every kernel call then took 8 ms instead of 0.3-0.5 ms (16 ms
per value + gradient + Laplacian against 0.8 ms for numpy).

The formulas are the twins of those in :mod:`.potentials`, with the same expressions in the
same order (numba does not contract to FMA without ``fastmath``), so the elementwise values
equal numpy's bit for bit; only some sums are taken in another order (agreement ~1e-16).

Activation codes: 0 logcosh, 1 softplus, 2 tanh.
"""
from __future__ import annotations

import math

import numba
import numpy as np

_LOG2 = math.log(2.0)

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)


def _exp_neg_abs(z, k):
    r""":math:`e^{-k|z|}` as a new array, computed like the numpy path (``exp(-k * |z|)``)."""
    e = np.abs(z)
    np.multiply(e, -k, out=e)
    return np.exp(e, out=e)


def row_norms(W):
    r""":math:`n_j = |W_j|^2` (one SIMD pass, no ``W * W`` temporary)."""
    return np.einsum("ij,ij->i", W, W)


def _weighted_sum(s, w2, transposed):
    r""":math:`\sum_j w_j s_{ij}` by BLAS, for ``s`` of shape (B, m), or (m, B) if transposed."""
    return w2 @ s if transposed else s @ w2


# -- value ----------------------------------------------------------------------------------------
@_jit
def _sigma_from_parts(code, z, a, l):
    """In place in ``a``: logcosh ``a + l - log 2`` (a = |z|, l = log1p(e^{-2|z|})); softplus
    ``max(z, 0) + l`` (l = log1p(e^{-|z|})). Elementwise: any 2-D layout."""
    rows, cols = z.shape
    if code == 0:
        for i in range(rows):
            for j in range(cols):
                a[i, j] = a[i, j] + l[i, j] - _LOG2
    else:
        for i in range(rows):
            for j in range(cols):
                a[i, j] = max(z[i, j], 0.0) + l[i, j]


def value_rows(z, w2, code, transposed=False):
    r""":math:`\sum_j w_j\sigma(z_{ij})`, shape ``(B,)``; ``z`` is (B, m), or (m, B) if
    ``transposed``."""
    if code == 2:
        return _weighted_sum(np.tanh(z), w2, transposed)
    z = np.ascontiguousarray(z)
    a = np.abs(z)
    l = np.multiply(a, -2.0 if code == 0 else -1.0)
    np.exp(l, out=l)
    np.log1p(l, out=l)
    _sigma_from_parts(code, z, a, l)
    return _weighted_sum(a, w2, transposed)


# -- gradient and Laplacian -----------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy", inline="always")
def _d12(code, zz, tt, ee):
    """(sigma', sigma'') at one point from ``tt``, ``ee`` (see ``_grad_lap_fill``)."""
    if code == 0:
        return tt, 4.0 * ee / ((1.0 + ee) * (1.0 + ee))
    if code == 1:
        inv = 1.0 / (1.0 + ee)
        return (inv if zz >= 0.0 else ee * inv), ee * inv * inv
    sech2 = 4.0 * ee / ((1.0 + ee) * (1.0 + ee))
    return sech2, -2.0 * tt * sech2


@_jit
def _grad_lap_fill(code, z, t, e, w2, transposed):
    r"""In place: ``t`` becomes :math:`u = \sigma'\odot w`, ``e`` becomes :math:`\sigma''`.

    Inputs: logcosh and tanh ``t = tanh z``, ``e = exp(-2|z|)``; softplus ``t`` unused,
    ``e = exp(-|z|)``. The hidden unit is the column index, or the row index if
    ``transposed``.
    """
    rows, cols = z.shape
    for i in range(rows):
        for j in range(cols):
            d1, d2 = _d12(code, z[i, j], t[i, j], e[i, j])
            t[i, j] = d1 * (w2[i] if transposed else w2[j])
            e[i, j] = d2


def grad_lap_rows(z, w2, n, code, transposed=False):
    r"""(:math:`u_{ij} = w_j\sigma'(z_{ij})`, :math:`\sum_j w_j\sigma''(z_{ij}) n_j`).

    ``z`` is (B, m), or (m, B) if ``transposed``; ``u`` has the layout of ``z``.
    """
    z = np.ascontiguousarray(z)
    e = _exp_neg_abs(z, 1.0 if code == 1 else 2.0)
    t = np.empty_like(z) if code == 1 else np.tanh(z)
    _grad_lap_fill(code, z, t, e, w2, transposed)
    return t, _weighted_sum(e, w2 * n, transposed)


# -- cotangents -----------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy", inline="always")
def _derivs(code, zz, tt, ee):
    """sigma', sigma'', sigma''' at one point from ``tt`` and ``ee`` (see ``_vjp_fill``)."""
    if code == 0:
        d2 = 4.0 * ee / ((1.0 + ee) * (1.0 + ee))
        return tt, d2, -2.0 * tt * d2
    if code == 1:
        inv = 1.0 / (1.0 + ee)
        d2 = ee * inv * inv
        return (inv if zz >= 0.0 else ee * inv), d2, -d2 * tt
    d1 = 4.0 * ee / ((1.0 + ee) * (1.0 + ee))
    return d1, -2.0 * tt * d1, d1 * (6.0 * tt * tt - 2.0)


@_jit
def _vjp_row(code, z, t, e, p, bi, w2, n, dw2, q):
    """One row, in place: ``t`` becomes ``g``, ``e`` becomes ``s1``; adds into the batch sums."""
    for j in range(z.shape[0]):
        d1, d2, d3 = _derivs(code, z[j], t[j], e[j])
        pj = p[j]
        t[j] = w2[j] * (pj * d2 + bi * n[j] * d3)
        e[j] = w2[j] * d1
        dw2[j] += pj * d1
        q[j] += bi * d2


@_jit
def _vjp_fill(code, z, t, e, p, b, w2, n, dw2, q):
    r"""In place: ``t`` becomes :math:`g`, ``e`` becomes :math:`s_1`; fills ``dw2`` and ``q``.

    Inputs: logcosh and tanh ``t = tanh z``, ``e = exp(-2|z|)``; softplus ``t = tanh(z/2)``,
    ``e = exp(-|z|)``. Rows are visited in order, so the batch sums run like numpy's
    ``sum(axis=0)``, and the loop over the hidden units of one row vectorizes.
    """
    dw2[:] = 0.0
    q[:] = 0.0
    for i in range(z.shape[0]):
        _vjp_row(code, z[i], t[i], e[i], p[i], b[i], w2, n, dw2, q)
    for j in range(z.shape[1]):
        dw2[j] = dw2[j] + n[j] * q[j]


def vjp_cols(z, p, b, w2, n, code):
    r"""Elementwise part of ``OneHiddenLayer._vjp``.

    Returns :math:`g_{ij} = w_j(p_{ij}\sigma''_{ij} + b_i n_j\sigma'''_{ij})`,
    :math:`s_{ij} = w_j\sigma'_{ij}`, :math:`\sum_i p_{ij}\sigma'_{ij} + b_i n_j\sigma''_{ij}`
    and :math:`\sum_i b_i\sigma''_{ij}`.
    """
    z = np.ascontiguousarray(z)
    m = z.shape[1]
    e = _exp_neg_abs(z, 1.0 if code == 1 else 2.0)
    t = np.tanh(np.multiply(z, 0.5)) if code == 1 else np.tanh(z)
    dw2 = np.empty(m)
    q = np.empty(m)
    _vjp_fill(code, z, t, e, np.ascontiguousarray(p), np.ascontiguousarray(b),
              np.ascontiguousarray(w2), np.ascontiguousarray(n), dw2, q)
    return t, e, dw2, q


# -- lattice patches (LatticeConvolution) ---------------------------------------------------------
@_jit
def gather_patches(x, idx):
    r"""Rows :math:`P_p x_i` ``(B N, k^2)`` of ``x`` ``(B, N)`` for ``idx`` ``(N, k^2)``: one
    pass, where numpy's fancy indexing builds a ``(B, N, k^2)`` index broadcast first."""
    B, N = x.shape
    Q = idx.shape[1]
    out = np.empty((B * N, Q), dtype=x.dtype)
    for i in range(B):
        for p in range(N):
            for q in range(Q):
                out[i * N + p, q] = x[i, idx[p, q]]
    return out


@_jit
def scatter_patches(G, idx, B):
    r""":math:`\sum_p P_p^T G_{ip}` ``(B, N)`` for rows ``G`` ``(B N, k^2)``: the adjoint of
    :func:`gather_patches`, sites summed in the order of ``p`` then ``q``."""
    N, Q = idx.shape
    out = np.zeros((B, N), dtype=G.dtype)
    for i in range(B):
        for p in range(N):
            for q in range(Q):
                out[i, idx[p, q]] += G[i * N + p, q]
    return out
