r"""Potentials of Monge-Ampère flows (:mod:`ot_pde.flows.potentials`) against finite differences.

Every closed-form derivative is checked against central differences of a lower derivative:

* ``grad`` against differences of ``value``;
* ``laplacian`` against the trace of the Hessian obtained by differencing ``grad``, and,
  independently of ``grad``, against second differences of ``value``;
* ``hvp`` against that FD Hessian, ``grad_laplacian`` against differences of ``laplacian``,
  the x-cotangent of ``vjp`` against both;
* ``param_vjp`` / ``param_vjp_value`` against differences in every parameter.

Tolerances (``max|analytic - FD| <= tol * max|FD|``). A central difference of a smooth f with
step h has truncation error ~ h^2 |f'''| / 6 and round-off ~ eps |f| / h (eps = 2.2e-16).
With h = 1e-5 and O(1) derivatives (unit-scale weights and inputs) both are ~1e-11, so first
differences of an analytic quantity (value -> grad, grad -> Hessian, laplacian ->
grad_laplacian, L(theta) -> theta_bar) are held to ``FD_TOL = 1e-7``: the observed errors are
1e-11 .. 5e-10, the margin of ~100 covers derivative magnitudes up to O(10) and the
relative-to-max normalization, and a wrong term (a missing factor 2, a dropped block, a sign)
is O(1) relative. The second difference (f(x+h) - 2f(x) + f(x-h)) / h^2 has truncation
h^2 |f''''| / 12 and round-off ~ 4 eps |f| / h^2; h = 1e-4 balances them at ~1e-8 each, so the
value-only Laplacian check uses ``FD2_TOL = 1e-5``.

Backends: numpy and numba must agree to 1e-10 relative (the kernels use the same formulas,
only the summation order differs: observed ~1e-15). numba tests are skipped where numba is
not installed.
"""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.backends import available_backends, get_backend
from ot_pde.flows.potentials import (
    ACTIVATIONS,
    GroupAveraged,
    OneHiddenLayer,
    OTFlowResNet,
    reflections_2d,
    signed_permutation_group,
    spin_flip,
    translations_2d,
)

from .conftest import fd_param_grad

FD_H = 1e-5
FD_TOL = 1e-7
FD2_H = 1e-4
FD2_TOL = 1e-5
BACKEND_TOL = 1e-10
T = 0.3  # nonzero, so the time coefficients c_j get a nonzero gradient

requires_numba = pytest.mark.skipif("numba" not in available_backends(),
                                    reason="numba not installed")


def assert_rel(actual, expected, tol, what=""):
    """``max|actual - expected| <= tol * max|expected|`` (and same shape)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = np.abs(expected).max()
    assert scale > 0, f"{what}: reference is identically zero, the check would be vacuous"
    err = np.abs(actual - expected).max() / scale
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


# -- families -----------------------------------------------------------------------------------
DIM = 4  # a 2x2 lattice, so the lattice groups apply to every family

OHL_CONFIGS = [(act, bias, td) for act in ACTIVATIONS for bias in (False, True)
               for td in (False, True)]


def _ohl(act, bias, td, dim=DIM, width=6):
    return lambda backend: OneHiddenLayer(dim, width, act, bias=bias, time_dependent=td,
                                          backend=get_backend(backend), rng=3)


def _lattice_group():
    return translations_2d(2) + reflections_2d(2)


FAMILIES = {f"ohl-{act}-{'bias' if bias else 'nobias'}-{'t' if td else 'not'}":
            _ohl(act, bias, td) for act, bias, td in OHL_CONFIGS}
FAMILIES.update({
    "otflow-2layers": lambda backend: OTFlowResNet(DIM, 5, 2, rank=3, backend=get_backend(backend), rng=2),
    "otflow-3layers": lambda backend: OTFlowResNet(DIM, 5, 3, backend=get_backend(backend), rng=2),
    "group-spinflip-ohl": lambda backend: GroupAveraged(
        OneHiddenLayer(DIM, 6, "softplus", bias=True, time_dependent=True, backend=get_backend(backend),
                       rng=3), spin_flip(DIM)),
    # max_rows=6 with B=3: two group elements per call of the base, four chunks.
    "group-lattice-ohl-chunked": lambda backend: GroupAveraged(
        OneHiddenLayer(DIM, 6, "tanh", bias=True, time_dependent=True, backend=get_backend(backend), rng=3),
        _lattice_group(), max_rows=6),
    "group-lattice-spinflip-otflow": lambda backend: GroupAveraged(
        OTFlowResNet(DIM, 5, 3, backend=get_backend(backend), rng=2), _lattice_group() + spin_flip(DIM)),
})


@pytest.fixture(params=list(FAMILIES), scope="module")
def family(request):
    return request.param


@pytest.fixture(scope="module")
def fd_data(family):
    """The potential (numpy), inputs, cotangents, and the finite-difference references."""
    pot = FAMILIES[family]("numpy")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, DIM))
    t = T

    def fd(f, x0, h=FD_H):
        """Central differences of f: (B, d) -> (B, ...) in each coordinate; (B, ..., d)."""
        cols = []
        for k in range(DIM):
            e = np.zeros_like(x0)
            e[:, k] = h
            cols.append((f(x0 + e) - f(x0 - e)) / (2 * h))
        return np.stack(cols, axis=-1)

    hess = fd(lambda y: pot.grad(y, t), x)  # (B, d, d), row k = d grad_k / dx
    return dict(pot=pot, x=x, t=t, rng=rng, fd=fd, hess=hess,
                grad_fd=fd(lambda y: pot.value(y, t), x),
                grad_lap_fd=fd(lambda y: pot.laplacian(y, t), x))


def test_grad_matches_fd_of_value(fd_data):
    d = fd_data
    assert_rel(d["pot"].grad(d["x"], d["t"]), d["grad_fd"], FD_TOL, "grad")
    g, _ = d["pot"].grad_and_laplacian(d["x"], d["t"])
    assert_rel(g, d["grad_fd"], FD_TOL, "grad of grad_and_laplacian")


def test_laplacian_matches_fd(fd_data):
    d = fd_data
    pot, x, t = d["pot"], d["x"], d["t"]
    lap = pot.laplacian(x, t)
    assert_rel(lap, np.einsum("bkk->b", d["hess"]), FD_TOL, "laplacian vs trace FD Hessian")
    assert_rel(pot.grad_and_laplacian(x, t)[1], lap, 1e-14, "grad_and_laplacian vs laplacian")
    v3, g3, l3 = pot.value_grad_and_laplacian(x, t)
    assert_rel(v3, pot.value(x, t), 1e-14, "value_grad_and_laplacian[0] vs value")
    assert_rel(g3, pot.grad(x, t), 1e-14, "value_grad_and_laplacian[1] vs grad")
    assert_rel(l3, lap, 1e-14, "value_grad_and_laplacian[2] vs laplacian")
    # Independent of grad: second differences of the value.
    h = FD2_H
    f0 = pot.value(x, t)
    lap2 = np.zeros(x.shape[0])
    for k in range(DIM):
        e = np.zeros_like(x)
        e[:, k] = h
        lap2 += (pot.value(x + e, t) - 2 * f0 + pot.value(x - e, t)) / h ** 2
    assert_rel(lap, lap2, FD2_TOL, "laplacian vs second differences of value")


def test_hessian_is_symmetric_and_hvp_matches(fd_data):
    d = fd_data
    pot, x, t, hess = d["pot"], d["x"], d["t"], d["hess"]
    assert_rel(hess, np.swapaxes(hess, 1, 2), FD_TOL, "FD Hessian symmetry")
    v = d["rng"].standard_normal(x.shape)
    assert_rel(pot.hvp(x, t, v), np.einsum("bkj,bj->bk", hess, v), FD_TOL, "hvp")


def test_grad_laplacian_matches_fd(fd_data):
    d = fd_data
    assert_rel(d["pot"].grad_laplacian(d["x"], d["t"]), d["grad_lap_fd"], FD_TOL,
               "grad_laplacian")


def test_vjp_x_cotangent(fd_data):
    d = fd_data
    pot, x, t = d["pot"], d["x"], d["t"]
    a = d["rng"].standard_normal(x.shape)
    b = d["rng"].standard_normal(x.shape[0])
    x_bar, _ = pot.vjp(x, t, a, b)
    expected = np.einsum("bkj,bj->bk", d["hess"], a) + b[:, None] * d["grad_lap_fd"]
    assert_rel(x_bar, expected, FD_TOL, "vjp x_bar")


def test_param_vjp_matches_fd(fd_data):
    d = fd_data
    pot, x, t = d["pot"], d["x"], d["t"]
    a = d["rng"].standard_normal(x.shape)
    b = d["rng"].standard_normal(x.shape[0])

    def loss():
        g, lap = pot.grad_and_laplacian(x, t)
        return float((a * g).sum() + b @ lap)

    fd = fd_param_grad(pot, loss, FD_H)
    _, theta_bar = pot.vjp(x, t, a, b)
    assert_rel(theta_bar, fd, FD_TOL, "vjp theta_bar")
    assert_rel(pot.param_vjp(x, t, a, b), theta_bar, 1e-14, "param_vjp vs vjp")
    # A scalar b broadcasts over the batch.
    np.testing.assert_allclose(pot.param_vjp(x, t, a, 0.5),
                               pot.param_vjp(x, t, a, np.full(x.shape[0], 0.5)), rtol=1e-14)


def test_param_vjp_value_matches_fd(fd_data):
    d = fd_data
    pot, x, t = d["pot"], d["x"], d["t"]
    c = d["rng"].standard_normal(x.shape[0])
    fd = fd_param_grad(pot, lambda: float(c @ pot.value(x, t)), FD_H)
    assert_rel(pot.param_vjp_value(x, t, c), fd, FD_TOL, "param_vjp_value")


def test_params_roundtrip_and_blocks(family):
    pot = FAMILIES[family]("numpy")
    x = np.random.default_rng(0).standard_normal((2, DIM))
    v0 = pot.value(x, T)
    theta = pot.params.copy()
    assert theta.shape == (pot.n_params,)
    blocks = pot.param_blocks()
    assert sum(b.size for b in blocks.values()) == pot.n_params
    pot.set_params(1.1 * theta)
    assert np.array_equal(pot.params, 1.1 * theta)
    assert not np.allclose(pot.value(x, T), v0)
    # The blocks are views: they follow set_params.
    assert np.array_equal(np.concatenate([b.ravel() for b in pot.param_blocks().values()]),
                          1.1 * theta)
    pot.params = theta
    assert np.array_equal(pot.value(x, T), v0)


# -- numpy vs numba -------------------------------------------------------------------------------
def _all_outputs(pot, x, t, a, b, c):
    g, lap = pot.grad_and_laplacian(x, t)
    x_bar, theta_bar = pot.vjp(x, t, a, b)
    v3, g3, l3 = pot.value_grad_and_laplacian(x, t)
    return {"value": pot.value(x, t), "grad_and_laplacian[0]": g,
            "value_grad_and_laplacian[0]": v3, "value_grad_and_laplacian[1]": g3,
            "value_grad_and_laplacian[2]": l3,
            "grad_and_laplacian[1]": lap, "grad": pot.grad(x, t),
            "laplacian": pot.laplacian(x, t), "vjp x_bar": x_bar, "vjp theta_bar": theta_bar,
            "param_vjp_value": pot.param_vjp_value(x, t, c), "hvp": pot.hvp(x, t, a),
            "grad_laplacian": pot.grad_laplacian(x, t)}


def _check_backends_agree(make, batch, dim, seed=7):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, dim))
    a = rng.standard_normal((batch, dim))
    b = rng.standard_normal(batch)
    c = rng.standard_normal(batch)
    ref_pot, nb_pot = make("numpy"), make("numba")
    assert nb_pot.backend.name == "numba"
    assert np.array_equal(ref_pot.params, nb_pot.params)
    ref = _all_outputs(ref_pot, x, T, a, b, c)
    got = _all_outputs(nb_pot, x, T, a, b, c)
    for key in ref:
        assert_rel(got[key], ref[key], BACKEND_TOL, f"numba vs numpy: {key}")


@requires_numba
@pytest.mark.parametrize("batch,dim,width", [(16, 64, 128), (48, 8, 32)],
                         ids=["B<m", "B>=m"])  # the numba path has a layout for each
@pytest.mark.parametrize("act,bias,td", OHL_CONFIGS)
def test_numba_matches_numpy_one_hidden_layer(act, bias, td, batch, dim, width):
    make = _ohl(act, bias, td, dim=dim, width=width)
    assert make("numba")._kernels is not None  # the numba path is really taken
    _check_backends_agree(make, batch=batch, dim=dim)


@requires_numba
@pytest.mark.parametrize("name", ["otflow", "group-lattice4-ohl", "group-spinflip-otflow"])
def test_numba_matches_numpy_other_families(name):
    L = 4
    if name == "otflow":
        def make(backend):
            return OTFlowResNet(16, 32, 3, backend=get_backend(backend), rng=4)
    elif name == "group-lattice4-ohl":
        # p4m x spin flip of a 4x4 lattice: 256 elements, 16 * 256 rows per base call.
        def make(backend):
            return GroupAveraged(OneHiddenLayer(L * L, 64, "logcosh", bias=False,
                                                backend=get_backend(backend), rng=4),
                                 translations_2d(L) + reflections_2d(L) + spin_flip(L * L))
    else:
        def make(backend):
            return GroupAveraged(OTFlowResNet(L * L, 16, 2, backend=get_backend(backend), rng=4),
                                 spin_flip(L * L))
    _check_backends_agree(make, batch=16, dim=L * L)


@requires_numba
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_large_preactivations_stay_finite_and_agree(act):
    """|z| up to ~1e3: no overflow (RuntimeWarnings are errors here), backends still agree."""
    x = 300.0 * np.random.default_rng(2).standard_normal((8, 16))
    x[0] = 0.0
    outs = []
    for backend in ("numpy", "numba"):
        pot = OneHiddenLayer(16, 32, act, bias=True, time_dependent=True, backend=get_backend(backend),
                             rng=1)
        g, lap = pot.grad_and_laplacian(x, T)
        x_bar, theta_bar = pot.vjp(x, T, np.ones_like(x), np.ones(8))
        outs.append([pot.value(x, T), g, lap, x_bar, theta_bar])
    for ref, got in zip(*outs):
        assert np.all(np.isfinite(ref))
        np.testing.assert_allclose(got, ref, rtol=BACKEND_TOL, atol=BACKEND_TOL * np.abs(ref).max())


# -- symmetries -----------------------------------------------------------------------------------
def test_logcosh_without_bias_is_even(backend_name):
    pot = OneHiddenLayer(16, 32, "logcosh", bias=False, time_dependent=False,
                         backend=get_backend(backend_name), rng=1)
    host = pot.backend.to_numpy
    x = np.random.default_rng(5).standard_normal((6, 16))
    # z(-x) = -z(x) exactly (same BLAS order, negation is exact) and log cosh is computed from
    # |z|: value and Laplacian are bitwise even, gradient and grad-Laplacian bitwise odd.
    assert np.array_equal(host(pot.value(-x, T)), host(pot.value(x, T)))
    assert np.array_equal(host(pot.laplacian(-x, T)), host(pot.laplacian(x, T)))
    assert np.array_equal(host(pot.grad(-x, T)), -host(pot.grad(x, T)))
    assert np.array_equal(host(pot.grad_laplacian(-x, T)), -host(pot.grad_laplacian(x, T)))
    # A time coefficient at t = 0 keeps it even; with a bias, or a time coefficient at t != 0,
    # it is not even (so the checks above can fail).
    p_t = OneHiddenLayer(16, 32, "logcosh", bias=False, time_dependent=True,
                         backend=get_backend(backend_name), rng=1)
    assert np.array_equal(host(p_t.value(-x, 0.0)), host(p_t.value(x, 0.0)))
    for p in (OneHiddenLayer(16, 32, "logcosh", bias=True, backend=get_backend(backend_name), rng=1),
              OneHiddenLayer(16, 32, "logcosh", bias=False, time_dependent=True,
                             backend=get_backend(backend_name), rng=1)):
        assert not np.allclose(host(p.value(-x, T)), host(p.value(x, T)))


# Generators whose signs are not all equal (x -> (-x1, x0, x2, x3), x -> (x0, x1, x3, -x2),
# and the swap of the two pairs): the composition must permute the signs too.
MIXED_SIGN_GENERATORS = [([1, 0, 2, 3], [-1, 1, 1, 1]), ([0, 1, 3, 2], [1, 1, 1, -1]),
                         ([2, 3, 0, 1], [1, 1, 1, 1])]

GROUPS = {
    "spinflip": (lambda: spin_flip(DIM), 2),
    "lattice2x2": (_lattice_group, 8),
    "lattice2x2-spinflip": (lambda: _lattice_group() + spin_flip(DIM), 16),
    "mixed-signs": (lambda: MIXED_SIGN_GENERATORS, 32),
}


@pytest.mark.parametrize("group", list(GROUPS))
@pytest.mark.parametrize("base", ["ohl", "otflow"])
def test_group_average_is_invariant(backend_name, group, base):
    make_group, order = GROUPS[group]
    if base == "ohl":
        pot0 = OneHiddenLayer(DIM, 8, "softplus", bias=True, time_dependent=True,
                              backend=get_backend(backend_name), rng=6)
    else:
        pot0 = OTFlowResNet(DIM, 6, 2, backend=get_backend(backend_name), rng=6)
    pot = GroupAveraged(pot0, make_group())
    assert pot.order == order
    host = pot.backend.to_numpy
    x = np.random.default_rng(8).standard_normal((5, DIM))
    v0 = host(pot.value(x, T))
    g0, l0 = map(host, pot.grad_and_laplacian(x, T))
    base_moves = False
    for perm, signs in pot.elements:
        hx = signs * x[:, perm]
        # Exact up to the order of summation over the group.
        assert_rel(host(pot.value(hx, T)), v0, 1e-13, "value(hx)")
        g1, l1 = map(host, pot.grad_and_laplacian(hx, T))
        assert_rel(g1, signs * g0[:, perm], 1e-13, "grad(hx) = h grad(x)")
        assert_rel(l1, l0, 1e-13, "laplacian(hx)")
        base_moves |= not np.allclose(host(pot0.value(hx, T)), host(pot0.value(x, T)))
    assert base_moves, "the base potential is already invariant: the test would be vacuous"


def test_group_average_chunking_does_not_change_results():
    x = np.random.default_rng(9).standard_normal((3, DIM))
    a = np.random.default_rng(10).standard_normal((3, DIM))
    group = _lattice_group() + spin_flip(DIM)
    base = OneHiddenLayer(DIM, 8, "tanh", bias=True, time_dependent=True, rng=6)
    whole, chunked = GroupAveraged(base, group), GroupAveraged(base, group, max_rows=4)
    for name in ("value", "laplacian", "grad", "grad_laplacian"):
        assert_rel(getattr(chunked, name)(x, T), getattr(whole, name)(x, T), 1e-14, name)
    for u, v in zip(chunked.vjp(x, T, a, 1.0), whole.vjp(x, T, a, 1.0)):
        assert_rel(u, v, 1e-14, "vjp")
    assert_rel(chunked.param_vjp_value(x, T, 1.0), whole.param_vjp_value(x, T, 1.0), 1e-14,
               "param_vjp_value")


def test_group_average_shares_parameters():
    base = OneHiddenLayer(DIM, 5, rng=0)
    pot = GroupAveraged(base, spin_flip(DIM))
    assert pot.n_params == base.n_params
    pot.set_params(np.arange(pot.n_params, dtype=float))
    assert np.array_equal(base.params, np.arange(base.n_params, dtype=float))


# -- group helpers --------------------------------------------------------------------------------
def _as_set(elements):
    return {(tuple(int(i) for i in p), tuple(float(s) for s in sg)) for p, sg in elements}


@pytest.mark.parametrize("L,extra,order", [(2, False, 8), (3, False, 72), (4, False, 128),
                                           (4, True, 256)])
def test_lattice_group_orders(L, extra, order):
    gens = translations_2d(L) + reflections_2d(L) + (spin_flip(L * L) if extra else [])
    group = signed_permutation_group(gens, L * L)
    assert len(group) == order
    assert len(_as_set(group)) == order  # no duplicates
    perm, signs = group[0]
    assert np.array_equal(perm, np.arange(L * L)) and np.all(signs == 1.0)  # identity first


def test_translations_shift_the_lattice():
    L = 3
    (col, _), (row, _) = translations_2d(L)
    x = np.arange(L * L).reshape(L, L)
    assert np.array_equal(x.ravel()[col].reshape(L, L), np.roll(x, -1, axis=1))
    assert np.array_equal(x.ravel()[row].reshape(L, L), np.roll(x, -1, axis=0))


def test_group_is_closed_under_composition():
    group = signed_permutation_group(_lattice_group() + spin_flip(DIM), DIM)
    members = _as_set(group)
    x = np.random.default_rng(0).standard_normal(DIM)
    for p1, s1 in group:
        for p2, s2 in group:
            # g1(g2 x) with g x = s * x[perm] is again some g in the group.
            y = s1 * (s2 * x[p2])[p1]
            assert any(np.array_equal(y, s * x[p]) for p, s in group)
    assert len(members) == 16


def _matrix(perm, signs):
    """The orthogonal matrix of g x = signs * x[perm]."""
    m = np.zeros((len(perm), len(perm)))
    m[np.arange(len(perm)), perm] = signs
    return m


@pytest.mark.parametrize("gens,dim", [(MIXED_SIGN_GENERATORS, DIM),
                                      (MIXED_SIGN_GENERATORS[:2], DIM),
                                      (translations_2d(3) + reflections_2d(3), 9)])
def test_group_equals_matrix_closure(gens, dim):
    """Against a brute-force closure of the generators' matrices under multiplication."""
    mats = [_matrix(np.asarray(p), np.asarray(s, dtype=float)) for p, s in gens]
    found = {np.eye(dim).tobytes(): np.eye(dim)}
    frontier = [np.eye(dim)]
    while frontier:
        nxt = []
        for a in frontier:
            for g in mats:
                c = a @ g
                if c.tobytes() not in found:
                    found[c.tobytes()] = c
                    nxt.append(c)
        frontier = nxt
    group = signed_permutation_group(gens, dim)
    assert len(group) == len(found)
    assert {_matrix(p, s).tobytes() for p, s in group} == set(found)


@pytest.mark.parametrize("element,match", [
    ((np.arange(3), np.ones(3)), "perm must have length 4"),
    ((np.arange(4), np.ones(5)), "signs must have length 4"),
    (([0, 0, 1, 2], np.ones(4)), "not a permutation"),
    (([0, 1, 2, 4], np.ones(4)), "not a permutation"),
    (([0.5, 1, 2, 3], np.ones(4)), "not a permutation"),
    ((np.arange(4), [1, 0, 1, 1]), r"\+1 or -1"),
    ((np.arange(4), [1, 1, 1, 2]), r"\+1 or -1"),
    ((np.arange(4),), "expected a pair"),
    (5, "expected a pair"),
])
def test_group_helpers_reject_bad_elements(element, match):
    with pytest.raises(ValueError, match=match):
        signed_permutation_group([element], DIM)
    with pytest.raises(ValueError, match=match):
        GroupAveraged(OneHiddenLayer(DIM, 3), [element])


def test_group_size_limit():
    with pytest.raises(ValueError, match="more than max_size=100"):
        signed_permutation_group(translations_2d(4) + reflections_2d(4), 16, max_size=100)
    with pytest.raises(ValueError, match="perm must have length 4"):
        GroupAveraged(OneHiddenLayer(DIM, 3), spin_flip(5))


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: OneHiddenLayer(DIM, 3, "relu"), "unknown activation 'relu'; expected one of "
                                               "logcosh, softplus, tanh"),
    (lambda: OneHiddenLayer(DIM, 0), "width must be a positive integer, got 0"),
    (lambda: OneHiddenLayer(DIM, 2.5), "width must be a positive integer, got 2.5"),
    (lambda: OneHiddenLayer(0, 3), "dim must be a positive integer, got 0"),
    (lambda: OTFlowResNet(DIM, 0), "width must be a positive integer, got 0"),
    (lambda: OTFlowResNet(DIM, 3, n_layers=1), r"n_layers must be an integer >= 2, got 1"),
    (lambda: OTFlowResNet(DIM, 3, rank=DIM + 2), r"rank must be an integer in \[1, 5\]"),
])
def test_bad_constructor_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("family_name", ["ohl-logcosh-bias-t", "otflow-2layers",
                                         "group-spinflip-ohl"])
def test_bad_call_input(family_name):
    pot = FAMILIES[family_name]("numpy")
    ok = np.zeros((2, DIM))
    for bad in (np.zeros((2, DIM + 1)), np.zeros(DIM), np.zeros((2, DIM, 1))):
        with pytest.raises(ValueError, match=r"x must have shape \(B, 4\), got"):
            pot.value(bad, T)
        with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
            pot.grad_and_laplacian(bad, T)
    with pytest.raises(ValueError, match=r"a must have shape \(2, 4\), got \(2, 3\)"):
        pot.vjp(ok, T, np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match=r"v must have shape \(2, 4\)"):
        pot.hvp(ok, T, np.zeros((3, DIM)))
    with pytest.raises(ValueError, match=f"parameter vector has 3 entries, this potential has "
                                         f"{pot.n_params}"):
        pot.set_params(np.zeros(3))
