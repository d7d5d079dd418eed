"""The potential interface and the activations shared by the families."""
from __future__ import annotations

import copy
import math

import numpy as np

from ...backends import Backend, as_backend
from .cotangents import DenseCotangentSum

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
class WrapsParameters:
    """For a potential built on another one (``inner``): its parameters are the inner
    potential's, shared, not copied (training the wrapper trains the inner potential)."""

    @property
    def params(self):
        return self.inner.params

    @params.setter
    def params(self, theta) -> None:
        self.inner.set_params(theta)

    def set_params(self, theta) -> None:
        self.inner.set_params(theta)

    def param_blocks(self) -> dict:
        return self.inner.param_blocks()


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

    def __init__(self, dim: int, backend: Backend | None = None):
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.backend = as_backend(backend)
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

    def cotangent_sink(self, rows: int | None = None):
        """An empty running sum of parameter cotangents for :meth:`vjp_into`
        (:mod:`.cotangents`); its ``result()`` is the ``(n_params,)`` sum. ``rows``: how many
        cotangent rows will come at most (a buffering sink allocates no more)."""
        return DenseCotangentSum()

    def grad_and_laplacian_with_state(self, x, t):
        """:meth:`grad_and_laplacian` and what :meth:`vjp_into` may reuse at the same ``x``
        and ``t`` (None here; a hidden layer keeps its pre-activations)."""
        return (*self.grad_and_laplacian(x, t), None)

    def vjp_into(self, sink, x, t, a, b, state=None):
        """:meth:`vjp` whose parameter cotangent is added to ``sink`` (from
        :meth:`cotangent_sink`); returns ``x_bar``. ``state`` is what
        :meth:`grad_and_laplacian_with_state` returned at the same ``x`` and ``t``. Families
        whose cotangents are cheaper summed over many stages at once override these."""
        x_bar, theta_bar = self.vjp(x, t, a, b)
        sink.add(theta_bar)
        return x_bar

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


