r"""Exact references of the ``monge_ampere_grid`` kind.

Torus: a *constructed* potential. Choose a smooth periodic :math:`\psi^*` with
:math:`I + D^2\psi^*` positive definite and a periodic target :math:`\rho_1`; then
:math:`\rho_0(x) = \rho_1(x + \nabla\psi^*(x))\det(I + D^2\psi^*(x))` has the same mass and,
by Cordero-Erausquin's theorem (optimal maps on the flat torus are :math:`x + \nabla\psi`
with :math:`|x|^2/2 + \psi` convex), :math:`x + \nabla\psi^*` is its optimal map:
:math:`W_2^2 = \int |\nabla\psi^*|^2 \rho_0`, computed by the periodic trapezoid rule on a
fine grid (spectrally accurate).

Box: product densities :math:`\rho(x) = \prod_k p_k(x_k)` (diagonal Gaussians truncated to
the box, cosine profiles, the uniform density). The optimal map is the product of the 1D
monotone maps :math:`T_k = F_{1,k}^{-1}\circ F_{0,k}` (the gradient of the separable convex
:math:`\sum_k u_k(x_k)` pushing the product forward is optimal by Brenier's theorem), so
:math:`W_2^2 = \sum_k \int_0^1 |F_{0,k}^{-1}(s) - F_{1,k}^{-1}(s)|^2 ds` and
:math:`\psi = \sum_k \int^{x_k} (T_k(s) - s)\,ds`, with truncation to the box exactly
accounted for (CDFs on ``2**17`` points, error far below any grid's).
"""
from __future__ import annotations

import numpy as np

#: terms (amplitude, wave numbers, phase) of the constructed potential, per dimension:
#: psi* = amplitude / (4 pi^2) * sum a cos(2 pi k . (x - lower) / L + phase)
_TERMS = {
    1: [(1.0, (1,), 0.0), (0.25, (2,), np.pi / 3)],
    2: [(0.5, (1, -1), 0.0), (-0.5, (1, 1), 0.0), (0.5, (1, 0), 0.0),
        (0.25, (0, 1), np.pi / 2)],
    3: [(0.5, (1, -1, 0), 0.0), (-0.5, (0, 1, 1), 0.0), (0.5, (1, 0, 0), 0.0),
        (0.25, (0, 0, 1), np.pi / 2), (0.25, (1, 0, 1), np.pi / 4)],
}


class ConstructedPotential:
    """The periodic potential :math:`\\psi^*` on the period box ``[lower, upper]``."""

    def __init__(self, amplitude: float, lower, upper):
        self.lower = np.asarray(lower, float)
        self.length = np.asarray(upper, float) - self.lower
        self.d = len(self.lower)
        self.terms = [(amplitude * a / (4 * np.pi ** 2), np.asarray(k, float), ph)
                      for a, k, ph in _TERMS[self.d]]

    def __call__(self, x: list[np.ndarray]):
        """Value, gradient (list) and Hessian (nested list) at points ``x``."""
        d = self.d
        value = np.zeros(np.shape(x[0]))
        grad = [np.zeros_like(value) for _ in range(d)]
        hess = [[np.zeros_like(value) for _ in range(d)] for _ in range(d)]
        for a, k, ph in self.terms:
            w = 2 * np.pi * k / self.length
            arg = sum(w[i] * (x[i] - self.lower[i]) for i in range(d)) + ph
            c, s = np.cos(arg), np.sin(arg)
            value += a * c
            for i in range(d):
                grad[i] -= a * s * w[i]
                for j in range(d):
                    hess[i][j] -= a * c * w[i] * w[j]
        return value, grad, hess

    def jacobian_det(self, hess) -> np.ndarray:
        m = np.array([[hess[i][j] + (i == j) for j in range(self.d)] for i in range(self.d)])
        return np.linalg.det(np.moveaxis(m, (0, 1), (-2, -1)))

    def min_eigenvalue(self, resolution: int = 128) -> float:
        """Smallest eigenvalue of :math:`I + D^2\\psi^*` on a fine grid (> 0: convex)."""
        res = resolution if self.d < 3 else 48
        axes = [self.lower[k] + self.length[k] * (np.arange(res) + 0.5) / res
                for k in range(self.d)]
        _, _, hess = self(np.meshgrid(*axes, indexing="ij"))
        m = np.array([[hess[i][j] + (i == j) for j in range(self.d)] for i in range(self.d)])
        return float(np.linalg.eigvalsh(np.moveaxis(m, (0, 1), (-2, -1))).min())

    def source_density(self, x, target_pdf) -> np.ndarray:
        """:math:`\\rho_0 = \\rho_1(x + \\nabla\\psi^*)\\det(I + D^2\\psi^*)` (``target_pdf``
        periodic, evaluated at the wrapped image)."""
        _, grad, hess = self(x)
        image = [self.lower[k] + np.mod(x[k] + grad[k] - self.lower[k], self.length[k])
                 for k in range(self.d)]
        return target_pdf(image) * self.jacobian_det(hess)

    def w2_squared(self, target_pdf, resolution: int = 512) -> float:
        """:math:`\\int |\\nabla\\psi^*|^2 \\rho_0` by the periodic trapezoid rule."""
        res = resolution if self.d < 3 else 96
        axes = [self.lower[k] + self.length[k] * (np.arange(res) + 0.5) / res
                for k in range(self.d)]
        x = np.meshgrid(*axes, indexing="ij")
        _, grad, _ = self(x)
        rho0 = self.source_density(x, target_pdf)
        return float(np.mean(sum(g ** 2 for g in grad) * rho0) * np.prod(self.length))


class Transport1D:
    """Exact monotone transport between two positive 1D densities on ``[lower, upper]``."""

    def __init__(self, pdf0, pdf1, lower: float, upper: float, resolution: int = 1 << 17):
        self.x = np.linspace(lower, upper, resolution + 1)
        self.cdf0 = self._cdf(pdf0(self.x))
        self.cdf1 = self._cdf(pdf1(self.x))
        self.s = (np.arange(resolution) + 0.5) / resolution

    def _cdf(self, p):
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(self.x))])
        return cdf / cdf[-1]

    def w2_squared(self) -> float:
        q0 = np.interp(self.s, self.cdf0, self.x)
        q1 = np.interp(self.s, self.cdf1, self.x)
        return float(np.mean((q0 - q1) ** 2))

    def displacement_potential(self, points: np.ndarray) -> np.ndarray:
        """:math:`\\int_{lower}^x (T(s) - s)\\,ds` at ``points``."""
        t = np.interp(self.cdf0, self.cdf1, self.x) - self.x
        integral = np.concatenate([[0.0], np.cumsum(0.5 * (t[1:] + t[:-1]) * np.diff(self.x))])
        return np.interp(points, self.x, integral)

    def interpolant(self, t: float, points: np.ndarray) -> np.ndarray:
        """Density of McCann's interpolant :math:`((1-t)x + tT(x))_\\#\\rho_0` at
        ``points``: :math:`\\rho_0(x) / ((1-t) + tT'(x))` at :math:`y = (1-t)x + tT(x)`."""
        x = self.x
        t_map = np.interp(self.cdf0, self.cdf1, x)
        # T' = rho0(x) / rho1(T(x)), from the CDFs' slopes on the fine grid
        p0 = np.gradient(self.cdf0, x)
        p1 = np.interp(t_map, x, np.gradient(self.cdf1, x))
        y = (1 - t) * x + t * t_map
        rho_t = p0 / ((1 - t) + t * p0 / p1)
        return np.interp(points, y, rho_t)

