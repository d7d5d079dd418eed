"""The exact average of a potential over a finite group of signed coordinate permutations."""
from __future__ import annotations

import copy

import numpy as np

from .base import Potential, WrapsParameters
from .groups import signed_permutation_group


class GroupAveraged(WrapsParameters, Potential):
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
    def inner(self) -> Potential:
        return self.base

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
