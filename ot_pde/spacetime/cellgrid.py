r"""Finite differences, spectral solves and spline interpolation on a cell-centred grid.

Two boundary treatments share every operator:

``periodic``
    the flat torus: neighbours wrap around; constant-coefficient second differences are
    diagonalized by the FFT.
``reflect``
    the box with the even (half-sample symmetric) reflection across each face: the ghost value
    beyond a face equals the value of the cell inside (:math:`f_{-1} = f_0`,
    :math:`f_n = f_{n-1}`), the homogeneous Neumann condition of cell-centred schemes. The
    operators are those of the periodic grid of twice the size acting on even data, so the
    DCT-II diagonalizes the constant-coefficient second differences.

The stencils are second-order centred: :math:`D_k f = (f_{i+1} - f_{i-1}) / 2h_k`,
:math:`D_{kk} f = (f_{i+1} - 2 f_i + f_{i-1}) / h_k^2` and the cross derivative
:math:`D_{kl} = D_k D_l` (the four-point cross stencil). Matrices act on C-ordered
flattened arrays (axis 0 slowest).

Nothing here reads files or prints.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.fft as sfft
import scipy.sparse as sp

from .box import Box

BOUNDARIES = ("periodic", "reflect")


@dataclass(frozen=True)
class CellGrid(Box):
    """``shape`` cells on the box ``[lower, upper]`` with a boundary treatment."""

    boundary: str = "periodic"

    def __post_init__(self):
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def wrap_index(self, i: np.ndarray, axis: int) -> np.ndarray:
        """Any integer cell index mapped into ``[0, n)``: modulo ``n`` on the torus, by
        repeated even reflection across the faces on the box."""
        n = self.shape[axis]
        if self.boundary == "periodic":
            return np.mod(i, n)
        j = np.mod(i, 2 * n)
        return np.where(j >= n, 2 * n - 1 - j, j)

    # -- sparse difference matrices ----------------------------------------------------------
    def _shift_1d(self, axis: int, offset: int) -> sp.csr_matrix:
        n = self.shape[axis]
        rows = np.arange(n)
        cols = self.wrap_index(rows + offset, axis)
        return sp.csr_matrix((np.ones(n), (rows, cols)), shape=(n, n))

    def _lift(self, mat_1d, axis: int) -> sp.csr_matrix:
        mats = [sp.identity(n, format="csr") for n in self.shape]
        mats[axis] = mat_1d
        out = mats[0]
        for m in mats[1:]:
            out = sp.kron(out, m, format="csr")
        return out.tocsr()

    @cached_property
    def first(self) -> list[sp.csr_matrix]:
        """Centred first differences :math:`D_k`, one per axis."""
        out = []
        for k, h in enumerate(self.spacing):
            d = (self._shift_1d(k, 1) - self._shift_1d(k, -1)) / (2 * h)
            out.append(self._lift(d, k))
        return out

    @cached_property
    def second(self) -> dict[tuple[int, int], sp.csr_matrix]:
        """Second differences :math:`D_{kl}` for ``k <= l``."""
        out = {}
        for k, h in enumerate(self.spacing):
            d2 = (self._shift_1d(k, 1) - 2 * sp.identity(self.shape[k], format="csr")
                  + self._shift_1d(k, -1)) / h ** 2
            out[(k, k)] = self._lift(d2, k)
        for k in range(self.ndim):
            for l in range(k + 1, self.ndim):
                out[(k, l)] = (self.first[k] @ self.first[l]).tocsr()
        return out

    # -- spectral diagonalization -------------------------------------------------------------
    def symbol_1d(self, axis: int) -> np.ndarray:
        r"""Eigenvalues of the 1D second difference in the transform's ordering:
        :math:`(2\cos\omega - 2)/h^2`, :math:`\omega = 2\pi k/n` (FFT) or :math:`\pi k/n`
        (DCT-II)."""
        h = self.spacing[axis]
        return (2 * np.cos(self._omega(axis)) - 2) / h ** 2

    def _omega(self, axis: int) -> np.ndarray:
        n = self.shape[axis]
        k = np.arange(n)
        return 2 * np.pi * k / n if self.boundary == "periodic" else np.pi * k / n

    def forward(self, f: np.ndarray) -> np.ndarray:
        if self.boundary == "periodic":
            return sfft.fftn(f)
        return sfft.dctn(f, type=2, norm="ortho")

    def inverse(self, f_hat: np.ndarray) -> np.ndarray:
        if self.boundary == "periodic":
            return sfft.ifftn(f_hat).real
        return sfft.idctn(f_hat, type=2, norm="ortho")

    def broadcast(self, axis: int, values: np.ndarray) -> np.ndarray:
        shape = [1] * self.ndim
        shape[axis] = -1
        return values.reshape(shape)

    def laplacian_symbol(self, weights) -> np.ndarray:
        r""":math:`\sum_k w_k \lambda_k` on the transform grid (the symbol of
        :math:`\sum_k w_k D_{kk}`)."""
        out = np.zeros(self.shape)
        for k, w in enumerate(weights):
            out = out + w * self.broadcast(k, self.symbol_1d(k))
        return out


class CubicSpline:
    r"""Cubic B-spline interpolant of grid samples with its gradient, at arbitrary points.

    The coefficients solve the interpolation conditions by one transform per axis (the
    sampled B-spline's symbol :math:`(4 + 2\cos\omega)/6`), periodic or half-sample
    symmetric like the grid. Interpolation error :math:`O(h^4)` for smooth data (for the box,
    data whose even reflection is smooth; :math:`O(h^2)` otherwise).
    """

    def __init__(self, grid: CellGrid, values: np.ndarray):
        self.grid = grid
        coef_hat = grid.forward(np.asarray(values, dtype=np.float64))
        for k in range(grid.ndim):
            coef_hat = coef_hat / grid.broadcast(k, (4 + 2 * np.cos(grid._omega(k))) / 6)
        self.coef = grid.inverse(coef_hat).ravel()

    @staticmethod
    def _weights(t):
        w = [(1 - t) ** 3 / 6, (3 * t ** 3 - 6 * t ** 2 + 4) / 6,
             (-3 * t ** 3 + 3 * t ** 2 + 3 * t + 1) / 6, t ** 3 / 6]
        dw = [-(1 - t) ** 2 / 2, 1.5 * t ** 2 - 2 * t, -1.5 * t ** 2 + t + 0.5, t ** 2 / 2]
        d2w = [1 - t, 3 * t - 2, 1 - 3 * t, t]
        return w, dw, d2w

    def __call__(self, points: list[np.ndarray], hessian: bool = False):
        """Value and gradient (physical units) at ``points`` (one coordinate array per axis),
        and the Hessian (nested lists) when ``hessian``."""
        g = self.grid
        d = g.ndim
        base, w, dw, d2w = [], [], [], []
        for k in range(d):
            s = (points[k] - g.lower[k]) / g.spacing[k] - 0.5
            i0 = np.floor(s)
            wk, dwk, d2wk = self._weights(s - i0)
            base.append(i0.astype(np.int64))
            w.append(wk)
            dw.append([x / g.spacing[k] for x in dwk])
            d2w.append([x / g.spacing[k] ** 2 for x in d2wk])
        strides = [int(np.prod(g.shape[k + 1:])) for k in range(d)]
        idx = [[g.wrap_index(base[k] + o, k) * strides[k] for o in (-1, 0, 1, 2)]
               for k in range(d)]
        shape = points[0].shape
        value = np.zeros(shape)
        grad = [np.zeros(shape) for _ in range(d)]
        hess = [[np.zeros(shape) for _ in range(d)] for _ in range(d)]
        last = d - 1
        orders = 3 if hessian else 2
        tables = (w, dw, d2w)
        for combo in np.ndindex(*(4,) * last):
            # sums over the last axis first: S_r = sum_o c * (r-th derivative weight)[o]
            flat = 0
            for k in range(last):
                flat = flat + idx[k][combo[k]]
            sums = [np.zeros(shape) for _ in range(orders)]
            for o in range(4):
                c = self.coef[flat + idx[last][o]]
                for r in range(orders):
                    sums[r] += c * tables[r][last][o]

            def weight(axes_orders):  # product over the first axes, derivative orders given
                out = 1.0
                for k in range(last):
                    out = out * tables[axes_orders.get(k, 0)][k][combo[k]]
                return out

            value += sums[0] * weight({})
            grad[last] += sums[1] * weight({})
            for j in range(last):
                grad[j] += sums[0] * weight({j: 1})
            if hessian:
                hess[last][last] += sums[2] * weight({})
                for j in range(last):
                    hess[j][last] += sums[1] * weight({j: 1})
                    hess[j][j] += sums[0] * weight({j: 2})
                    for i in range(j):
                        hess[i][j] += sums[0] * weight({i: 1, j: 1})
        if not hessian:
            return value, grad
        for i in range(d):
            for j in range(i):
                hess[i][j] = hess[j][i]
        return value, grad, hess


def invert_gradient_map(grad_hess, y: list[np.ndarray], t: float, x0=None,
                        iterations: int = 50, tol: float = 1e-12):
    r"""Solve :math:`x + t\nabla\psi(x) = y` for ``x`` by Newton's method from ``x0`` (default
    ``y``), where ``grad_hess(x) -> (grad, hess)`` gives :math:`\nabla\psi` and
    :math:`D^2\psi` (the map is the gradient of the strictly convex :math:`|x|^2/2 + t\psi`
    when :math:`I + tD^2\psi > 0`). Returns ``x`` and ``grad_hess(x)``; raises
    ``ArithmeticError`` when it does not converge to ``tol``."""
    d = len(y)
    x = [yk.copy() for yk in (y if x0 is None else x0)]
    for _ in range(iterations):
        grad, hess = grad_hess(x)
        r = [x[k] + t * grad[k] - y[k] for k in range(d)]
        if max(float(np.max(np.abs(rk))) for rk in r) <= tol:
            return x, (grad, hess)
        m = np.moveaxis(np.array([[t * hess[i][j] + (i == j) for j in range(d)]
                                  for i in range(d)]), (0, 1), (-2, -1))
        step = np.linalg.solve(m, np.moveaxis(np.array(r), 0, -1)[..., None])[..., 0]
        x = [x[k] - step[..., k] for k in range(d)]
    raise ArithmeticError("the inverse of x + t grad psi(x) did not converge")
