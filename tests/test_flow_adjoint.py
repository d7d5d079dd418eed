r"""Monge-Ampère flow integrators and discrete-adjoint training, against independent checks.

The potentials here are written out by hand in numpy (exact derivatives), independent of
:mod:`ot_pde.flows.potentials`:

* :class:`QuadraticPotential`, :math:`\varphi = \tfrac12 x^\top S x`, :math:`S = (M + M^\top)/2`,
  whose flow :math:`x(t) = e^{tS}x_0` and log-density are known in closed form;
* :class:`TanhPotential`, :math:`\varphi = \sum_k w_k \tanh(u_k\cdot x + c_k t + e_k)
  + \tfrac{\alpha}{2}|x|^2`, nonlinear and time-dependent.
"""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from scipy.linalg import expm

from ot_pde.backends import get_backend
from ot_pde.errors import InputError, NumericalError
from ot_pde.flows import integrators as integ
from ot_pde.flows import training as tr
from ot_pde.parallel import block_range

from .conftest import fd_param_grad


class QuadraticPotential:
    r""":math:`\varphi = \tfrac12 x^\top S x`, :math:`S = (M + M^\top)/2`; parameters: ``M``."""

    time_dependent = False

    def __init__(self, m):
        m = np.asarray(m, dtype=np.float64)
        self.dim = m.shape[0]
        self.n_params = m.size
        self.set_params(m.ravel())

    def set_params(self, theta):
        self.params = np.array(theta, dtype=np.float64)
        m = self.params.reshape(self.dim, self.dim)
        self.s = 0.5 * (m + m.T)

    def value(self, x, t):
        return 0.5 * np.einsum("bi,ij,bj->b", x, self.s, x)

    def grad(self, x, t):
        return x @ self.s

    def laplacian(self, x, t):
        return np.full(x.shape[0], np.trace(self.s))

    def grad_and_laplacian(self, x, t):
        return self.grad(x, t), self.laplacian(x, t)

    def hvp(self, x, t, v):
        return v @ self.s

    def grad_laplacian(self, x, t):
        return np.zeros_like(x)

    def param_vjp(self, x, t, a, b):
        # d/dM_jk of a.Sx = (a_j x_k + a_k x_j)/2, of tr S = delta_jk.
        g = 0.5 * (a.T @ x + x.T @ a) + np.sum(b) * np.eye(self.dim)
        return g.ravel()

    def param_vjp_value(self, x, t, c):
        return (0.5 * (x.T * c) @ x).ravel()


class TanhPotential:
    r""":math:`\varphi = \sum_k w_k \tanh(s_k) + \tfrac{\alpha}{2}|x|^2`,
    :math:`s_k = u_k\cdot x + c_k t + e_k`.

    Parameters ``theta = [w (K), U (K x d), c (K), e (K)]``; ``alpha`` is fixed.
    With :math:`h = \tanh s`: :math:`h' = 1 - h^2`, :math:`h'' = -2hh'`,
    :math:`h''' = -2h'^2 + 4h^2h'`.
    """

    time_dependent = True

    def __init__(self, dim, width, rng, alpha=0.0, scale=0.7):
        self.dim, self.width, self.alpha = dim, width, alpha
        self.n_params = width * (dim + 3)
        self.set_params(scale * rng.standard_normal(self.n_params))

    def set_params(self, theta):
        self.params = np.array(theta, dtype=np.float64)
        k, d = self.width, self.dim
        self.w = self.params[:k]
        self.u = self.params[k:k + k * d].reshape(k, d)
        self.c = self.params[k + k * d:2 * k + k * d]
        self.e = self.params[2 * k + k * d:]

    def _h(self, x, t):
        h = np.tanh(x @ self.u.T + self.c * t + self.e)
        h1 = 1.0 - h * h
        return h, h1, -2.0 * h * h1, -2.0 * h1 * h1 + 4.0 * h * h * h1

    def value(self, x, t):
        h = np.tanh(x @ self.u.T + self.c * t + self.e)
        return h @ self.w + 0.5 * self.alpha * np.sum(x * x, 1)

    def grad(self, x, t):
        _, h1, _, _ = self._h(x, t)
        return (h1 * self.w) @ self.u + self.alpha * x

    def laplacian(self, x, t):
        _, _, h2, _ = self._h(x, t)
        return h2 @ (self.w * np.sum(self.u ** 2, 1)) + self.alpha * self.dim

    def grad_and_laplacian(self, x, t):
        return self.grad(x, t), self.laplacian(x, t)

    def hvp(self, x, t, v):
        _, _, h2, _ = self._h(x, t)
        return (h2 * self.w * (v @ self.u.T)) @ self.u + self.alpha * v

    def grad_laplacian(self, x, t):
        _, _, _, h3 = self._h(x, t)
        return (h3 * self.w * np.sum(self.u ** 2, 1)) @ self.u

    def param_vjp(self, x, t, a, b):
        b = np.broadcast_to(b, (x.shape[0],))
        _, h1, h2, h3 = self._h(x, t)
        ua = a @ self.u.T                      # (B, K): u_k . a_i
        uu = np.sum(self.u ** 2, 1)            # (K,)
        gw = np.sum(h1 * ua + b[:, None] * h2 * uu, 0)
        g = self.w * (h2 * ua + b[:, None] * h3 * uu)   # d/ds_ik
        gu = g.T @ x + self.w[:, None] * (h1.T @ a) + 2.0 * (self.w * (b @ h2))[:, None] * self.u
        return np.concatenate([gw, gu.ravel(), t * g.sum(0), g.sum(0)])

    def param_vjp_value(self, x, t, c):
        h, h1, _, _ = self._h(x, t)
        g = c[:, None] * self.w * h1
        return np.concatenate([c @ h, (g.T @ x).ravel(), t * g.sum(0), g.sum(0)])


def _target():
    """An unnormalized non-Gaussian target and its gradient (d = 3)."""
    mean = np.array([0.5, -0.3, 0.2])
    prec = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.5]])

    def log_prob(x):
        y = x - mean
        return -0.5 * np.einsum("bi,ij,bj->b", y, prec, y) - 0.1 * np.sum(y ** 4, 1)

    def grad(x):
        y = x - mean
        return -y @ prec - 0.4 * y ** 3

    return log_prob, grad


# ---------------------------------------------------------------------------- potentials


def test_test_potentials_derivatives():
    """The hand-written test potential's derivatives agree with finite differences of value()."""
    rng = np.random.default_rng(0)
    pot = TanhPotential(3, 4, rng, alpha=0.3)
    x, t, eps = rng.standard_normal((5, 3)), 0.37, 1e-5
    v, a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    e = np.eye(3)
    fd_g = np.stack([(pot.value(x + eps * e[i], t) - pot.value(x - eps * e[i], t)) / (2 * eps)
                     for i in range(3)], 1)
    np.testing.assert_allclose(pot.grad(x, t), fd_g, atol=1e-8)
    fd_hess = [(pot.grad(x + eps * e[i], t) - pot.grad(x - eps * e[i], t)) / (2 * eps)
               for i in range(3)]
    np.testing.assert_allclose(pot.laplacian(x, t), sum(fd_hess[i][:, i] for i in range(3)),
                               atol=1e-8)
    np.testing.assert_allclose(pot.hvp(x, t, v), sum(fd_hess[i] * v[:, i:i + 1] for i in range(3)),
                               atol=1e-8)
    fd_gl = np.stack([(pot.laplacian(x + eps * e[i], t) - pot.laplacian(x - eps * e[i], t))
                      / (2 * eps) for i in range(3)], 1)
    np.testing.assert_allclose(pot.grad_laplacian(x, t), fd_gl, atol=1e-8)
    fun = lambda: float(np.sum(a * pot.grad(x, t)) + b @ pot.laplacian(x, t))  # noqa: E731
    np.testing.assert_allclose(pot.param_vjp(x, t, a, b), fd_param_grad(pot, fun), atol=1e-8)
    fun = lambda: float(b @ pot.value(x, t))  # noqa: E731
    np.testing.assert_allclose(pot.param_vjp_value(x, t, b), fd_param_grad(pot, fun), atol=1e-8)


# ---------------------------------------------------------------------------- adjoint


@pytest.mark.parametrize("scheme", ["rk4", "midpoint"])
@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl"])
def test_adjoint_gradient_matches_finite_differences(scheme, kind):
    """The discrete adjoint is the exact gradient of the discrete loss (FD to 1e-6 relative)."""
    rng = np.random.default_rng(1)
    pot = TanhPotential(3, 3, rng, alpha=-0.2)
    batch = rng.standard_normal((7, 3))
    if kind == "forward_kl":
        objective = tr.ForwardKL(np.zeros((1, 3)))
    else:
        objective = tr.ReverseKL(*_target())
    kw = dict(T=0.8, n_steps=5, scheme=scheme)
    value, grad = tr.loss_and_grad(pot, objective, batch, **kw)
    assert value == tr.loss(pot, objective, batch, **kw)
    fd = fd_param_grad(pot, lambda: tr.loss(pot, objective, batch, **kw))
    assert np.max(np.abs(grad - fd)) <= 1e-6 * np.max(np.abs(fd))


@pytest.mark.parametrize("scheme", ["rk4", "midpoint"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_adjoint_state_cotangent(scheme, direction):
    """The pulled-back cotangent of the start state is the exact derivative of the discrete map."""
    rng = np.random.default_rng(2)
    pot = TanhPotential(2, 3, rng)
    x0, l0 = rng.standard_normal((4, 2)), rng.standard_normal(4)
    lam_x, lam_l = rng.standard_normal((4, 2)), rng.standard_normal(4)
    kw = dict(T=1.0, n_steps=3, scheme=scheme, direction=direction)
    _, _, traj = integ.integrate(pot, x0, l0, store=True, **kw)
    gx, gl, _ = integ.integrate_adjoint(pot, traj, lam_x, lam_l)

    def scalar(x):
        xe, le = integ.integrate(pot, x, l0, **kw)
        return np.sum(lam_x * xe) + lam_l @ le

    eps = 1e-6
    fd = np.zeros_like(x0)
    for idx in np.ndindex(*x0.shape):
        d = np.zeros_like(x0)
        d[idx] = eps
        fd[idx] = (scalar(x0 + d) - scalar(x0 - d)) / (2 * eps)
    np.testing.assert_allclose(gx, fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(gl, lam_l)  # dl_N/dl_0 = 1


def _package_potential(family, backend):
    from ot_pde.flows import potentials as P

    if family == "ohl_even":
        return P.OneHiddenLayer(3, 5, activation="logcosh", bias=False, backend=get_backend(backend), rng=3)
    if family.startswith("ohl_"):
        return P.OneHiddenLayer(3, 5, activation=family[4:], time_dependent=True,
                                backend=get_backend(backend), rng=3)
    if family == "otflow":
        return P.OTFlowResNet(3, 4, n_layers=3, backend=get_backend(backend), rng=3)
    mirrors = [(np.arange(3), np.array([1.0, -1.0, 1.0])), (np.array([1, 0, 2]), np.ones(3))]
    if family == "group_ohl":
        return P.GroupAveraged(P.OneHiddenLayer(3, 5, activation="softplus",
                                                time_dependent=True, backend=get_backend(backend), rng=3),
                               P.spin_flip(3) + mirrors)
    return P.GroupAveraged(P.OTFlowResNet(3, 4, backend=get_backend(backend), rng=3), mirrors)


@pytest.mark.parametrize("family", ["ohl_logcosh", "ohl_softplus", "ohl_tanh", "ohl_even",
                                    "otflow", "group_ohl", "group_otflow"])
@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl"])
def test_adjoint_every_package_family(family, kind, backend_name):
    """Acceptance: the adjoint gradient of the loss through RK4 equals central finite
    differences to 1e-6 relative for every potential family of the package, on each CPU
    backend (measured 3e-11 to 5e-10: FD truncation and round-off at eps = 1e-5)."""
    if backend_name == "cupy":
        pytest.skip("finite differences run on the host")
    pot = _package_potential(family, backend_name)
    batch = np.random.default_rng(12).standard_normal((6, 3))
    objective = tr.ForwardKL(batch) if kind == "forward_kl" else tr.ReverseKL(*_target())
    kw = dict(T=0.7, n_steps=3, scheme="rk4")
    _, grad = tr.loss_and_grad(pot, objective, batch, **kw)
    fd = fd_param_grad(pot, lambda: tr.loss(pot, objective, batch, **kw))
    assert np.max(np.abs(grad - fd)) <= 1e-6 * np.max(np.abs(fd))


@pytest.mark.parametrize("scheme", ["rk4", "midpoint"])
@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl"])
def test_adjoint_fused_vjp_one_hidden_layer(scheme, kind):
    """The fused ``vjp`` path, with the package's OneHiddenLayer (time-dependent, biased)."""
    from ot_pde.flows.potentials import OneHiddenLayer

    pot = OneHiddenLayer(3, 5, activation="tanh", time_dependent=True, rng=3)
    batch = np.random.default_rng(12).standard_normal((7, 3))
    objective = tr.ForwardKL(batch) if kind == "forward_kl" else tr.ReverseKL(*_target())
    kw = dict(T=0.8, n_steps=4, scheme=scheme)
    _, grad = tr.loss_and_grad(pot, objective, batch, **kw)
    fd = fd_param_grad(pot, lambda: tr.loss(pot, objective, batch, **kw))
    assert np.max(np.abs(grad - fd)) <= 1e-6 * np.max(np.abs(fd))


def test_adjoint_quadratic_potential_fd():
    """Adjoint with the quadratic potential (nonzero trace gradient, zero third derivative)."""
    rng = np.random.default_rng(3)
    pot = QuadraticPotential(0.3 * rng.standard_normal((3, 3)))
    batch = rng.standard_normal((6, 3))
    for objective in (tr.ForwardKL(batch), tr.ReverseKL(*_target())):
        kw = dict(T=1.0, n_steps=4, scheme="rk4")
        _, grad = tr.loss_and_grad(pot, objective, batch, **kw)
        fd = fd_param_grad(pot, lambda: tr.loss(pot, objective, batch, **kw))
        assert np.max(np.abs(grad - fd)) <= 1e-6 * np.max(np.abs(fd))


# ---------------------------------------------------------------------------- accuracy


def _observed_order(errors):
    return math.log2(errors[-2] / errors[-1])


@pytest.mark.parametrize("scheme,order", [("rk4", 4), ("midpoint", 2)])
def test_forward_accuracy_order(scheme, order):
    """x_T against the exact linear flow e^{TS} x0: observed order p of the scheme."""
    rng = np.random.default_rng(4)
    m = rng.standard_normal((3, 3))
    pot = QuadraticPotential(m)
    x0 = rng.standard_normal((5, 3))
    exact = x0 @ expm(1.5 * pot.s).T
    errs = []
    for n in (8, 16, 32):
        x, _ = integ.integrate(pot, x0, np.zeros(5), T=1.5, n_steps=n, scheme=scheme)
        errs.append(np.max(np.abs(x - exact)))
    assert abs(_observed_order(errs) - order) <= 0.3


@pytest.mark.parametrize("scheme,order", [("rk4", 4), ("midpoint", 2)])
def test_forward_then_backward_order(scheme, order):
    r"""Forward then backward returns to the start with error O(h^{p+1}).

    The backward map is not the discrete inverse of the forward map, but for even order p the
    leading local errors :math:`C h^{p+1}` of a step and of its time-reversed step cancel
    (:math:`1 + (-1)^{p+1} = 0`), so the round trip gains one order over either leg.
    """
    rng = np.random.default_rng(5)
    pot = TanhPotential(3, 4, rng, alpha=0.1, scale=1.0)
    x0, l0 = rng.standard_normal((6, 3)), rng.standard_normal(6)
    errs_x, errs_l = [], []
    for n in (16, 32, 64):  # rk4 is pre-asymptotic at 8 steps
        kw = dict(T=1.0, n_steps=n, scheme=scheme)
        x1, l1 = integ.integrate(pot, x0, l0, direction="forward", **kw)
        x2, l2 = integ.integrate(pot, x1, l1, direction="backward", **kw)
        errs_x.append(np.max(np.abs(x2 - x0)))
        errs_l.append(np.max(np.abs(l2 - l0)))
    assert errs_x[-1] < 1e-4
    assert abs(_observed_order(errs_x) - (order + 1)) <= 0.3
    assert abs(_observed_order(errs_l) - (order + 1)) <= 0.3


@pytest.mark.parametrize("scheme,order", [("rk4", 4), ("midpoint", 2)])
def test_change_of_variables_linear_flow(scheme, order):
    r"""For :math:`\varphi = \tfrac12 x^\top S x`: :math:`l_T = l_0 - T\,\mathrm{tr}\,S` exactly,
    and the log-density equals the Gaussian pushforward's to the scheme's order."""
    rng = np.random.default_rng(6)
    pot = QuadraticPotential(0.5 * rng.standard_normal((2, 2)))
    T, trace = 1.2, np.trace(pot.s)
    z = rng.standard_normal((10, 2))
    l0 = integ.standard_normal_log_prob(z)
    x, lt = integ.sample(pot, z, T=T, n_steps=7, scheme=scheme)
    np.testing.assert_allclose(lt, l0 - T * trace, rtol=0, atol=1e-13)
    # x_T ~ N(0, e^{2TS}): ln p_T(x) = ln N(e^{-TS} x) - T tr S.
    exact = integ.standard_normal_log_prob(x @ expm(-T * pot.s).T) - T * trace
    errs = []
    for n in (8, 16, 32):
        logp, _ = integ.log_density(pot, x, T=T, n_steps=n, scheme=scheme)
        errs.append(np.max(np.abs(logp - exact)))
    assert errs[-1] < 1e-3
    assert abs(_observed_order(errs) - order) <= 0.3


def test_standard_normal_log_prob():
    from scipy.stats import multivariate_normal
    z = np.random.default_rng(7).standard_normal((4, 3))
    np.testing.assert_allclose(integ.standard_normal_log_prob(z),
                               multivariate_normal(np.zeros(3)).logpdf(z), rtol=1e-14)


def test_integrate_bad_input():
    pot = QuadraticPotential(np.eye(2))
    x, l = np.zeros((3, 2)), np.zeros(3)
    with pytest.raises(ValueError, match="n_steps"):
        integ.integrate(pot, x, l, n_steps=0)
    with pytest.raises(ValueError, match="T must"):
        integ.integrate(pot, x, l, T=0.0, n_steps=2)
    with pytest.raises(ValueError, match="scheme"):
        integ.integrate(pot, x, l, n_steps=2, scheme="euler")
    with pytest.raises(ValueError, match="direction"):
        integ.integrate(pot, x, l, n_steps=2, direction="sideways")
    with pytest.raises(ValueError, match="shape"):
        integ.integrate(pot, np.zeros((3, 3)), l, n_steps=2)


# ---------------------------------------------------------------------------- Adam, Trainer


def test_adam_first_steps_by_hand():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    opt = tr.Adam(2, lr=lr, beta1=b1, beta2=b2, eps=eps)
    p0 = np.array([1.0, -2.0])
    g1, g2 = np.array([0.5, -4.0]), np.array([1.0, 2.0])
    p1 = opt.step(p0, g1)
    # step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps).
    np.testing.assert_allclose(p1, [1.0 - 0.1 * 0.5 / (0.5 + eps), -2.0 + 0.1 * 4.0 / (4.0 + eps)],
                               rtol=1e-15)
    p2 = opt.step(p1, g2)
    m = [0.9 * 0.1 * 0.5 + 0.1 * 1.0, 0.9 * 0.1 * -4.0 + 0.1 * 2.0]   # [0.145, -0.16]
    v = [0.999 * 0.001 * 0.25 + 0.001 * 1.0, 0.999 * 0.001 * 16.0 + 0.001 * 4.0]
    expected = [p1[i] - lr * (m[i] / 0.19) / (math.sqrt(v[i] / (1 - 0.999 ** 2)) + eps)
                for i in range(2)]
    np.testing.assert_allclose(p2, expected, rtol=1e-14)
    assert opt.t == 2


def test_adam_state_roundtrip_bit_for_bit():
    rng = np.random.default_rng(8)
    a = tr.Adam(4, lr=0.05)
    p = rng.standard_normal(4)
    for _ in range(3):
        p = a.step(p, rng.standard_normal(4))
    saved = copy.deepcopy(a.state_dict())
    b = tr.Adam(4, lr=0.05)
    b.load_state_dict(saved)
    g = rng.standard_normal(4)
    np.testing.assert_array_equal(a.step(p, g), b.step(p, g))
    with pytest.raises(InputError):
        b.load_state_dict({"m": np.zeros(3), "v": np.zeros(3), "t": 1})


def _make_trainer(kind, seed=11, **kw):
    pot = TanhPotential(3, 3, np.random.default_rng(9))
    if kind == "forward_kl":
        data = np.random.default_rng(10).standard_normal((50, 3)) * [1.0, 0.5, 2.0]
        objective = tr.ForwardKL(data)
    else:
        objective = tr.ReverseKL(*_target())
    return tr.Trainer(pot, objective, batch_size=8, n_steps=3, T=1.0, scheme="rk4",
                      optimizer=tr.Adam(pot.n_params, lr=0.02), seed=seed, **kw)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl"])
def test_sharded_step_is_the_whole_batch_step(kind):
    """Shards of 3 + 3 + 2 samples, summed in order, give the whole batch's loss and gradient
    (to round-off: the sums are grouped differently), and the same draws."""
    whole, sharded = _make_trainer(kind), _make_trainer(kind, shards=3)
    batch = whole.objective.draw(np.random.default_rng(5), 8, 3)
    want = tr.loss_and_grad(whole.potential, whole.objective, batch, n_steps=3)
    parts = [tr.loss_and_grad(whole.potential, whole.objective, batch[lo:hi], n_steps=3,
                              total=8) for lo, hi in (block_range(8, 3, k) for k in range(3))]
    assert [block_range(8, 3, k) for k in range(3)] == [(0, 3), (3, 6), (6, 8)]
    value, grad = tr.sum_shards(parts)
    assert abs(value - want[0]) <= 1e-14 * abs(want[0])
    np.testing.assert_allclose(grad, want[1], rtol=1e-13, atol=1e-15)
    for _ in range(3):
        a, b = whole.step(), sharded.step()
        assert abs(a["loss"] - b["loss"]) <= 1e-12 * abs(a["loss"])
    assert whole.rng.bit_generator.state == sharded.rng.bit_generator.state
    with pytest.raises(ValueError, match="shards"):
        _make_trainer(kind, shards=9)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl"])
def test_trainer_restart_bit_for_bit(kind):
    ref = _make_trainer(kind)
    ref_diag = [ref.step() for _ in range(6)]

    first = _make_trainer(kind)
    for _ in range(3):
        first.step()
    # What a checkpoint stores: arrays, ints and a JSON string (round-tripped here).
    saved = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in first.state().items()}
    saved["rng_state"] = json.loads(json.dumps(saved["rng_state"])).encode()

    restarted = _make_trainer(kind, seed=999)   # different seed and parameters ...
    restarted.potential.set_params(np.zeros(restarted.potential.n_params))
    restarted.load_state(saved)                 # ... all replaced by the checkpoint
    assert restarted.iteration == 3
    diag = [restarted.step() for _ in range(3)]
    assert diag == ref_diag[3:]
    np.testing.assert_array_equal(restarted.potential.params, ref.potential.params)
    for key in ("adam_m", "adam_v"):
        np.testing.assert_array_equal(restarted.state()[key], ref.state()[key])
    assert restarted.state()["rng_state"] == ref.state()["rng_state"]


def test_trainer_reduces_loss():
    trainer = _make_trainer("reverse_kl")
    losses = [trainer.step()["loss"] for _ in range(40)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert set(trainer.step()) == {"loss", "grad_norm"}


def test_trainer_non_finite_raises():
    trainer = _make_trainer("reverse_kl")
    trainer.objective = tr.ReverseKL(lambda x: np.full(x.shape[0], np.nan),
                                     lambda x: np.zeros_like(x))
    before = trainer.potential.params.copy()
    with pytest.raises(NumericalError, match="non-finite"):
        trainer.step()
    np.testing.assert_array_equal(trainer.potential.params, before)

    trainer = _make_trainer("forward_kl")
    trainer.objective = tr.ForwardKL(np.full((4, 3), np.inf))
    with pytest.raises(NumericalError), np.errstate(invalid="ignore"):
        trainer.step()


def test_trainer_bad_state():
    trainer = _make_trainer("forward_kl")
    state = trainer.state()
    with pytest.raises(InputError, match="params"):
        trainer.load_state({**state, "params": np.zeros(3)})
    with pytest.raises(InputError, match="lacks"):
        trainer.load_state({k: v for k, v in state.items() if k != "rng_state"})


def test_clip_norm_rescales_large_gradients_only():
    """clip_norm: a step whose gradient norm exceeds the bound is Adam's step on the gradient
    rescaled to the bound; below the bound the step is unchanged; the reported norm is the
    unclipped one; a non-positive bound is refused."""
    plain = _make_trainer("reverse_kl")
    p0 = plain.potential.params.copy()
    batch = plain.objective.draw(np.random.default_rng(11), 8, 3)
    _, g = tr.loss_and_grad(plain.potential, plain.objective, batch, n_steps=3)
    norm = float(np.linalg.norm(g))
    bound = 0.25 * norm
    clipped = _make_trainer("reverse_kl", clip_norm=bound)
    clipped.potential.set_params(p0)
    info = clipped.step()
    assert info["grad_norm"] == pytest.approx(norm, rel=1e-12)
    want = tr.Adam(len(p0), lr=0.02).step(p0.copy(), g * (bound / norm))
    np.testing.assert_allclose(clipped.potential.params, want, rtol=1e-12, atol=1e-14)
    loose = _make_trainer("reverse_kl", clip_norm=10.0 * norm)
    loose.potential.set_params(p0)
    loose.step()
    plain.step()
    np.testing.assert_array_equal(loose.potential.params, plain.potential.params)
    with pytest.raises(ValueError, match="clip_norm"):
        _make_trainer("reverse_kl", clip_norm=0.0)
