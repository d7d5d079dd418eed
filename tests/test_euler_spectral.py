"""The ``euler_spectral`` problem kind: exact solution, RK4 order, conservation, flow map,
backends, bad input, failures and restart."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from ot_pde.backends import available_backends, get_backend
from ot_pde.config import load_case
from ot_pde.core.converge import run_study
from ot_pde.core.registry import get_kind
from ot_pde.errors import NumericalError
from ot_pde.io import ResultFile

from .conftest import CASES, json_line

TG = CASES / "euler_shifted_taylor_green.toml"
SHEAR = CASES / "euler_shear_layer.toml"
RANDOM = ['initial.type="random"', "grid.n=32", "initial.mean_velocity=[0.3, -0.2]",
          "particles.n=4"]


def _solver(overrides, backend="numpy", case=TG):
    case = load_case(case, overrides=overrides)
    problem = get_kind(case.kind).build(case)
    return problem, problem.make_solver(get_backend(backend))


def _advance(solver, steps=None):
    row = None
    while not solver.finished and (steps is None or solver.iteration < steps):
        row = solver.step()
    return row


# ------------------------------------------------------------------ closed form and orders
def test_shifted_taylor_green_matches_the_exact_solution(cli, tmp_path):
    """The shipped case: omega(x, T) = omega0(x - U T), flow map and det F = 1, invariants."""
    out = tmp_path / "tg.h5"
    code, stdout, err = cli("run", TG, "-o", out, "--json", "--backend", "numpy")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["t_final"] == 2.0 and s["steps"] == 100
    assert s["omega_error_max"] < 3e-8          # measured 2.0e-8 (RK4 phase error)
    assert s["flow_map_error_max"] < 1e-7       # measured 4.2e-8
    assert s["jacobian_error_max"] <= 1e-8      # acceptance: measured 5.4e-9
    assert s["divergence_max"] < 1e-13
    assert abs(s["energy"] / (2 * math.pi ** 2 * 1.25 + math.pi ** 2) - 1) < 1e-9
    assert abs(s["enstrophy"] / (2 * math.pi ** 2) - 1) < 1e-9  # drift 5e-10
    with ResultFile(out) as rf:
        assert rf.status == "completed"
        hist = rf.history()
        assert len(hist["t"]) == 100 and hist["t"][-1] == 2.0
        for name in ("energy", "enstrophy", "casimir", "max_divergence", "jacobian_error"):
            assert np.all(np.isfinite(hist[name])), name
        np.testing.assert_allclose(rf.field("jacobian"), 1.0, atol=1e-8)
        assert rf.particles("markers").shape == (256, 2)


def test_rk4_order_four_in_dt():
    """Acceptance 1: observed order 4 +- 0.3 on the finest pair, field and flow map; the
    invariants' drift falls at least as fast (dt^5 here: RK4 on a skew linear system)."""
    case = load_case(TG, overrides=["particles.n=8"])
    study = run_study(case, "time.dt=0.1,0.05,0.025,0.0125", backend="numpy")
    orders = study.orders()
    for name in ("omega L2", "omega Linf", "flow_map_x L2", "flow_map_y Linf"):
        assert abs(orders[name][-1] - 4.0) <= 0.3, (name, orders[name])
    for name in ("energy rel", "enstrophy rel"):
        assert orders[name][-1] >= 3.7, (name, orders[name])
    assert study.errors["omega Linf"][-1] < 1e-8


def test_conservation_drift_falls_as_dt4_on_a_nonlinear_flow():
    """A random smooth vorticity (the nonlinear term at work): energy and enstrophy drifts
    and the flow-map Jacobian error fall as dt^4 or faster. The energy drift is small and
    reaches its dt^4 regime late (measured ratios 13.5, 14.3, 15.2 from dt = 0.01 down to
    0.00125; the enstrophy drift falls as dt^5, the Jacobian error as dt^4.0)."""
    drifts = []
    for dt in (0.005, 0.0025):
        _, solver = _solver(RANDOM + ["initial.mean_velocity=[0.0, 0.0]", "time.t_final=1.0",
                                      f"time.dt={dt}"])
        rows = []
        while not solver.finished:
            rows.append(solver.step())
        row = rows[-1]
        # the largest drift over the run (a final value alone may sit near a zero crossing)
        drifts.append(tuple(max(abs(r[f"{name}_drift"]) for r in rows)
                            for name in ("energy", "enstrophy")))
    for coarse, fine in zip(*drifts):
        assert math.log2(coarse / fine) >= 3.7, drifts
    assert row["jacobian_error"] < 1e-8
    assert row["max_divergence"] < 1e-13


def test_adaptive_step_ends_exactly_at_t_final(tmp_path):
    _, solver = _solver(RANDOM + ["time.t_final=0.37"], case=_adaptive_case(tmp_path))
    rows = []
    while not solver.finished:
        rows.append(solver.step())
    assert solver.time == 0.37
    assert max(r["cfl"] for r in rows) <= 0.6 + 1e-12
    assert abs(sum(r["dt"] for r in rows) - 0.37) < 1e-14


def _adaptive_case(folder):
    """The Taylor-Green case with time.cfl instead of time.dt (a file: the schema refuses both)."""
    text = TG.read_text().replace("dt = 0.02", "cfl = 0.6")
    path = folder / "adaptive.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ backends
def test_backends_agree(backend_name):
    """numpy and every other backend: same vorticity, markers and F after 20 steps."""
    over = RANDOM + ["time.t_final=0.2", "time.dt=0.01"]
    _, ref = _solver(over)
    _, other = _solver(over, backend_name)
    _advance(ref)
    _advance(other)
    b = other.backend
    w_ref, w_other = ref.vorticity(), other.vorticity()
    assert np.abs(w_other - w_ref).max() <= 1e-12 * np.abs(w_ref).max()
    np.testing.assert_allclose(other.marker_positions(), ref.marker_positions(), rtol=0,
                               atol=1e-12)
    np.testing.assert_allclose(b.to_numpy(other.deformation), ref.deformation, rtol=0,
                               atol=1e-12)


@pytest.mark.skipif("numba" not in available_backends(), reason="numba not installed")
def test_numba_kernels_serial_and_parallel_match_numpy():
    """Both numba twins (serial, parallel) of each kernel against the numpy forms, at 256^2."""
    from ot_pde.euler.spectral import SpectralEulerSolver
    from ot_pde.euler.spectral import _kernels_numba as nb
    from ot_pde.euler.spectral.solver import (
        advection_xp,
        derivatives_xp,
        marker_sums_xp,
    )

    n = 256
    x = 2 * np.pi * np.arange(n) / n
    xx, yy = np.meshgrid(x, x, indexing="ij")
    omega = np.sin(3 * xx) * np.cos(2 * yy) + np.cos(xx + 5 * yy)
    rng = np.random.default_rng(0)
    s = SpectralEulerSolver(omega, get_backend("numpy"), t_final=1.0, dt=0.01,
                            mean_velocity=(0.3, 0.1), markers=rng.random((40, 2)) * 7)
    spec = derivatives_xp(s.omega_hat, s._ikx, s._iky, s._inv_k2, np.empty_like(s._spec4))
    grid4 = rng.standard_normal((4, n, n))
    product, rate = advection_xp(grid4, 0.3, 0.1, 2.0, np)
    block = np.ascontiguousarray(s.psi_hat()[s._rows, :s._cols])
    vel, grad = marker_sums_xp(block, s._kxs, s._kys, s._weights, s.markers, (0.3, 0.1), np)
    for twin in (0, 1):
        out = np.empty_like(spec)
        nb._derivatives[twin](s.omega_hat, s._ikx, s._iky, s._inv_k2, out)
        np.testing.assert_array_equal(out, spec)
        p_nb, row_max = np.empty((n, n)), np.empty(n)
        nb._advection[twin](grid4, 0.3, 0.1, p_nb, row_max)
        np.testing.assert_array_equal(p_nb, product)
        assert row_max.max() * 2.0 == rate
        v_nb, g_nb = np.empty((40, 2)), np.empty((40, 2, 2))
        nb._marker_sums[twin](block, s._kxs, s._kys, s._weights, s.markers, 0.3, 0.1, v_nb,
                              g_nb)
        np.testing.assert_allclose(v_nb, vel, rtol=0, atol=1e-13)
        np.testing.assert_allclose(g_nb, grad, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("overrides,key,words", [
    (["grid.n=17"], "grid.n", "even"),
    (["grid.n=2"], "grid.n", ">= 4"),
    (["time.cfl=0.5"], "time.cfl", "not both"),
    (["time.t_final=-1"], "time.t_final", "> 0"),
    (['initial.type="vortex"'], "initial.type", "taylor_green"),
    (["initial.mean_velocity=[1.0]"], "initial.mean_velocity", "2"),
    (["particles.n=-1"], "particles.n", ">= 0"),
])
def test_bad_input_exits_2(cli, tmp_path, overrides, key, words):
    args = []
    for o in overrides:
        args += ["--set", o]
    code, _, err = cli("run", TG, "-o", tmp_path / "r.h5", *args)
    assert code == 2, err
    assert key in err and words in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r.h5").exists()


def test_neither_dt_nor_cfl_is_an_error(cli, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TG.read_text().replace("dt = 0.02\n", ""))
    code, _, err = cli("run", path, "-o", tmp_path / "r.h5")
    assert code == 2 and "time.dt" in err and str(path) in err, err


def test_check_accepts_the_shipped_cases(cli):
    for case in (TG, SHEAR):
        code, _, err = cli("check", case)
        assert code == 0, (case, err)


# ---------------------------------------------------------------------- failures, restart
def test_cfl_violation_fails_cleanly_naming_the_step(cli, tmp_path):
    """Acceptance 5: a step whose CFL number exceeds time.max_cfl stops the run (exit 1),
    the file says failed and keeps the completed steps."""
    out = tmp_path / "r.h5"
    over = ['initial.type="random"', "grid.n=32", "initial.mean_velocity=[0.0, 0.0]",
            "time.dt=0.08", "time.max_cfl=1.3", "particles.n=4"]
    args = [a for o in over for a in ("--set", o)]
    code, _, err = cli("run", TG, "-o", out, "--backend", "numpy", *args)
    assert code == 1, err
    assert "step 8" in err and "CFL number" in err and "time.max_cfl" in err, err
    with ResultFile(out) as rf:
        assert rf.status == "failed"
        assert list(rf.history()["iteration"]) == list(range(1, 8))
        assert np.all(rf.history()["cfl"] <= 1.3)


def test_cfl_violation_at_the_first_step(cli, tmp_path):
    out = tmp_path / "r.h5"
    code, _, err = cli("run", TG, "-o", out, "--set", "time.dt=0.5")
    assert code == 1 and "step 1 " in err and "reduce time.dt" in err, err
    with ResultFile(out) as rf:
        assert rf.status == "failed"


def test_blow_up_mid_run_marks_the_file_failed(cli, tmp_path, monkeypatch):
    from ot_pde.euler.spectral import solver as mod

    real = mod.SpectralEulerSolver.diagnostics

    def poisoned(self):
        if self.iteration == 12:
            self.omega_hat[1, 1] = np.nan
        return real(self)

    monkeypatch.setattr(mod.SpectralEulerSolver, "diagnostics", poisoned)
    out = tmp_path / "r.h5"
    code, _, err = cli("run", TG, "-o", out, "--backend", "numpy", "--set", "output.every=5")
    assert code == 1 and "step 12" in err and "non-finite" in err, err
    with ResultFile(out) as rf:
        assert rf.status == "failed"
        assert list(rf.history()["iteration"]) == list(range(1, 12))
        assert rf.checkpoint()[1] == 10


def test_restart_continues_bit_for_bit(cli, tmp_path):
    """Stopped at step 10 of 20 (as if killed after that checkpoint) and continued."""
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    common = ["--backend", "numpy", "--set", "output.every=5", "--set", "output.xdmf=false",
              "--keep-checkpoint"]  # the final states are compared; part restarts from its
    assert cli("run", TG, "-o", full, *common, "--set", "time.t_final=0.4")[0] == 0
    code, _, err = cli("run", TG, "-o", part, *common, "--set", "time.t_final=0.2")
    assert code == 0, err
    with h5py.File(part, "r+") as f:
        f.attrs["status"] = "interrupted"
        assert "t_final = 0.2\n" in f.attrs["case_toml"]
        f.attrs["case_toml"] = f.attrs["case_toml"].replace("t_final = 0.2\n",
                                                            "t_final = 0.4\n")
    code, _, err = cli("run", TG, "-o", part, *common, "--set", "time.t_final=0.4",
                       "--restart")
    assert code == 0, err
    with ResultFile(full) as a, ResultFile(part) as b:
        ca, cb = a.checkpoint()[0], b.checkpoint()[0]
        for key in ("omega_hat", "markers", "deformation", "running"):
            assert np.array_equal(ca[key], cb[key]), key
        for name in ("t", "energy", "jacobian_error"):
            assert np.array_equal(a.history()[name], b.history()[name]), name
        assert np.array_equal(a.field("omega"), b.field("omega"))
        assert a.summary()["omega_error_max"] == b.summary()["omega_error_max"]


def test_adaptive_state_roundtrip_is_bit_for_bit(tmp_path):
    case = _adaptive_case(tmp_path)
    _, a = _solver(RANDOM + ["time.t_final=0.3"], case=case)
    _advance(a)
    _, b = _solver(RANDOM + ["time.t_final=0.3"], case=case)
    _advance(b, steps=4)
    state = b.state()
    _, c = _solver(RANDOM + ["time.t_final=0.3"], case=case)
    c.load_state(state)
    _advance(c)
    assert c.iteration == a.iteration and c.time == a.time == 0.3
    assert np.array_equal(c.omega_hat, a.omega_hat)
    assert np.array_equal(c.markers, a.markers)


def test_plot_writes_a_png(cli, tmp_path):
    out = tmp_path / "tg.h5"
    assert cli("run", TG, "-o", out, "--set", "time.dt=0.1", "--set", "particles.n=4")[0] == 0
    png = tmp_path / "tg.png"
    code, _, err = cli("plot", out, "-o", png)
    assert code == 0, err
    assert png.stat().st_size > 10_000


def test_numerical_error_is_raised_by_the_solver():
    _, solver = _solver(["time.dt=0.5"])
    with pytest.raises(NumericalError, match="step 1 "):
        solver.step()


def test_snapshots_every_time_against_the_exact_solution_and_across_a_restart(cli, tmp_path):
    """output.every_time: the vorticity at t = 0 and at every step crossing a multiple,
    each equal to the shifted Taylor-Green vorticity at its time; a run stopped and
    restarted writes each snapshot once, the same bits as an uninterrupted run."""
    from ot_pde.core.registry import get_kind
    from ot_pde.config import load_case

    common = ["--backend", "numpy", "--set", "time.dt=0.02", "--set", "output.every=5",
              "--set", "output.every_time=0.1", "--set", "particles.n=0", "-q"]
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    assert cli("run", TG, "-o", full, *common, "--set", "time.t_final=0.4")[0] == 0
    with ResultFile(full) as rf:
        times, omega = rf.grid()["t_snap"], rf.field("omega_t")
        assert rf.field_dims("omega_t") == ("t_snap", "x", "y")
    np.testing.assert_allclose(times, [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-12)
    sets = [common[i + 1] for i, a in enumerate(common) if a == "--set"]
    problem = get_kind("euler_spectral").build(load_case(TG, overrides=sets))
    for t, w in zip(times, omega):
        exact = problem._exact_fields(t)["omega"]
        assert np.max(np.abs(w - exact)) < 1e-6 * np.max(np.abs(exact)), t
    code, _, err = cli("run", TG, "-o", part, *common, "--set", "time.t_final=0.2",
                       "--keep-checkpoint")
    assert code == 0, err
    with h5py.File(part, "r+") as f:  # as if a run to 0.4 had been killed at t = 0.2
        f.attrs["status"] = "interrupted"
        f.attrs["case_toml"] = f.attrs["case_toml"].replace("t_final = 0.2\n",
                                                            "t_final = 0.4\n")
        assert f["grid/t_snap"].shape == (3,)
        f["grid/t_snap"].resize((4,))  # a snapshot the checkpoint has not reached
    code, _, err = cli("run", TG, "-o", part, *common, "--set", "time.t_final=0.4",
                       "--restart")
    assert code == 0, err
    with ResultFile(part) as rf:
        np.testing.assert_array_equal(rf.grid()["t_snap"], times)
        np.testing.assert_array_equal(rf.field("omega_t"), omega)
