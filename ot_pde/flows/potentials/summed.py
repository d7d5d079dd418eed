"""The sum of potentials: every derivative is the sum of the parts'."""
from __future__ import annotations

import copy

import numpy as np

from .base import Potential


class Summed(Potential):
    r""":math:`\varphi = \sum_k\varphi_k`, the parts sharing one flat parameter vector.

    Every quantity the flows use (gradient, Laplacian, Hessian-vector products, cotangents) is
    linear in :math:`\varphi`, so it is the sum of the parts'; the parameter cotangent is the
    concatenation of theirs. The parts' parameters become views into this potential's
    :attr:`params` (training the sum trains the parts).

    Parameters
    ----------
    parts : sequence of Potential
        At least one, all of the same dimension, backend and precision.
    """

    def __init__(self, parts):
        parts = list(parts)
        if not parts:
            raise ValueError("a sum needs at least one potential")
        super().__init__(parts[0].dim, parts[0].backend)
        for part in parts[1:]:
            if part.dim != self.dim:
                raise ValueError(f"parts of dimensions {self.dim} and {part.dim} cannot be summed")
        self.parts = parts
        self.time_dependent = any(p.time_dependent for p in parts)
        self.supports_float32 = all(getattr(p, "supports_float32", False) for p in parts)
        self.dtype = parts[0].dtype
        self._layout = [(f"part{k}.{name}", shape) for k, p in enumerate(parts)
                        for name, shape in p._layout]
        self.n_params = sum(p.n_params for p in parts)
        self._params = self.xp.concatenate([p.params for p in parts]).astype(self.dtype)
        self._share()

    def _share(self) -> None:
        """Point every part's parameters at its slice of :attr:`params`."""
        start = 0
        for part in self.parts:
            part._params = self._params[start:start + part.n_params]
            part._views = part._unpack(part._params)
            start += part.n_params
        self._views = self._unpack(self._params)

    def astype(self, dtype) -> "Summed":
        if not self.supports_float32 and np.dtype(dtype) != np.float64:
            raise ValueError("every part of the sum must support float32")
        twin = copy.copy(self)
        twin.dtype = np.dtype(dtype)
        twin.parts = [copy.copy(p) for p in self.parts]
        for p in twin.parts:
            p.dtype = twin.dtype
        twin._params = self._params.astype(twin.dtype)
        twin._share()
        return twin

    def _concat(self, theta_parts):
        return self.xp.concatenate([self.xp.asarray(t, dtype=np.float64) for t in theta_parts])

    # -- interface ----------------------------------------------------------------------------
    def value(self, x, t):
        return sum(p.value(x, t) for p in self.parts)

    def grad_and_laplacian(self, x, t):
        out = [p.grad_and_laplacian(x, t) for p in self.parts]
        return sum(o[0] for o in out), sum(o[1] for o in out)

    def value_grad_and_laplacian(self, x, t):
        out = [p.value_grad_and_laplacian(x, t) for p in self.parts]
        return tuple(sum(o[i] for o in out) for i in range(3))

    def grad(self, x, t):
        return sum(p.grad(x, t) for p in self.parts)

    def _vjp(self, x, t, a, b, want_params):
        out = [p._vjp(x, t, a, b, want_params) for p in self.parts]
        x_bar = sum(o[0] for o in out)
        return x_bar, (self._concat([o[1] for o in out]) if want_params else None)

    def param_vjp_value(self, x, t, c):
        return self._concat([p.param_vjp_value(x, t, c) for p in self.parts])
