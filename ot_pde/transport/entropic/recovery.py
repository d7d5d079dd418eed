r"""The flow recovered from learned Entropy-Kantorovich potentials (:mod:`.neural`).

With the plan potentials :math:`\varphi, \psi` (plan density :math:`e^{(\varphi(x) + \psi(y) - |x-y|^2/2)/\varepsilon}`)
the entropic interpolation is :math:`\rho_t = e^{(\varphi_t + \psi_t)/\varepsilon}`,

.. math::

    \varphi_t = \varepsilon\log H_{t\varepsilon}[e^{\varphi/\varepsilon}] + c_0, \quad
    \psi_t = \varepsilon\log H_{(1-t)\varepsilon}[e^{\psi/\varepsilon}] + c_0, \quad
    c_0 = \tfrac{\varepsilon d}{4}\log 2\pi\varepsilon,

(:math:`H_s` the heat semigroup of variance :math:`s`), moved by
:math:`v_t = \nabla(\psi_t - \varphi_t)/2` (see :mod:`~ot_pde.transport.entropic.solver`; ``phi`` is the source potential).

Heat smoothing of :math:`\varphi = \varphi_2 + h` (quadratic plus network): the Gaussian factor
is integrated in closed form, the network by Monte Carlo over ``K`` fixed draws,

.. math::

    H_s[e^{\varphi/\varepsilon}](z) = Z_2(z)\;\mathbb E_{x \sim G_z} e^{h(x)/\varepsilon}
    \approx Z_2(z)\,\frac1K\sum_k e^{h(x_k(z))/\varepsilon},\qquad
    x_k(z) = Q^{-1}\big(b/\varepsilon + z/s\big) + Q^{-1/2}\xi_k,

:math:`G_z \propto e^{\varphi_2/\varepsilon}k_s(\cdot - z)` with precision :math:`Q = I/s - S/\varepsilon`.
The same draws :math:`\xi_k` serve every point and time, so the estimate is a smooth function of
:math:`z` whose gradient and Laplacian are computed exactly (with :math:`A = Q^{-1}/s`,
:math:`w_k` the softmax weights of :math:`h(x_k)/\varepsilon`, :math:`\bar g = \sum w_k\nabla h(x_k)`):

.. math::

    \nabla\log H = \frac{\bar x_2 - z}{s} + \frac{A\bar g}{\varepsilon}, \quad
    \Delta\log H = \frac{\mathrm{tr}\,Q^{-1}}{s^2} - \frac ds
      + \frac1\varepsilon\sum_k w_k\,\mathrm{tr}(A\nabla^2h_kA)
      + \frac1{\varepsilon^2}\Big(\sum_k w_k|A\nabla h_k|^2 - |A\bar g|^2\Big).

Without a network the smoothing is exact. The flow (RK4, ``nt`` steps) integrates
:math:`\dot x = v_t`, :math:`\dot\ell = -\nabla\cdot v_t`. Nothing here reads files or prints.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import NumericalError


class SmoothedPotential:
    r""":math:`\varepsilon\log H_s[e^{\varphi/\varepsilon}] + c_0` of a
    :class:`~.neural.QuadraticNetwork`, its gradient and Laplacian."""

    def __init__(self, potential, epsilon: float, xi):
        self.pot = potential
        self.eps = float(epsilon)
        self.xi = np.asarray(xi, dtype=np.float64)  # (K, d), shared by all points
        d = potential.dim
        self.c0 = 0.25 * self.eps * d * math.log(2 * math.pi * self.eps)

    def _gaussian(self, s):
        sq, b, c = self.pot.quadratic()
        d = self.pot.dim
        w, vecs = np.linalg.eigh(np.eye(d) / s - sq / self.eps)
        if w.min() <= 0:
            raise NumericalError(f"heat smoothing at variance {s:g}: the potential's quadratic "
                                 "part grows faster than the heat kernel decays (S >= I)")
        return (vecs / w) @ vecs.T, (vecs / np.sqrt(w)) @ vecs.T, float(np.log(w).sum()), b, c

    def evaluate(self, z, s: float):
        """(value, gradient, Laplacian) at points ``z`` (N, d) for heat variance ``s``."""
        eps = self.eps
        if s <= 0:
            v, g, lap = self.pot.value_grad_laplacian(z)
            return v + self.c0, g, lap
        d = self.pot.dim
        qinv, qisqrt, logdet_q, b, c = self._gaussian(s)
        u = b / eps + z / s
        mean = u @ qinv
        log_h = (-0.5 * d * math.log(s) - 0.5 * logdet_q + c / eps
                 - 0.5 * (z * z).sum(1) / s + 0.5 * (u * mean).sum(1))
        grad = (mean - z) / s
        lap = np.full(len(z), float(np.trace(qinv)) / s ** 2 - d / s)
        if self.pot.net is not None:
            n, k = len(z), len(self.xi)
            x = (mean[:, None, :] + (self.xi @ qisqrt)[None]).reshape(n * k, d)
            a = qinv / s
            hv, hg, tr_aha = self.pot.net_value_grad_trace(x, a)
            hv = hv.reshape(n, k) / eps
            top = hv.max(axis=1, keepdims=True)
            w = np.exp(hv - top)
            tot = w.sum(axis=1, keepdims=True)
            log_h = log_h + (np.log(tot / k) + top)[:, 0]
            w = (w / tot).reshape(n * k)
            ag = (hg @ a).reshape(n, k, d)          # A grad h_k (A symmetric)
            wk = w.reshape(n, k, 1)
            agbar = (wk * ag).sum(1)
            grad = grad + agbar / eps
            lap = lap + (w * tr_aha).reshape(n, k).sum(1) / eps \
                + ((wk * ag * ag).sum((1, 2)) - (agbar * agbar).sum(1)) / eps ** 2
        return eps * log_h + self.c0, eps * grad, eps * lap


class EntropicFlow:
    r"""Velocity, divergence and log-density of the entropic interpolation of a learned pair."""

    def __init__(self, phi, psi, epsilon: float, *, draws: int, seed: int):
        xi = np.random.default_rng(seed).standard_normal((draws, phi.dim))
        self.phi_t = SmoothedPotential(phi, epsilon, xi)
        self.psi_t = SmoothedPotential(psi, epsilon, xi)
        self.eps = float(epsilon)

    def log_rho(self, z, t: float):
        a = self.phi_t.evaluate(z, t * self.eps)[0]
        b = self.psi_t.evaluate(z, (1 - t) * self.eps)[0]
        return (a + b) / self.eps

    def velocity(self, z, t: float):
        """(v_t, div v_t) at ``z`` (N, d)."""
        _, ga, la = self.phi_t.evaluate(z, t * self.eps)
        _, gb, lb = self.psi_t.evaluate(z, (1 - t) * self.eps)
        return 0.5 * (gb - ga), 0.5 * (lb - la)

    def integrate(self, x, nt: int, *, backward: bool = False, chunk: int = 4096):
        r"""RK4 from t = 0 to 1 (or 1 to 0 with ``backward``); returns the end points and
        :math:`\int \nabla\cdot v_t\,dt` along each path (signed so that
        ``log rho_end = log rho_start - result`` in both directions)."""
        out_x, out_l = [], []
        for lo in range(0, len(x), chunk):
            xx, ll = self._integrate(np.array(x[lo:lo + chunk], dtype=np.float64), nt, backward)
            out_x.append(xx)
            out_l.append(ll)
        return np.concatenate(out_x), np.concatenate(out_l)

    def _integrate(self, x, nt, backward):
        dt = 1.0 / nt
        sign = -1.0 if backward else 1.0
        div_int = np.zeros(len(x))

        def rhs(t, pos):
            v, div = self.velocity(pos, t)
            return sign * v, sign * div

        for n in range(nt):
            t0 = 1.0 - n * dt if backward else n * dt
            th, t1 = t0 + sign * 0.5 * dt, t0 + sign * dt
            k1, d1 = rhs(t0, x)
            k2, d2 = rhs(th, x + 0.5 * dt * k1)
            k3, d3 = rhs(th, x + 0.5 * dt * k2)
            k4, d4 = rhs(t1, x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            div_int += dt / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
            if not np.isfinite(x).all():
                raise NumericalError(f"flow integration step {n + 1} produced non-finite "
                                     "positions")
        return x, div_int

    def log_density_at_0(self, x, target, nt: int):
        r"""Model log-density at t = 0 of the CNF from the target: :math:`\log\nu(x_1) +
        \int_0^1\nabla\cdot v_t(x_t)\,dt` along the forward path from ``x``."""
        x1, div_int = self.integrate(x, nt)
        return target.log_prob(x1) + div_int

    def sample(self, y, target, nt: int):
        """Target samples ``y`` pushed back to t = 0, and their model log-densities."""
        x0, div_int = self.integrate(y, nt, backward=True)
        return x0, target.log_prob(y) - div_int
