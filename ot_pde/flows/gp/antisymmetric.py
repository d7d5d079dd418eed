r"""Gaussian-preserving velocity fields in any dimension, built from antisymmetric matrix fields,
with the Euler condition imposed as a penalty (the "penalized" variant of Morel et al., TMLR 2023).

**Construction (exactly Gaussian-preserving).** For an antisymmetric matrix field
:math:`A(x, t)` (:math:`A_{ij} = -A_{ji}`) set

.. math:: v = \gamma^{-1}\operatorname{div}(\gamma A), \qquad
          v_i = \sum_j \bigl(\partial_j A_{ij} - x_j A_{ij}\bigr),

:math:`\gamma` the standard Gaussian density on :math:`\mathbb R^d`. Then
:math:`\operatorname{div}(\gamma v) = \sum_{ij}\partial_i\partial_j(\gamma A_{ij}) = 0` by
antisymmetry, whatever :math:`A`: the flow of :math:`v` preserves :math:`\gamma` exactly (the
log-likelihood changes only by the time integrator's error), and :math:`\operatorname{div} v =
x\cdot v`. In 2D, :math:`A = \begin{psmallmatrix}0 & \chi\\ -\chi & 0\end{psmallmatrix}` gives
the Hermite modes of :mod:`.hermite`. Here

.. math:: A_{ij}(x, t) = \rho(|x|) \sum_{l=0}^{L}\sum_{|\alpha|\le K}
          \theta_{l,ij,\alpha}\, P_l(2t - 1)\, He_\alpha(x), \qquad i < j,

with :math:`He_\alpha = \prod_m He_{\alpha_m}(x_m)` the multivariate Hermite polynomials of total
degree :math:`\le K` (``degree``), :math:`P_l` Legendre polynomials in time of degree
:math:`\le L` (``time_degree``) and :math:`\rho` an optional radial cutoff (1 for
:math:`|x|\le r_1`, 0 beyond :math:`r_2`, quintic smoothstep; :math:`\rho A` is still
antisymmetric, so the cut-off field is still exactly Gaussian-preserving and bounded). Degree 0
gives the linear fields :math:`v = -A x`: the rotations, whose one-parameter groups are exact
stationary Euler solutions (:math:`(v\cdot\nabla)v = A^2x = \nabla\tfrac12 x^\top A^2x`).

**The Euler condition as a penalty.** The path is not integrated from Euler's equations (there
is no cheap Galerkin closure as in 2D); it is a free time-dependent field, and the Euler
equations of the measure :math:`\gamma`, :math:`\partial_t v + (v\cdot\nabla)v + \nabla p =
0`, are imposed weakly by adding

.. math:: \lambda \int_0^1 \min_p \bigl\|\partial_t v + (v\cdot\nabla)v + \nabla p
          \bigr\|^2_{L^2(\gamma)}\,dt

to the transport objective (``penalty``). For the *polynomial* field (:math:`\rho = 1`) the
acceleration :math:`a = \partial_t v + (v\cdot\nabla) v` is a polynomial of degree
:math:`\le 2K + 1`, and its :math:`L^2(\gamma)` projection on gradients is
:math:`\nabla p` with :math:`(\Delta - x\cdot\nabla)p = \operatorname{div} a - x\cdot a`, a
polynomial of degree :math:`\le 2K+2` (the Ornstein-Uhlenbeck operator is diagonal on Hermite
polynomials): minimizing over :math:`p` in the span of :math:`\{He_\beta: 1\le|\beta|\le
2K+2\}` is the *exact* minimum over all pressures, i.e. the penalty is the exact squared norm
of the Leray-projected acceleration. The integrals are computed by tensor Gauss-Hermite
quadrature with :math:`2K + 3` nodes per axis (exact for every product involved) when that has
at most ``max_nodes`` nodes, else on a fixed Monte Carlo sample of :math:`\gamma` (then the
penalty is an estimate); the time integral by Gauss-Legendre with :math:`2L + 1` nodes (exact).
The penalty is a quadratic function of :math:`(\theta(t), \dot\theta(t))` at each time node,
differentiated in closed form.

**Particles and adjoint.** :math:`\dot X = v(X, t)` by classical RK4 on :math:`t\in[0, 1]`;
the discrete adjoint of those steps gives the exact gradient of any function of the final
positions with respect to :math:`\theta` (v is linear in :math:`\theta`).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .hermite import hermite_table, radial_taper


def multi_indices(dim: int, degree: int, min_degree: int = 0) -> np.ndarray:
    """All :math:`\\alpha\\in\\mathbb N^d` with ``min_degree <= |alpha| <= degree``, by total
    degree (lexicographically decreasing within a degree); shape ``(P, d)``."""
    out = []
    for total in range(min_degree, degree + 1):
        for combo in itertools.combinations_with_replacement(range(dim), total):
            a = [0] * dim
            for c in combo:
                a[c] += 1
            out.append(a)
    return np.array(out, dtype=np.int64).reshape(-1, dim)


def n_multi_indices(dim: int, degree: int) -> int:
    """Number of multi-indices with ``|alpha| <= degree``: C(degree + dim, dim)."""
    return math.comb(degree + dim, dim)


def hermite_basis(x: np.ndarray, alpha: np.ndarray, order: int = 1):
    r"""``He_alpha(x)`` ``(M, P)``, its gradient ``(M, P, d)`` and, if ``order >= 2``, its
    Hessian ``(M, P, d, d)`` (None otherwise)."""
    M, d = x.shape
    kmax = int(alpha.max()) if alpha.size else 0
    val, d1, d2 = [], [], []
    for m in range(d):
        h = hermite_table(x[:, m], kmax)            # h[:, k + 1] = He_k, h[:, 0] = 0
        a = alpha[:, m]
        val.append(h[:, a + 1])
        d1.append(a * h[:, a])                      # He_k' = k He_{k-1}
        d2.append(a * (a - 1) * h[:, np.maximum(a - 1, 0)])
    phi = np.ones((M, alpha.shape[0]))
    for m in range(d):
        phi = phi * val[m]
    grad = np.empty((M, alpha.shape[0], d))
    hess = np.empty((M, alpha.shape[0], d, d)) if order >= 2 else None
    for l in range(d):
        g = d1[l]
        for m in range(d):
            if m != l:
                g = g * val[m]
        grad[:, :, l] = g
        if hess is None:
            continue
        for k in range(l, d):
            if k == l:
                h2 = d2[l]
                for m in range(d):
                    if m != l:
                        h2 = h2 * val[m]
            else:
                h2 = d1[l] * d1[k]
                for m in range(d):
                    if m != l and m != k:
                        h2 = h2 * val[m]
            hess[:, :, l, k] = h2
            hess[:, :, k, l] = h2
    return phi, grad, hess


def _legendre_table(t: float, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Shifted Legendre ``P_l(2t - 1)`` and their t-derivatives, ``l = 0..degree``."""
    s = 2.0 * t - 1.0
    val, der = np.zeros(degree + 1), np.zeros(degree + 1)
    for l in range(degree + 1):
        c = np.zeros(l + 1)
        c[l] = 1.0
        val[l] = np.polynomial.legendre.legval(s, c)
        der[l] = 2.0 * np.polynomial.legendre.legval(s, np.polynomial.legendre.legder(c)) \
            if l else 0.0
    return val, der


class AntisymmetricGP:
    r"""Time-dependent Gaussian-preserving field from an antisymmetric Hermite matrix field.

    Parameters
    ----------
    dim : int
        :math:`d \ge 2`.
    degree : int
        :math:`K`, total Hermite degree of the entries of :math:`A` (velocity degree K + 1).
    time_degree : int
        :math:`L`, Legendre degree of the coefficients in time (0: a stationary field).
    steps : int
        RK4 steps on :math:`t\in[0, 1]`.
    taper : (r1, r2), optional
        Radial cutoff of the *particle* field (the penalty is on the polynomial field).
    max_nodes : int
        Largest tensor Gauss-Hermite rule for the penalty; beyond it ``mc_points`` Monte Carlo
        points of :math:`\gamma` (seeded by ``seed``) are used.

    Notes
    -----
    The parameter vector ``theta`` has ``size = (L + 1) * d(d-1)/2 * P`` entries, ``P`` the
    number of Hermite multi-indices, ordered as ``theta.reshape(L + 1, n_pairs, P)``.
    """

    @staticmethod
    def sizes(dim: int, degree: int, time_degree: int, max_nodes: int = 40000,
              mc_points: int = 20000) -> tuple[int, int, int]:
        """``(parameters, pressure functions, penalty nodes)`` of a configuration (before
        building it: the penalty's least-squares matrix has nodes * dim * pressure entries)."""
        n_pressure = n_multi_indices(dim, 2 * degree + 2) - 1
        n_params = (time_degree + 1) * dim * (dim - 1) // 2 * n_multi_indices(dim, degree)
        n1 = 2 * degree + 3
        nodes = n1 ** dim if n1 ** dim <= max_nodes else max(mc_points, 10 * n_pressure)
        return n_params, n_pressure, nodes

    def __init__(self, dim: int, degree: int, time_degree: int, steps: int, taper=None,
                 max_nodes: int = 40000, mc_points: int = 20000, seed: int = 0):
        self.dim = d = int(dim)
        self.degree = K = int(degree)
        self.time_degree = L = int(time_degree)
        self.steps = int(steps)
        self.dt = 1.0 / self.steps
        self.taper = None if taper is None else (float(taper[0]), float(taper[1]))
        self.alpha = multi_indices(d, K)
        self.n_basis = self.alpha.shape[0]
        self.pairs = np.array(list(itertools.combinations(range(d), 2)),
                              dtype=np.int64).reshape(-1, 2)
        self.n_pairs = self.pairs.shape[0]
        self.shape = (L + 1, self.n_pairs, self.n_basis)
        self.size = int(np.prod(self.shape))
        # the penalty's quadrature in x (nodes, sqrt weights) and pressure space
        self.pressure_alpha = multi_indices(d, 2 * K + 2, min_degree=1)
        n1 = 2 * K + 3
        if n1 ** d <= max_nodes:
            x, w = np.polynomial.hermite_e.hermegauss(n1)
            w = w / math.sqrt(2.0 * math.pi)
            grids = np.meshgrid(*([x] * d), indexing="ij")
            self.nodes = np.stack([g.ravel() for g in grids], axis=1)
            wt = np.ones(1)
            for _ in range(d):
                wt = np.outer(wt, w).ravel()
            self.weights = wt
            self.quadrature = "gauss_hermite"
        else:
            rng = np.random.default_rng(seed)
            self.nodes = rng.standard_normal((max(mc_points, 10 * self.pressure_alpha.shape[0]),
                                              d))
            self.weights = np.full(self.nodes.shape[0], 1.0 / self.nodes.shape[0])
            self.quadrature = "monte_carlo"
        self._sw = np.sqrt(self.weights)
        self._qD, self._qH, _ = self._tables(self.nodes, second=True, tapered=False)
        _, pg, _ = hermite_basis(self.nodes, self.pressure_alpha, order=1)
        gmat = (self._sw[:, None, None] * pg).transpose(0, 2, 1).reshape(-1, pg.shape[1])
        self._Q = np.linalg.qr(gmat)[0]                 # orthonormal basis of the gradients
        tn, tw = np.polynomial.legendre.leggauss(2 * L + 1)
        self.t_nodes, self.t_weights = 0.5 * (tn + 1.0), 0.5 * tw

    # -- the field ----------------------------------------------------------------------------
    def _tables(self, x, second=False, tapered=True):
        r"""``D[m, k, j] = (\partial_j - x_j)\tilde\phi_k`` (M, P, d), its x-derivatives
        ``H[m, k, j, l] = \partial_l D[m, k, j]`` (M, P, d, d) if ``second``, and
        :math:`\tilde\phi = \rho\,He_\alpha` (M, P)."""
        phi, g, h = hermite_basis(x, self.alpha, order=2 if second else 1)
        if tapered and self.taper is not None:
            rho, grho, hrho = radial_taper(x, *self.taper)
            if second:
                h = (rho[:, None, None, None] * h
                     + g[:, :, :, None] * grho[:, None, None, :]
                     + grho[:, None, :, None] * g[:, :, None, :]
                     + phi[:, :, None, None] * hrho[:, None, :, :])
            g = rho[:, None, None] * g + phi[:, :, None] * grho[:, None, :]
            phi = rho[:, None] * phi
        D = g - x[:, None, :] * phi[:, :, None]
        if not second:
            return D, None, phi
        d = x.shape[1]
        H = (h - np.eye(d)[None, None] * phi[:, :, None, None]
             - x[:, None, :, None] * g[:, :, None, :])
        return D, H, phi

    def _antisym(self, c):
        """``a[i, j, k]`` (d, d, P) from pair coefficients ``c`` (n_pairs, P)."""
        a = np.zeros((self.dim, self.dim, self.n_basis))
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        a[i, j] = c
        a[j, i] = -c
        return a

    def _pairs_of(self, da):
        """Cotangent of ``c`` from the cotangent ``da`` of the antisymmetric tensor."""
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        return da[i, j] - da[j, i]

    def coefficients(self, theta, t):
        """Pair coefficients ``c(t)`` and ``dc/dt`` (n_pairs, P)."""
        th = np.asarray(theta, dtype=np.float64).reshape(self.shape)
        val, der = _legendre_table(t, self.time_degree)
        return np.tensordot(val, th, 1), np.tensordot(der, th, 1)

    def velocity(self, theta, x, t, gradient=False):
        """``v(x, t)`` (M, d); with ``gradient`` also ``J[m, i, l] = dv_i/dx_l`` and the tables
        ``(D, H)`` for the cotangents."""
        c, _ = self.coefficients(theta, t)
        a = self._antisym(c)
        D, H, _ = self._tables(x, second=gradient)
        v = np.einsum("ijk,mkj->mi", a, D, optimize=True)
        if not gradient:
            return v
        return v, np.einsum("ijk,mkjl->mil", a, H, optimize=True), (D, H)

    def divergence(self, theta, x, t):
        """``div v`` from the Jacobian (equal to ``x . v`` for a Gaussian-preserving field)."""
        _, jac, _ = self.velocity(theta, x, t, gradient=True)
        return np.einsum("mii->m", jac)

    # -- particles ----------------------------------------------------------------------------
    def _f(self, theta, x, t, logdet):
        if logdet:
            v, jac, _ = self.velocity(theta, x, t, gradient=True)
            return v, np.einsum("mii->m", jac)
        return self.velocity(theta, x, t), None

    def integrate(self, theta, x0, *, backward=False, logdet=False, store=False):
        r"""RK4 of the particles over ``[0, 1]`` (``backward``: from t = 1 to 0, i.e.
        :math:`G^{-1}`). Returns ``x_end, ld, stages``: ``ld`` the accumulated
        :math:`\int\operatorname{div} v\,dt` (signed with time; None unless ``logdet``), the
        stage states for :meth:`adjoint` with ``store`` (else None)."""
        h = -self.dt if backward else self.dt
        x = np.array(x0, dtype=np.float64)
        ld = np.zeros(x.shape[0]) if logdet else None
        stages = [] if store else None
        for n in range(self.steps):
            t = 1.0 - n * self.dt if backward else n * self.dt
            x1 = x
            k1 = self._f(theta, x1, t, logdet)
            x2 = x + 0.5 * h * k1[0]
            k2 = self._f(theta, x2, t + 0.5 * h, logdet)
            x3 = x + 0.5 * h * k2[0]
            k3 = self._f(theta, x3, t + 0.5 * h, logdet)
            x4 = x + h * k3[0]
            k4 = self._f(theta, x4, t + h, logdet)
            if store:
                stages.append(((x1, t), (x2, t + 0.5 * h), (x3, t + 0.5 * h), (x4, t + h)))
            x = x + (h / 6.0) * (k1[0] + 2.0 * k2[0] + 2.0 * k3[0] + k4[0])
            if logdet:
                ld = ld + (h / 6.0) * (k1[1] + 2.0 * k2[1] + 2.0 * k3[1] + k4[1])
        return x, ld, stages

    def _vjp(self, theta, x, t, g_x):
        """Cotangents ``(d_theta, d_x)`` of ``v(x, t)`` against ``g_x`` (M, d)."""
        _, jac, (D, _) = self.velocity(theta, x, t, gradient=True)
        dc = self._pairs_of(np.einsum("mi,mkj->ijk", g_x, D, optimize=True))
        val, _ = _legendre_table(t, self.time_degree)
        return np.multiply.outer(val, dc).ravel(), np.einsum("mi,mij->mj", g_x, jac)

    def adjoint(self, theta, stages, g_x_end):
        """Discrete adjoint of the forward RK4 steps: d(objective)/d(theta) from the cotangent
        of the final particle positions."""
        h = self.dt
        g = np.zeros(self.size)
        lam = np.array(g_x_end, dtype=np.float64)
        b = (h / 6.0, h / 3.0, h / 3.0, h / 6.0)
        for (s1, s2, s3, s4) in reversed(stages):
            gt4, gx4 = self._vjp(theta, *s4, b[3] * lam)
            gt3, gx3 = self._vjp(theta, *s3, b[2] * lam + h * gx4)
            gt2, gx2 = self._vjp(theta, *s2, b[1] * lam + 0.5 * h * gx3)
            gt1, gx1 = self._vjp(theta, *s1, b[0] * lam + 0.5 * h * gx2)
            g += gt1 + gt2 + gt3 + gt4
            lam = lam + gx1 + gx2 + gx3 + gx4
        return g, lam

    # -- Euler residual and penalty -----------------------------------------------------------
    def _acceleration(self, c, dc):
        """At the penalty nodes: v, J and the acceleration ``dv/dt + (v . grad) v``."""
        a, ad = self._antisym(c), self._antisym(dc)
        v = np.einsum("ijk,mkj->mi", a, self._qD)
        jac = np.einsum("ijk,mkjl->mil", a, self._qH)
        vt = np.einsum("ijk,mkj->mi", ad, self._qD)
        return v, jac, vt + np.einsum("mil,ml->mi", jac, v)

    def _project_out_gradients(self, acc):
        r = (self._sw[:, None] * acc).ravel()
        return r - self._Q @ (self._Q.T @ r), r

    def residual(self, theta, t) -> tuple[float, float, float]:
        r"""``(relative, absolute, energy)`` at time t: :math:`\|Q a\|/\|a\|`, :math:`\|Qa\|`
        (:math:`L^2(\gamma)`, Q the Leray projection, a the acceleration of the polynomial
        field) and the kinetic energy :math:`\tfrac12\|v\|^2`."""
        c, dc = self.coefficients(theta, t)
        v, _, acc = self._acceleration(c, dc)
        perp, r = self._project_out_gradients(acc)
        absolute = float(np.sqrt(perp @ perp))
        size = float(np.sqrt(r @ r))
        energy = 0.5 * float(self.weights @ np.sum(v * v, axis=1))
        return (absolute / size if size > 1e-300 else 0.0), absolute, energy

    def energy(self, theta, t=0.0) -> float:
        c, _ = self.coefficients(theta, t)
        v = np.einsum("ijk,mkj->mi", self._antisym(c), self._qD)
        return 0.5 * float(self.weights @ np.sum(v * v, axis=1))

    def penalty(self, theta, gradient=False):
        r""":math:`\int_0^1\|Q(\partial_t v + (v\cdot\nabla)v)\|^2 dt` and its gradient."""
        total, grad = 0.0, np.zeros(self.shape)
        for t, w in zip(self.t_nodes, self.t_weights):
            c, dc = self.coefficients(theta, t)
            v, jac, acc = self._acceleration(c, dc)
            perp, _ = self._project_out_gradients(acc)
            total += w * float(perp @ perp)
            if not gradient:
                continue
            g = (2.0 * w) * self._sw[:, None] * perp.reshape(acc.shape)   # d/d acc
            d_dc = self._pairs_of(np.einsum("mi,mkj->ijk", g, self._qD))
            gj = np.einsum("mi,mil->ml", g, jac)
            d_c = (self._pairs_of(np.einsum("mi,mkj->ijk", gj, self._qD))
                   + self._pairs_of(np.einsum("mi,ml,mkjl->ijk", g, v, self._qH)))
            val, der = _legendre_table(t, self.time_degree)
            grad += np.multiply.outer(val, d_c) + np.multiply.outer(der, d_dc)
        return (total, grad.ravel()) if gradient else total


def taper_mass(dim: int, r1: float) -> float:
    """Gaussian mass outside the ball of radius r1 in dimension d (chi-square tail)."""
    from scipy.special import gammaincc

    return float(gammaincc(0.5 * dim, 0.5 * r1 * r1))
