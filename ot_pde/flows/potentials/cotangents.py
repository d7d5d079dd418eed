r"""Running sums of parameter cotangents over the stages of a discrete adjoint.

The discrete adjoint (:func:`~ot_pde.flows.integrators.integrate_adjoint`) pulls a cotangent
back through every stage of every step and sums the parameter cotangents of all of them. For
:class:`~.one_hidden_layer.OneHiddenLayer` the sum of the weight cotangents,

.. math::

    \bar W = \sum_{\text{stages}} g^T X + s^T A + 2\,\mathrm{diag}(w\odot q)\,W,

taken one stage at a time, is two products with only ``B`` rows each (``B = 64`` at the
Ising runs' scale: 200 stages make 400 small products of poor BLAS efficiency, and 200
float64 parameter vectors to allocate and add). :class:`HiddenLayerCotangents` keeps the rows
``[g; s]`` and ``[X; A]`` of many stages in two buffers and multiplies them once per full
buffer, :math:`[g_1; s_1; g_2; \dots]^T [X_1; A_1; X_2; \dots]`, one product with thousands of
rows; the vectors (:math:`\bar w`, :math:`\bar b`, :math:`\bar c` and the sum of :math:`q`)
are summed per stage in float64. The result is the same sum in another order (round-off only).

A float32 twin multiplies in float32 and adds each buffer's product into a float64 total, so
float32 round-off accumulates over at most ``rows`` rows (default 4096), not over the whole
trajectory.
"""
from __future__ import annotations

#: rows of the buffers of :class:`HiddenLayerCotangents`: at d = 256, m = 512 in float32,
#: 12 MB; products of 4096 rows run at the BLAS rate of large matrices
DEFAULT_ROWS = 4096


class DenseCotangentSum:
    """The default sink: adds each stage's dense ``(n_params,)`` cotangent."""

    def __init__(self):
        self.total = 0.0

    def add(self, theta_bar) -> None:
        self.total = self.total + theta_bar

    def result(self):
        """The sum, ``(n_params,)`` float64 on the potential's ``xp`` (0.0 if nothing was
        added)."""
        return self.total


class HiddenLayerCotangents:
    r"""The sink of a hidden layer: buffered rows for :math:`\bar W`, float64 vectors for the
    rest (see the module docstring). Filled by the layer's ``vjp_into``."""

    def __init__(self, layer, rows: int = DEFAULT_ROWS):
        xp = layer.xp
        m, d = layer._views["W1"].shape
        self.layer = layer
        self.xp = xp
        self._rows = max(int(rows), 1)
        self._left = xp.empty((self._rows, m), dtype=layer.dtype)
        self._right = xp.empty((self._rows, d), dtype=layer.dtype)
        self._filled = 0
        self._W1 = xp.zeros((m, d))
        self._w2 = xp.zeros(m)
        self._q = xp.zeros(m)
        self._b = xp.zeros(m)
        self._c = xp.zeros(m)

    def _flush(self) -> None:
        k = self._filled
        if k:
            self._W1 += (self._left[:k].T @ self._right[:k]).astype(self._W1.dtype, copy=False)
            self._filled = 0

    def _append(self, left, right) -> None:
        """Rows ``left`` (r, m) and ``right`` (r, d) of :math:`\\bar W = \\sum left^T right`."""
        r = left.shape[0]
        if r > self._rows:  # a batch larger than the buffer: multiply it on its own
            self._W1 += (left.T @ right).astype(self._W1.dtype, copy=False)
            return
        if self._filled + r > self._rows:
            self._flush()
        k = self._filled
        self._left[k:k + r] = left
        self._right[k:k + r] = right
        self._filled = k + r

    def add(self, t: float, g, x, s, a, dw2, q) -> None:
        r"""One stage: cotangent rows ``g`` of the pre-activations at inputs ``x``, rows
        :math:`s = w\odot\sigma'` against the cotangents ``a`` (None when there are none),
        :math:`\bar w` and :math:`q = \sum_i b_i\sigma''_i` of the stage."""
        self._append(g, x)
        if a is not None:
            self._append(s, a)
        self._w2 += dw2
        self._q += q
        if self.layer.bias or self.layer.time_dependent:
            gsum = g.sum(axis=0)
            self._b += gsum
            self._c += float(t) * gsum

    def result(self):
        """The flat ``(n_params,)`` float64 cotangent, in the layer's block order."""
        self._flush()
        layer = self.layer
        theta_bar = self.xp.zeros(layer.n_params)
        out = layer._unpack(theta_bar)
        W1 = layer._views["W1"].astype(self._W1.dtype)
        out["W1"][...] = self._W1 + 2.0 * (layer._views["w2"].astype(self._W1.dtype)
                                           * self._q)[:, None] * W1
        if layer.bias:
            out["b"][...] = self._b
        if layer.time_dependent:
            out["c"][...] = self._c
        out["w2"][...] = self._w2
        return theta_bar
