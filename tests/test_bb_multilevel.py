"""Multilevel solver and the W2^2-accuracy stopping rule (issue 19, parts 1 and 2).

Tolerances and why:

* restriction conserves mass and prolongation reproduces affine functions: round-off (1e-13).
* numpy and numba through a level change: 1e-10, as the plain solver's backend test.
* the stopping rule: W2^2 at the stop within ``rtol`` (relative) of the same grid's converged
  value (a long plain Douglas-Rachford run), on the bimodal product pair. The plain method
  meets it; the multilevel one does not at 32^2 (error 2.5 rtol at rtol = 1e-3), kept as a
  strict xfail so that a fix shows. This
  is what the docs promise for smooth data, checked as stated (measured error / rtol: 0.1 to
  0.7). The docs also give the case where the estimate is too small (a Gaussian of ~1.5 cells
  std at 32^2: error 2.3 rtol at rtol = 1e-3); no test hides it.
"""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.backends import get_backend
from ot_pde.config import load_case
from ot_pde.core.registry import get_kind
from ot_pde.spacetime import multilevel as ml
from ot_pde.spacetime import solver as solver_module
from ot_pde.spacetime.solver import SpaceTimeGrid

from .conftest import CASES, json_line


def test_hierarchy_restriction_and_prolongation():
    grid = SpaceTimeGrid((0.0, -1.0), (1.0, 1.0), (32, 32), 16)
    levels = ml.grid_hierarchy(grid, 8)
    assert [g.shape for g in levels] == [(8, 8), (16, 16), (32, 32)]
    assert [g.nt for g in levels] == [4, 8, 16]
    assert ml.grid_hierarchy(SpaceTimeGrid((0.0,), (1.0,), (24,), 12), 16)[0].shape == (24,)
    rng = np.random.default_rng(0)
    rho = rng.random((32, 32))
    coarse = ml.restrict_density(rho)
    assert coarse.sum() * 4 == pytest.approx(rho.sum(), rel=1e-14)
    fine, crs = levels[2], levels[1]
    # an affine function of (t, x, y) on faces along axis 1 (m_x), inside the coarse points
    t = fine.time_centers()[:, None, None]
    x = (fine.lower[0] + fine.spacing[0] * np.arange(33))[None, :, None]
    y = fine.centers(1)[None, None, :]
    tc = crs.time_centers()[:, None, None]
    xc = (crs.lower[0] + crs.spacing[0] * np.arange(17))[None, :, None]
    yc = crs.centers(1)[None, None, :]
    out = ml.prolong(1 + 2 * tc - 3 * xc + 0.5 * yc + 0 * (tc + xc + yc), crs, fine, 1)
    exact = 1 + 2 * t - 3 * x + 0.5 * y
    inside = (slice(1, -1), slice(None), slice(1, -1))  # the outermost centres are clamped
    np.testing.assert_allclose(out[inside], exact[inside], atol=1e-13)


def _pair(n):
    grid = SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (n, n), n // 2)
    pts = np.stack(grid.mesh(), axis=-1)
    r0 = np.exp(-np.sum((pts - [0.35, 0.4]) ** 2, -1) / (2 * 0.08 ** 2))
    r1 = np.exp(-np.sum((pts - [0.6, 0.55]) ** 2, -1) / (2 * 0.1 ** 2)) + 0.3 * np.exp(
        -np.sum((pts - [0.3, 0.7]) ** 2, -1) / (2 * 0.06 ** 2))
    return grid, r0 / (r0.sum() * grid.cell_volume), r1 / (r1.sum() * grid.cell_volume)


def _multilevel(backend, iterations, state=None, upto=None):
    grid, r0, r1 = _pair(16)
    s = ml.MultilevelSolver(r0, r1, grid, get_backend(backend), coarsest=8, gamma=0.3,
                            relaxation=1.8, tol=None, rtol=1e-2)
    if state is not None:
        s.load_state(state)
    while s.iteration < iterations:
        s.step()
    return s


def test_level_change_restart_bit_for_bit_and_backends(backend_name, monkeypatch):
    full = _multilevel("numpy", 80)
    assert full.level_iterations[0] < 80 and full.level == 1  # the level changed on the way
    switch = full.level_iterations[0]
    for stop in (switch - 3, switch + 2):
        part = _multilevel("numpy", stop)
        again = _multilevel("numpy", 80, state=part.state())
        np.testing.assert_array_equal(again.density(), full.density())
        assert again.w2_squared() == full.w2_squared()
        assert again.level_iterations == full.level_iterations
    monkeypatch.setattr(solver_module, "COMPILED_FROM", 0)  # compiled kernels, small grids
    other = _multilevel(backend_name, 80)
    np.testing.assert_allclose(other.density(), full.density(), rtol=0, atol=1e-10)
    assert abs(other.w2_squared() - full.w2_squared()) <= 1e-10


def test_unfinished_coarse_level_reports_on_the_finest_grid():
    s = _multilevel("numpy", 5)
    assert s.level == 0 and not s.converged
    assert s.density().shape == (9, 16, 16) and s.momentum().shape == (2, 8, 16, 16)


def _solve(overrides):
    case = load_case(CASES / "bb_product_2d.toml", overrides=overrides)
    problem = get_kind(case.kind).build(case)
    solver = problem.make_solver(get_backend("numba"))
    while not solver.finished:
        solver.step()
    return solver


def _stopping_rule_meets_rtol(n, rtols, iterations, methods):
    """W2^2 at the stop within rtol of the grid's converged value."""
    grid = [f"grid.n={n}", f"time.nt={n // 2}"]
    # the grid's converged value: plain Douglas-Rachford run long; W2^2 changes by less than
    # a fifth of the smallest rtol over the last half of the run
    best = _solve([*grid, "solver.method=douglas_rachford", "solver.rtol=1e-12",
                   f"solver.max_iterations={iterations}"])
    history = best._w_buffer[:best._w_count]
    w = best.w2_squared()
    assert np.abs(history[len(history) // 2:] - w).max() / w < 0.2 * min(rtols)
    for method in methods:
        for rtol in rtols:
            solver = _solve([*grid, f"solver.method={method}", f"solver.rtol={rtol}"])
            assert solver.converged
            error = abs(solver.w2_squared() - best.w2_squared()) / best.w2_squared()
            assert error <= rtol, (method, rtol, error)


def test_stopping_rule_meets_rtol_16():
    # 16^2 is the coarsest grid of the default hierarchy: one level, the plain method
    _stopping_rule_meets_rtol(16, (1e-2, 1e-3), 6000, ("douglas_rachford",))


@pytest.mark.slow
@pytest.mark.parametrize("method", [
    "douglas_rachford",
    pytest.param("multilevel", marks=pytest.mark.xfail(
        strict=True, reason="known: after the warm start the objective stalls near the "
        "coarse value and the estimate stops too early (measured error 2.5e-3 at rtol 1e-3)")),
])
def test_stopping_rule_meets_rtol_32(method):
    _stopping_rule_meets_rtol(32, (1e-2, 1e-3, 1e-4), 8000, (method,))


def test_unconverged_run_warns_and_converge_refuses(cli, tmp_path):
    code, out, err = cli("run", CASES / "bb_product_2d.toml", "-o", tmp_path / "a.h5", "--json",
                         "--set", "grid.n=16", "--set", "solver.max_iterations=30")
    summary = json_line(out)["summary"]
    assert code == 0 and summary["converged"] is False
    assert "NOT CONVERGED" in err and "solver.max_iterations" in err
    code, out, err = cli("converge", CASES / "bb_product_2d.toml", "--vary", "grid.n=8,16",
                         "--set", "solver.max_iterations=30")
    assert code == 2 and "converged = false" in err and "no order is fitted" in err
    assert out == ""
