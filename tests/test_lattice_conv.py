"""LatticeConvolution against the dense one-hidden-layer potential it equals, and against
finite differences."""
import numpy as np
import pytest

from ot_pde.flows.lattice_conv import LatticeConvolution, patch_indices
from ot_pde.flows.potentials import OneHiddenLayer


def _dense_twin(conv: LatticeConvolution) -> OneHiddenLayer:
    """The dense potential of width m N whose units are the translates of the filters."""
    L, k, m, N = conv.L, conv.kernel, conv.channels, conv.dim
    dense = OneHiddenLayer(N, m * N, conv.activation, bias=conv.bias,
                           time_dependent=conv.time_dependent)
    idx = patch_indices(L, k)
    p = conv.param_blocks()
    W = np.zeros((N, m, N))
    for q in range(k * k):
        W[np.arange(N), :, idx[:, q]] = p["W1"][:, q]
    d = dense.param_blocks()
    d["W1"][...] = W.reshape(N * m, N)
    for name in ("b", "c", "w2"):
        if name in d:
            d[name][...] = np.tile(p[name], N)
    return dense


def _fold(conv, theta_dense):
    """Sum a dense parameter cotangent over the translates (the filters' cotangent)."""
    L, k, m, N = conv.L, conv.kernel, conv.channels, conv.dim
    dense = _dense_twin(conv)
    blocks = dense._unpack(theta_dense)
    out = conv._unpack(np.zeros(conv.n_params))
    W = blocks["W1"].reshape(N, m, N)
    idx = patch_indices(L, k)
    for q in range(k * k):
        out["W1"][:, q] = W[np.arange(N), :, idx[:, q]].sum(axis=0)
    for name in ("b", "c", "w2"):
        if name in out:
            out[name][...] = blocks[name].reshape(N, m).sum(axis=0)
    return np.concatenate([out[name].ravel() for name, _ in conv._layout])


@pytest.mark.parametrize("L,k,act,bias,td", [(4, 3, "logcosh", True, True),
                                            (5, 5, "tanh", False, True),
                                            (6, 1, "softplus", True, False)])
def test_equals_the_dense_translates(L, k, act, bias, td):
    conv = LatticeConvolution(L, k, 3, act, bias=bias, time_dependent=td, rng=1)
    dense = _dense_twin(conv)
    rng = np.random.default_rng(2)
    B, t = 5, 0.37
    x, a, v = (rng.standard_normal((B, L * L)) for _ in range(3))
    b = rng.standard_normal(B)
    c = rng.standard_normal(B)
    np.testing.assert_allclose(conv.value(x, t), dense.value(x, t), rtol=1e-12, atol=1e-12)
    for mine, ref in zip(conv.grad_and_laplacian(x, t), dense.grad_and_laplacian(x, t)):
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-12)
    for mine, ref in zip(conv.value_grad_and_laplacian(x, t),
                         dense.value_grad_and_laplacian(x, t)):
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.hvp(x, t, v), dense.hvp(x, t, v), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(conv.grad_laplacian(x, t), dense.grad_laplacian(x, t),
                               rtol=1e-11, atol=1e-12)
    xb, tb = conv.vjp(x, t, a, b)
    xb_ref, tb_ref = dense.vjp(x, t, a, b)
    np.testing.assert_allclose(xb, xb_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(tb, _fold(conv, tb_ref), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(conv.param_vjp_value(x, t, c),
                               _fold(conv, dense.param_vjp_value(x, t, c)),
                               rtol=1e-11, atol=1e-11)


def test_parameter_cotangent_against_finite_differences():
    conv = LatticeConvolution(4, 3, 2, "logcosh", bias=True, time_dependent=True, rng=3)
    rng = np.random.default_rng(4)
    x, a = rng.standard_normal((3, 16)), rng.standard_normal((3, 16))
    b, t = rng.standard_normal(3), 0.6

    def L(theta):
        conv.set_params(theta)
        g, lap = conv.grad_and_laplacian(x, t)
        return float((a * g).sum() + (b * lap).sum())

    theta = conv.params.copy()
    _, tb = conv.vjp(x, t, a, b)
    h = 1e-6
    fd = np.array([(L(theta + h * e) - L(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])
    conv.set_params(theta)
    np.testing.assert_allclose(tb, fd, rtol=1e-6, atol=1e-7)


def test_float32_twin_agrees():
    conv = LatticeConvolution(6, 3, 4, "logcosh", time_dependent=True, rng=5)
    twin = conv.astype(np.float32)
    x = np.random.default_rng(6).standard_normal((4, 36))
    g64, l64 = conv.grad_and_laplacian(x, 0.2)
    g32, l32 = twin.grad_and_laplacian(x, 0.2)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(l32, l64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw,msg", [({"kernel": 4}, "odd"), ({"kernel": 7}, "odd"),
                                    ({"channels": 0}, "channels")])
def test_bad_shapes_are_refused(kw, msg):
    args = {"L": 5, "kernel": 3, "channels": 2, **kw}
    with pytest.raises(ValueError, match=msg):
        LatticeConvolution(**args)


def test_numba_backend_agrees_with_numpy():
    from ot_pde.backends import get_backend

    ref = LatticeConvolution(6, 3, 4, "logcosh", time_dependent=True, rng=7)
    fast = LatticeConvolution(6, 3, 4, "logcosh", time_dependent=True,
                              backend=get_backend("numba"), rng=7)
    assert fast._kernels is not None
    rng = np.random.default_rng(8)
    x, a = rng.standard_normal((5, 36)), rng.standard_normal((5, 36))
    b = rng.standard_normal(5)
    for mine, theirs in zip(fast.grad_and_laplacian(x, 0.4), ref.grad_and_laplacian(x, 0.4)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-13, atol=1e-13)
    for mine, theirs in zip(fast.vjp(x, 0.4, a, b), ref.vjp(x, 0.4, a, b)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-13)


def test_summed_is_the_sum_of_its_parts_and_shares_their_parameters():
    from ot_pde.flows.potentials import Summed

    conv = LatticeConvolution(4, 3, 2, "logcosh", time_dependent=True, rng=9)
    dense = OneHiddenLayer(16, 5, "logcosh", time_dependent=True, rng=10)
    ref_conv, ref_dense = conv.params.copy(), dense.params.copy()
    both = Summed([conv, dense])
    assert both.n_params == conv.n_params + dense.n_params
    np.testing.assert_array_equal(both.params, np.concatenate([ref_conv, ref_dense]))
    rng = np.random.default_rng(11)
    x, a, v = (rng.standard_normal((3, 16)) for _ in range(3))
    b, t = rng.standard_normal(3), 0.3
    g, lap = both.grad_and_laplacian(x, t)
    np.testing.assert_allclose(g, conv.grad(x, t) + dense.grad(x, t), rtol=1e-14)
    np.testing.assert_allclose(lap, conv.laplacian(x, t) + dense.laplacian(x, t), rtol=1e-14)
    np.testing.assert_allclose(both.hvp(x, t, v), conv.hvp(x, t, v) + dense.hvp(x, t, v),
                               rtol=1e-14)
    x_bar, theta_bar = both.vjp(x, t, a, b)
    np.testing.assert_allclose(theta_bar, np.concatenate([conv.vjp(x, t, a, b)[1],
                                                          dense.vjp(x, t, a, b)[1]]))
    # training the sum trains the parts, and the float32 twin copies, not shares
    both.set_params(both.params + 1.0)
    np.testing.assert_array_equal(conv.params, ref_conv + 1.0)
    twin = both.astype(np.float32)
    assert twin.parts[0].params.dtype == np.float32
    twin.set_params(np.zeros(both.n_params))
    np.testing.assert_array_equal(dense.params, ref_dense + 1.0)
    np.testing.assert_allclose(twin.grad(x.astype(np.float32), t), 0.0)
