r"""Entropy-Kantorovich potentials on grids, their interpolation, velocity and flow.

Convention (stated once, used everywhere, including the Gaussian closed forms): cost
:math:`c(x, y) = |x - y|^2 / 2`, regularization :math:`\varepsilon\,\mathrm{KL}(\pi\,|\,\mu\otimes\nu)`,

.. math::

    \mathrm{OT}_\varepsilon(\mu, \nu) = \min_{\pi \in \Pi(\mu, \nu)}
        \int \tfrac12 |x - y|^2\, d\pi + \varepsilon\, \mathrm{KL}(\pi \,|\, \mu \otimes \nu),

whose optimal plan is :math:`d\pi = e^{(f(x) + g(y) - c(x, y))/\varepsilon}\, d\mu\, d\nu`. The
reported ``entropic_cost`` is :math:`2\,\mathrm{OT}_\varepsilon = \min \int |x-y|^2 d\pi + 2\varepsilon
\mathrm{KL}`, which tends to :math:`W_2^2` as :math:`\varepsilon \to 0` (Janati et al. 2020 with
:math:`\sigma^2 = \varepsilon`). The Gibbs kernel :math:`e^{-c/\varepsilon}` is, up to the factor
:math:`(2\pi\varepsilon)^{d/2}`, the heat kernel :math:`k_\varepsilon` of variance
:math:`\varepsilon`: the reference process is a Brownian motion of variance :math:`\varepsilon t`.

Sinkhorn iterations run in the log domain, and the convolution with the Gibbs kernel on a
product grid is separable: one log-sum-exp per axis (Solomon et al. 2015 do the same in the
linear domain, which underflows for small :math:`\varepsilon`).

With Lebesgue potentials :math:`\varphi = f + \varepsilon\log\mu + c_0`,
:math:`\psi = g + \varepsilon\log\nu + c_0` (the constant :math:`c_0` splits the kernel's
normalization evenly), the Schrödinger-bridge marginal at time :math:`t` is

.. math::

    \rho_t = e^{(\varphi_t + \psi_t)/\varepsilon}, \quad
    \varphi_t = \varepsilon \log H_{t\varepsilon}\big[e^{\varphi/\varepsilon}\big], \quad
    \psi_t = \varepsilon \log H_{(1-t)\varepsilon}\big[e^{\psi/\varepsilon}\big],

(:math:`H_s` the heat semigroup of variance :math:`s`), so :math:`\rho_0 = \mu`,
:math:`\rho_1 = \nu`, and the continuity equation :math:`\partial_t\rho + \nabla\cdot(\rho v) = 0`
holds with the probability-flow velocity :math:`v_t = \nabla(\psi_t - \varphi_t)/2` (``phi``
belongs to the source). On the grid :math:`H_s` is the lattice-normalized Gaussian
convolution, which keeps :math:`\rho_0 = \mu`, :math:`\rho_1 = \nu` exact whatever ``h``.

Nothing here reads files or prints.
"""
from __future__ import annotations

import math

import numpy as np

from ...backends import NUMBA, Backend
from ...errors import NumericalError
from ...spacetime import SpaceTimeGrid

#: entries of the numpy log-sum-exp temporaries per chunk (memory bound ~ 32 MiB)
_CHUNK_ENTRIES = 1 << 22


def lse_rows_numpy(u, cost, xp=np):
    """``out[a, i] = log sum_j exp(u[a, j] - cost[i, j])`` (numpy/cupy reference)."""
    m, n = u.shape
    n_out = cost.shape[0]
    out = xp.empty((m, n_out))
    step = max(1, _CHUNK_ENTRIES // max(1, m * n))
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        for i0 in range(0, n_out, step):
            tmp = u[:, None, :] - cost[None, i0:i0 + step, :]
            top = tmp.max(axis=-1)
            safe = xp.where(xp.isfinite(top), top, 0.0)
            out[:, i0:i0 + step] = xp.log(xp.exp(tmp - safe[..., None]).sum(axis=-1)) + safe
    return out


def lattice_log_norm(h: float, s: float) -> float:
    r""":math:`\log \sum_{m\in\mathbb Z} e^{-m^2 h^2 / (2 s)}` (1 point when ``s = 0``)."""
    if s <= 0:
        return 0.0
    m_max = int(math.ceil(12.0 * math.sqrt(s) / h)) + 1
    m = np.arange(-m_max, m_max + 1)
    return float(np.log(np.sum(np.exp(-(m * h) ** 2 / (2 * s)))))


def _numba_rows():
    from ._kernels_numba import lse_rows_numba

    return lambda u, cost, xp: lse_rows_numba(u, cost)


class GaussianConvolution:
    """Separable log-domain Gaussian convolutions on the cell centres of a grid."""

    def __init__(self, grid: SpaceTimeGrid, backend: Backend):
        self.grid = grid
        self.backend = backend
        self.xp = backend.xp
        self._rows = backend.bind({NUMBA: _numba_rows}, default=lambda: lse_rows_numpy)
        self._centers = [grid.centers(k) for k in range(grid.ndim)]

    def axis_cost(self, axis: int, s: float, weight_power: int = 0):
        """``(x_i - x_j)^2 / (2 s)``, minus ``log((x_i - x_j)^2 / 2)`` when ``weight_power``."""
        x = self._centers[axis]
        sq = 0.5 * (x[:, None] - x[None, :]) ** 2
        cost = sq / s
        if weight_power:
            with np.errstate(divide="ignore"):
                cost = cost - np.log(sq)
        return self.xp.asarray(cost)

    def apply_axis(self, u, axis: int, cost):
        xp = self.xp
        moved = xp.moveaxis(u, axis, -1)
        shape = moved.shape
        out = self._rows(xp.ascontiguousarray(moved.reshape(-1, shape[-1])), cost, xp)
        return xp.moveaxis(out.reshape(shape[:-1] + (cost.shape[0],)), -1, axis)

    def log_convolve(self, logu, s: float, costs=None):
        r""":math:`\log \sum_j e^{u_j - |x_i - x_j|^2/(2s)}` over the grid (identity at ``s = 0``)."""
        if s <= 0 and costs is None:
            return logu
        out = logu
        for axis in range(self.grid.ndim):
            cost = costs[axis] if costs is not None else self.axis_cost(axis, s)
            out = self.apply_axis(out, axis, cost)
        return out

    def log_heat(self, logu, s: float):
        r"""Log of the lattice-normalized heat semigroup :math:`H_s[e^u]` (weights sum to 1)."""
        if s <= 0:
            return logu
        norm = sum(lattice_log_norm(h, s) for h in self.grid.spacing)
        return self.log_convolve(logu, s) - norm


def _safe_log(a, xp=np):
    with np.errstate(divide="ignore"):
        return xp.log(a)


class EntropicSolver:
    r"""Log-domain Sinkhorn for :math:`\mathrm{OT}_\varepsilon` between two grid densities.

    Parameters
    ----------
    mu, nu : ndarray
        Densities at the cell centres (host arrays), non-negative, unit mass
        :math:`\sum \rho\,\Delta x = 1`.
    grid : SpaceTimeGrid
        The box, its cells, and ``nt`` time levels of the interpolation.
    epsilon : float
        Regularization :math:`\varepsilon` (length squared).
    tol : float
        Stop when the :math:`L^1` error of the second marginal, before its update, is below tol.
    max_iterations : int

    Notes
    -----
    One :meth:`step` is the pair of updates

    .. math::

        f_i = -\varepsilon \log \sum_j e^{(g_j - c_{ij})/\varepsilon} \nu_j \Delta x, \qquad
        g_j = -\varepsilon \log \sum_i e^{(f_i - c_{ij})/\varepsilon} \mu_i \Delta x,

    each a separable log-sum-exp convolution. After the second update the plan has the exact
    second marginal and unit mass, so the dual value :math:`\sum f\mu\Delta x + \sum g\nu\Delta x`
    equals the primal one at the fixed point.
    """

    def __init__(self, mu, nu, grid: SpaceTimeGrid, backend: Backend, *, epsilon: float,
                 tol: float = 1e-9, max_iterations: int = 5000):
        mu, nu = grid.marginals(mu, nu)
        self.grid = grid
        self.backend = backend
        self.xp = xp = backend.xp
        self.epsilon = float(epsilon)
        self.tol = float(tol)
        self.max_iterations = int(max_iterations)
        self.conv = GaussianConvolution(grid, backend)
        self._costs = [self.conv.axis_cost(k, self.epsilon) for k in range(grid.ndim)]
        self._log_dx = math.log(grid.cell_volume)
        self.mu = xp.asarray(mu)
        self.nu = xp.asarray(nu)
        self.log_mu = _safe_log(self.mu, xp)
        self.log_nu = _safe_log(self.nu, xp)
        self.f = xp.zeros(grid.shape)
        self.g = xp.zeros(grid.shape)
        self.iteration = 0
        self.converged = False
        self.marginal_error = float("inf")
        self._post = None

    # -- iteration ------------------------------------------------------------------------
    def _c_transform(self, other, log_other):
        """``-eps log sum_j exp((other_j - c_ij)/eps) other_density_j dx``."""
        eps = self.epsilon
        return -eps * (self.conv.log_convolve(other / eps + log_other, eps, self._costs)
                       + self._log_dx)

    def step(self) -> dict[str, float]:
        xp = self.xp
        eps = self.epsilon
        self.f = self._c_transform(self.g, self.log_nu)
        g_new = self._c_transform(self.f, self.log_mu)
        # second marginal of the plan (f, g) before the update: nu * exp((g - g_new)/eps)
        with np.errstate(over="ignore", invalid="ignore"):
            marg = self.nu * xp.exp((self.g - g_new) / eps)
            err = float(xp.sum(xp.abs(marg - self.nu))) * self.grid.cell_volume
        self.g = g_new
        self.iteration += 1
        self._post = None
        cost = self.entropic_cost()
        if not (math.isfinite(err) and math.isfinite(cost) and bool(xp.isfinite(self.f).all())
                and bool(xp.isfinite(self.g).all())):
            raise NumericalError(f"Sinkhorn iteration {self.iteration} produced non-finite "
                                 f"potentials (marginal error {err}, cost {cost})")
        self.marginal_error = err
        self.converged = err < self.tol
        return {"marginal_error": err, "entropic_cost": cost}

    @property
    def finished(self) -> bool:
        return self.converged or self.iteration >= self.max_iterations

    # -- values -----------------------------------------------------------------------------
    def entropic_cost(self) -> float:
        r""":math:`2\,\mathrm{OT}_\varepsilon` from the dual: :math:`2(\int f d\mu + \int g d\nu)`."""
        xp = self.xp
        return 2.0 * float(xp.sum(self.f * self.mu) + xp.sum(self.g * self.nu)) \
            * self.grid.cell_volume

    def transport_cost(self) -> float:
        r""":math:`\int |x - y|^2 d\pi` of the current plan (one weighted convolution per axis)."""
        xp, eps = self.xp, self.epsilon
        log_b = self.g / eps + self.log_nu
        log_a = self.f / eps + self.log_mu
        total = 0.0
        for axis in range(self.grid.ndim):
            costs = list(self._costs)
            costs[axis] = self.conv.axis_cost(axis, eps, weight_power=1)
            conv = self.conv.log_convolve(log_b, eps, costs)
            with np.errstate(invalid="ignore"):
                terms = xp.where(xp.isfinite(log_a), xp.exp(log_a + conv + 2 * self._log_dx),
                                 0.0)
            total += float(xp.sum(terms))
        return 2.0 * total

    def symmetric_cost(self, which: str, max_iterations: int = 2000, tol: float = 1e-11) -> float:
        r""":math:`2\,\mathrm{OT}_\varepsilon(\mu, \mu)` (``which = "mu"``) or of ``nu``, by the
        averaged symmetric Sinkhorn iteration :math:`f \leftarrow (f + T(f))/2`."""
        xp = self.xp
        dens, log_d = (self.mu, self.log_mu) if which == "mu" else (self.nu, self.log_nu)
        f = xp.zeros(self.grid.shape)
        for _ in range(max_iterations):
            f_new = 0.5 * (f + self._c_transform(f, log_d))
            change = float(xp.max(xp.abs(f_new - f)))
            f = f_new
            if change < tol * max(1.0, self.epsilon):
                break
        return 4.0 * float(xp.sum(f * dens)) * self.grid.cell_volume

    def sinkhorn_divergence(self) -> float:
        r"""Debiased :math:`S_\varepsilon = \mathrm{OT}_\varepsilon(\mu,\nu) - \frac12\mathrm{OT}_\varepsilon(\mu,\mu)
        - \frac12\mathrm{OT}_\varepsilon(\nu,\nu)` (W2 units): :math:`W_2^2 + O(\varepsilon^2)` for smooth densities."""
        return self.entropic_cost() - 0.5 * self.symmetric_cost("mu") \
            - 0.5 * self.symmetric_cost("nu")

    # -- interpolation, velocity ------------------------------------------------------------------
    def log_potentials_at(self, t: float):
        r"""(:math:`\varphi_t/\varepsilon`, :math:`\psi_t/\varepsilon`) on the grid."""
        eps = self.epsilon
        half = 0.5 * (self._log_dx + sum(lattice_log_norm(h, eps) for h in self.grid.spacing))
        la = self.conv.log_heat(self.f / eps + self.log_mu, t * eps) + half
        lb = self.conv.log_heat(self.g / eps + self.log_nu, (1.0 - t) * eps) + half
        return la, lb

    def fields_at(self, t: float):
        """Host arrays (rho, v (d, ...), div v) at time ``t``; v = 0 where rho underflows to 0."""
        la, lb = self.log_potentials_at(t)
        to_np = self.backend.to_numpy
        la, lb = to_np(la), to_np(lb)
        with np.errstate(invalid="ignore", over="ignore"):
            rho = np.exp(la + lb)
            w = 0.5 * self.epsilon * (lb - la)
        ok = np.isfinite(w)
        w = np.where(ok, w, 0.0)
        v = np.stack([np.gradient(w, h, axis=k, edge_order=2)
                      for k, h in enumerate(self.grid.spacing)])
        div = sum(_second_difference(w, h, k) for k, h in enumerate(self.grid.spacing))
        bad = ~ok
        for k in range(self.grid.ndim):  # stencils touching an undefined potential
            bad = bad | ~np.roll(ok, 1, axis=k) | ~np.roll(ok, -1, axis=k)
        v[:, bad] = 0.0
        div = np.where(bad, 0.0, div)
        return rho, v, div

    def interpolation(self):
        """rho, v, div v at the ``nt + 1`` time faces and at the ``nt`` midpoints (cached)."""
        if self._post is None:
            g = self.grid
            times = np.arange(2 * g.nt + 1) / (2 * g.nt)
            self._post = [self.fields_at(float(t)) for t in times]
        return self._post

    # -- restart --------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        to_np = self.backend.to_numpy
        return {"f": to_np(self.f), "g": to_np(self.g), "iteration": np.int64(self.iteration),
                "marginal_error": np.float64(self.marginal_error)}

    def load_state(self, state) -> None:
        xp = self.xp
        self.f = xp.asarray(np.asarray(state["f"], dtype=np.float64))
        self.g = xp.asarray(np.asarray(state["g"], dtype=np.float64))
        self.iteration = int(state["iteration"])
        self.marginal_error = float(state["marginal_error"])
        self.converged = self.marginal_error < self.tol
        self._post = None


def _second_difference(w, h, axis):
    """Three-point second difference along ``axis``; the edges copy their neighbour."""
    out = np.zeros_like(w)
    n = w.shape[axis]
    if n < 3:
        return out
    sl = lambda a, b: tuple(slice(a, b) if k == axis else slice(None) for k in range(w.ndim))  # noqa: E731
    out[sl(1, n - 1)] = (w[sl(2, n)] - 2 * w[sl(1, n - 1)] + w[sl(0, n - 2)]) / h ** 2
    out[sl(0, 1)] = out[sl(1, 2)]
    out[sl(n - 1, n)] = out[sl(n - 2, n - 1)]
    return out


# ------------------------------------------------------------------------------- the flow (CNF)
def interpolate(field, points, grid: SpaceTimeGrid):
    """Multilinear interpolation of ``field`` (``(..., *grid.shape)``) at ``points`` (N, d);
    points outside the cell centres' hull take the value of the nearest face of it."""
    d = grid.ndim
    idx, wts = [], []
    for k in range(d):
        u = (points[:, k] - grid.centers(k)[0]) / grid.spacing[k]
        i0 = np.clip(np.floor(u).astype(np.int64), 0, grid.shape[k] - 2)
        idx.append(i0)
        wts.append(np.clip(u - i0, 0.0, 1.0))
    lead = field.shape[:-d]
    out = np.zeros(lead + (len(points),))
    for corner in range(1 << d):
        weight = np.ones(len(points))
        index = []
        for k in range(d):
            bit = (corner >> k) & 1
            weight = weight * (wts[k] if bit else 1.0 - wts[k])
            index.append(idx[k] + bit)
        out += field[(Ellipsis,) + tuple(index)] * weight
    return out


def integrate_flow(levels, points, logp, grid: SpaceTimeGrid, *, backward: bool = False):
    r"""RK4 for :math:`\dot x = v_t(x)`, :math:`\dot\ell = -\nabla\cdot v_t(x)` on the levels of
    :meth:`EntropicSolver.interpolation` (stage times are levels: no interpolation in time).

    Forward from t = 0 to 1, or ``backward`` from 1 to 0 (then ``logp`` receives
    :math:`+\int_0^1 \nabla\cdot v\,dt`, so that ``log rho_0(x_0) - result`` is the model's
    log-density at the starting points).
    """
    nt = (len(levels) - 1) // 2
    dt = 1.0 / nt
    x = np.array(points, dtype=np.float64)
    ell = np.array(logp, dtype=np.float64)
    sign = -1.0 if backward else 1.0

    def rhs(level, pos):
        _, v, div = levels[level]
        return sign * interpolate(v, pos, grid).T, -sign * interpolate(div, pos, grid)

    for n in range(nt):
        j0 = 2 * (nt - n) if backward else 2 * n
        j1 = j0 - 1 if backward else j0 + 1
        j2 = j0 - 2 if backward else j0 + 2
        k1x, k1l = rhs(j0, x)
        k2x, k2l = rhs(j1, x + 0.5 * dt * k1x)
        k3x, k3l = rhs(j1, x + 0.5 * dt * k2x)
        k4x, k4l = rhs(j2, x + dt * k3x)
        x = x + dt / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)
        ell = ell + dt / 6 * (k1l + 2 * k2l + 2 * k3l + k4l)
        if not np.isfinite(x).all():
            raise NumericalError(f"flow integration step {n + 1} produced non-finite positions")
    return x, ell


# ------------------------------------------------------------------------------- samples
def sinkhorn_samples(x, y, epsilon: float, *, a=None, b=None, tol: float = 1e-9,
                     max_iterations: int = 10000):
    r"""Log-domain Sinkhorn between two weighted point clouds (same convention as the grid).

    Returns ``(f, g, entropic_cost, iterations)``; ``entropic_cost`` is
    :math:`2\,\mathrm{OT}_\varepsilon` (W2 units). Dense ``(N, M)`` cost: meant for a few
    thousand points.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = np.full(len(x), 1.0 / len(x)) if a is None else np.asarray(a, float)
    b = np.full(len(y), 1.0 / len(y)) if b is None else np.asarray(b, float)
    cost = 0.5 * ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / epsilon
    la, lb = np.log(a), np.log(b)
    f, g = np.zeros(len(x)), np.zeros(len(y))
    it = 0
    for it in range(1, max_iterations + 1):
        f = -epsilon * _lse(g / epsilon + lb - cost, axis=1)
        g_new = -epsilon * _lse(f[:, None] / epsilon + la[:, None] - cost, axis=0)
        err = np.abs(b * np.expm1((g - g_new) / epsilon)).sum()
        g = g_new
        if not np.isfinite(err):
            raise NumericalError(f"sample Sinkhorn iteration {it} produced non-finite values")
        if err < tol:
            break
    return f, g, 2.0 * float(f @ a + g @ b), it


def _lse(z, axis):
    top = z.max(axis=axis, keepdims=True)
    return (np.log(np.exp(z - top).sum(axis=axis, keepdims=True)) + top).squeeze(axis)


def sample_velocity(z, t: float, x, y, f, g, epsilon: float, a=None, b=None):
    r"""Velocity :math:`v_t(z) = \frac12\big[(\bar y(z) - z)/(1-t) - (\bar x(z) - z)/t\big]` of the
    sample-based bridge, :math:`\bar x` the mean of :math:`x_j` under weights
    :math:`\propto a_j e^{f_j/\varepsilon - |z - x_j|^2/(2t\varepsilon)}` (``0 < t < 1``)."""
    a = np.full(len(x), 1.0 / len(x)) if a is None else np.asarray(a, float)
    b = np.full(len(y), 1.0 / len(y)) if b is None else np.asarray(b, float)

    def mean(pts, pot, w, s):
        logits = pot / epsilon + np.log(w) - 0.5 * ((z[:, None, :] - pts[None]) ** 2).sum(-1) / s
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p @ pts

    xbar = mean(x, f, a, t * epsilon)
    ybar = mean(y, g, b, (1 - t) * epsilon)
    return 0.5 * ((ybar - z) / (1 - t) - (xbar - z) / t)
