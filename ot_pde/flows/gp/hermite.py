r"""Euler equations of the Gaussian measure in 2D, Hermite-Galerkin, with particles and adjoint.

**Equations.** With :math:`\gamma` the standard Gaussian density on :math:`\mathbb R^2`, a
velocity :math:`v` with :math:`\operatorname{div}(\gamma v) = 0` is :math:`v = \gamma^{-1}
\nabla^\perp\Psi` (:math:`\nabla^\perp = (-\partial_y, \partial_x)`). The Euler equations of
the measure :math:`\gamma` (geodesics of the group of :math:`\gamma`-preserving maps) are the
*lake equations* with depth :math:`\gamma`: the potential vorticity :math:`q = \omega/\gamma`,
:math:`\omega = \operatorname{curl} v = \operatorname{div}(\gamma^{-1}\nabla\Psi)`, is carried by
the flow, equivalently :math:`\partial_t\omega + \operatorname{div}(\omega v) = 0`.

**Hermite form.** Write :math:`\Psi = \gamma\chi`. Then :math:`v = \nabla^\perp\chi + \chi\,(y,
-x)` and :math:`\omega = (\Delta - x\cdot\nabla - 2)\chi`: the Ornstein-Uhlenbeck operator
minus 2, diagonal on the Hermite polynomials :math:`He_m(x)He_n(y)` (eigenvalue
:math:`-(m+n+2)`). With :math:`\chi = \sum_{m+n\le K} a_{mn} He_m(x) He_n(y)` the velocity is a
polynomial field, and by :math:`He_{k+1} = xHe_k - kHe_{k-1}` each mode is simply

.. math:: v_{mn} = \bigl(He_m(x) He_{n+1}(y),\; -He_{m+1}(x) He_n(y)\bigr),

exactly :math:`\gamma`-preserving whatever the coefficients. The kinetic energy is diagonal,
:math:`E = \tfrac12\int\gamma|v|^2 = \tfrac12\sum (m+n+2)\,m!\,n!\,a_{mn}^2`; the solver works
in the energy-orthonormal coordinates :math:`\theta_p = a_p\sqrt{(|p|+2)\,m!\,n!}`
(:math:`E = |\theta|^2/2`).

**Galerkin truncation.** :math:`\omega` stays in the polynomials of degree :math:`\le K`; the
vorticity equation is tested against :math:`\gamma He_q` (the space of :math:`\Psi`), i.e.
projected in :math:`L^2(\gamma)`: :math:`\dot\theta_q = \sum_{pr} C_{qpr}\theta_p\theta_r` with
:math:`C` antisymmetric in :math:`(q, r)`, so the truncated system conserves :math:`E`
exactly in continuous time. :math:`C` is computed exactly by tensor Gauss-Hermite quadrature
(the integrand is :math:`\gamma` times a polynomial of degree :math:`\le 3K+2` per axis). The
dropped part :math:`(I - P_K)\operatorname{div}(\omega v)` is the *Euler residual*
(:func:`HermiteEuler.euler_residual`): zero for an exact Euler solution (e.g. every radial
steady state :math:`v = f(|x|)x^\perp`).

**Time stepping.** Classical RK4 on the coupled system (coefficients, particles): the
particles :math:`\dot X = v(X, t)` see the same stages as the coefficients. The discrete
adjoint of those RK4 steps (:meth:`HermiteEuler.adjoint`) gives exact gradients of any
function of the final particle positions with respect to the initial coefficients. Along
:meth:`HermiteEuler.integrate` with ``logdet=True`` the log-Jacobian :math:`\int
\operatorname{div} v\,dt` is accumulated (exactly :math:`\int x\cdot v\,dt` in continuous
time, so that the Gaussian log-density is preserved; the discrete defect is the integrator's).
"""
from __future__ import annotations

import math

import numpy as np


def hermite_table(x: np.ndarray, kmax: int) -> np.ndarray:
    """``H[:, k + 1] = He_k(x)`` for ``k = 0..kmax`` and ``H[:, 0] = 0`` (``He_{-1}``)."""
    h = np.zeros((x.shape[0], kmax + 2))
    h[:, 1] = 1.0
    if kmax >= 1:
        h[:, 2] = x
    for k in range(1, kmax):
        h[:, k + 2] = x * h[:, k + 1] - k * h[:, k]
    return h


def modes(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-indices ``(m, n)`` with ``m + n <= degree``, by total degree then ``m``."""
    ms, ns = [], []
    for total in range(degree + 1):
        for m in range(total, -1, -1):
            ms.append(m)
            ns.append(total - m)
    return np.array(ms, dtype=np.int64), np.array(ns, dtype=np.int64)


def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite rule for the standard Gaussian in 2D: nodes (n^2, 2), weights."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    X, Y = np.meshgrid(x, x, indexing="ij")
    W = np.outer(w, w)
    return np.stack([X.ravel(), Y.ravel()], axis=1), W.ravel()


def radial_taper(x: np.ndarray, r1: float, r2: float):
    """rho, grad rho (M, d), Hessian (M, d, d) of the quintic radial cutoff (1 inside r1, 0
    beyond r2)."""
    d = x.shape[1]
    r = np.sqrt(np.sum(x * x, axis=1))
    w = r2 - r1
    t = np.clip((r - r1) / w, 0.0, 1.0)
    rho = 1.0 - t ** 3 * (10.0 - 15.0 * t + 6.0 * t * t)
    d1 = -30.0 * t * t * (1.0 - t) ** 2 / w
    d2 = -60.0 * t * (1.0 - t) * (1.0 - 2.0 * t) / (w * w)
    rs = np.where(r > 0.0, r, 1.0)
    e = x / rs[:, None]
    grad = d1[:, None] * e
    outer = e[:, :, None] * e[:, None, :]
    hess = d2[:, None, None] * outer + (d1 / rs)[:, None, None] * (np.eye(d) - outer)
    return rho, grad, hess


class HermiteEuler:
    r"""The truncated Gaussian Euler system of total degree ``degree`` (see module notes).

    Parameters
    ----------
    degree : int
        :math:`K`, the total degree of :math:`\chi` (``P = (K+1)(K+2)/2`` coefficients).
    steps : int
        RK4 steps on :math:`t \in [0, 1]`.
    taper : (r1, r2), optional
        Radial cutoff of the *particle* velocity (see module notes): :math:`\Psi =
        \gamma\chi\rho(|x|)`, :math:`\rho = 1` for :math:`|x| \le r_1`, 0 beyond
        :math:`r_2` (quintic smoothstep), so the field stays exactly
        :math:`\gamma`-preserving and bounded.
    substeps : int
        0: RK4 on the coupled system (coefficients and particles share the stages). ``m >=
        1``: the coefficient ODE (stiff at higher energy and degree) is integrated alone by RK4
        with ``2 m`` steps per particle step, and the particles' RK4 reads the coefficients at
        the step's start, middle and end from that finer path (see module notes).
    """

    def __init__(self, degree: int, steps: int, t_final: float = 1.0, taper=None,
                 substeps: int = 0):
        self.degree = K = int(degree)
        self.substeps = int(substeps)
        self.taper = None if taper is None else (float(taper[0]), float(taper[1]))
        self.steps = int(steps)
        self.dt = float(t_final) / self.steps
        self.m, self.n = modes(K)
        self.size = self.m.size
        fact = np.array([math.factorial(k) for k in range(K + 2)], dtype=np.float64)
        self.norm2 = fact[self.m] * fact[self.n]             # ||He_m He_n||^2 in L^2(gamma)
        self.lam = -(self.m + self.n + 2).astype(np.float64)   # eigenvalue of OU - 2
        self.scale = 1.0 / np.sqrt(-self.lam * self.norm2)     # a = scale * theta
        nodes, weights = _gauss_hermite((3 * K + 3) // 2 + 1)
        om = self._omega_basis(nodes)
        bx, by = self._velocity_basis(nodes)
        # C[q, p, r] = -s_q s_p s_r sum w Omega_p (Bx_r By_q - By_r Bx_q)
        wom = weights[:, None] * om
        c = (np.einsum("ip,ir,iq->qpr", wom, bx, by)
             - np.einsum("ip,ir,iq->qpr", wom, by, bx))
        s = self.scale
        self.C = -c * s[:, None, None] * s[None, :, None] * s[None, None, :]
        self.Csym = self.C + self.C.transpose(0, 2, 1)
        self._fine = _gauss_hermite(2 * K + 4)

    # -- basis evaluations ------------------------------------------------------------------
    def _omega_basis(self, x):
        hx, hy = hermite_table(x[:, 0], self.degree), hermite_table(x[:, 1], self.degree)
        return self.lam * hx[:, self.m + 1] * hy[:, self.n + 1]

    def _velocity_basis(self, x, tables=None):
        """``Bx, By`` (M, P): the velocity of mode p at the points (unscaled a-coordinates)."""
        hx, hy = tables or (hermite_table(x[:, 0], self.degree + 1),
                            hermite_table(x[:, 1], self.degree + 1))
        m1, n1 = self.m + 1, self.n + 1
        return hx[:, m1] * hy[:, n1 + 1], -hx[:, m1 + 1] * hy[:, n1]

    def velocity(self, theta, x, gradient=False):
        r"""Velocity ``(M, 2)`` at points ``x`` for coefficients ``theta``; with ``gradient``
        also ``J[:, i, j] = dv_i/dx_j`` ``(M, 2, 2)`` and the per-mode bases ``(Bx, By)``
        (velocity of unit theta_p). With a taper the field is
        :math:`\gamma^{-1}\nabla^\perp(\gamma\chi\rho) = \rho v + \chi\nabla^\perp\rho`."""
        hx = hermite_table(x[:, 0], self.degree + 1)
        hy = hermite_table(x[:, 1], self.degree + 1)
        a = self.scale * theta
        m1, n1 = self.m + 1, self.n + 1
        bx, by = hx[:, m1] * hy[:, n1 + 1], -hx[:, m1 + 1] * hy[:, n1]
        if self.taper is None and not gradient:
            return np.stack([bx @ a, by @ a], axis=1)
        v0 = np.stack([bx @ a, by @ a], axis=1)
        m, n = self.m.astype(np.float64), self.n.astype(np.float64)
        jac = np.empty((x.shape[0], 2, 2))
        jac[:, 0, 0] = (hx[:, m1 - 1] * hy[:, n1 + 1]) @ (m * a)
        jac[:, 0, 1] = (hx[:, m1] * hy[:, n1]) @ ((n + 1) * a)
        jac[:, 1, 0] = -(hx[:, m1] * hy[:, n1]) @ ((m + 1) * a)
        jac[:, 1, 1] = -(hx[:, m1 + 1] * hy[:, n1 - 1]) @ (n * a)
        if self.taper is None:
            return v0, jac, (bx * self.scale, by * self.scale)
        rho, grho, hrho = radial_taper(x, *self.taper)
        perp = np.stack([-grho[:, 1], grho[:, 0]], axis=1)           # grad^perp rho
        chib = hx[:, m1] * hy[:, n1]
        chi = chib @ a
        v = rho[:, None] * v0 + chi[:, None] * perp
        if not gradient:
            return v
        gchi = np.stack([(hx[:, m1 - 1] * hy[:, n1]) @ (m * a),
                         (hx[:, m1] * hy[:, n1 - 1]) @ (n * a)], axis=1)
        rh = np.stack([-hrho[:, 1, :], hrho[:, 0, :]], axis=1)        # d(grad^perp rho)/dx
        jac = (rho[:, None, None] * jac + v0[:, :, None] * grho[:, None, :]
               + perp[:, :, None] * gchi[:, None, :] + chi[:, None, None] * rh)
        bx = rho[:, None] * bx + chib * perp[:, :1]
        by = rho[:, None] * by + chib * perp[:, 1:]
        return v, jac, (bx * self.scale, by * self.scale)

    def rhs(self, theta):
        """:math:`\\dot\\theta` of the truncated Euler system."""
        return np.einsum("qpr,p,r->q", self.C, theta, theta)

    def energy(self, theta) -> float:
        return 0.5 * float(theta @ theta)

    # -- time stepping ----------------------------------------------------------------------
    def _f(self, theta, x, logdet):
        if logdet:
            v, jac, _ = self.velocity(theta, x, gradient=True)
            return self.rhs(theta), v, jac[:, 0, 0] + jac[:, 1, 1]
        return self.rhs(theta), self.velocity(theta, x), None

    def integrate(self, theta0, x0, *, backward=False, logdet=False, store=False):
        r"""RK4 of (coefficients, particles) over ``[0, 1]`` (``backward``: from ``theta0`` at
        t = 1 down to t = 0, i.e. :math:`G^{-1}`).

        Returns ``theta_end, x_end, ld, path`` with ``ld`` the accumulated
        :math:`\int\operatorname{div}v\,dt` (signed with the direction of time; None unless
        ``logdet``), ``path`` the coefficients at every step (``steps + 1`` rows) and, with
        ``store``, the stage states for :meth:`adjoint` as ``path, stages``.
        """
        h = -self.dt if backward else self.dt
        if self.substeps:
            return self._integrate_split(theta0, x0, h, logdet, store)
        th, x = np.array(theta0, dtype=np.float64), np.array(x0, dtype=np.float64)
        ld = np.zeros(x.shape[0]) if logdet else None
        path = [th.copy()]
        stages = []
        for _ in range(self.steps):
            t1, x1 = th, x
            k1 = self._f(t1, x1, logdet)
            t2, x2 = th + 0.5 * h * k1[0], x + 0.5 * h * k1[1]
            k2 = self._f(t2, x2, logdet)
            t3, x3 = th + 0.5 * h * k2[0], x + 0.5 * h * k2[1]
            k3 = self._f(t3, x3, logdet)
            t4, x4 = th + h * k3[0], x + h * k3[1]
            k4 = self._f(t4, x4, logdet)
            if store:
                stages.append(((t1, x1), (t2, x2), (t3, x3), (t4, x4)))
            th = th + (h / 6.0) * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0])
            x = x + (h / 6.0) * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])
            if logdet:
                ld = ld + (h / 6.0) * (k1[2] + 2.0 * k2[2] + 2.0 * k3[2] + k4[2])
            path.append(th.copy())
        path = np.array(path)
        return th, x, ld, ((path, stages) if store else path)

    def _coefficient_path(self, theta0, h):
        """RK4 of the coefficients alone, ``2 substeps`` steps per particle step ``h``: the
        nodes ``(2 substeps steps + 1, P)`` and each fine step's four stage states."""
        hf = h / (2 * self.substeps)
        th = np.array(theta0, dtype=np.float64)
        nodes, fine = [th], []
        for _ in range(2 * self.substeps * self.steps):
            k1 = self.rhs(th)
            t2 = th + 0.5 * hf * k1
            k2 = self.rhs(t2)
            t3 = th + 0.5 * hf * k2
            k3 = self.rhs(t3)
            t4 = th + hf * k3
            k4 = self.rhs(t4)
            fine.append((th, t2, t3, t4))
            th = th + (hf / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            nodes.append(th)
        return np.array(nodes), fine

    def _particle_rhs(self, theta, x, logdet):
        if logdet:
            v, jac, _ = self.velocity(theta, x, gradient=True)
            return v, jac[:, 0, 0] + jac[:, 1, 1]
        return self.velocity(theta, x), None

    def _integrate_split(self, theta0, x0, h, logdet, store):
        """:meth:`integrate` with the coefficients from :meth:`_coefficient_path` (RK4 of the
        non-autonomous particle ODE: stages 2 and 3 both read the mid-step coefficients)."""
        nodes, fine = self._coefficient_path(theta0, h)
        x = np.array(x0, dtype=np.float64)
        ld = np.zeros(x.shape[0]) if logdet else None
        m2 = 2 * self.substeps
        stages = []
        for n in range(self.steps):
            ia, ib, ic = m2 * n, m2 * n + m2 // 2, m2 * (n + 1)
            k1 = self._particle_rhs(nodes[ia], x, logdet)
            x2 = x + 0.5 * h * k1[0]
            k2 = self._particle_rhs(nodes[ib], x2, logdet)
            x3 = x + 0.5 * h * k2[0]
            k3 = self._particle_rhs(nodes[ib], x3, logdet)
            x4 = x + h * k3[0]
            k4 = self._particle_rhs(nodes[ic], x4, logdet)
            if store:
                stages.append(((ia, x), (ib, x2), (ib, x3), (ic, x4)))
            x = x + (h / 6.0) * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0])
            if logdet:
                ld = ld + (h / 6.0) * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])
        path = nodes[::m2]
        return nodes[-1], x, ld, ((path, (nodes, fine, stages)) if store else path)

    def _vjp_velocity(self, theta, x, g_x):
        """Cotangent of the particle velocity at ``(theta, x)``: ``(d_theta, d_x)``."""
        _, jac, (bx, by) = self.velocity(theta, x, gradient=True)
        return bx.T @ g_x[:, 0] + by.T @ g_x[:, 1], np.einsum("mi,mij->mj", g_x, jac)

    def _vjp(self, theta, x, g_theta, g_x):
        """Cotangent of the right-hand side at ``(theta, x)``: returns ``(d_theta, d_x)``."""
        d_theta, d_x = self._vjp_velocity(theta, x, g_x)
        return d_theta + np.einsum("qpr,q,r->p", self.Csym, g_theta, theta), d_x

    def _adjoint_split(self, stored, lam_x, lam_t):
        """Adjoint of :meth:`_integrate_split`: the particle steps deposit their coefficient
        cotangents on the fine nodes, then the coefficient RK4 is reversed."""
        nodes, fine, stages = stored
        h = self.dt
        dep = np.zeros_like(nodes)
        b = (h / 6.0, h / 3.0, h / 3.0, h / 6.0)
        for (s1, s2, s3, s4) in reversed(stages):
            gt4, gx4 = self._vjp_velocity(nodes[s4[0]], s4[1], b[3] * lam_x)
            gt3, gx3 = self._vjp_velocity(nodes[s3[0]], s3[1], b[2] * lam_x + h * gx4)
            gt2, gx2 = self._vjp_velocity(nodes[s2[0]], s2[1], b[1] * lam_x + 0.5 * h * gx3)
            gt1, gx1 = self._vjp_velocity(nodes[s1[0]], s1[1], b[0] * lam_x + 0.5 * h * gx2)
            dep[s1[0]] += gt1
            dep[s2[0]] += gt2 + gt3
            dep[s4[0]] += gt4
            lam_x = lam_x + gx1 + gx2 + gx3 + gx4
        hf = h / (2 * self.substeps)
        bf = (hf / 6.0, hf / 3.0, hf / 3.0, hf / 6.0)
        jt = lambda th, u: np.einsum("qpr,q,r->p", self.Csym, u, th)  # noqa: E731
        lam_t = lam_t + dep[-1]
        for j in range(len(fine) - 1, -1, -1):
            t1, t2, t3, t4 = fine[j]
            u4 = jt(t4, bf[3] * lam_t)
            u3 = jt(t3, bf[2] * lam_t + hf * u4)
            u2 = jt(t2, bf[1] * lam_t + 0.5 * hf * u3)
            u1 = jt(t1, bf[0] * lam_t + 0.5 * hf * u2)
            lam_t = lam_t + u1 + u2 + u3 + u4 + dep[j]
        return lam_t, lam_x

    def adjoint(self, stages, g_x_end, g_theta_end=None):
        """Discrete adjoint of the forward RK4 steps: d(objective)/d(theta0) from the
        cotangent ``g_x_end`` of the final particle positions (and of the final theta)."""
        h = self.dt
        lam_t = np.zeros(self.size) if g_theta_end is None else np.array(g_theta_end, float)
        lam_x = np.array(g_x_end, dtype=np.float64)
        if self.substeps:
            return self._adjoint_split(stages, lam_x, lam_t)
        b = (h / 6.0, h / 3.0, h / 3.0, h / 6.0)
        for (s1, s2, s3, s4) in reversed(stages):
            gt4, gx4 = self._vjp(*s4, b[3] * lam_t, b[3] * lam_x)
            gt3, gx3 = self._vjp(*s3, b[2] * lam_t + h * gt4, b[2] * lam_x + h * gx4)
            gt2, gx2 = self._vjp(*s2, b[1] * lam_t + 0.5 * h * gt3,
                                 b[1] * lam_x + 0.5 * h * gx3)
            gt1, gx1 = self._vjp(*s1, b[0] * lam_t + 0.5 * h * gt2,
                                 b[0] * lam_x + 0.5 * h * gx2)
            lam_t = lam_t + gt1 + gt2 + gt3 + gt4
            lam_x = lam_x + gx1 + gx2 + gx3 + gx4
        return lam_t, lam_x

    # -- diagnostics ------------------------------------------------------------------------
    def euler_residual(self, theta) -> tuple[float, float]:
        r"""``(relative, absolute)`` size of :math:`(I - P_K)\operatorname{div}(\omega v)` in
        :math:`L^2(\gamma)`, relative to :math:`\|\omega\|\,\|v\|` (norms in
        :math:`L^2(\gamma)`): the part of the exact Euler vorticity tendency that the
        truncation drops (0 for an exact Euler solution such as a radial steady state)."""
        nodes, w = self._fine
        K = self.degree
        hx, hy = hermite_table(nodes[:, 0], K + 1), hermite_table(nodes[:, 1], K + 1)
        a = self.scale * theta
        m1, n1 = self.m + 1, self.n + 1
        la = self.lam * a
        omega = (hx[:, m1] * hy[:, n1]) @ la
        dox = (hx[:, m1 - 1] * hy[:, n1]) @ (self.m * la)
        doy = (hx[:, m1] * hy[:, n1 - 1]) @ (self.n * la)
        v = self.velocity(theta, nodes)
        divv = np.sum(nodes * v, axis=1)        # div v = x . v exactly (div(gamma v) = 0)
        flux = dox * v[:, 0] + doy * v[:, 1] + omega * divv
        basis = hx[:, m1] * hy[:, n1]
        coef = (basis.T @ (w * flux)) / self.norm2
        resid = flux - basis @ coef
        absolute = math.sqrt(max(float(w @ resid ** 2), 0.0))
        size = math.sqrt(float(w @ omega ** 2)) * math.sqrt(2.0 * self.energy(theta))
        return (absolute / size if size > 1e-300 else 0.0), absolute


def radial_theta(solver: HermiteEuler, coefficients) -> np.ndarray:
    r"""theta of the radial :math:`\chi = \sum_j c_j\,|x|^{2j}` (a steady state
    :math:`v = f(|x|)\,x^\perp`), projected on the Hermite modes (exact when ``2j <= K``)."""
    nodes, w = _gauss_hermite(solver.degree + 2 * len(coefficients) + 2)
    r2 = np.sum(nodes ** 2, axis=1)
    chi = sum(c * r2 ** j for j, c in enumerate(coefficients))
    hx, hy = hermite_table(nodes[:, 0], solver.degree), hermite_table(nodes[:, 1], solver.degree)
    basis = hx[:, solver.m + 1] * hy[:, solver.n + 1]
    a = (basis.T @ (w * chi)) / solver.norm2
    return a / solver.scale
