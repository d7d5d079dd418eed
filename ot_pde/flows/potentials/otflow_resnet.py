"""The OT-Flow potential (Onken et al. 2021): a ResNet plus a quadratic, with the exact Hessian trace."""
from __future__ import annotations

import math

import numpy as np

from .base import Potential, _log2cosh, _logcosh_derivs


class OTFlowResNet(Potential):
    r"""The OT-Flow potential (Onken, Wu Fung, Li & Ruthotto, AAAI 2021).

    With :math:`s = (x, t)\in\mathbb{R}^{d+1}`,

    .. math::

        \Phi(s) = w^T N(s) + \tfrac12 s^T A^T A s + c^T s + c_0,

    where :math:`A` is :math:`r\times(d+1)` and :math:`N` a ResNet of :math:`M` layers with
    :math:`h = 1/(M-1)` and :math:`\sigma(z) = \log(2\cosh z)`
    (:math:`\sigma' = \tanh`, :math:`\sigma'' = 1 - \tanh^2`, :math:`\sigma''' = -2\tanh\,\sigma''`):

    .. math::

        a_0 = K_0 s + b_0,\ u_0 = \sigma(a_0);\qquad
        a_i = K_i u_{i-1} + b_i,\ u_i = u_{i-1} + h\,\sigma(a_i),\ i = 1..M-1;\qquad
        N(s) = u_{M-1}.

    **Gradient** (reverse sweep): :math:`g_{M-1} = w`,
    :math:`g_{i-1} = g_i + h K_i^T(\sigma'(a_i)\odot g_i)`, and
    :math:`\nabla_s\Phi = K_0^T(\sigma'(a_0)\odot g_0) + A^TA s + c`; :math:`\nabla_x\Phi` is its
    first :math:`d` entries.

    **Laplacian** (OT-Flow's exact trace, forward sweep): with :math:`E` the first :math:`d`
    columns of the identity, :math:`P_0 = K_0 E`, :math:`J_0 = \mathrm{diag}(\sigma'(a_0))P_0`,
    :math:`P_i = K_i J_{i-1}` and :math:`J_i = J_{i-1} + h\,\mathrm{diag}(\sigma'(a_i)) P_i`
    (:math:`J_i = \partial u_i/\partial x`),

    .. math::

        \Delta_x\Phi = \sum_{i=0}^{M-1} h_i \sum_j \sigma''(a_{ij})\, g_{ij}\, |(P_i)_{j,:}|^2
            + \|A E\|_F^2, \qquad h_0 = 1,\ h_{i\ge1} = h.

    **Cotangents**: :meth:`vjp`, :meth:`hvp`, :meth:`grad_laplacian`, :meth:`param_vjp` and
    :meth:`param_vjp_value` all come from one hand-written reverse sweep through the three
    sweeps above, for :math:`L = \sum_i \gamma_i\Phi(s_i) + a_i\cdot\nabla_x\Phi(s_i) +
    b_i\Delta_x\Phi(s_i)`: the adjoint of the trace sweep (backwards in :math:`i`), then of
    the gradient sweep (forwards), then of the network (backwards). ``hvp`` is the
    :math:`x`-cotangent with :math:`a = v` (the Hessian is symmetric), ``grad_laplacian`` the
    one with :math:`b = 1`. Derivatives are with respect to :math:`x` only; time enters
    through :math:`s`. Cost: :math:`O(B m^2 d)` per layer, like the trace itself.

    Parameters
    ----------
    dim, width : int
        :math:`d` and the ResNet width :math:`m`.
    n_layers : int
        :math:`M\ge2` (OT-Flow's published models use 2).
    rank : int, optional
        :math:`r`, default :math:`\min(10, d+1)`.
    backend : Backend, optional
        Default ``numpy``; every backend runs the ``xp`` code.
    rng : numpy.random.Generator or int
        Seeds the initialization, OT-Flow's: :math:`K_i, b_i \sim U(\pm 1/\sqrt{\text{fan-in}})`,
        :math:`A` Glorot-uniform, :math:`w = 1`, :math:`c = 0`, :math:`c_0 = 0`.

    Notes
    -----
    Parameter blocks, in the order of :attr:`params`: ``A`` (r, d+1), ``c`` (d+1,), ``c0``
    (1,), ``w`` (m,), ``K0`` (m, d+1), ``b0`` (m,), then ``K1``, ``b1``, ..., ``K{M-1}``,
    ``b{M-1}`` ((m, m) and (m,)).
    """

    time_dependent = True

    def __init__(self, dim: int, width: int, n_layers: int = 2, rank: int | None = None,
                 backend=None, rng=0):
        super().__init__(dim, backend)
        D = self.dim + 1
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if int(n_layers) != n_layers or n_layers < 2:
            raise ValueError(f"n_layers must be an integer >= 2, got {n_layers!r}")
        rank = min(10, D) if rank is None else rank
        if int(rank) != rank or not 1 <= rank <= D:
            raise ValueError(f"rank must be an integer in [1, {D}] (d + 1), got {rank!r}")
        self.width = m = int(width)
        self.n_layers = M = int(n_layers)
        self.rank = r = int(rank)
        self.h = 1.0 / (M - 1)
        rng = np.random.default_rng(rng)

        def uniform(shape, fan_in):
            bound = 1.0 / math.sqrt(fan_in)
            return rng.uniform(-bound, bound, size=shape)

        glorot = math.sqrt(6.0 / (r + D))
        layout = [("A", (r, D)), ("c", (D,)), ("c0", (1,)), ("w", (m,)), ("K0", (m, D)),
                  ("b0", (m,))]
        init = {"A": rng.uniform(-glorot, glorot, size=(r, D)), "c": np.zeros(D),
                "c0": np.zeros(1), "w": np.ones(m), "K0": uniform((m, D), D),
                "b0": uniform(m, D)}
        for i in range(1, M):
            layout += [(f"K{i}", (m, m)), (f"b{i}", (m,))]
            init[f"K{i}"] = uniform((m, m), m)
            init[f"b{i}"] = uniform(m, m)
        self._declare(layout, init)

    def _s(self, x, t):
        return self.xp.concatenate([x, self.xp.full((x.shape[0], 1), float(t))], axis=1)

    def _K(self, i):
        return self._views[f"K{i}"]

    def _forward(self, s, third):
        """Pre-activations, hidden states and :math:`\\sigma'` .. :math:`\\sigma'''` per layer."""
        xp, p = self.xp, self._views
        a = [s @ p["K0"].T + p["b0"]]
        u = [_log2cosh(xp, a[0])]
        for i in range(1, self.n_layers):
            a.append(u[-1] @ self._K(i).T + p[f"b{i}"])
            u.append(u[-1] + self.h * _log2cosh(xp, a[-1]))
        ders = [_logcosh_derivs(xp, ai, third) for ai in a]
        return a, u, ders

    def _backward_g(self, ders, batch):
        """:math:`g_i = \\partial (w^T u_{M-1}) / \\partial u_i` and :math:`q_i = \\sigma'(a_i) g_i`."""
        M = self.n_layers
        g = [None] * M
        q = [None] * M
        g[M - 1] = self.xp.broadcast_to(self._views["w"], (batch, self.width))
        for i in range(M - 1, 0, -1):
            q[i] = ders[i][0] * g[i]
            g[i - 1] = g[i] + self.h * (q[i] @ self._K(i))
        q[0] = ders[0][0] * g[0]
        return g, q

    def _trace(self, ders, g, keep):
        r"""Exact :math:`\Delta_x` of the network part, and the :math:`P_i, J_{i-1}` if ``keep``.

        ``P_i`` and ``J_i`` are stored as ``(m, B, d)`` arrays so that :math:`K_i J_{i-1}` is
        one matrix product with ``(m, B d)``.
        """
        d, m = self.dim, self.width
        batch = g[0].shape[0]
        P0 = self._views["K0"][:, :d]
        lap = (g[0] * ders[0][1]) @ (P0 * P0).sum(axis=1)
        J = ders[0][0].T[:, :, None] * P0[:, None, :]
        Ps, Js = [None], [J]
        for i in range(1, self.n_layers):
            P = (self._K(i) @ J.reshape(m, batch * d)).reshape(m, batch, d)
            lap = lap + self.h * (g[i] * ders[i][1] * (P * P).sum(axis=2).T).sum(axis=1)
            if keep:
                Ps.append(P)
            if i < self.n_layers - 1:
                J = J + self.h * ders[i][0].T[:, :, None] * P
                if keep:
                    Js.append(J)
        return lap, Ps, Js

    def value(self, x, t):
        x = self._x(x)
        s = self._s(x, t)
        p = self._views
        _, u, _ = self._forward(s, False)
        As = s @ p["A"].T
        return u[-1] @ p["w"] + 0.5 * (As * As).sum(axis=1) + s @ p["c"] + p["c0"][0]

    def _grad_s(self, s, q):
        A = self._views["A"]
        return q[0] @ self._views["K0"] + (s @ A.T) @ A + self._views["c"]

    def grad(self, x, t):
        x = self._x(x)
        s = self._s(x, t)
        _, _, ders = self._forward(s, False)
        _, q = self._backward_g(ders, x.shape[0])
        return self._grad_s(s, q)[:, :self.dim]

    def _grad_s_and_laplacian(self, x, t):
        r""":math:`\nabla_s\Phi` (space and time) and the spatial Laplacian."""
        x = self._x(x)
        s = self._s(x, t)
        _, _, ders = self._forward(s, False)
        g, q = self._backward_g(ders, x.shape[0])
        lap, _, _ = self._trace(ders, g, keep=False)
        AE = self._views["A"][:, :self.dim]
        return self._grad_s(s, q), lap + (AE * AE).sum()

    def grad_and_laplacian(self, x, t):
        gs, lap = self._grad_s_and_laplacian(x, t)
        return gs[:, :self.dim], lap

    def _vjp(self, x, t, a, b, want_params):
        s_bar, theta_bar = self._reverse(x, t, None, a, b, want_params)
        return s_bar[:, :self.dim], theta_bar

    def grad_time_laplacian(self, x, t):
        r""":math:`\partial_t\Phi` is the last entry of :math:`\nabla_s\Phi`."""
        gs, lap = self._grad_s_and_laplacian(x, t)
        return gs[:, :self.dim], gs[:, self.dim], lap

    def vjp_time(self, x, t, a, a_t, b):
        r"""The reverse sweep of :meth:`vjp` with the cotangent :math:`(a, a_t)` on the whole
        :math:`\nabla_s\Phi` (its time entry included)."""
        x = self._x(x)
        batch = x.shape[0]
        a = self._vectors(a, batch, "a")
        a_s = self.xp.concatenate([a, self._rows(a_t, batch, "a_t")[:, None]], axis=1)
        s_bar, theta_bar = self._reverse(x, t, None, a_s, self._rows(b, batch, "b"), True)
        return s_bar[:, :self.dim], theta_bar

    def param_vjp_value(self, x, t, c):
        x = self._x(x)
        return self._reverse(x, t, self._rows(c, x.shape[0], "c"), None, None, True)[1]

    def _reverse(self, x, t, gamma, alpha, beta, want_params):
        r"""Cotangents of :math:`L = \sum_i \gamma_i\Phi + \alpha_i\cdot\nabla_x\Phi + \beta_i\Delta_x\Phi`.

        ``gamma``, ``alpha``, ``beta`` may each be ``None`` (absent). Returns
        :math:`\partial L/\partial s` ``(B, d+1)`` and :math:`\partial L/\partial\theta`
        (``None`` unless ``want_params``). Adjoints carry a bar in the comments.
        """
        xp, d, m, M, h = self.xp, self.dim, self.width, self.n_layers, self.h
        batch = x.shape[0]
        p = self._views
        A, K0 = p["A"], p["K0"]
        s = self._s(x, t)
        _, u, ders = self._forward(s, beta is not None or alpha is not None)
        g, q = self._backward_g(ders, batch)
        theta_bar = xp.zeros(self.n_params) if want_params else None
        tb = self._unpack(theta_bar) if want_params else None
        a_bar = [xp.zeros((batch, m)) for _ in range(M)]
        g_bar = [xp.zeros((batch, m)) for _ in range(M)]
        s_bar = xp.zeros_like(s)
        AtA = A.T @ A

        if gamma is not None:  # gamma * (w^T u + s^T A^T A s / 2 + c^T s + c0)
            s_bar += gamma[:, None] * (s @ AtA + p["c"])
            if want_params:
                tb["c0"][0] += gamma.sum()
                tb["c"][...] += gamma @ s
                tb["A"][...] += A @ (s.T @ (gamma[:, None] * s))
        q0_bar = None
        if alpha is not None:  # alpha . (K0^T q0 + A^T A s + c)[:d] (or all d + 1 entries)
            al = alpha if alpha.shape[1] == d + 1 else \
                xp.concatenate([alpha, xp.zeros((batch, 1))], axis=1)
            s_bar += al @ AtA
            q0_bar = al @ K0.T
            if want_params:
                tb["c"][...] += al.sum(axis=0)
                tb["A"][...] += A @ (s.T @ al + al.T @ s)
                tb["K0"][...] += q[0].T @ al
        if beta is not None:
            if want_params:
                tb["A"][:, :d] += (2.0 * beta.sum()) * A[:, :d]
            self._reverse_trace(ders, g, beta, a_bar, g_bar, tb)

        # Adjoint of the gradient sweep g, run forwards in i.
        if alpha is not None or beta is not None:
            if q0_bar is not None:
                a_bar[0] += q0_bar * ders[0][1] * g[0]
                g_bar[0] += q0_bar * ders[0][0]
            for i in range(1, M):
                g_bar[i] += g_bar[i - 1]  # g_{i-1} = g_i + h K_i^T q_i
                qi_bar = h * (g_bar[i - 1] @ self._K(i).T)
                if want_params:
                    tb[f"K{i}"][...] += h * (q[i].T @ g_bar[i - 1])
                a_bar[i] += qi_bar * ders[i][1] * g[i]  # q_i = sigma'(a_i) g_i
                g_bar[i] += qi_bar * ders[i][0]
            if want_params:
                tb["w"][...] += g_bar[M - 1].sum(axis=0)

        # Adjoint of the network, run backwards in i.
        if gamma is not None:
            u_bar = gamma[:, None] * p["w"]
            if want_params:
                tb["w"][...] += gamma @ u[M - 1]
        else:
            u_bar = xp.zeros((batch, m))
        for i in range(M - 1, 0, -1):
            a_bar[i] += h * ders[i][0] * u_bar  # u_i = u_{i-1} + h sigma(a_i)
            if want_params:
                tb[f"b{i}"][...] += a_bar[i].sum(axis=0)
                tb[f"K{i}"][...] += a_bar[i].T @ u[i - 1]
            u_bar = u_bar + a_bar[i] @ self._K(i)
        a_bar[0] += ders[0][0] * u_bar
        s_bar += a_bar[0] @ K0
        if want_params:
            tb["b0"][...] += a_bar[0].sum(axis=0)
            tb["K0"][...] += a_bar[0].T @ s
        return s_bar, theta_bar

    def _reverse_trace(self, ders, g, beta, a_bar, g_bar, tb):
        r"""Adjoint of the trace sweep for :math:`\sum_i\beta_i\Delta_x\Phi(s_i)`, backwards in i.

        Adds into ``a_bar``, ``g_bar`` and (if ``tb`` is given) the parameter blocks ``K*``.
        Per layer, with :math:`\rho_{ij} = \beta_i h_i g_{ij}\sigma''(a_{ij})` and
        :math:`r_{ij} = |(P_i)_{j,:}|^2`: :math:`\bar g \mathrel{+}= \beta h_i\sigma'' r`,
        :math:`\bar a \mathrel{+}= \beta h_i g\sigma''' r`, :math:`\bar P_i = 2\rho P_i`; then
        :math:`J_i = J_{i-1} + h\sigma'(a_i)P_i` and :math:`P_i = K_i J_{i-1}` are reversed.
        """
        xp, d, m, M, h = self.xp, self.dim, self.width, self.n_layers, self.h
        batch = g[0].shape[0]
        _, Ps, Js = self._trace(ders, g, keep=True)
        P0 = self._views["K0"][:, :d]
        r0 = (P0 * P0).sum(axis=1)
        g_bar[0] += beta[:, None] * ders[0][1] * r0
        a_bar[0] += beta[:, None] * g[0] * ders[0][2] * r0
        J_bar = None  # cotangent of J_i, (m, B, d); J_{M-1} is not used
        for i in range(M - 1, 0, -1):
            P = Ps[i]
            r = (P * P).sum(axis=2).T
            g_bar[i] += (h * beta)[:, None] * ders[i][1] * r
            a_bar[i] += (h * beta)[:, None] * g[i] * ders[i][2] * r
            rho = (h * beta)[:, None] * g[i] * ders[i][1]
            P_bar = 2.0 * rho.T[:, :, None] * P
            if J_bar is not None:  # J_i = J_{i-1} + h diag(sigma'(a_i)) P_i
                P_bar = P_bar + h * ders[i][0].T[:, :, None] * J_bar
                a_bar[i] += h * ders[i][1] * (J_bar * P).sum(axis=2).T
            else:
                J_bar = xp.zeros((m, batch, d))
            Pm = P_bar.reshape(m, batch * d)
            if tb is not None:  # P_i = K_i J_{i-1}
                tb[f"K{i}"][...] += Pm @ Js[i - 1].reshape(m, batch * d).T
            J_bar = J_bar + (self._K(i).T @ Pm).reshape(m, batch, d)
        # J_0 = diag(sigma'(a_0)) P_0 with P_0 = K_0 E shared by the batch.
        a_bar[0] += ders[0][1] * (J_bar * P0[:, None, :]).sum(axis=2).T
        if tb is not None:
            rho0 = (beta[:, None] * g[0] * ders[0][1]).sum(axis=0)
            tb["K0"][:, :d] += 2.0 * rho0[:, None] * P0 \
                + (ders[0][0].T[:, :, None] * J_bar).sum(axis=1)


