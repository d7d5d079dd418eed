"""The one-hidden-layer potential of Zhang, E & Wang (2018), with exact derivatives."""
from __future__ import annotations

import math

import numpy as np

from ...backends import NUMBA
from .base import ACTIVATIONS, Potential
from .cotangents import DEFAULT_ROWS, HiddenLayerCotangents


def _numba_kernels():
    """The elementwise kernels of the numba backend (matrix products stay with BLAS)."""
    from .. import _kernels_numba

    return _kernels_numba


def declare_hidden_layer(potential, activation: str, width: int, inputs: int, bias: bool,
                         time_dependent: bool, rng, output_fan: int) -> None:
    r"""Set up a hidden layer of ``width`` units on ``inputs`` numbers on ``potential``: the
    activation, ``bias`` and ``time_dependent`` attributes and the parameter blocks ``W1``
    (width, inputs), ``b``, ``c``, ``w2``, drawn in that order from ``rng``:
    :math:`W\sim N(0, 1/\text{inputs})`, :math:`b, c\sim N(0, 1/4)`,
    :math:`w\sim N(0, 1/\text{output\_fan})`. Shared by :class:`OneHiddenLayer` and the
    lattice convolution."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of "
                         f"{', '.join(ACTIVATIONS)}")
    potential.activation = activation
    potential.bias, potential.time_dependent = bool(bias), bool(time_dependent)
    potential._code, potential._sigma, potential._derivs = ACTIVATIONS[activation]
    m = width
    rng = np.random.default_rng(rng)
    layout = [("W1", (m, inputs))]
    init = {"W1": rng.standard_normal((m, inputs)) / math.sqrt(inputs)}
    if potential.bias:
        layout.append(("b", (m,)))
        init["b"] = 0.5 * rng.standard_normal(m)
    if potential.time_dependent:
        layout.append(("c", (m,)))
        init["c"] = 0.5 * rng.standard_normal(m)
    layout.append(("w2", (m,)))
    init["w2"] = rng.standard_normal(m) / math.sqrt(output_fan)
    potential._declare(layout, init)


def hidden_preactivations(potential, X, t):
    """Pre-activations :math:`z = X W^T + b + c t` of rows ``X``, shape ``(rows, m)``."""
    p = potential._views
    z = X @ p["W1"].T
    if potential.bias:
        z += p["b"]
    if potential.time_dependent:
        z += float(t) * p["c"]
    return z


def hidden_layer_cotangent(potential, t, g, W1_bar, w2_bar, W1_extra=None):
    r"""The flat cotangent of a hidden layer's blocks ``W1``, ``b``, ``c``, ``w2`` (those the
    potential has), for pre-activation cotangent rows ``g``: :math:`\bar b = \sum g`,
    :math:`\bar c = t\sum g`. ``W1_extra`` is added after ``W1_bar`` is cast into the float64
    result, so a float32 twin accumulates both in float64. Shared by
    :class:`OneHiddenLayer` and the lattice convolution, whose units are rows of patches."""
    theta_bar = potential.xp.zeros(potential.n_params)
    out = potential._unpack(theta_bar)
    out["W1"][...] = W1_bar
    if W1_extra is not None:
        out["W1"] += W1_extra
    gsum = g.sum(axis=0)
    if potential.bias:
        out["b"][...] = gsum
    if potential.time_dependent:
        out["c"][...] = float(t) * gsum
    out["w2"][...] = w2_bar
    return theta_bar


class OneHiddenLayer(Potential):
    r"""One hidden layer: :math:`\varphi(x, t) = \sum_{j=1}^{m} w_j\,\sigma(z_j)`,
    :math:`z_j = W_j\cdot x + c_j t + b_j`.

    With :math:`n_j = |W_j|^2` and :math:`\sigma^{(k)}` evaluated at :math:`z`:

    .. math::

        \nabla_x\varphi = W^T (w\odot\sigma'), \qquad
        \nabla_x^2\varphi = W^T \mathrm{diag}(w\odot\sigma'') W, \qquad
        \Delta_x\varphi = \sum_j w_j \sigma''_j n_j, \qquad
        \nabla_x\Delta_x\varphi = W^T (w\odot\sigma'''\odot n).

    For :math:`L = \sum_i a_i\cdot\nabla\varphi(x_i) + b_i\Delta\varphi(x_i)`, with
    :math:`p_i = W a_i` and :math:`g_{ij} = w_j(p_{ij}\sigma''_{ij} + b_i n_j \sigma'''_{ij})`
    (the cotangent of :math:`z_{ij}`):

    .. math::

        \frac{\partial L}{\partial W} = g^T X + (w\odot\sigma')^T A
            + 2\,\mathrm{diag}\Big(w\odot\sum_i b_i\sigma''_i\Big) W, \quad
        \frac{\partial L}{\partial w_j} = \sum_i p_{ij}\sigma'_{ij} + b_i n_j\sigma''_{ij}, \quad
        \frac{\partial L}{\partial b_j} = \sum_i g_{ij}, \quad
        \frac{\partial L}{\partial c_j} = t\sum_i g_{ij},

    and :math:`\partial L/\partial x_i = W^T g_i` (:meth:`vjp`). Only :math:`\sigma` to
    :math:`\sigma'''` appear.

    Parameters
    ----------
    dim, width : int
        :math:`d` and the number :math:`m` of hidden units.
    activation : {"logcosh", "softplus", "tanh"}
        :math:`\sigma`: :math:`\log\cosh z` (computed as :math:`|z| + \log(1+e^{-2|z|}) - \log 2`),
        :math:`\log(1 + e^z)` (as :math:`\max(z, 0) + \log(1 + e^{-|z|})`) or :math:`\tanh z`.
    bias : bool
        Whether the hidden units have biases :math:`b`. Without bias, with the even
        ``logcosh`` and without time dependence (or at :math:`t = 0`),
        :math:`\varphi(-x, t) = \varphi(x, t)` exactly (spin-flip symmetry); the time term
        :math:`c_j t` breaks it otherwise.
    time_dependent : bool
        Whether the pre-activations get :math:`c_j t`.
    backend : Backend, optional
        Default ``numpy``.
    rng : numpy.random.Generator or int
        Seeds the initialization: :math:`W_{jk}\sim N(0, 1/d)`, :math:`w_j\sim N(0, 1/m)`,
        :math:`b_j, c_j\sim N(0, 1/4)`.

    Notes
    -----
    Parameter blocks, in the order of :attr:`params`: ``W1`` (m, d), ``b`` (m,) if ``bias``,
    ``c`` (m,) if ``time_dependent``, ``w2`` (m,).
    """

    #: :meth:`astype` float32 twins (training); every other family computes in float64 only
    supports_float32 = True

    def __init__(self, dim: int, width: int, activation: str = "logcosh", bias: bool = True,
                 time_dependent: bool = False, backend=None, rng=0):
        super().__init__(dim, backend)
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.width = m = int(width)
        declare_hidden_layer(self, activation, m, self.dim, bias, time_dependent, rng,
                             output_fan=m)
        self._kernels = self.backend.bind({NUMBA: _numba_kernels}, default=lambda: None)

    def _pre(self, x, t):
        """Pre-activations :math:`z = X W^T + b + c t`, shape ``(B, m)``."""
        return hidden_preactivations(self, x, t)

    def _norms(self):
        W1 = self._views["W1"]
        if self._kernels is not None:
            return self._kernels.row_norms(W1)
        return (W1 * W1).sum(axis=1)

    def _pre_numba(self, x, t):
        r"""Pre-activations for the numba path: ``(z, transposed)``.

        With fewer samples than hidden units, :math:`z^T = W X^T + b + c t` of shape
        ``(m, B)``: OpenBLAS computes :math:`W X^T` and then :math:`W^T u^T` 25-35% faster in
        that orientation (measured at B = 64, d = 256, m = 512; not so for B >= m, which gets
        the ``(B, m)`` layout of :meth:`_pre`).
        """
        if x.shape[0] >= self.width:
            return self._pre(x, t), False
        p = self._views
        z = p["W1"] @ x.T
        if self.bias:
            z += p["b"][:, None]
        if self.time_dependent:
            z += float(t) * p["c"][:, None]
        return z, True

    def _u_times_W1(self, u, transposed):
        r""":math:`u W`, shape ``(B, d)`` (C order), for ``u`` of shape (B, m) or (m, B)."""
        W1 = self._views["W1"]
        if transposed:
            return self.xp.ascontiguousarray((W1.T @ u).T)
        return u @ W1

    def value(self, x, t):
        x = self._x(x)
        w2 = self._views["w2"]
        if self._kernels is not None:
            z, tr = self._pre_numba(x, t)
            return self._kernels.value_rows(z, w2, self._code, tr)
        z = self._pre(x, t)
        return self._sigma(self.xp, z) @ w2

    def grad_and_laplacian(self, x, t):
        return self.grad_and_laplacian_with_state(x, t)[:2]

    def grad_and_laplacian_with_state(self, x, t):
        """The state is the pre-activations, their layout and the row norms,
        ``(z, transposed, n)``."""
        x = self._x(x)
        W1, w2 = self._views["W1"], self._views["w2"]
        n = self._norms()
        if self._kernels is not None:
            z, tr = self._pre_numba(x, t)
            u, lap = self._kernels.grad_lap_rows(z, w2, n, self._code, tr)
            return self._u_times_W1(u, tr), lap, (z, tr, n)
        z = self._pre(x, t)
        d1, d2, _ = self._derivs(self.xp, z, False)
        u = d1 * w2
        lap = d2 @ (w2 * n)
        return u @ W1, lap, (z, False, n)

    def value_grad_and_laplacian(self, x, t):
        # one product X W^T serves all three (the separate calls would compute it twice)
        x = self._x(x)
        W1, w2 = self._views["W1"], self._views["w2"]
        n = self._norms()
        if self._kernels is not None:
            z, tr = self._pre_numba(x, t)
            value = self._kernels.value_rows(z, w2, self._code, tr)
            u, lap = self._kernels.grad_lap_rows(z, w2, n, self._code, tr)
            return value, self._u_times_W1(u, tr), lap
        z = self._pre(x, t)
        d1, d2, _ = self._derivs(self.xp, z, False)
        return self._sigma(self.xp, z) @ w2, (d1 * w2) @ W1, d2 @ (w2 * n)

    def grad(self, x, t):
        x = self._x(x)
        W1, w2 = self._views["W1"], self._views["w2"]
        if self._kernels is not None:
            z, tr = self._pre_numba(x, t)
            u, _ = self._kernels.grad_lap_rows(z, w2, self._norms(), self._code, tr)
            return self._u_times_W1(u, tr)
        z = self._pre(x, t)
        u = self._derivs(self.xp, z, False)[0] * w2
        return u @ W1

    def hvp(self, x, t, v):
        x = self._x(x)
        v = self._vectors(v, x.shape[0], "v")
        if self._kernels is not None:
            return self._vjp(x, t, v, None, want_params=False)[0]
        z = self._pre(x, t)
        W1, w2 = self._views["W1"], self._views["w2"]
        d2 = self._derivs(self.xp, z, False)[1]
        return ((v @ W1.T) * d2 * w2) @ W1

    def grad_laplacian(self, x, t):
        x = self._x(x)
        if self._kernels is not None:
            return self._vjp(x, t, None, self.xp.ones(x.shape[0], dtype=self.dtype),
                             want_params=False)[0]
        z = self._pre(x, t)
        W1, w2 = self._views["W1"], self._views["w2"]
        d3 = self._derivs(self.xp, z, True)[2]
        return (d3 * (w2 * self._norms())) @ W1

    def _vjp_rows(self, x, t, a, b, state=None):
        r"""The cotangent rows of one stage: :math:`g`, :math:`s = w\odot\sigma'`,
        :math:`\bar w` and :math:`q = \sum_i b_i\sigma''_i` (see the class docstring).
        ``state`` holds the pre-activations and row norms at ``x`` if the forward pass kept
        them."""
        xp = self.xp
        if state is None:
            z, n = self._pre(x, t), self._norms()
        else:
            z, transposed, n = state
            z = xp.ascontiguousarray(z.T) if transposed else z
        W1, w2 = self._views["W1"], self._views["w2"]
        p = xp.zeros_like(z) if a is None else a @ W1.T
        if b is None:
            b = xp.zeros(x.shape[0], dtype=self.dtype)
        if self._kernels is not None:
            return self._kernels.vjp_cols(z, p, xp.ascontiguousarray(b), w2, n, self._code)
        d1, d2, d3 = self._derivs(xp, z, True)
        q = b @ d2
        return (w2 * (p * d2 + b[:, None] * n * d3), w2 * d1,
                (p * d1).sum(axis=0) + n * q, q)

    def _vjp(self, x, t, a, b, want_params):
        W1, w2 = self._views["W1"], self._views["w2"]
        g, s1, dw2, q = self._vjp_rows(x, t, a, b)
        x_bar = g @ W1
        if not want_params:
            return x_bar, None
        return x_bar, hidden_layer_cotangent(self, t, g, g.T @ x + 2.0 * (w2 * q)[:, None] * W1,
                                             dw2, None if a is None else s1.T @ a)

    def cotangent_sink(self, rows: int | None = None):
        """A :class:`~.cotangents.HiddenLayerCotangents` for :meth:`vjp_into`, its buffers
        no longer than ``rows`` (the rows that will come) or the default."""
        return HiddenLayerCotangents(self, DEFAULT_ROWS if rows is None
                                     else min(int(rows), DEFAULT_ROWS))

    def vjp_into(self, sink, x, t, a, b, state=None):
        r""":meth:`vjp` whose parameter cotangent is added to ``sink`` (from
        :meth:`cotangent_sink`) instead of returned: the sink multiplies the rows of many
        stages at once. ``state``, from :meth:`grad_and_laplacian_with_state` at the same
        ``x`` and ``t`` and unchanged parameters, saves recomputing the pre-activations.
        Returns ``x_bar``."""
        x = self._x(x)
        a = None if a is None else self._vectors(a, x.shape[0], "a")
        b = None if b is None else self._rows(b, x.shape[0], "b")
        g, s1, dw2, q = self._vjp_rows(x, t, a, b, state)
        sink.add(t, g, x, s1, a, dw2, q)
        return g @ self._views["W1"]

    def _check_time(self):
        if not self.time_dependent:
            raise ValueError("this OneHiddenLayer is not time-dependent (time_dependent=False): "
                             "its time derivative is zero and has no parameters")

    def grad_time_laplacian(self, x, t):
        r""":math:`\partial_t\varphi = \sum_j w_j c_j \sigma'(z_j)` beside the gradient and
        Laplacian (the ``xp`` code on every backend)."""
        self._check_time()
        x = self._x(x)
        W1, w2, c = self._views["W1"], self._views["w2"], self._views["c"]
        z = self._pre(x, t)
        d1, d2, _ = self._derivs(self.xp, z, False)
        u = d1 * w2
        return u @ W1, u @ c, d2 @ (w2 * self._norms())

    def vjp_time(self, x, t, a, a_t, b):
        r"""With :math:`\tilde W = [W, c]` the weights of :math:`s = (x, t)`,
        :math:`(\nabla_x\varphi, \partial_t\varphi) = \tilde W^T(w\odot\sigma')`: the
        cotangent :math:`p = a W^T + a_t c` enters the formulas of :meth:`vjp` unchanged, and
        :math:`c` gets the extra :math:`(w\odot\sigma')^T a_t`."""
        self._check_time()
        xp = self.xp
        x = self._x(x)
        batch = x.shape[0]
        a = self._vectors(a, batch, "a")
        a_t = self._rows(a_t, batch, "a_t")
        b = self._rows(b, batch, "b")
        W1, w2, c = self._views["W1"], self._views["w2"], self._views["c"]
        z = self._pre(x, t)
        n = self._norms()
        p = a @ W1.T + a_t[:, None] * c
        d1, d2, d3 = self._derivs(xp, z, True)
        g = w2 * (p * d2 + b[:, None] * n * d3)
        s1 = w2 * d1
        q = b @ d2
        theta_bar = xp.zeros(self.n_params)
        out = self._unpack(theta_bar)
        out["W1"][...] = g.T @ x + 2.0 * (w2 * q)[:, None] * W1 + s1.T @ a
        gsum = g.sum(axis=0)
        if self.bias:
            out["b"][...] = gsum
        out["c"][...] = float(t) * gsum + s1.T @ a_t
        out["w2"][...] = (p * d1).sum(axis=0) + n * q
        return g @ W1, theta_bar

    def param_vjp_value(self, x, t, c):
        xp = self.xp
        x = self._x(x)
        c = self._rows(c, x.shape[0], "c")
        z = self._pre(x, t)
        w2 = self._views["w2"]
        d1 = self._derivs(xp, z, False)[0]
        g = (c[:, None] * d1) * w2
        return hidden_layer_cotangent(self, t, g, g.T @ x, c @ self._sigma(xp, z))


