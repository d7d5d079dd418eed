"""The warm starts of the Benamou-Brenier splitting (issue 19) and the hold-out check.

Tolerances and why:

* the affine map between two Gaussians is the Bures one (``gaussian_geodesic``): round-off;
  the moments of a grid Gaussian of std 0.08 on 64^2 are those of the continuous one to
  O(h^2) plus the cell-box variance h^2/12 added on purpose, up to truncation (4.4 std from
  the nearest wall: measured 2e-6 on the mean): 1e-5 on the mean, 1e-6 on the covariance.
* the start keeps the time boundaries and the walls exactly (equality), and for two
  Gaussians its density is the exact geodesic sampled by linear interpolation: L1 error of
  the order of the interpolation error, measured 6e-3 at 64^2, asserted <= 2e-2.
* the start changes the speed, not the fixed point: both starts, 6000 iterations on 16^2 x 8,
  agree to 1e-4 relative (measured 3.9e-5, and 1.1e-5 after 20000 iterations: both still
  creep towards the same limit; the discretization error there is ~1e-2).
* on a sharp Gaussian (the ``make demo`` pair at 32^2 x 16) the affine start reaches 1e-3 of
  the grid's converged value in far fewer iterations than the linear one (measured 63 vs 743
  at 32^2 x 32, the docs' table); asserted: <= 150 and at least 4x fewer.
* hold-out: smooth random product densities generated here (not shipped cases, seeded):
  W2^2 at the stop with rtol = 1e-3 is within 1e-3 of the same grid's converged value from
  the linear and the affine start; from the Monge-Ampere start within 3e-3 (measured 0.55e-3,
  2.43e-3, 1.31e-3: it starts near the continuous value, farther than rtol from this coarse
  grid's, and the estimate is too small, as the docs say).
* the Monge-Ampere start: see its test's docstring.
"""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.backends import get_backend
from ot_pde.config import load_case
from ot_pde.core.registry import get_kind
from ot_pde.spacetime.solver import BenamouBrenierSolver, SpaceTimeGrid
from ot_pde.spacetime.start import (
    AffineGeodesic,
    _linear_at,
    affine_map,
    affine_start,
    moments,
    monge_ampere_start,
)
from ot_pde.transport.benamou_brenier.problem import gaussian_geodesic

from .conftest import CASES


def _gaussian(grid, mean, cov):
    pts = np.stack(grid.mesh(), axis=-1) - mean
    q = np.einsum("...i,ij,...j->...", pts, np.linalg.inv(cov), pts)
    rho = np.exp(-0.5 * q)
    return rho / (rho.sum() * grid.cell_volume)


M0, C0 = np.array([0.35, 0.45]), np.array([[0.0064, 0.001], [0.001, 0.004]])
M1, C1 = np.array([0.6, 0.55]), np.array([[0.003, -0.0005], [-0.0005, 0.005]])


@pytest.mark.parametrize("shape", [(7,), (5, 6), (4, 3, 5), (1, 4)])
def test_linear_interpolation_is_scipys(shape):
    """The start's own multilinear interpolation (no scipy.ndimage import) is
    map_coordinates(order=1, mode="nearest"), inside the grid and beyond its ends."""
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(5)
    values = rng.normal(size=shape)
    idx = [rng.uniform(-2.0, n + 1.0, size=(40, 3)) for n in shape]
    np.testing.assert_allclose(_linear_at(values, idx),
                               map_coordinates(values, idx, order=1, mode="nearest"),
                               rtol=0, atol=1e-14)


def test_affine_map_is_the_bures_map_and_moments_match():
    a = affine_map(M0, C0, M1, C1)
    m_half, c_half = gaussian_geodesic(M0, C0, M1, C1, 0.5)
    at = 0.5 * (np.eye(2) + a)
    np.testing.assert_allclose(at @ C0 @ at.T, c_half, rtol=0, atol=1e-15)
    np.testing.assert_allclose(a @ C0 @ a, C1, rtol=0, atol=1e-15)
    grid = SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (64, 64), 32)
    mean, cov = moments(_gaussian(grid, M0, C0), grid)
    np.testing.assert_allclose(mean, M0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(cov, C0 + np.eye(2) / (12 * 64 ** 2), rtol=0, atol=1e-6)


def test_affine_start_boundaries_walls_and_gaussian_geodesic():
    grid = SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (64, 64), 32)
    r0, r1 = _gaussian(grid, M0, C0), _gaussian(grid, M1, C1)
    zu, zv = affine_start(r0, r1, grid, 0.0)  # gamma = 0: the primal start itself
    f = zu[0]
    assert np.array_equal(f[0], r0) and np.array_equal(f[-1], r1)
    assert np.all(zu[1][:, 0, :] == 0) and np.all(zu[1][:, -1, :] == 0)
    assert np.all(zu[2][:, :, 0] == 0) and np.all(zu[2][:, :, -1] == 0)
    geo = AffineGeodesic(r0, r1, grid)
    pts = np.stack(grid.mesh(), axis=-1)
    for j in (8, 16, 24):
        t = grid.time_faces()[j]
        exact = _gaussian(grid, *gaussian_geodesic(M0, C0, M1, C1, t))
        assert np.abs(f[j] - exact).sum() * grid.cell_volume <= 2e-2
        np.testing.assert_allclose(geo.density(t, pts), f[j], rtol=0, atol=0)


def _solve(r0, r1, grid, iterations, start=None, gamma=0.1, rtol=1e-12):
    s = BenamouBrenierSolver(r0, r1, grid, get_backend("numba"), gamma=gamma, relaxation=1.8,
                             tol=None, rtol=rtol, max_iterations=iterations, start=start)
    history = []
    while not s.finished:
        history.append(s.step()["W2_squared"])
    return s, np.array(history)


def test_same_fixed_point_from_both_starts():
    grid = SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (16, 16), 8)
    r0, r1 = _gaussian(grid, M0, C0), _gaussian(grid, M1, C1)
    lin, _ = _solve(r0, r1, grid, 6000)
    aff, _ = _solve(r0, r1, grid, 6000, start=affine_start)
    assert abs(aff.w2_squared() - lin.w2_squared()) <= 1e-4 * lin.w2_squared()


def test_same_fixed_point_from_the_monge_ampere_start():
    """On the bimodal product pair at 16^2 x 8 (on the Gaussian pair above Newton fails at
    16^2 and the kind falls back to the affine start): 2000 iterations from the linear and
    from the Monge-Ampere start agree to 1e-4 relative (measured 4.6e-5; 2.0e-5 after 4000:
    both still creep towards the same limit)."""
    case = load_case(CASES / "bb_product_2d.toml", overrides=["grid.n=16"])
    problem = get_kind(case.kind).build(case)
    r0, r1, grid = problem.source.values, problem.target.values, problem.grid_
    lin, _ = _solve(r0, r1, grid, 2000, gamma=0.3)
    warm, _ = _solve(r0, r1, grid, 2000, start=monge_ampere_start, gamma=0.3)
    assert abs(warm.w2_squared() - lin.w2_squared()) <= 1e-4 * lin.w2_squared()


def test_monge_ampere_start_keeps_masses_boundaries_walls_and_the_map():
    """The particles' deposits keep every time face's mass to round-off, the time boundaries
    and the walls exactly; the Brenier displacement on the bimodal product pair is the exact
    one (product of 1D quantile maps) to 1e-2 in the rho0-weighted mean (measured 2.4e-3 at
    64^2 with the floor 1e-4; the floor and the O(h^2) scheme), and the start's kinetic
    energy is within 1 % of the exact W2^2 (measured +0.4 %)."""
    from ot_pde.densities import product_factors
    from ot_pde.spacetime.start import brenier_displacement
    from ot_pde.transport.benamou_brenier.reference import ProductReference

    case = load_case(CASES / "bb_product_2d.toml", overrides=["grid.n=64"])
    problem = get_kind(case.kind).build(case)
    r0, r1, grid = problem.source.values, problem.target.values, problem.grid_
    zu, zv = monge_ampere_start(r0, r1, grid, 0.0)  # gamma = 0: the primal start itself
    f = zu[0]
    assert np.array_equal(f[0], r0) and np.array_equal(f[-1], r1)
    np.testing.assert_allclose(f.sum(axis=(1, 2)), r0.sum(), rtol=1e-13)
    assert np.all(zu[1][:, 0, :] == 0) and np.all(zu[1][:, -1, :] == 0)
    assert np.all(zu[2][:, :, 0] == 0) and np.all(zu[2][:, :, -1] == 0)
    ref = ProductReference(product_factors(problem.source.spec),
                           product_factors(problem.target.spec), grid.lower, grid.upper)
    x = grid.mesh()
    exact = np.stack([f1.quantile(f0.cdf(x[k])) - x[k]
                      for k, (f0, f1) in enumerate(ref.pairs)], axis=-1)
    disp = brenier_displacement(r0, r1, grid)
    assert (np.abs(disp - exact).sum(axis=-1) * r0).sum() / r0.sum() <= 1e-2
    fbar = zv[0]
    msq = sum(m * m for m in zv[1:])
    kinetic = np.sum(np.where(fbar > 0, msq / np.where(fbar > 0, fbar, 1.0), 0.0))
    kinetic *= grid.tau * grid.cell_volume
    assert kinetic == pytest.approx(ref.w2_squared(), rel=1e-2)


def test_monge_ampere_start_falls_back_to_affine_with_a_warning(cli, monkeypatch, tmp_path):
    from ot_pde.errors import NumericalError
    from ot_pde.transport.benamou_brenier import problem as bb_problem

    def fail(*args, **kwargs):
        raise NumericalError("Newton line search failed (forced by the test)")
    monkeypatch.setattr(bb_problem, "monge_ampere_start", fail)
    code, out, err = cli("run", CASES / "bb_gaussian_2d.toml", "--set", "grid.n=16",
                         "--set", "time.nt=8", "--set", "solver.start=monge_ampere",
                         "--set", "solver.max_iterations=30", "-o", tmp_path / "r.h5")
    assert code == 0, err
    assert "Monge-Ampere start failed" in err and "affine" in err


@pytest.mark.slow
def test_affine_start_is_faster_on_a_sharp_gaussian():
    case = load_case(CASES / "bb_gaussian_2d.toml", overrides=["grid.n=32", "time.nt=16"])
    problem = get_kind(case.kind).build(case)
    r0, r1, grid = problem.source.values, problem.target.values, problem.grid_
    best, history = _solve(r0, r1, grid, 20000)
    w = best.w2_squared()
    assert np.abs(history[-5000:] - w).max() <= 2e-5 * w  # the grid's converged value
    counts = {}
    for name, start in (("linear", None), ("affine", affine_start)):
        _, h = _solve(r0, r1, grid, 1500, start=start)
        bad = np.flatnonzero(np.abs(h - w) > 1e-3 * w)
        counts[name] = bad[-1] + 1 if bad.size else 0
    assert counts["affine"] <= 150 and 4 * counts["affine"] <= counts["linear"], counts


def random_product_case(seed: int, n: int) -> list[str]:
    """Overrides of ``bb_product_2d`` for a smooth random pair of bimodal product densities
    (components >= 4 std inside the box, so smooth on the grid and barely truncated)."""
    rng = np.random.default_rng(seed)
    out = [f"grid.n={n}"]
    for side in ("source", "target"):
        stds = rng.uniform(0.06, 0.1, (2, 2))
        means = rng.uniform(0.0, 1.0, (2, 2)) * (1 - 8 * stds) + 4 * stds
        weights = rng.uniform(0.3, 1.0, (2, 2))
        for key, val in (("means", means), ("stds", stds), ("weights", weights)):
            out.append(f"{side}.{key}=" + str(np.round(val, 4).tolist()))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 202, 303])
def test_hold_out_products_meet_rtol(seed):
    case = load_case(CASES / "bb_product_2d.toml", overrides=random_product_case(seed, 24))
    problem = get_kind(case.kind).build(case)
    r0, r1, grid = problem.source.values, problem.target.values, problem.grid_
    best, history = _solve(r0, r1, grid, 8000, gamma=0.3)
    w = best.w2_squared()
    assert np.abs(history[-2000:] - w).max() <= 2e-4 * w  # converged to a fifth of rtol
    errors = {}
    for name, start in (("linear", None), ("affine", affine_start),
                        ("monge_ampere", monge_ampere_start)):
        solver, _ = _solve(r0, r1, grid, 8000, start=start, gamma=0.3, rtol=1e-3)
        assert solver.converged
        errors[name] = abs(solver.w2_squared() - w) / w
    # the linear and affine starts meet rtol (measured 0.19, 0.11, 0.04 and 0.56, 0.16, 0.21
    # rtol on these seeds; with the estimate's window over the last half instead of three
    # quarters the affine start stopped at 1.43 and 1.02 rtol). After the Monge-Ampere start
    # the estimate can be too small (measured 0.55, 2.43, 1.31 rtol: the start lands near the
    # continuous W2^2, whose distance to this coarse grid's value exceeds rtol, and the
    # objective then creeps), a known limit stated in the docs and bounded here so that it
    # cannot grow unseen
    assert errors["linear"] <= 1e-3, errors
    assert errors["affine"] <= 1e-3, errors
    assert errors["monge_ampere"] <= 3e-3, errors


def test_unknown_start_is_exit_2(cli):
    code, _, err = cli("check", CASES / "bb_gaussian_2d.toml", "--set", "solver.start=cubic")
    assert code == 2 and "solver.start" in err and "affine" in err


def test_restart_bit_for_bit_and_multilevel_coarsest_only():
    """The start only sets the initial state: a run continued from state() matches an
    uninterrupted one bit for bit; the multilevel method starts its coarsest level from it
    and the finer ones from the prolonged state, as before."""
    grid = SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (16, 16), 8)
    r0, r1 = _gaussian(grid, M0, C0), _gaussian(grid, M1, C1)

    def make():
        return BenamouBrenierSolver(r0, r1, grid, get_backend("numpy"), gamma=0.1,
                                    start=affine_start)
    a, b = make(), make()
    for _ in range(30):
        a.step()
    for _ in range(12):
        b.step()
    c = make()
    c.load_state(b.state())
    for _ in range(18):
        c.step()
    np.testing.assert_array_equal(c.density(), a.density())
    assert c.w2_squared() == a.w2_squared()

    from ot_pde.spacetime.multilevel import MultilevelSolver, restrict_density

    ml = MultilevelSolver(r0, r1, grid, get_backend("numpy"), coarsest=8, gamma=0.1,
                          start=affine_start, rtol=1e-3, tol=None)
    coarse = ml.grids[0]
    zu, _ = affine_start(restrict_density(r0), restrict_density(r1), coarse, ml.gamma)
    np.testing.assert_array_equal(ml._solver._zu[1], zu[1])
    while ml.level == 0:
        ml.step()
    fine = ml._solver  # started from the prolonged state, not from the affine start
    zu_fine, _ = affine_start(r0, r1, grid, fine.gamma)
    assert not np.array_equal(fine._zu[1], zu_fine[1])


def test_restart_bit_for_bit_from_the_monge_ampere_start():
    """The Monge-Ampere start is deterministic and only sets the initial state: a run
    continued from state() matches an uninterrupted one bit for bit."""
    case = load_case(CASES / "bb_product_2d.toml", overrides=["grid.n=16"])
    problem = get_kind(case.kind).build(case)
    r0, r1, grid = problem.source.values, problem.target.values, problem.grid_

    def make():
        return BenamouBrenierSolver(r0, r1, grid, get_backend("numba"), gamma=0.1,
                                    start=monge_ampere_start)
    a, b = make(), make()
    for _ in range(30):
        a.step()
    for _ in range(12):
        b.step()
    c = make()
    c.load_state(b.state())
    for _ in range(18):
        c.step()
    np.testing.assert_array_equal(c.density(), a.density())
    assert c.w2_squared() == a.w2_squared()
