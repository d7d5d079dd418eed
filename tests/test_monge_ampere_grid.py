"""``monge_ampere_grid`` (issue 20): Newton and the parabolic flow for the Brenier potential.

Tolerances and why:

* Observed orders: the scheme is second order (centred differences; the spline of
  log rho1 is fourth order); asserted ``>= 1.9`` on the finest pair (the issue's bound),
  measured 1.99-2.00 on the torus and the cosine box case (2D; 1.93-2.02 in 3D at 12 -> 24),
  2.27 (W2^2) and 1.97 (psi Linf) on the Gaussian box case at 32 -> 64.
* Newton: residual ``max |F + c| <= 1e-10`` (the issue's bound); iterations ``<= 30``
  (measured 4-5 on the torus, 6 on the box).
* Cross-check with ``benamou_brenier`` (slow): measured 0.17 % (Gaussians) and 0.004 %
  (cosine products) at 64^2.
* The flow: ``psi`` within 1e-6 of Newton's (the issue's bound; measured ~1e-11 with
  ``tol = 1e-9``). Its fitted decay rate against the spectral gap of the linearized operator
  (the eigenvalue of -J, mean-free, with the smallest real part): explicit Euler with a
  small step follows the PDE, stated within 3 % (measured 1.3 % at 16^2, 0.55 % at 32^2).
* McCann's interpolation ``rho``: second order against the exact interpolant through
  ``ot-pde converge`` (>= 1.9, measured 1.99); its mass and its t = 1 frame (rho1) to O(h^2):
  bounds 2e-4 and 5e-3 in L1 at 32^2 (measured 7.3e-5 and 2.2e-3); its t = 0 frame is rho0
  to round-off (the spline interpolates).
* Cross-check with ``benamou_brenier`` on the same 64^2 grid densities: within 1 % (the
  issue's bound); both schemes are second order, their own errors are ~1e-3 here.
"""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.backends import get_backend
from ot_pde.config import load_case
from ot_pde.core.converge import run_study
from ot_pde.core.registry import get_kind
from ot_pde.io import ResultFile
from ot_pde.transport.monge_ampere_grid import CellGrid, CubicSpline, NewtonSolver
from ot_pde.spacetime.monge_ampere import decay_rate

from .conftest import CASES

TORUS = CASES / "ma_torus_constructed_2d.toml"
FLOW = CASES / "ma_torus_flow_2d.toml"
BOX_PRODUCT = CASES / "ma_box_product_2d.toml"
BOX_GAUSS = CASES / "ma_box_gaussian_2d.toml"


def solve(case_file, overrides=()):
    case = load_case(case_file, overrides=list(overrides))
    problem = get_kind(case.kind).build(case)
    solver = problem.make_solver(get_backend("numpy"))
    while not solver.finished:
        solver.step()
    return problem, solver


def orders(case_file, ns, extra=()):
    errs = []
    for n in ns:
        problem, solver = solve(case_file, [f"grid.n={n}", *extra])
        s = problem.summary(solver)
        assert s["converged"] and s["residual"] <= 1e-10
        errs.append((s["relative_error"], s["psi_error_max"]))
    e = np.array(errs)
    return np.log(e[:-1] / e[1:]) / np.log(2)


# ------------------------------------------------------------------------------ operators
@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_transforms_diagonalize_the_second_differences(boundary):
    grid = CellGrid((0.0, 0.0), (1.0, 2.0), (8, 6), boundary)
    v = np.random.default_rng(0).normal(size=grid.shape)
    lap = (grid.second[(0, 0)] * 1.5 + grid.second[(1, 1)] * 0.5) @ v.ravel()
    spectral = grid.inverse(grid.forward(v) * grid.laplacian_symbol([1.5, 0.5]))
    assert np.allclose(lap.reshape(grid.shape), spectral, atol=1e-10)


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_spline_interpolates_and_its_gradient_converges(boundary):
    def f(x, y):  # smooth, and even across the faces of [0, 1]^2 (the box's reflection)
        return np.cos(2 * np.pi * x) * np.cos(np.pi * y) + 0.3 * np.cos(4 * np.pi * y)

    def grad(x, y):
        return (-2 * np.pi * np.sin(2 * np.pi * x) * np.cos(np.pi * y),
                -np.pi * np.cos(2 * np.pi * x) * np.sin(np.pi * y)
                - 1.2 * np.pi * np.sin(4 * np.pi * y))

    errs = []
    pts = np.random.default_rng(1).uniform(0, 1, size=(2, 500))
    for n in (16, 32):
        if boundary == "periodic":  # periodic along y needs an even mode
            g = CellGrid((0.0, 0.0), (1.0, 2.0), (n, 2 * n), boundary)
        else:
            g = CellGrid((0.0, 0.0), (1.0, 1.0), (n, n), boundary)
        x = g.mesh()
        spline = CubicSpline(g, f(*x))
        at_nodes, _ = spline([x[0].ravel(), x[1].ravel()])
        assert np.allclose(at_nodes, f(*x).ravel(), atol=1e-12)
        value, gr = spline([pts[0], pts[1]])
        v2, gr2, hess = spline([pts[0], pts[1]], hessian=True)
        assert np.array_equal(v2, value) and all(np.array_equal(a, b) for a, b in zip(gr, gr2))
        gx, gy = grad(*pts)
        errs.append(max(np.abs(value - f(*pts)).max(), np.abs(gr[0] - gx).max(),
                        np.abs(gr[1] - gy).max()))
        # the Hessian against centred differences of the spline's own gradient
        eps = 1e-6
        for j in range(2):
            shifted = [pts[0] + eps * (j == 0), pts[1] + eps * (j == 1)]
            back = [pts[0] - eps * (j == 0), pts[1] - eps * (j == 1)]
            for i in range(2):
                fd = (spline(shifted)[1][i] - spline(back)[1][i]) / (2 * eps)
                assert np.allclose(hess[i][j], fd, atol=1e-5 * n ** 2), (i, j)
    assert np.log2(errs[0] / errs[1]) >= 2.8  # value O(h^4), gradient O(h^3)


# ------------------------------------------------------------------------------ the torus
def test_torus_newton_second_order_and_few_iterations():
    p = orders(TORUS, (24, 48))
    assert p.min() >= 1.9, p


def test_torus_3d_second_order():
    p = orders(TORUS, (12, 24), ["grid.lower=[0, 0, 0]", "grid.upper=[1, 1, 1]",
                                 "target.amplitudes=[0.3, -0.2, 0.2]",
                                 "target.modes=[2, 2, 2]", "source.amplitude=0.2"])
    assert p.min() >= 1.9, p


def test_backends_run_the_same_code():
    """numba is accepted and runs the numpy/scipy code: results equal to the bit; cupy is
    refused (no GPU path)."""
    from ot_pde.backends import available_backends

    case = load_case(TORUS, overrides=["grid.n=16"])
    problem = get_kind(case.kind).build(case)
    results = []
    for name in [b for b in ("numpy", "numba") if b in available_backends()]:
        solver = problem.make_solver(get_backend(name))
        while not solver.finished:
            solver.step()
        results.append(solver.psi)
    assert all(np.array_equal(results[0], r) for r in results)

    assert get_kind(case.kind).supported_backends(case) == ("numpy", "numba")


def test_direct_and_gmres_newton_agree():
    _, a = solve(TORUS, ["grid.n=24"])
    _, b = solve(TORUS, ["grid.n=24", "solver.linear=direct"])
    assert np.abs(a.psi - b.psi).max() <= 1e-11


@pytest.mark.slow
def test_torus_study_32_to_256_order_and_newton_at_256():
    """The acceptance study: ``ot-pde converge`` from 32^2 to 256^2, Newton at 256^2."""
    case = load_case(TORUS)
    study = run_study(case, "grid.n=32,64,128,256")
    for name in ("W2_squared rel", "psi L2", "psi Linf"):
        assert study.orders()[name][-1] >= 1.9, (name, study.orders()[name])
    finest = study.runs[-1]["summary"]
    assert finest["iterations"] <= 30 and finest["residual"] <= 1e-10


# ------------------------------------------------------------------------------ the box
@pytest.mark.parametrize("case_file", [BOX_PRODUCT, BOX_GAUSS])
def test_box_second_order_against_quantile_maps(case_file):
    p = orders(case_file, (32, 64))
    assert p.min() >= 1.9, p


def test_1d_torus_and_box_second_order():
    one_d = ["grid.lower=[0]", "grid.upper=[1]", "target.amplitudes=[0.3]"]
    assert orders(TORUS, (32, 64), one_d + ["target.modes=[2]"]).min() >= 1.9
    assert orders(BOX_PRODUCT, (32, 64), one_d + ["target.modes=[1]", "source.modes=[2]",
                                                  "source.amplitudes=[0.5]"]).min() >= 1.9


def test_mccann_interpolation_second_order_via_converge():
    """``ot-pde converge`` compares the field rho(t) with the exact interpolant (the 1D
    quantile maps' product on the box)."""
    study = run_study(load_case(BOX_PRODUCT), "grid.n=32,64")
    for name in ("rho L1", "rho L2", "psi L2", "W2_squared rel"):
        assert study.orders()[name][-1] >= 1.9, (name, study.orders()[name])


def test_3d_box_second_order():
    p = orders(BOX_PRODUCT, (12, 24), [
        "grid.lower=[0, 0, 0]", "grid.upper=[1, 1, 1]", "output.frames=2",
        "source.amplitudes=[0.6, 0.4, 0.3]", "source.modes=[1, 2, 1]",
        "target.amplitudes=[-0.5, 0.5, 0.2]", "target.modes=[1, 1, 2]"])
    assert p.min() >= 1.9, p


def test_box_gaussian_reports_bures_and_truncation():
    problem, solver = solve(BOX_GAUSS, ["grid.n=32"])
    s = problem.summary(solver)
    assert s["W2_squared_bures"] == pytest.approx(0.04 ** 2 + 0.06 ** 2, abs=1e-12)
    assert 0 < s["truncated_mass_source"] < 0.05 and 0 < s["truncated_mass_target"] < 0.05
    assert s["W2_squared_exact"] < s["W2_squared_bures"]  # the tails carry the most cost


def test_box_map_against_the_exact_product_map():
    """The map's first component depends on x only and is the 1D quantile map there: it
    sends the box onto itself (faces to faces), to second order."""
    from ot_pde.transport.monge_ampere_grid.reference import Transport1D

    errs = []
    for n in (32, 64):
        problem, solver = solve(BOX_PRODUCT, [f"grid.n={n}"])
        g = problem.grid_
        t1d = Transport1D(problem.source.factors[0], problem.target.factors[0], 0.0, 1.0)
        exact = np.interp(np.interp(g.centers(0), t1d.x, t1d.cdf0), t1d.cdf1, t1d.x)
        got = solver.fields()["map_0"]
        assert got.min() > 0 and got.max() < 1
        errs.append(np.abs(got - exact[:, None]).max())
    assert np.log2(errs[0] / errs[1]) >= 1.9, errs


@pytest.mark.slow
@pytest.mark.parametrize("case_file", [BOX_PRODUCT, BOX_GAUSS])
def test_box_agrees_with_benamou_brenier_at_64(case_file):
    from ot_pde.spacetime import BenamouBrenierSolver, SpaceTimeGrid

    problem, solver = solve(case_file, ["grid.n=64"])
    grid = SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (64, 64), 32)
    bb = BenamouBrenierSolver(problem.source.values, problem.target.values, grid,
                              get_backend("numba"), gamma=0.3, relaxation=1.8, tol=1e-5,
                              max_iterations=5000)
    while not bb.finished:
        bb.step()
    assert abs(solver.w2_squared() - bb.w2_squared()) <= 0.01 * bb.w2_squared()


# ------------------------------------------------------------------------------ the flow
def test_semi_implicit_flow_reaches_the_newton_solution():
    problem, solver = solve(FLOW, ["grid.n=32"])
    s = problem.summary(solver)
    assert s["converged"] and s["psi_distance_to_newton"] <= 1e-6
    assert s["decay_rate"] > 0


def test_explicit_flow_decays_at_the_spectral_gap():
    problem, solver = solve(FLOW, ["grid.n=16", "solver.method=flow_explicit",
                                   "solver.max_iterations=100000"])
    s = problem.summary(solver)
    assert s["converged"] and s["psi_distance_to_newton"] <= 1e-6
    newton = NewtonSolver(problem.equation, tol=1e-12)
    while not newton.finished:
        newton.step()
    jac = problem.equation.jacobian(newton.ev).toarray()
    eig = np.linalg.eigvals(jac)
    gap = np.sort(-eig.real)[1]  # [0] is the constants' zero eigenvalue
    assert s["decay_rate"] == pytest.approx(gap, rel=0.03)  # measured 1.3 %


def test_decay_rate_fit():
    t = np.linspace(0, 2, 50)
    assert decay_rate(t, 3 * np.exp(-7 * t)) == pytest.approx(7, rel=1e-9)


# ------------------------------------------------------------------------------ outputs
def test_run_writes_fields_geodesic_and_plot(cli, tmp_path):
    out = tmp_path / "r.h5"
    code, _, err = cli("run", BOX_PRODUCT, "-o", out, "--set", "grid.n=32")
    assert code == 0, err
    with ResultFile(out) as rf:
        names = set(rf.field_names())
        assert {"psi", "map_x", "map_y", "det_D2u", "residual", "rho", "rho0",
                "rho1"} <= names
        rho = rf.field("rho")
        h2 = (1 / 32) ** 2
        # mass, every frame: O(h^2) (measured 7.3e-5)
        assert np.allclose(rho.sum(axis=(1, 2)) * h2, 1.0, atol=2e-4)
        # the ends: rho0 exactly (the spline interpolates), rho1 to O(h^2) (measured 2.2e-3)
        assert np.abs(rho[0] - rf.field("rho0")).max() <= 1e-12
        assert np.abs(rho[-1] - rf.field("rho1")).sum() * h2 < 5e-3
        assert np.abs(rf.field("residual")).max() <= 1e-10
    png = tmp_path / "r.png"
    code, _, err = cli("plot", out, "-o", png)
    assert code == 0, err and png.stat().st_size > 10_000


def test_restart_continues_bit_for_bit(cli, tmp_path):
    import h5py

    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    common = ["--backend", "numpy", "--set", "output.every=5", "--set", "output.xdmf=false",
              "--set", "grid.n=16", "--set", "solver.tol=1e-13"]
    assert cli("run", FLOW, "-o", full, *common, "--set", "solver.max_iterations=20")[0] == 0
    assert cli("run", FLOW, "-o", part, *common, "--set", "solver.max_iterations=10",
               "--keep-checkpoint")[0] == 0  # restarted below from its state
    with h5py.File(part, "r+") as f:
        f.attrs["status"] = "interrupted"
    code, _, err = cli("run", FLOW, "-o", part, *common, "--set", "solver.max_iterations=20",
                       "--restart")
    assert code == 0, err
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.field("psi"), b.field("psi"))
        assert np.array_equal(a.history()["residual"], b.history()["residual"])
        assert a.summary()["decay_rate"] == b.summary()["decay_rate"]


# ------------------------------------------------------------------------------ bad input
def test_shipped_cases_check(cli):
    for case in (TORUS, FLOW, BOX_PRODUCT, BOX_GAUSS):
        code, _, err = cli("check", case)
        assert code == 0, (case, err)


@pytest.mark.parametrize("case_file, override, key", [
    (TORUS, "grid.domain=box", "source.type"),            # constructed needs the torus
    (TORUS, "target.modes=[1, 2]", "target.modes"),       # not periodic
    (TORUS, "source.amplitude=3", "source.amplitude"),    # psi* not convex
    (FLOW, "solver.dt=-1", "solver.dt"),
    (BOX_PRODUCT, "target.amplitudes=[0.5]", "target.amplitudes"),
    (BOX_GAUSS, "grid.lower=[0, 0, 0]", "grid.upper"),
    (BOX_GAUSS, "solver.method=newtn", "solver.method"),
])
def test_bad_input_exits_2_naming_file_and_key(cli, tmp_path, case_file, override, key):
    code, _, err = cli("run", case_file, "-o", tmp_path / "r.h5", "--set", override)
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert key in line and (case_file.name in line or "--set" in line), err


def test_zero_density_is_refused(cli, tmp_path):
    code, _, err = cli("run", BOX_PRODUCT, "-o", tmp_path / "r.h5", "--set", "grid.n=16",
                       "--set", "target.type=uniform", "--set", "target.lower=[0, 0]",
                       "--set", "target.upper=[0.5, 1]")
    assert code == 2 and "target.type" in err and "positive" in err, err


def test_semi_implicit_without_dt_is_refused(cli, tmp_path):
    code, _, err = cli("run", TORUS, "-o", tmp_path / "r.h5", "--set",
                       "solver.method=flow_semi_implicit")
    assert code == 2 and "solver.dt" in err, err
