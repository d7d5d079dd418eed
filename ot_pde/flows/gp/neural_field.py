r"""Gaussian-preserving velocity fields from a *neural* antisymmetric matrix field, any d (the
parametrization of Morel et al., TMLR 2023), with exact input derivatives written by hand.

**Field.** One hidden layer of width :math:`H` on :math:`(x, t)`,

.. math:: u = W_1 x + w_t t + b_1,\quad s = \tanh u,\quad
          A_{ij}(x, t) = \sum_k W_{ij,k}\, s_k + B_{ij},\qquad A_{ji} = -A_{ij},

(the MLP's :math:`d(d-1)/2` outputs placed above the diagonal and antisymmetrized), and
:math:`v = \gamma^{-1}\operatorname{div}(\gamma A)`, :math:`v_i = \sum_j(\partial_j A_{ij} -
x_j A_{ij})`, so :math:`\operatorname{div}(\gamma v) = \sum_{ij}\partial_i\partial_j(\gamma
A_{ij}) = 0` for every parameter value. With :math:`s' = 1 - s^2` and
:math:`C_{ik} = \sum_j W_{ij,k}W_{1,kj}`,

.. math:: v = C\,s'(u) - A(x, t)\,x ,

whose cost per point is one :math:`H\times d^2` product (:math:`A`): time and memory
:math:`O(M H d^2)` for :math:`M` points, linear in the batch and quadratic in d. The bias
:math:`B` alone gives the rotations :math:`v = -Bx`.

**Derivatives.** All by hand, no autograd: the velocity's vector-Jacobian products in
:math:`x` and in the parameters (for the discrete adjoint of the particles' RK4), its exact
divergence (trace of the Jacobian, :math:`O(MHd)`, used for the log-determinant so that the
likelihood check measures the Gaussian preservation instead of assuming it), and the
Jacobian-vector product in :math:`(x, t)` along :math:`(v, 1)`, the acceleration
:math:`a = \partial_t v + (v\cdot\nabla)v` of the Euler residual.

**Euler condition.** A path of Gaussian-preserving maps is an Euler geodesic exactly when it
minimizes the action :math:`\int_0^1\|v_t\|^2_{L^2(\gamma)}dt` among paths with its end
points (Arnold), so the objective carries the action weighted by ``action_weight``: at the
optimum of cost + action the path is a critical point of the action for its own end point,
the weak form of :math:`\partial_t v + (v\cdot\nabla)v = -\nabla p`. The action is a Monte
Carlo estimate along the particles themselves (they stay distributed as :math:`\gamma`), so
its gradient is the same first-order adjoint. The residual :math:`\|a + \nabla p\|/\|a\|`
is *reported* on fixed Monte Carlo draws of :math:`\gamma`, the pressure minimized over the
quadratics (:math:`\nabla p = b + Sx`, S symmetric: a Lyapunov equation in closed form);
the exact Leray projection minimizes over all pressures, so this is an upper bound of the
residual of :mod:`.antisymmetric`.
"""
from __future__ import annotations

import itertools

import numpy as np


class NeuralAntisymmetricGP:
    r"""Time-dependent Gaussian-preserving field :math:`v = \gamma^{-1}\operatorname{div}
    (\gamma A)` with :math:`A` the antisymmetrized output of a one-hidden-layer tanh MLP.

    Parameters
    ----------
    dim : int
        :math:`d \ge 2`.
    width : int
        Hidden units :math:`H`.
    steps : int
        RK4 steps on :math:`t\in[0, 1]`.

    Notes
    -----
    ``theta`` concatenates :math:`W_1` (H, d), :math:`w_t` (H), :math:`b_1` (H), the pair
    weights (P, H) and the pair biases (P), P = d(d-1)/2 pairs i < j in lexicographic order.
    """

    def __init__(self, dim: int, width: int, steps: int):
        self.dim = d = int(dim)
        self.width = H = int(width)
        self.steps = int(steps)
        self.dt = 1.0 / self.steps
        self.pairs = np.array(list(itertools.combinations(range(d), 2)),
                              dtype=np.int64).reshape(-1, 2)
        self.n_pairs = P = self.pairs.shape[0]
        self._sizes = (H * d, H, H, P * H, P)
        self.size = int(sum(self._sizes))

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        """The identity map (zero output layer) with random hidden features: rows of
        :math:`W_1` of norm about 1 (u of order ``|x|``), unit time weights and biases."""
        d, H, P = self.dim, self.width, self.n_pairs
        return np.concatenate([rng.standard_normal(H * d) / np.sqrt(d),
                               rng.standard_normal(H), rng.standard_normal(H),
                               np.zeros(P * H), np.zeros(P)])

    # -- parameters -----------------------------------------------------------------------------
    def unpack(self, theta) -> dict:
        """The layers, the antisymmetric tensors and the contractions every evaluation uses."""
        d, H = self.dim, self.width
        th = np.asarray(theta, dtype=np.float64)
        w1, wt, b1, w2, b2 = np.split(th, np.cumsum(self._sizes)[:-1])
        w1 = w1.reshape(H, d)
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        wf = np.zeros((d, d, H))
        wf[i, j] = w2.reshape(-1, H)
        wf[j, i] = -w2.reshape(-1, H)
        bf = np.zeros((d, d))
        bf[i, j] = b2
        bf[j, i] = -b2
        c = np.einsum("ijk,kj->ik", wf, w1)                      # (d, H)
        return {"w1": w1, "wt": wt, "b1": b1, "wf": wf, "bf": bf,
                "wfT": wf.reshape(d * d, H).T.copy(),             # (H, d^2): A = s @ wfT
                "C": c,
                "trC": np.einsum("ik,ki->k", c, w1),             # sum_i C[i, k] W1[k, i]
                "F": np.einsum("ijk,ki->jk", wf, w1)}            # (d, H), for the divergence

    def pack_grad(self, p, dw1, dwt, db1, dwf, dbf) -> np.ndarray:
        """Cotangent of ``theta`` from cotangents of the layers and of the full tensors."""
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        return np.concatenate([dw1.ravel(), dwt, db1, (dwf[i, j] - dwf[j, i]).ravel(),
                               dbf[i, j] - dbf[j, i]])

    # -- the field ------------------------------------------------------------------------------
    def _hidden(self, p, x, t):
        s = np.tanh(x @ p["w1"].T + (t * p["wt"] + p["b1"]))
        return s, 1.0 - s * s

    def _amat(self, p, s):
        d = self.dim
        return (s @ p["wfT"] + p["bf"].ravel()).reshape(-1, d, d)

    def velocity(self, theta_or_p, x, t, cache=False):
        """``v(x, t)`` (M, d); with ``cache`` also the hidden state for the derivatives."""
        p = theta_or_p if isinstance(theta_or_p, dict) else self.unpack(theta_or_p)
        s, s1 = self._hidden(p, x, t)
        a = self._amat(p, s)
        v = s1 @ p["C"].T - np.einsum("mij,mj->mi", a, x)
        return (v, (s, s1, a)) if cache else v

    def divergence(self, theta_or_p, x, t, cache=None):
        r"""Exact :math:`\operatorname{div} v` (trace of the Jacobian), :math:`O(MHd)`."""
        p = theta_or_p if isinstance(theta_or_p, dict) else self.unpack(theta_or_p)
        s, s1 = cache[:2] if cache is not None else self._hidden(p, x, t)
        s2 = -2.0 * s * s1
        return s2 @ p["trC"] - np.sum(s1 * (x @ p["F"]), axis=1)

    def jacobian(self, theta, x, t):
        """Full Jacobian ``J[m, i, l] = dv_i/dx_l`` (M, d, d): for tests, O(M H d^3)."""
        p = self.unpack(theta)
        s, s1 = self._hidden(p, x, t)
        s2 = -2.0 * s * s1
        a = self._amat(p, s)
        term1 = np.einsum("ik,mk,kl->mil", p["C"], s2, p["w1"])
        term3 = np.einsum("ijk,mj,mk,kl->mil", p["wf"], x, s1, p["w1"])
        return term1 - a - term3

    def vjp(self, p, x, t, g, cache=None):
        """Cotangents ``(d_theta, d_x)`` of ``v(x, t)`` against ``g`` (M, d)."""
        d = self.dim
        s, s1, a = cache if cache is not None else self.velocity(p, x, t, cache=True)[1]
        s2 = -2.0 * s * s1
        gx = (g[:, :, None] * x[:, None, :]).reshape(-1, d * d)   # g_i x_j, (M, d^2)
        q = gx @ p["wfT"].T                                        # sum_ij g_i x_j W_ij,k
        du = s2 * (g @ p["C"]) - s1 * q
        dx = du @ p["w1"] - np.einsum("mij,mi->mj", a, g)
        dc = g.T @ s1                                              # (d, H)
        dwf = dc[:, None, :] * p["w1"].T[None, :, :] - (gx.T @ s).reshape(d, d, -1)
        dbf = -(g.T @ x)
        dw1 = du.T @ x + np.einsum("ik,ijk->kj", dc, p["wf"])
        dwt = du.T @ np.full(x.shape[0], float(t))
        return self.pack_grad(p, dw1, dwt, du.sum(axis=0), dwf, dbf), dx

    def acceleration(self, theta_or_p, x, t):
        r""":math:`v` and :math:`a = \partial_t v + (v\cdot\nabla)v`, the Jacobian-vector
        product of v in (x, t) along (v, 1)."""
        p = theta_or_p if isinstance(theta_or_p, dict) else self.unpack(theta_or_p)
        v, (s, s1, a) = self.velocity(p, x, t, cache=True)
        s2 = -2.0 * s * s1
        udot = v @ p["w1"].T + p["wt"]
        adot = self._amat(p, s1 * udot) - p["bf"][None]           # the bias is constant
        acc = (s2 * udot) @ p["C"].T - np.einsum("mij,mj->mi", adot, x) \
            - np.einsum("mij,mj->mi", a, v)
        return v, acc

    # -- particles ------------------------------------------------------------------------------
    def integrate(self, theta, x0, *, backward=False, logdet=False, store=False):
        r"""RK4 over ``[0, 1]`` (``backward``: from t = 1 to 0, the inverse map). Returns
        ``x_end, ld, action, stages``: ``ld`` = ln det of the map's Jacobian (the exact
        divergence integrated; None unless ``logdet``), ``action`` the RK4 quadrature of
        :math:`\int_0^1 \mathrm{mean}|v|^2 dt` along the particles, ``stages`` for
        :meth:`adjoint` (None unless ``store``)."""
        p = self.unpack(theta)
        h = -self.dt if backward else self.dt
        x = np.array(x0, dtype=np.float64)
        ld = np.zeros(x.shape[0]) if logdet else None
        action = 0.0
        stages = [] if store else None
        wts = (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)
        for n in range(self.steps):
            t0 = 1.0 - n * self.dt if backward else n * self.dt
            ks, st = [], []
            for c, xs_of in ((0.0, lambda: x), (0.5, lambda: x + 0.5 * h * ks[0]),
                             (0.5, lambda: x + 0.5 * h * ks[1]), (1.0, lambda: x + h * ks[2])):
                xs = xs_of()
                k, cache = self.velocity(p, xs, t0 + c * h, cache=True)
                ks.append(k)
                if logdet:
                    ld = ld + (h * wts[len(ks) - 1]) * self.divergence(p, xs, t0 + c * h, cache)
                if store:
                    st.append((xs, t0 + c * h, k))
            x = x + h * (wts[0] * ks[0] + wts[1] * ks[1] + wts[2] * ks[2] + wts[3] * ks[3])
            action += self.dt * sum(w * float(np.mean(np.sum(k * k, axis=1)))
                                    for w, k in zip(wts, ks))
            if store:
                stages.append(st)
        return x, ld, action, stages

    def adjoint(self, theta, stages, g_x_end, action_weight=0.0):
        """Discrete adjoint of the forward RK4 steps (t from 0 to 1): the gradient of
        ``f(x_end) + action_weight * action`` in theta from ``g_x_end = df/dx_end``."""
        p = self.unpack(theta)
        h = self.dt
        g = np.zeros(self.size)
        lam = np.array(g_x_end, dtype=np.float64)
        b = (h / 6.0, h / 3.0, h / 3.0, h / 6.0)
        grow = (0.0, 0.5 * h, 0.5 * h, h)       # stage s's state = x + grow[s] * k_{s-1}
        for st in reversed(stages):
            carry = None
            gx_sum = np.zeros_like(lam)
            for s in (3, 2, 1, 0):
                xs, ts, k = st[s]
                cot = b[s] * (lam + (2.0 * action_weight / k.shape[0]) * k)
                if carry is not None:
                    cot = cot + carry
                gt, gx = self.vjp(p, xs, ts, cot)
                g += gt
                gx_sum += gx
                carry = grow[s] * gx if s > 0 else None
            lam = lam + gx_sum
        return g, lam

    # -- Euler residual -------------------------------------------------------------------------
    def residual(self, theta, t, x) -> tuple[float, float, float]:
        r"""``(relative, absolute, energy)`` at time t on the draws ``x`` of :math:`\gamma`:
        :math:`\min_p\|a + \nabla p\|/\|a\|` over quadratic pressures, that minimum, and
        :math:`\tfrac12\|v\|^2`."""
        v, acc = self.acceleration(theta, x, t)
        r = acc + quadratic_pressure_gradient(x, acc)
        absolute = float(np.sqrt(np.mean(np.sum(r * r, axis=1))))
        size = float(np.sqrt(np.mean(np.sum(acc * acc, axis=1))))
        energy = 0.5 * float(np.mean(np.sum(v * v, axis=1)))
        return (absolute / size if size > 1e-300 else 0.0), absolute, energy


def quadratic_pressure_gradient(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`\nabla p = b + Sx` (S symmetric) minimizing :math:`\sum_m|a_m + b + Sx_m|^2`:
    with centred data, :math:`GS + SG = -(K + K^\top)`, :math:`G = X^\top X`,
    :math:`K = X^\top A`, solved in the eigenbasis of G."""
    xm, am = x.mean(axis=0), a.mean(axis=0)
    xc, ac = x - xm, a - am
    lam, u = np.linalg.eigh(xc.T @ xc)
    k = xc.T @ ac
    rhs = u.T @ (-(k + k.T)) @ u
    s = u @ (rhs / (lam[:, None] + lam[None, :])) @ u.T
    b = -am - s @ xm
    return b + x @ s
