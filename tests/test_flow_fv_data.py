"""Finite-volume continuity solver (exact solutions, orders, mass) and toy data sets."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm
from scipy.stats import multivariate_normal

from ot_pde.errors import NumericalError
from ot_pde.flows.data import (
    DATASETS,
    GaussianMixture,
    checkerboard,
    eight_gaussians,
    eight_gaussians_mixture,
    sample,
)
from ot_pde.flows.fv import FVResult, cell_centers, solve_continuity_2d

BOX = dict(lower=(-8.0, -8.0), upper=(8.0, 8.0))


def gaussian_pdf(mean, cov):
    """Point values of N(mean, cov) as a function of grid coordinates."""
    dist = multivariate_normal(mean, cov)
    return lambda x, y: dist.pdf(np.stack([x, y], axis=-1))


def l1_error(rho, exact, n):
    h = 16.0 / n
    return float(np.abs(rho - exact).sum() * h * h)


def orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


# --- linear velocity v = S x: a Gaussian stays Gaussian -------------------------------------
S = np.array([[0.3, 0.2], [0.2, -0.1]])
M0 = np.array([0.3, -0.2])
C0 = np.array([[1.0, 0.3], [0.3, 0.6]])


def linear_velocity(x, y, t):
    return S[0, 0] * x + S[0, 1] * y, S[1, 0] * x + S[1, 1] * y


@pytest.mark.convergence
@pytest.mark.parametrize("rk_order", [3, 2])
def test_linear_velocity_exact_gaussian_second_order(rk_order):
    """x(t) = e^{tS} x0, so N(m0, C0) becomes N(e^{TS} m0, e^{TS} C0 e^{TS}^T)."""
    T = 1.0
    E = expm(T * S)
    exact = gaussian_pdf(E @ M0, E @ C0 @ E.T)
    errors = []
    for n in (32, 64, 128):
        res = solve_continuity_2d(gaussian_pdf(M0, C0), linear_velocity, **BOX, T=T,
                                  cfl=0.5, shape=n, rk_order=rk_order)
        errors.append(l1_error(res.rho, exact(*cell_centers(BOX["lower"], BOX["upper"], n)), n))
    p = orders(errors)
    assert abs(p[-1] - 2.0) <= 0.2, (errors, p)
    assert errors[-1] < 2e-3
    # the walls are where the density is negligible (on coarser grids the dispersive ripples
    # of the unlimited scheme reach them: 3e-5 at n = 32)
    assert res.edge_mass < 1e-6


# --- nonlinear, time-dependent gradient velocity against characteristics --------------------
def phi_velocity(x, y, t):
    """grad of phi = a(t) logcosh(x + 0.4 y - 0.3) + 0.2 logcosh(2y) + 0.2 x y, a = 0.6(1+t)."""
    a = 0.6 * (1.0 + t)
    th = np.tanh(x + 0.4 * y - 0.3)
    return a * th + 0.2 * y, 0.4 * a * th + 0.4 * np.tanh(2 * y) + 0.2 * x


def phi_laplacian(x, y, t):
    a = 0.6 * (1.0 + t)
    return 1.16 * a / np.cosh(x + 0.4 * y - 0.3) ** 2 + 0.8 / np.cosh(2 * y) ** 2


def std_normal(x, y):
    return np.exp(-0.5 * (x * x + y * y)) / (2 * np.pi)


def characteristics_density(x, y, T, steps=400):
    """rho(T, x) = rho0(X(0)) exp(-int_0^T div v(X(s), s) ds) along the characteristic
    X(T) = x, integrated backwards by classical RK4 (error ~1e-13 here, independent of FV)."""
    def f(state, t):
        px, py, _ = state
        vx, vy = phi_velocity(px, py, t)
        return np.stack([vx, vy, phi_laplacian(px, py, t)])

    h, t = -T / steps, T
    state = np.stack([x, y, np.zeros_like(x)])
    for _ in range(steps):
        k1 = f(state, t)
        k2 = f(state + 0.5 * h * k1, t + 0.5 * h)
        k3 = f(state + 0.5 * h * k2, t + 0.5 * h)
        k4 = f(state + h * k3, t + h)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += h
    # state[2] went from 0 at T to -int_0^T div v ds at 0
    return std_normal(state[0], state[1]) * np.exp(state[2])


@pytest.mark.convergence
def test_nonlinear_gradient_flow_against_characteristics():
    T = 1.0
    errors = []
    for n in (32, 64, 128):
        res = solve_continuity_2d(std_normal, phi_velocity, **BOX, T=T, shape=n)
        ref = characteristics_density(*cell_centers(BOX["lower"], BOX["upper"], n), T)
        assert ref.sum() * (16.0 / n) ** 2 == pytest.approx(1.0, abs=1e-5)
        errors.append(l1_error(res.rho, ref, n))
    p = orders(errors)
    assert p[-1] >= 1.8, (errors, p)
    assert errors[-1] < 1e-2


# --- conservation, stepping, snapshots, limiters --------------------------------------------
@pytest.mark.parametrize("limiter", [None, "van_albada", "minmod"])
def test_mass_conserved_to_round_off(limiter):
    rng = np.random.default_rng(3)
    rho0 = rng.random((40, 56))  # rough, non-square, with mass up to the walls
    res = solve_continuity_2d(rho0, phi_velocity, lower=(-3, -2), upper=(3, 2), T=0.7,
                              n_steps=60, limiter=limiter)
    assert abs(res.rho.sum() - rho0.sum()) <= 1e-12 * rho0.sum()
    assert res.edge_mass > 0.01  # mass at the walls is reported, not hidden
    if limiter is not None:  # TVD slopes keep the density non-negative at this CFL
        assert res.rho.min() >= 0.0


def test_steps_end_exactly_at_T_and_snapshots():
    n = 24
    rho0 = std_normal(*cell_centers(BOX["lower"], BOX["upper"], n))
    res = solve_continuity_2d(rho0, phi_velocity, **BOX, T=0.3, cfl=0.7, t0=0.5,
                              save_every=4)
    assert isinstance(res, FVResult)
    assert res.n_steps * res.dt == pytest.approx(0.3, rel=1e-15) and res.t == 0.8
    k = math.ceil(res.n_steps / 4) + 1
    assert res.snapshots.shape == (k, n, n) and res.snapshot_times.shape == (k,)
    assert res.snapshot_times[0] == 0.5 and res.snapshot_times[-1] == pytest.approx(0.8)
    np.testing.assert_array_equal(res.snapshots[0], rho0)
    np.testing.assert_array_equal(res.snapshots[-1], res.rho)
    # a callable rho0 means point values at the centres, and the caller's array is not touched
    copy = rho0.copy()
    same = solve_continuity_2d(std_normal, phi_velocity, **BOX, T=0.3, n_steps=res.n_steps,
                               t0=0.5, shape=n)
    np.testing.assert_array_equal(same.rho, res.rho)
    np.testing.assert_array_equal(rho0, copy)
    assert res.snapshots is not None and same.snapshots is None


def test_cell_centers():
    x, y = cell_centers((0.0, -1.0), (2.0, 1.0), (4, 2))
    np.testing.assert_allclose(x[:, 0], [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(y[0], [-0.5, 0.5])
    assert x.shape == y.shape == (4, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_steps=10, cfl=0.5), "at most one"),
    (dict(n_steps=0), "positive integer"),
    (dict(cfl=-1.0), "cfl must be positive"),
    (dict(limiter="superbee"), "unknown limiter"),
    (dict(rk_order=4), "rk_order"),
    (dict(T=0.0), "T must be positive"),
    (dict(shape=(8, 9)), "does not match"),
    (dict(lower=(9.0, -8.0)), "lower < upper"),
])
def test_bad_arguments(kwargs, match):
    args = dict(BOX, T=1.0, n_steps=4)
    args.update(kwargs)
    if "cfl" in kwargs and "n_steps" not in kwargs:
        del args["n_steps"]
    with pytest.raises(ValueError, match=match):
        solve_continuity_2d(np.ones((8, 8)), linear_velocity, **args)


def test_callable_rho0_needs_shape():
    with pytest.raises(ValueError, match="needs the grid shape"):
        solve_continuity_2d(std_normal, linear_velocity, **BOX, T=1.0)


def test_non_finite_values():
    def nan_velocity(x, y, t):
        return np.full_like(x, np.nan), np.zeros_like(y)

    with pytest.raises(NumericalError):
        solve_continuity_2d(np.ones((8, 8)), nan_velocity, **BOX, T=1.0, n_steps=2)
    with pytest.raises(ValueError, match="non-finite values on the faces"):
        solve_continuity_2d(np.ones((8, 8)), nan_velocity, **BOX, T=1.0, cfl=0.5)


# --- toy data -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_generators_deterministic_shape_finite(name):
    a = sample(name, 1000, 7)
    b = sample(name, 1000, np.random.default_rng(7))
    c = sample(name, 1000, 8)
    assert a.shape == (1000, 2) and a.dtype == np.float64 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(DATASETS[name](5, 1), sample(name, 5, 1))
    assert sample(name, 0, 1).shape == (0, 2)


def test_sample_rejects_unknown_names_and_missing_seeds():
    known = "known: eight_gaussians, moons, checkerboard, swiss_roll, rings"
    with pytest.raises(ValueError, match=known):
        sample("spirals", 10, 0)
    with pytest.raises(TypeError, match="rng"):
        sample("moons", 10, None)
    with pytest.raises(ValueError, match="non-negative integer"):
        sample("moons", -1, 0)


def test_dataset_geometry():
    x = checkerboard(20000, 0)
    assert np.all(np.abs(x) <= 4.0)
    assert np.all((np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0)
    r = np.linalg.norm(eight_gaussians(20000, 0), axis=1)
    assert np.median(r) == pytest.approx(2 * math.sqrt(2), abs=0.05)
    rings = sample("rings", 20000, 0, noise=0.0)
    radii = np.unique(np.round(np.linalg.norm(rings, axis=1), 12))
    np.testing.assert_allclose(radii, [0.75, 1.5, 2.25, 3.0])
    # noiseless moons: upper half of the circle of radius 2 about (-1, -0.2), lower half of
    # the one about (1, 0.8)
    x, y = sample("moons", 4000, 0, noise=0.0).T
    upper = np.abs(np.hypot(x + 1, y + 0.2) - 2) < 1e-12
    lower = np.abs(np.hypot(x - 1, y - 0.8) - 2) < 1e-12
    assert np.all(upper | lower) and 0.45 < upper.mean() < 0.55
    assert np.all(y[upper] >= -0.2) and np.all(y[lower] <= 0.8)


# --- Gaussian mixtures ----------------------------------------------------------------------
MIX = GaussianMixture(means=[[0.0, 0.0], [2.0, 1.0], [-1.5, 2.0]],
                      covs=[[[1.0, 0.4], [0.4, 0.5]], [[0.3, -0.1], [-0.1, 0.8]],
                            [[0.6, 0.0], [0.0, 0.2]]],
                      weights=[0.5, 0.3, 0.2])


def test_mixture_log_prob_exact_and_normalised():
    x = MIX.sample(50, 0)
    ref = np.log(sum(w * multivariate_normal(m, c).pdf(x)
                     for w, m, c in zip(MIX.weights, MIX.means, MIX.covs)))
    np.testing.assert_allclose(MIX.log_prob(x), ref, rtol=1e-13)
    # midpoint rule on [-9, 9]^2 (spectrally accurate for this smooth, decaying density)
    X, Y = cell_centers((-9.0, -9.0), (9.0, 9.0), 400)
    p = np.exp(MIX.log_prob(np.stack([X.ravel(), Y.ravel()], axis=1)))
    assert p.sum() * (18.0 / 400) ** 2 == pytest.approx(1.0, abs=1e-6)
    # far tails: log-sum-exp keeps them finite (the densities themselves underflow)
    far = MIX.log_prob(np.array([[60.0, -80.0]]))
    assert np.isfinite(far).all() and far[0] < -1000


def test_mixture_score_matches_finite_differences():
    x = MIX.sample(20, 1)
    h = 1e-5
    fd = np.stack([(MIX.log_prob(x + h * e) - MIX.log_prob(x - h * e)) / (2 * h)
                   for e in np.eye(2)], axis=1)
    np.testing.assert_allclose(MIX.grad_log_prob(x), fd, rtol=1e-6, atol=1e-8)
    assert np.isfinite(MIX.grad_log_prob(np.array([[60.0, -80.0]]))).all()


def test_entropy_closed_forms():
    cov = np.array([[0.7, 0.25], [0.25, 0.3]])
    single = GaussianMixture([[0.5, -1.0]], covs=[cov])
    assert single.entropy() == pytest.approx(0.5 * np.log(np.linalg.det(2 * np.pi * np.e * cov)),
                                             abs=1e-6)
    # components 40 std apart: H = H(weights) + sum_k w_k H_k
    w = np.array([0.2, 0.8])
    apart = GaussianMixture([[0.0, 0.0], [40.0, 0.0]], stds=[1.0, 0.5], weights=w)
    h_k = np.log(2 * np.pi * np.e * np.array([1.0, 0.25]))
    assert apart.entropy() == pytest.approx(-(w * np.log(w)).sum() + (w * h_k).sum(), abs=1e-6)
    # Monte Carlo agrees within its stated standard error
    eight = eight_gaussians_mixture()
    est, se = eight.entropy_mc(20000, 0)
    assert 0 < se < 0.02 and abs(est - eight.entropy()) < 4 * se


def test_mixture_sampling_moments_and_bad_input():
    x = MIX.sample(200000, 2)
    mean = MIX.weights @ MIX.means
    d = MIX.means - mean
    cov = (np.einsum("k,kij->ij", MIX.weights, MIX.covs)
           + np.einsum("k,ki,kj->ij", MIX.weights, d, d))
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.02)
    with pytest.raises(ValueError, match="exactly one"):
        GaussianMixture([[0.0, 0.0]])
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture([[0.0, 0.0]], covs=[[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([[0.0], [1.0]], stds=1.0, weights=[-1.0, 2.0])
    with pytest.raises(ValueError, match="entropy_mc"):
        GaussianMixture(np.zeros((1, 3)), stds=1.0).entropy()
