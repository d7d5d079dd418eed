r"""Potentials :math:`\varphi(x, t)` of Monge-Ampère flows, with exact derivatives.

A Monge-Ampère flow (Zhang, E & Wang 2018) moves particles and their log-density by

.. math::

    \frac{dx}{dt} = \nabla_x \varphi(x, t), \qquad
    \frac{d \ln p}{dt} = -\Delta_x \varphi(x, t).

Training by the discrete adjoint of a Runge-Kutta scheme needs, besides :math:`\nabla_x\varphi`
and :math:`\Delta_x\varphi`, the cotangent maps of the right-hand side
:math:`f(x) = (\nabla_x\varphi, -\Delta_x\varphi)`: the Hessian-vector product
:math:`\nabla_x^2\varphi\, v`, the gradient of the Laplacian :math:`\nabla_x\Delta_x\varphi`, and
the parameter gradients of :math:`\sum_i a_i\cdot\nabla_x\varphi(x_i) + b_i\,\Delta_x\varphi(x_i)`.
Every family here computes them in closed form (no automatic differentiation), and the tests
check each one against finite differences.

Families:

* :class:`OneHiddenLayer`: :math:`\varphi = \sum_j w_j\,\sigma(W_j\cdot x + c_j t + b_j)`, the
  potential of the original paper (logcosh, no bias, not time-dependent: exactly even in
  :math:`x`);
* :class:`OTFlowResNet`: the potential of OT-Flow (Onken et al. 2021), a ResNet plus a
  quadratic, with the exact Hessian trace of that paper;
* :class:`GroupAveraged`: the exact average of a potential over a finite group of signed
  coordinate permutations (e.g. the symmetries of an Ising lattice).

Arrays live on the backend's array module ``xp`` (numpy for the ``numpy`` and ``numba``
backends, cupy for ``cupy``): inputs ``x`` of shape ``(B, d)``, outputs of shapes ``(B,)``,
``(B, d)`` and, for parameter gradients, ``(n_params,)``. Parameters are one flat float64
vector ``params`` of ``xp`` owned by the potential; the weights of the layers are views into it.
With the ``numba`` backend, :class:`OneHiddenLayer` runs its elementwise work in the kernels of
:mod:`._kernels_numba` (matrix products stay with BLAS); the other families use the ``xp``
code on every backend. Nothing here reads files or prints.
"""
from __future__ import annotations

import copy
import math
from collections import deque

import numpy as np

from ..backends import Backend, get_backend

_LOG2 = math.log(2.0)


# -- activations ------------------------------------------------------------------------------
def _log2cosh(xp, z):
    r""":math:`\log(2\cosh z) = |z| + \log(1 + e^{-2|z|})`, without overflow."""
    az = xp.abs(z)
    return az + xp.log1p(xp.exp(-2.0 * az))


def _logcosh_value(xp, z):
    return _log2cosh(xp, z) - _LOG2


def _logcosh_derivs(xp, z, third):
    # sech^2 z = 4 e^{-2|z|} / (1 + e^{-2|z|})^2 keeps full relative accuracy for large |z|,
    # where 1 - tanh^2 z cancels.
    t = xp.tanh(z)
    e = xp.exp(-2.0 * xp.abs(z))
    sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e))
    return t, sech2, (-2.0 * t * sech2 if third else None)


def _softplus_value(xp, z):
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def _softplus_derivs(xp, z, third):
    # s = sigmoid(z) from e = e^{-|z|} on both sides of 0; s (1 - s) = e / (1 + e)^2 and
    # 1 - 2 s = -tanh(z / 2), both without cancellation.
    e = xp.exp(-xp.abs(z))
    inv = 1.0 / (1.0 + e)
    s = xp.where(z >= 0.0, inv, e * inv)
    d2 = e * inv * inv
    return s, d2, (-d2 * xp.tanh(0.5 * z) if third else None)


def _tanh_value(xp, z):
    return xp.tanh(z)


def _tanh_derivs(xp, z, third):
    t = xp.tanh(z)
    e = xp.exp(-2.0 * xp.abs(z))
    sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e))
    return sech2, -2.0 * t * sech2, (sech2 * (6.0 * t * t - 2.0) if third else None)


#: name -> (numba kernel code, sigma, (sigma', sigma'', sigma''')).
ACTIVATIONS = {
    "logcosh": (0, _logcosh_value, _logcosh_derivs),
    "softplus": (1, _softplus_value, _softplus_derivs),
    "tanh": (2, _tanh_value, _tanh_derivs),
}


# -- base class -------------------------------------------------------------------------------
def _resolve_backend(backend) -> Backend:
    if backend is None:
        return get_backend("numpy")
    if isinstance(backend, str):
        return get_backend(backend)
    return backend


class Potential:
    r"""A scalar potential :math:`\varphi(x, t)`, :math:`x\in\mathbb{R}^d`, with exact derivatives.

    Attributes
    ----------
    dim : int
        The space dimension :math:`d`.
    n_params : int
        Length of the flat parameter vector.
    params : array, shape (n_params,)
        The parameters, float64 on the backend's ``xp``; assigning to it copies in place.
    time_dependent : bool
        Whether :math:`\varphi` depends on ``t``.
    backend : Backend

    Notes
    -----
    Subclasses declare their parameters with :meth:`_declare` and implement ``value``,
    ``grad_and_laplacian``, ``_vjp`` and ``param_vjp_value``; the other methods derive from
    these and may be overridden where a direct formula is cheaper.
    """

    dim: int
    time_dependent: bool
    #: the precision evaluations run in (parameters are stored in it too); float64 unless
    #: this is a float32 twin made by :meth:`astype` for training
    dtype = np.dtype(np.float64)

    def __init__(self, dim: int, backend=None):
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.backend = _resolve_backend(backend)
        self.xp = self.backend.xp
        self._layout: list[tuple[str, tuple[int, ...]]] = []

    # -- parameters ---------------------------------------------------------------------------
    def _declare(self, layout, init: dict[str, np.ndarray]) -> None:
        """Allocate the flat parameter vector from ``[(name, shape), ...]`` and initial values."""
        self._layout = [(name, tuple(shape)) for name, shape in layout]
        self.n_params = sum(math.prod(shape) for _, shape in self._layout)
        flat = np.concatenate([np.asarray(init[name], dtype=np.float64).reshape(-1)
                               for name, _ in self._layout])
        self._params = self.xp.asarray(flat, dtype=np.float64)
        self._views = self._unpack(self._params)

    def _unpack(self, flat) -> dict:
        """Views of a flat ``(n_params,)`` vector, one per parameter block."""
        out, start = {}, 0
        for name, shape in self._layout:
            size = math.prod(shape)
            out[name] = flat[start:start + size].reshape(shape)
            start += size
        return out

    @property
    def params(self):
        return self._params

    @params.setter
    def params(self, theta) -> None:
        self.set_params(theta)

    def set_params(self, theta) -> None:
        """Copy ``theta`` (any array of ``n_params`` numbers) into :attr:`params`, in place."""
        theta = self.xp.asarray(theta, dtype=self.dtype).reshape(-1)
        if theta.shape[0] != self.n_params:
            raise ValueError(f"parameter vector has {theta.shape[0]} entries, "
                             f"this potential has {self.n_params}")
        self._params[...] = theta

    def param_blocks(self) -> dict:
        """The parameter blocks by name (views into :attr:`params`)."""
        return dict(self._views)

    def astype(self, dtype) -> "Potential":
        """A twin computing in ``dtype`` (float32 for training), with a cast copy of the
        parameters: the twin and this potential no longer share them."""
        if not getattr(self, "supports_float32", False) and np.dtype(dtype) != np.float64:
            raise ValueError(f"{type(self).__name__} computes in float64 only")
        twin = copy.copy(self)
        twin.dtype = np.dtype(dtype)
        twin._params = self._params.astype(twin.dtype)
        twin._views = twin._unpack(twin._params)
        return twin

    # -- inputs -------------------------------------------------------------------------------
    def _x(self, x):
        x = self.xp.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        return x

    def _rows(self, v, batch: int, name: str):
        """A per-sample cotangent: a scalar or an array broadcastable to ``(batch,)``."""
        return self.xp.broadcast_to(self.xp.asarray(v, dtype=self.dtype), (batch,))

    def _vectors(self, v, batch: int, name: str):
        v = self.xp.asarray(v, dtype=self.dtype)
        if v.shape != (batch, self.dim):
            raise ValueError(f"{name} must have shape ({batch}, {self.dim}), got {tuple(v.shape)}")
        return v

    # -- interface ----------------------------------------------------------------------------
    def value(self, x, t):
        r""":math:`\varphi(x_i, t)`, shape ``(B,)``."""
        raise NotImplementedError

    def grad_and_laplacian(self, x, t):
        r"""(:math:`\nabla_x\varphi`, :math:`\Delta_x\varphi`), shapes ``(B, d)`` and ``(B,)``."""
        raise NotImplementedError

    def value_grad_and_laplacian(self, x, t):
        r"""(:math:`\varphi`, :math:`\nabla_x\varphi`, :math:`\Delta_x\varphi`) in one call.

        Families override this where the three share work (the pre-activations of
        :class:`OneHiddenLayer`); by default it calls :meth:`value` and
        :meth:`grad_and_laplacian`.
        """
        return (self.value(x, t),) + tuple(self.grad_and_laplacian(x, t))

    def grad(self, x, t):
        r""":math:`\nabla_x\varphi(x_i, t)`, shape ``(B, d)``."""
        return self.grad_and_laplacian(x, t)[0]

    def laplacian(self, x, t):
        r""":math:`\Delta_x\varphi(x_i, t)` (exact trace of the Hessian), shape ``(B,)``."""
        return self.grad_and_laplacian(x, t)[1]

    def vjp(self, x, t, a, b):
        r"""Both cotangents of :math:`L = \sum_i a_i\cdot\nabla_x\varphi(x_i) + b_i\Delta_x\varphi(x_i)`.

        Returns
        -------
        x_bar : array, shape (B, d)
            :math:`\partial L/\partial x_i = \nabla_x^2\varphi(x_i)\,a_i + b_i\,\nabla_x\Delta_x\varphi(x_i)`.
        theta_bar : array, shape (n_params,)
            :math:`\partial L/\partial\theta`.

        One pass computes both, which is what a step of the discrete adjoint needs.
        """
        x = self._x(x)
        a = self._vectors(a, x.shape[0], "a")
        return self._vjp(x, t, a, self._rows(b, x.shape[0], "b"), want_params=True)

    def hvp(self, x, t, v):
        r""":math:`\nabla_x^2\varphi(x_i, t)\,v_i`, shape ``(B, d)``."""
        x = self._x(x)
        return self._vjp(x, t, self._vectors(v, x.shape[0], "v"), None, want_params=False)[0]

    def grad_laplacian(self, x, t):
        r""":math:`\nabla_x\Delta_x\varphi(x_i, t)`, shape ``(B, d)``."""
        x = self._x(x)
        ones = self.xp.ones(x.shape[0], dtype=self.dtype)
        return self._vjp(x, t, None, ones, want_params=False)[0]

    def param_vjp(self, x, t, a, b):
        r""":math:`\partial_\theta \sum_i [a_i\cdot\nabla_x\varphi(x_i) + b_i\,\Delta_x\varphi(x_i)]`.

        ``a`` has shape ``(B, d)``, ``b`` shape ``(B,)`` (or a scalar); returns ``(n_params,)``.
        """
        return self.vjp(x, t, a, b)[1]

    def param_vjp_value(self, x, t, c):
        r""":math:`\partial_\theta \sum_i c_i\,\varphi(x_i)`, shape ``(n_params,)``."""
        raise NotImplementedError

    def _vjp(self, x, t, a, b, want_params):
        raise NotImplementedError

    # -- time derivative (transport-regularized training: the HJB residual) -------------------
    def grad_time_laplacian(self, x, t):
        r"""(:math:`\nabla_x\varphi`, :math:`\partial_t\varphi`, :math:`\Delta_x\varphi`),
        shapes ``(B, d)``, ``(B,)``, ``(B,)``.

        Only families with a time-dependent closed form implement it
        (:class:`OneHiddenLayer` with ``time_dependent``, :class:`OTFlowResNet`).
        """
        raise NotImplementedError(f"{type(self).__name__} has no time derivative")

    def vjp_time(self, x, t, a, a_t, b):
        r"""Cotangents of :math:`L = \sum_i a_i\cdot\nabla_x\varphi + a_{t,i}\,\partial_t\varphi
        + b_i\,\Delta_x\varphi` at :math:`(x_i, t)`: ``(x_bar (B, d), theta_bar (n_params,))``.

        ``a`` has shape ``(B, d)``, ``a_t`` and ``b`` shape ``(B,)``. With ``a_t = 0`` it is
        :meth:`vjp`.
        """
        raise NotImplementedError(f"{type(self).__name__} has no time derivative")


# -- one hidden layer ---------------------------------------------------------------------------
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
    backend : Backend or str, optional
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
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             f"{', '.join(ACTIVATIONS)}")
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.width = m = int(width)
        self.activation = activation
        self.bias = bool(bias)
        self.time_dependent = bool(time_dependent)
        self._code, self._sigma, self._derivs = ACTIVATIONS[activation]
        rng = np.random.default_rng(rng)
        d = self.dim
        layout = [("W1", (m, d))]
        init = {"W1": rng.standard_normal((m, d)) / math.sqrt(d)}
        if self.bias:
            layout.append(("b", (m,)))
            init["b"] = 0.5 * rng.standard_normal(m)
        if self.time_dependent:
            layout.append(("c", (m,)))
            init["c"] = 0.5 * rng.standard_normal(m)
        layout.append(("w2", (m,)))
        init["w2"] = rng.standard_normal(m) / math.sqrt(m)
        self._declare(layout, init)
        self._kernels = None
        if self.backend.name == "numba":
            from . import _kernels_numba

            self._kernels = _kernels_numba

    def _pre(self, x, t):
        """Pre-activations :math:`z = X W^T + b + c t`, shape ``(B, m)``."""
        p = self._views
        z = x @ p["W1"].T
        if self.bias:
            z += p["b"]
        if self.time_dependent:
            z += float(t) * p["c"]
        return z

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
        x = self._x(x)
        W1, w2 = self._views["W1"], self._views["w2"]
        n = self._norms()
        if self._kernels is not None:
            z, tr = self._pre_numba(x, t)
            u, lap = self._kernels.grad_lap_rows(z, w2, n, self._code, tr)
            return self._u_times_W1(u, tr), lap
        z = self._pre(x, t)
        d1, d2, _ = self._derivs(self.xp, z, False)
        u = d1 * w2
        lap = d2 @ (w2 * n)
        return u @ W1, lap

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

    def _vjp(self, x, t, a, b, want_params):
        xp = self.xp
        z = self._pre(x, t)
        W1, w2 = self._views["W1"], self._views["w2"]
        n = self._norms()
        batch = x.shape[0]
        p = xp.zeros_like(z) if a is None else a @ W1.T
        if b is None:
            b = xp.zeros(batch, dtype=self.dtype)
        if self._kernels is not None:
            g, s1, dw2, q = self._kernels.vjp_cols(z, p, xp.ascontiguousarray(b), w2, n,
                                                    self._code)
        else:
            d1, d2, d3 = self._derivs(xp, z, True)
            g = w2 * (p * d2 + b[:, None] * n * d3)
            s1 = w2 * d1
            q = b @ d2
            dw2 = (p * d1).sum(axis=0) + n * q
        x_bar = g @ W1
        if not want_params:
            return x_bar, None
        theta_bar = xp.zeros(self.n_params)
        out = self._unpack(theta_bar)
        out["W1"][...] = g.T @ x + 2.0 * (w2 * q)[:, None] * W1
        if a is not None:
            out["W1"] += s1.T @ a
        gsum = g.sum(axis=0)
        if self.bias:
            out["b"][...] = gsum
        if self.time_dependent:
            out["c"][...] = float(t) * gsum
        out["w2"][...] = dw2
        return x_bar, theta_bar

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
        theta_bar = xp.zeros(self.n_params)
        out = self._unpack(theta_bar)
        out["W1"][...] = g.T @ x
        gsum = g.sum(axis=0)
        if self.bias:
            out["b"][...] = gsum
        if self.time_dependent:
            out["c"][...] = float(t) * gsum
        out["w2"][...] = c @ self._sigma(xp, z)
        return theta_bar


# -- OT-Flow ResNet -------------------------------------------------------------------------------
class OTFlowResNet(Potential):
    r"""The OT-Flow potential (Onken, Wu Fung, Li & Ruthotto, AAAI 2021).

    With :math:`s = (x, t)\in\mathbb{R}^{d+1}`,

    .. math::

        \Phi(s) = w^T N(s) + \tfrac12 s^T A^T A s + c^T s + c_0,

    where :math:`A` is :math:`r\times(d+1)` and :math:`N` a ResNet of :math:`M` layers with
    :math:`h = 1/(M-1)` and :math:`\sigma(z) = \log(2\cosh z)`
    (:math:`\sigma' = \tanh`, :math:`\sigma'' = 1 - \tanh^2`, :math:`\sigma''' = -2\tanh\,\sigma''`):

    .. math::

        a_0 = K_0 s + b_0,\ u_0 = \sigma(a_0);\qquad
        a_i = K_i u_{i-1} + b_i,\ u_i = u_{i-1} + h\,\sigma(a_i),\ i = 1..M-1;\qquad
        N(s) = u_{M-1}.

    **Gradient** (reverse sweep): :math:`g_{M-1} = w`,
    :math:`g_{i-1} = g_i + h K_i^T(\sigma'(a_i)\odot g_i)`, and
    :math:`\nabla_s\Phi = K_0^T(\sigma'(a_0)\odot g_0) + A^TA s + c`; :math:`\nabla_x\Phi` is its
    first :math:`d` entries.

    **Laplacian** (OT-Flow's exact trace, forward sweep): with :math:`E` the first :math:`d`
    columns of the identity, :math:`P_0 = K_0 E`, :math:`J_0 = \mathrm{diag}(\sigma'(a_0))P_0`,
    :math:`P_i = K_i J_{i-1}` and :math:`J_i = J_{i-1} + h\,\mathrm{diag}(\sigma'(a_i)) P_i`
    (:math:`J_i = \partial u_i/\partial x`),

    .. math::

        \Delta_x\Phi = \sum_{i=0}^{M-1} h_i \sum_j \sigma''(a_{ij})\, g_{ij}\, |(P_i)_{j,:}|^2
            + \|A E\|_F^2, \qquad h_0 = 1,\ h_{i\ge1} = h.

    **Cotangents**: :meth:`vjp`, :meth:`hvp`, :meth:`grad_laplacian`, :meth:`param_vjp` and
    :meth:`param_vjp_value` all come from one hand-written reverse sweep through the three
    sweeps above, for :math:`L = \sum_i \gamma_i\Phi(s_i) + a_i\cdot\nabla_x\Phi(s_i) +
    b_i\Delta_x\Phi(s_i)`: the adjoint of the trace sweep (backwards in :math:`i`), then of
    the gradient sweep (forwards), then of the network (backwards). ``hvp`` is the
    :math:`x`-cotangent with :math:`a = v` (the Hessian is symmetric), ``grad_laplacian`` the
    one with :math:`b = 1`. Derivatives are with respect to :math:`x` only; time enters
    through :math:`s`. Cost: :math:`O(B m^2 d)` per layer, like the trace itself.

    Parameters
    ----------
    dim, width : int
        :math:`d` and the ResNet width :math:`m`.
    n_layers : int
        :math:`M\ge2` (OT-Flow's published models use 2).
    rank : int, optional
        :math:`r`, default :math:`\min(10, d+1)`.
    backend : Backend or str, optional
        Default ``numpy``; every backend runs the ``xp`` code.
    rng : numpy.random.Generator or int
        Seeds the initialization, OT-Flow's: :math:`K_i, b_i \sim U(\pm 1/\sqrt{\text{fan-in}})`,
        :math:`A` Glorot-uniform, :math:`w = 1`, :math:`c = 0`, :math:`c_0 = 0`.

    Notes
    -----
    Parameter blocks, in the order of :attr:`params`: ``A`` (r, d+1), ``c`` (d+1,), ``c0``
    (1,), ``w`` (m,), ``K0`` (m, d+1), ``b0`` (m,), then ``K1``, ``b1``, ..., ``K{M-1}``,
    ``b{M-1}`` ((m, m) and (m,)).
    """

    time_dependent = True

    def __init__(self, dim: int, width: int, n_layers: int = 2, rank: int | None = None,
                 backend=None, rng=0):
        super().__init__(dim, backend)
        D = self.dim + 1
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if int(n_layers) != n_layers or n_layers < 2:
            raise ValueError(f"n_layers must be an integer >= 2, got {n_layers!r}")
        rank = min(10, D) if rank is None else rank
        if int(rank) != rank or not 1 <= rank <= D:
            raise ValueError(f"rank must be an integer in [1, {D}] (d + 1), got {rank!r}")
        self.width = m = int(width)
        self.n_layers = M = int(n_layers)
        self.rank = r = int(rank)
        self.h = 1.0 / (M - 1)
        rng = np.random.default_rng(rng)

        def uniform(shape, fan_in):
            bound = 1.0 / math.sqrt(fan_in)
            return rng.uniform(-bound, bound, size=shape)

        glorot = math.sqrt(6.0 / (r + D))
        layout = [("A", (r, D)), ("c", (D,)), ("c0", (1,)), ("w", (m,)), ("K0", (m, D)),
                  ("b0", (m,))]
        init = {"A": rng.uniform(-glorot, glorot, size=(r, D)), "c": np.zeros(D),
                "c0": np.zeros(1), "w": np.ones(m), "K0": uniform((m, D), D),
                "b0": uniform(m, D)}
        for i in range(1, M):
            layout += [(f"K{i}", (m, m)), (f"b{i}", (m,))]
            init[f"K{i}"] = uniform((m, m), m)
            init[f"b{i}"] = uniform(m, m)
        self._declare(layout, init)

    def _s(self, x, t):
        return self.xp.concatenate([x, self.xp.full((x.shape[0], 1), float(t))], axis=1)

    def _K(self, i):
        return self._views[f"K{i}"]

    def _forward(self, s, third):
        """Pre-activations, hidden states and :math:`\\sigma'` .. :math:`\\sigma'''` per layer."""
        xp, p = self.xp, self._views
        a = [s @ p["K0"].T + p["b0"]]
        u = [_log2cosh(xp, a[0])]
        for i in range(1, self.n_layers):
            a.append(u[-1] @ self._K(i).T + p[f"b{i}"])
            u.append(u[-1] + self.h * _log2cosh(xp, a[-1]))
        ders = [_logcosh_derivs(xp, ai, third) for ai in a]
        return a, u, ders

    def _backward_g(self, ders, batch):
        """:math:`g_i = \\partial (w^T u_{M-1}) / \\partial u_i` and :math:`q_i = \\sigma'(a_i) g_i`."""
        M = self.n_layers
        g = [None] * M
        q = [None] * M
        g[M - 1] = self.xp.broadcast_to(self._views["w"], (batch, self.width))
        for i in range(M - 1, 0, -1):
            q[i] = ders[i][0] * g[i]
            g[i - 1] = g[i] + self.h * (q[i] @ self._K(i))
        q[0] = ders[0][0] * g[0]
        return g, q

    def _trace(self, ders, g, keep):
        r"""Exact :math:`\Delta_x` of the network part, and the :math:`P_i, J_{i-1}` if ``keep``.

        ``P_i`` and ``J_i`` are stored as ``(m, B, d)`` arrays so that :math:`K_i J_{i-1}` is
        one matrix product with ``(m, B d)``.
        """
        d, m = self.dim, self.width
        batch = g[0].shape[0]
        P0 = self._views["K0"][:, :d]
        lap = (g[0] * ders[0][1]) @ (P0 * P0).sum(axis=1)
        J = ders[0][0].T[:, :, None] * P0[:, None, :]
        Ps, Js = [None], [J]
        for i in range(1, self.n_layers):
            P = (self._K(i) @ J.reshape(m, batch * d)).reshape(m, batch, d)
            lap = lap + self.h * (g[i] * ders[i][1] * (P * P).sum(axis=2).T).sum(axis=1)
            if keep:
                Ps.append(P)
            if i < self.n_layers - 1:
                J = J + self.h * ders[i][0].T[:, :, None] * P
                if keep:
                    Js.append(J)
        return lap, Ps, Js

    def value(self, x, t):
        x = self._x(x)
        s = self._s(x, t)
        p = self._views
        _, u, _ = self._forward(s, False)
        As = s @ p["A"].T
        return u[-1] @ p["w"] + 0.5 * (As * As).sum(axis=1) + s @ p["c"] + p["c0"][0]

    def _grad_s(self, s, q):
        A = self._views["A"]
        return q[0] @ self._views["K0"] + (s @ A.T) @ A + self._views["c"]

    def grad(self, x, t):
        x = self._x(x)
        s = self._s(x, t)
        _, _, ders = self._forward(s, False)
        _, q = self._backward_g(ders, x.shape[0])
        return self._grad_s(s, q)[:, :self.dim]

    def _grad_s_and_laplacian(self, x, t):
        r""":math:`\nabla_s\Phi` (space and time) and the spatial Laplacian."""
        x = self._x(x)
        s = self._s(x, t)
        _, _, ders = self._forward(s, False)
        g, q = self._backward_g(ders, x.shape[0])
        lap, _, _ = self._trace(ders, g, keep=False)
        AE = self._views["A"][:, :self.dim]
        return self._grad_s(s, q), lap + (AE * AE).sum()

    def grad_and_laplacian(self, x, t):
        gs, lap = self._grad_s_and_laplacian(x, t)
        return gs[:, :self.dim], lap

    def _vjp(self, x, t, a, b, want_params):
        s_bar, theta_bar = self._reverse(x, t, None, a, b, want_params)
        return s_bar[:, :self.dim], theta_bar

    def grad_time_laplacian(self, x, t):
        r""":math:`\partial_t\Phi` is the last entry of :math:`\nabla_s\Phi`."""
        gs, lap = self._grad_s_and_laplacian(x, t)
        return gs[:, :self.dim], gs[:, self.dim], lap

    def vjp_time(self, x, t, a, a_t, b):
        r"""The reverse sweep of :meth:`vjp` with the cotangent :math:`(a, a_t)` on the whole
        :math:`\nabla_s\Phi` (its time entry included)."""
        x = self._x(x)
        batch = x.shape[0]
        a = self._vectors(a, batch, "a")
        a_s = self.xp.concatenate([a, self._rows(a_t, batch, "a_t")[:, None]], axis=1)
        s_bar, theta_bar = self._reverse(x, t, None, a_s, self._rows(b, batch, "b"), True)
        return s_bar[:, :self.dim], theta_bar

    def param_vjp_value(self, x, t, c):
        x = self._x(x)
        return self._reverse(x, t, self._rows(c, x.shape[0], "c"), None, None, True)[1]

    def _reverse(self, x, t, gamma, alpha, beta, want_params):
        r"""Cotangents of :math:`L = \sum_i \gamma_i\Phi + \alpha_i\cdot\nabla_x\Phi + \beta_i\Delta_x\Phi`.

        ``gamma``, ``alpha``, ``beta`` may each be ``None`` (absent). Returns
        :math:`\partial L/\partial s` ``(B, d+1)`` and :math:`\partial L/\partial\theta`
        (``None`` unless ``want_params``). Adjoints carry a bar in the comments.
        """
        xp, d, m, M, h = self.xp, self.dim, self.width, self.n_layers, self.h
        batch = x.shape[0]
        p = self._views
        A, K0 = p["A"], p["K0"]
        s = self._s(x, t)
        _, u, ders = self._forward(s, beta is not None or alpha is not None)
        g, q = self._backward_g(ders, batch)
        theta_bar = xp.zeros(self.n_params) if want_params else None
        tb = self._unpack(theta_bar) if want_params else None
        a_bar = [xp.zeros((batch, m)) for _ in range(M)]
        g_bar = [xp.zeros((batch, m)) for _ in range(M)]
        s_bar = xp.zeros_like(s)
        AtA = A.T @ A

        if gamma is not None:  # gamma * (w^T u + s^T A^T A s / 2 + c^T s + c0)
            s_bar += gamma[:, None] * (s @ AtA + p["c"])
            if want_params:
                tb["c0"][0] += gamma.sum()
                tb["c"][...] += gamma @ s
                tb["A"][...] += A @ (s.T @ (gamma[:, None] * s))
        q0_bar = None
        if alpha is not None:  # alpha . (K0^T q0 + A^T A s + c)[:d] (or all d + 1 entries)
            al = alpha if alpha.shape[1] == d + 1 else \
                xp.concatenate([alpha, xp.zeros((batch, 1))], axis=1)
            s_bar += al @ AtA
            q0_bar = al @ K0.T
            if want_params:
                tb["c"][...] += al.sum(axis=0)
                tb["A"][...] += A @ (s.T @ al + al.T @ s)
                tb["K0"][...] += q[0].T @ al
        if beta is not None:
            if want_params:
                tb["A"][:, :d] += (2.0 * beta.sum()) * A[:, :d]
            self._reverse_trace(ders, g, beta, a_bar, g_bar, tb)

        # Adjoint of the gradient sweep g, run forwards in i.
        if alpha is not None or beta is not None:
            if q0_bar is not None:
                a_bar[0] += q0_bar * ders[0][1] * g[0]
                g_bar[0] += q0_bar * ders[0][0]
            for i in range(1, M):
                g_bar[i] += g_bar[i - 1]  # g_{i-1} = g_i + h K_i^T q_i
                qi_bar = h * (g_bar[i - 1] @ self._K(i).T)
                if want_params:
                    tb[f"K{i}"][...] += h * (q[i].T @ g_bar[i - 1])
                a_bar[i] += qi_bar * ders[i][1] * g[i]  # q_i = sigma'(a_i) g_i
                g_bar[i] += qi_bar * ders[i][0]
            if want_params:
                tb["w"][...] += g_bar[M - 1].sum(axis=0)

        # Adjoint of the network, run backwards in i.
        if gamma is not None:
            u_bar = gamma[:, None] * p["w"]
            if want_params:
                tb["w"][...] += gamma @ u[M - 1]
        else:
            u_bar = xp.zeros((batch, m))
        for i in range(M - 1, 0, -1):
            a_bar[i] += h * ders[i][0] * u_bar  # u_i = u_{i-1} + h sigma(a_i)
            if want_params:
                tb[f"b{i}"][...] += a_bar[i].sum(axis=0)
                tb[f"K{i}"][...] += a_bar[i].T @ u[i - 1]
            u_bar = u_bar + a_bar[i] @ self._K(i)
        a_bar[0] += ders[0][0] * u_bar
        s_bar += a_bar[0] @ K0
        if want_params:
            tb["b0"][...] += a_bar[0].sum(axis=0)
            tb["K0"][...] += a_bar[0].T @ s
        return s_bar, theta_bar

    def _reverse_trace(self, ders, g, beta, a_bar, g_bar, tb):
        r"""Adjoint of the trace sweep for :math:`\sum_i\beta_i\Delta_x\Phi(s_i)`, backwards in i.

        Adds into ``a_bar``, ``g_bar`` and (if ``tb`` is given) the parameter blocks ``K*``.
        Per layer, with :math:`\rho_{ij} = \beta_i h_i g_{ij}\sigma''(a_{ij})` and
        :math:`r_{ij} = |(P_i)_{j,:}|^2`: :math:`\bar g \mathrel{+}= \beta h_i\sigma'' r`,
        :math:`\bar a \mathrel{+}= \beta h_i g\sigma''' r`, :math:`\bar P_i = 2\rho P_i`; then
        :math:`J_i = J_{i-1} + h\sigma'(a_i)P_i` and :math:`P_i = K_i J_{i-1}` are reversed.
        """
        xp, d, m, M, h = self.xp, self.dim, self.width, self.n_layers, self.h
        batch = g[0].shape[0]
        _, Ps, Js = self._trace(ders, g, keep=True)
        P0 = self._views["K0"][:, :d]
        r0 = (P0 * P0).sum(axis=1)
        g_bar[0] += beta[:, None] * ders[0][1] * r0
        a_bar[0] += beta[:, None] * g[0] * ders[0][2] * r0
        J_bar = None  # cotangent of J_i, (m, B, d); J_{M-1} is not used
        for i in range(M - 1, 0, -1):
            P = Ps[i]
            r = (P * P).sum(axis=2).T
            g_bar[i] += (h * beta)[:, None] * ders[i][1] * r
            a_bar[i] += (h * beta)[:, None] * g[i] * ders[i][2] * r
            rho = (h * beta)[:, None] * g[i] * ders[i][1]
            P_bar = 2.0 * rho.T[:, :, None] * P
            if J_bar is not None:  # J_i = J_{i-1} + h diag(sigma'(a_i)) P_i
                P_bar = P_bar + h * ders[i][0].T[:, :, None] * J_bar
                a_bar[i] += h * ders[i][1] * (J_bar * P).sum(axis=2).T
            else:
                J_bar = xp.zeros((m, batch, d))
            Pm = P_bar.reshape(m, batch * d)
            if tb is not None:  # P_i = K_i J_{i-1}
                tb[f"K{i}"][...] += Pm @ Js[i - 1].reshape(m, batch * d).T
            J_bar = J_bar + (self._K(i).T @ Pm).reshape(m, batch, d)
        # J_0 = diag(sigma'(a_0)) P_0 with P_0 = K_0 E shared by the batch.
        a_bar[0] += ders[0][1] * (J_bar * P0[:, None, :]).sum(axis=2).T
        if tb is not None:
            rho0 = (beta[:, None] * g[0] * ders[0][1]).sum(axis=0)
            tb["K0"][:, :d] += 2.0 * rho0[:, None] * P0 \
                + (ders[0][0].T[:, :, None] * J_bar).sum(axis=1)


# -- group averaging ------------------------------------------------------------------------------
def _check_element(element, dim: int, where: str):
    """Validate one signed permutation; returns (perm int64, signs int8) numpy arrays."""
    try:
        perm, signs = element
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a pair (perm, signs), got {element!r}") from None
    perm = np.asarray(perm)
    signs = np.asarray(signs)
    if perm.shape != (dim,):
        raise ValueError(f"{where}: perm must have length {dim}, got shape {perm.shape}")
    if signs.shape != (dim,):
        raise ValueError(f"{where}: signs must have length {dim}, got shape {signs.shape}")
    if not np.all(np.equal(np.mod(perm, 1), 0)) or \
            not np.array_equal(np.sort(perm.astype(np.int64)), np.arange(dim)):
        raise ValueError(f"{where}: perm is not a permutation of range({dim}): {perm.tolist()}")
    if not np.all((signs == 1) | (signs == -1)):
        bad = sorted({float(v) for v in signs.ravel() if v not in (1, -1)})
        raise ValueError(f"{where}: signs must all be +1 or -1, got {bad}")
    return perm.astype(np.int64), signs.astype(np.int8)


def _compose(g1, g2):
    r""":math:`g_1\circ g_2`, with :math:`g x = s\odot x[\pi]`:
    :math:`g_1(g_2 x) = s_1\odot s_2[\pi_1]\odot x[\pi_2[\pi_1]]`."""
    (p1, s1), (p2, s2) = g1, g2
    return p2[p1], s1 * s2[p1]


def signed_permutation_group(generators, dim: int, max_size: int = 4096):
    r"""Close signed coordinate permutations under composition.

    An element is a pair ``(perm, signs)`` acting by :math:`g x = s\odot x[\pi]`. The group
    is found by breadth-first search over right-multiplications by the generators; a
    generator already in the group found so far is skipped, so at most
    :math:`\log_2 |G|` generators take part and a full group given as its own generating
    list closes in :math:`O(|G|\log|G|)` compositions.

    Parameters
    ----------
    generators : iterable of (perm, signs)
        ``perm`` a permutation of ``range(dim)``, ``signs`` entries :math:`\pm1`.
    dim : int
    max_size : int
        Largest group accepted.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        The elements, identity first, in BFS order (deterministic): ``perm`` int64,
        ``signs`` float64.

    Raises
    ------
    ValueError
        A generator is malformed, or the group has more than ``max_size`` elements.
    """
    gens = [_check_element(g, dim, f"generator {k}") for k, g in enumerate(generators)]

    def key(e):
        return e[0].tobytes() + e[1].tobytes()

    identity = (np.arange(dim, dtype=np.int64), np.ones(dim, dtype=np.int8))
    elements = [identity]
    seen = {key(identity)}
    used = []

    def add(e, queue):
        k = key(e)
        if k not in seen:
            seen.add(k)
            elements.append(e)
            queue.append(e)
            if len(elements) > max_size:
                raise ValueError(f"the group generated has more than max_size={max_size} "
                                 f"elements; pass fewer generators or raise max_size")

    for gen in gens:
        if key(gen) in seen:
            continue
        used.append(gen)
        # The elements so far are closed under the earlier generators: multiply them by the
        # new one, then every new element by all generators.
        queue = deque()
        for e in list(elements):
            add(_compose(e, gen), queue)
        while queue:
            e = queue.popleft()
            for g in used:
                add(_compose(e, g), queue)
    return [(perm, signs.astype(np.float64)) for perm, signs in elements]


def spin_flip(dim: int):
    r"""The generator :math:`x\mapsto -x` (as a one-element list)."""
    return [(np.arange(dim), -np.ones(dim))]


def _lattice_perm(L: int, fn):
    r, c = np.divmod(np.arange(L * L), L)
    rr, cc = fn(r, c)
    return rr * L + cc


def translations_2d(L: int):
    r"""Generators of the periodic translations of an :math:`L\times L` lattice (row-major).

    Site :math:`(r, c)` has index :math:`rL + c`; the two generators shift by one column and
    by one row: :math:`(g x)_{r,c} = x_{r, c+1}` and :math:`x_{r+1, c}` (indices mod :math:`L`).
    They generate the :math:`L^2` translations.
    """
    ones = np.ones(L * L)
    return [(_lattice_perm(L, lambda r, c: (r, (c + 1) % L)), ones),
            (_lattice_perm(L, lambda r, c: ((r + 1) % L, c)), ones)]


def reflections_2d(L: int):
    r"""Generators of the point symmetries of an :math:`L\times L` lattice (row-major).

    The mirror :math:`c\mapsto L-1-c` and the diagonal mirror :math:`(r, c)\mapsto(c, r)`;
    two mirrors at 45 degrees generate the dihedral group of the square, of order 8. With
    :func:`translations_2d` they generate the wallpaper group p4m of the periodic lattice,
    of order :math:`8L^2` (for :math:`L\ge3`; 128 for :math:`L = 4`), and with
    :func:`spin_flip` as well :math:`16L^2` (256 for :math:`L = 4`).
    """
    ones = np.ones(L * L)
    return [(_lattice_perm(L, lambda r, c: (r, L - 1 - c)), ones),
            (_lattice_perm(L, lambda r, c: (c, r)), ones)]


class GroupAveraged(Potential):
    r"""Exact average of a potential over a finite group of signed coordinate permutations.

    .. math::

        \bar\varphi(x) = \frac{1}{|G|}\sum_{g\in G}\varphi(g x), \qquad g x = s\odot x[\pi].

    Each :math:`g` is orthogonal, so

    .. math::

        \nabla\bar\varphi(x) = \frac{1}{|G|}\sum_g g^T\nabla\varphi(gx), \quad
        \Delta\bar\varphi(x) = \frac{1}{|G|}\sum_g \Delta\varphi(gx), \quad
        \nabla^2\bar\varphi(x)\,v = \frac{1}{|G|}\sum_g g^T\nabla^2\varphi(gx)\,g v,

    :math:`\nabla\Delta\bar\varphi` like the gradient, and the parameter cotangent of
    :math:`a\cdot\nabla\bar\varphi + b\Delta\bar\varphi` is the mean over :math:`g` of that of
    :math:`\varphi` at :math:`(gx, ga, b)`. :math:`\bar\varphi(hx) = \bar\varphi(x)` for every
    :math:`h\in G` (up to the order of summation).

    The transformed batches of several group elements are stacked into one call of the base
    potential (its matrix products get big operands), in chunks of at most ``max_rows`` rows.

    Parameters
    ----------
    base : Potential
        Shares its parameters and backend (no copy).
    group : iterable of (perm, signs)
        The group, or generators of it: it is closed with :func:`signed_permutation_group`,
        so the average is always over a group.
    max_size : int
        Passed to :func:`signed_permutation_group`.
    max_rows : int
        Rows per call of the base potential.
    """

    def __init__(self, base: Potential, group, max_size: int = 4096, max_rows: int = 16384):
        super().__init__(base.dim, base.backend)
        self.base = base
        self.time_dependent = base.time_dependent
        self.n_params = base.n_params
        elements = signed_permutation_group(group, base.dim, max_size=max_size)
        self.order = len(elements)
        xp = self.xp
        perms = np.stack([e[0] for e in elements])
        self._perms = xp.asarray(perms)
        self._inverse = xp.asarray(np.argsort(perms, axis=1))
        self._signs = xp.asarray(np.stack([e[1] for e in elements]))
        self._max_rows = int(max_rows)

    @property
    def elements(self):
        """The group as a list of (perm, signs) numpy arrays."""
        perms = self.backend.to_numpy(self._perms)
        signs = self.backend.to_numpy(self._signs)
        return list(zip(perms, signs))

    @property
    def params(self):
        return self.base.params

    @params.setter
    def params(self, theta) -> None:
        self.base.set_params(theta)

    def set_params(self, theta) -> None:
        self.base.set_params(theta)

    def param_blocks(self) -> dict:
        return self.base.param_blocks()

    def astype(self, dtype) -> "GroupAveraged":
        twin = copy.copy(self)
        twin.base = self.base.astype(dtype)
        twin.dtype = twin.base.dtype
        twin._signs = self._signs.astype(twin.dtype)
        return twin

    def _chunks(self, batch: int):
        step = max(1, self._max_rows // max(batch, 1))
        for start in range(0, self.order, step):
            yield slice(start, min(start + step, self.order))

    def _act(self, v, sl):
        """:math:`g v` for the elements ``sl``, stacked: ``(B * n_g, d)`` (sample-major)."""
        out = v[:, self._perms[sl]] * self._signs[sl]
        return out.reshape(-1, self.dim)

    def _act_transpose(self, y, sl, batch):
        """:math:`\\sum_g g^T y_g` over the elements ``sl`` for stacked ``y`` ``(B * n_g, d)``."""
        xp = self.xp
        y = y.reshape(batch, -1, self.dim) * self._signs[sl]
        idx = xp.broadcast_to(self._inverse[sl], y.shape)
        return xp.take_along_axis(y, idx, axis=2).sum(axis=1)

    def _rows_mean(self, y, batch):
        return y.reshape(batch, -1).sum(axis=1)

    def value(self, x, t):
        x = self._x(x)
        batch = x.shape[0]
        total = 0.0
        for sl in self._chunks(batch):
            total = total + self._rows_mean(self.base.value(self._act(x, sl), t), batch)
        return total / self.order

    def grad_and_laplacian(self, x, t):
        x = self._x(x)
        batch = x.shape[0]
        grad, lap = 0.0, 0.0
        for sl in self._chunks(batch):
            g, l = self.base.grad_and_laplacian(self._act(x, sl), t)
            grad = grad + self._act_transpose(g, sl, batch)
            lap = lap + self._rows_mean(l, batch)
        return grad / self.order, lap / self.order

    def grad(self, x, t):
        x = self._x(x)
        batch = x.shape[0]
        grad = 0.0
        for sl in self._chunks(batch):
            grad = grad + self._act_transpose(self.base.grad(self._act(x, sl), t), sl, batch)
        return grad / self.order

    def _vjp(self, x, t, a, b, want_params):
        batch = x.shape[0]
        x_bar, theta_bar = 0.0, 0.0
        for sl in self._chunks(batch):
            n_g = sl.stop - sl.start
            xs = self._act(x, sl)
            ga = None if a is None else self._act(a, sl)
            gb = None if b is None else self.xp.repeat(b, n_g)
            xb, tb = self.base._vjp(xs, t, ga, gb, want_params)
            x_bar = x_bar + self._act_transpose(xb, sl, batch)
            if want_params:
                theta_bar = theta_bar + tb
        return x_bar / self.order, (theta_bar / self.order if want_params else None)

    def param_vjp_value(self, x, t, c):
        x = self._x(x)
        batch = x.shape[0]
        c = self._rows(c, batch, "c")
        theta_bar = 0.0
        for sl in self._chunks(batch):
            n_g = sl.stop - sl.start
            theta_bar = theta_bar + self.base.param_vjp_value(self._act(x, sl), t,
                                                              self.xp.repeat(c, n_g))
        return theta_bar / self.order
