"""TranslationAveraged (FFT) against GroupAveraged(OneHiddenLayer, translations_2d), exactly."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ot_pde.flows import training as tr
from ot_pde.flows.lattice import TranslationAveraged
from ot_pde.flows.potentials import GroupAveraged, OneHiddenLayer, translations_2d

from .conftest import fd_param_grad

RTOL = 1e-12


def _pair(L, activation, bias, time_dependent, seed=0, width=5):
    fft = TranslationAveraged(L, width, activation=activation, bias=bias,
                              time_dependent=time_dependent, rng=seed)
    base = OneHiddenLayer(L * L, width, activation=activation, bias=bias,
                          time_dependent=time_dependent, rng=seed)
    # same initialization for the same rng
    np.testing.assert_array_equal(fft.params, base.params)
    rng = np.random.default_rng(100 + seed)
    theta = rng.standard_normal(base.n_params)
    base.set_params(theta)
    fft.set_params(theta)
    return fft, GroupAveraged(base, translations_2d(L))


def _close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) <= RTOL * scale, np.max(np.abs(got - want)) / scale


CASES = list(itertools.product([3, 4], ["logcosh", "softplus", "tanh"], [True, False],
                                [True, False]))


@pytest.mark.parametrize("L, activation, bias, time_dependent", CASES)
def test_matches_group_average(L, activation, bias, time_dependent):
    fft, ref = _pair(L, activation, bias, time_dependent)
    rng = np.random.default_rng(7)
    B, d = 5, L * L
    x = rng.standard_normal((B, d))
    a, v = rng.standard_normal((B, d)), rng.standard_normal((B, d))
    b, c = rng.standard_normal(B), rng.standard_normal(B)
    t = 0.37
    assert fft.n_params == ref.n_params and fft.dim == ref.dim
    _close(fft.value(x, t), ref.value(x, t))
    _close(fft.grad(x, t), ref.grad(x, t))
    _close(fft.laplacian(x, t), ref.laplacian(x, t))
    g1, l1 = fft.grad_and_laplacian(x, t)
    g2, l2 = ref.grad_and_laplacian(x, t)
    _close(g1, g2)
    _close(l1, l2)
    for got, want in zip(fft.value_grad_and_laplacian(x, t), ref.value_grad_and_laplacian(x, t)):
        _close(got, want)
    _close(fft.hvp(x, t, v), ref.hvp(x, t, v))
    _close(fft.grad_laplacian(x, t), ref.grad_laplacian(x, t))
    xb1, tb1 = fft.vjp(x, t, a, b)
    xb2, tb2 = ref.vjp(x, t, a, b)
    _close(xb1, xb2)
    _close(tb1, tb2)
    _close(fft.param_vjp(x, t, a, b), ref.param_vjp(x, t, a, b))
    _close(fft.param_vjp_value(x, t, c), ref.param_vjp_value(x, t, c))
    # the private entry point with one cotangent absent (as hvp / grad_laplacian use it)
    for aa, bb in [(a, None), (None, b)]:
        xb1, tb1 = fft._vjp(x, t, aa, bb, want_params=True)
        xb2, tb2 = ref._vjp(x, t, aa, bb, want_params=True)
        _close(xb1, xb2)
        _close(tb1, tb2)


@pytest.mark.parametrize("L", [3, 4])
def test_translation_invariance(L):
    fft, _ = _pair(L, "softplus", True, True, seed=3)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, L * L))
    v0 = fft.value(x, 0.5)
    g0 = fft.grad(x, 0.5)
    lat = x.reshape(4, L, L)
    for p in range(L):
        for q in range(L):
            xs = np.roll(lat, (p, q), axis=(1, 2)).reshape(4, L * L)
            _close(fft.value(xs, 0.5), v0)
            # the gradient is equivariant
            gs = np.roll(g0.reshape(4, L, L), (p, q), axis=(1, 2)).reshape(4, L * L)
            _close(fft.grad(xs, 0.5), gs)


def test_adjoint_rk4_matches_finite_differences():
    """The discrete adjoint through RK4 with the FFT potential is the gradient of the loss."""
    L = 3
    pot = TranslationAveraged(L, 3, activation="tanh", bias=True, time_dependent=True, rng=4)
    rng = np.random.default_rng(5)
    batch = rng.standard_normal((6, L * L))

    def log_prob(x):
        return -0.5 * np.sum((x - 0.3) ** 2, 1) - 0.05 * np.sum(x ** 4, 1)

    def grad(x):
        return -(x - 0.3) - 0.2 * x ** 3

    objective = tr.ReverseKL(log_prob, grad)
    kw = dict(T=0.8, n_steps=4, scheme="rk4")
    value, g = tr.loss_and_grad(pot, objective, batch, **kw)
    assert value == tr.loss(pot, objective, batch, **kw)
    fd = fd_param_grad(pot, lambda: tr.loss(pot, objective, batch, **kw))
    assert np.max(np.abs(g - fd)) <= 1e-6 * np.max(np.abs(fd))
