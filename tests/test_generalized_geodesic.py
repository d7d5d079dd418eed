"""The ``generalized_geodesic`` kind: Brenier's generalized flow from id to x -> 1 - x."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from ot_pde.backends import Backend, available_backends
from ot_pde.euler.generalized import (
    GeneralizedGeodesicSolver,
    discrete_factor,
    exact_conditional_cdf,
)
from ot_pde.io import ResultFile

from .conftest import CASES, json_line

CASE = CASES / "generalized_inversion_1d.toml"
SMALL = ["--set", "grid.n=32", "--set", "time.steps=8", "--set", "solver.epsilon=2e-3",
         "--set", "run.progress=none"]


def write_case(tmp_path, sigma='type = "inversion"', grid="dim = 1\nn = 8", extra=""):
    path = tmp_path / "case.toml"
    path.write_text(f'[case]\nproblem = "generalized_geodesic"\n[grid]\n{grid}\n[time]\n'
                    f'steps = 4\n[sigma]\n{sigma}\n[solver]\nepsilon = 0.01\n{extra}')
    return path


# ------------------------------------------------------------------ exact reference
def test_discrete_factor_is_the_k_step_action_of_the_exact_flow():
    """Monte Carlo K-step action of the sampled exact paths = (pi^2/24) sinc^2(pi/2K)."""
    rng = np.random.default_rng(1)
    a, theta = rng.random(400_000), rng.random(400_000) * np.pi
    K = 8
    t = np.arange(K + 1) / K
    c = a - 0.5
    x = 0.5 + c[:, None] * np.cos(np.pi * t) + (np.sqrt(0.25 - c * c) * np.cos(theta))[:, None] \
        * np.sin(np.pi * t)
    action = (np.diff(x, axis=1) ** 2).sum(axis=1).mean() * K / 2
    assert abs(action / (np.pi ** 2 / 24 * discrete_factor(K)) - 1) < 5e-3


def test_exact_conditional_cdf_matches_sampling():
    rng = np.random.default_rng(2)
    a = 0.3
    theta = rng.random(200_000) * np.pi
    c = a - 0.5
    x = 0.5 + np.sqrt(0.25 - c * c) * np.cos(theta)  # t = 1/2
    y = np.linspace(0, 1, 41)
    empirical = (x[:, None] <= y).mean(axis=0)
    assert np.abs(empirical - exact_conditional_cdf(a, y, 0.5)).max() < 5e-3


# ------------------------------------------------------------------ accuracy (acceptance 3)
def test_inversion_1d_small(cli, tmp_path):
    """n = 32, K = 8, eps = 2e-3 (seconds): action, law of x(1/2), pressure, marginals."""
    out = tmp_path / "inv.h5"
    code, stdout, err = cli("run", CASE, "-o", out, "--json", *SMALL)
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["converged"]
    assert s["action_relative_error"] < 0.02           # entropic bias ~ 3 eps / 0.41
    assert s["action_extrapolated_relative_error"] < 0.01
    assert s["pressure_relative_l2_error"] < 0.05
    assert s["ks_half_conditional_mean"] < 0.05
    assert s["ks_half_joint"] < 0.01
    assert s["density_max_deviation"] < 1e-3
    with ResultFile(out) as rf:
        gamma = rf.field("coupling")                    # densities, (K+1, n, n)
        n = gamma.shape[1]
        np.testing.assert_allclose(gamma[0], np.eye(n) * n, atol=1e-3 * n)
        np.testing.assert_allclose(gamma[-1], np.fliplr(np.eye(n)) * n, atol=1e-3 * n)
        np.testing.assert_allclose(gamma.sum(axis=1) / n, 1.0, atol=1e-3)  # x(t) uniform
        np.testing.assert_allclose(gamma.sum(axis=2) / n, 1.0, atol=1e-3)  # x(0) uniform
        assert rf.history()["marginal_error"][-1] < 1e-5
        assert rf.field("pressure").shape == (7, n)
    assert cli("plot", out, "-o", tmp_path / "inv.png")[0] == 0


@pytest.mark.slow
def test_shipped_case_and_epsilon_study(cli, tmp_path):
    """Acceptance 3 on the shipped case (n = 64, K = 8, eps = 1e-3, ~20 s), and the entropic
    bias of every epsilon stage: linear in epsilon (the basis of action_extrapolated)."""
    out = tmp_path / "inv.h5"
    code, stdout, err = cli("run", CASE, "-o", out, "--json", "--set", "run.progress=none")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["action_relative_error"] < 0.01
    assert s["action_extrapolated_relative_error"] < 0.002
    assert s["pressure_relative_l2_error"] < 0.02
    assert s["ks_half_conditional_mean"] < 0.03 and s["ks_half_joint"] < 2e-3
    with ResultFile(out) as rf:
        eps, action = rf.grid()["epsilon"], rf.field("stage_action")
    slope = (action - s["action_exact_discrete"]) / eps
    assert np.all(np.isfinite(slope))
    # bias / eps for the three smallest blurs: ~3 (K - 1 = 7 Brownian-bridge steps, ~eps/2 each,
    # less what the pressure confines)
    assert np.ptp(slope[-3:]) < 0.25 * slope[-1] and 2.0 < slope[-1] < 3.6


# ------------------------------------------------------------------ 2D
def test_rotation_2d(cli, tmp_path):
    """2D: the rotation by pi of the square (inversion on both axes), exact action pi^2/12."""
    path = write_case(tmp_path, grid="dim = 2\nn = 8", extra="tol = 1e-5\n")
    code, stdout, err = cli("run", path, "-o", tmp_path / "r.h5", "--json", "--set",
                            "solver.epsilon=5e-3", "--set", "run.progress=none")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["converged"] and abs(s["action_exact"] - np.pi ** 2 / 12) < 1e-15
    assert s["action_relative_error"] < 0.03
    assert s["pressure_relative_l2_error_discrete"] < 0.05
    with ResultFile(tmp_path / "r.h5") as rf:
        assert rf.field("coupling").shape == (5, 8, 8, 8, 8)
        assert rf.field("pressure").shape == (3, 8, 8)
    assert cli("plot", tmp_path / "r.h5", "-o", tmp_path / "r.png")[0] == 0


# ------------------------------------------------------------------ backends (acceptance 4)
@pytest.mark.skipif("numba" not in available_backends(), reason="numba not installed")
@pytest.mark.parametrize("dim", [1, 2])
def test_numpy_and_numba_agree(dim):
    """Same sweeps, kernel products in NumPy or numba: potentials agree to 1e-10 relative."""
    n = 10 if dim == 1 else 5
    x = (np.arange(n) + 0.5) / n
    sigma = np.flip(np.arange(n ** dim).reshape((n,) * dim)).ravel()
    solvers = [GeneralizedGeodesicSolver([x] * dim, sigma, 4, Backend(name, np), epsilon=5e-3,
                                         epsilon_start=0.05, epsilon_factor=0.5, stage_tol=1e-3,
                                         stage_max_iterations=50, tol=1e-9, max_iterations=60)
               for name in ("numpy", "numba")]
    for s in solvers:
        while not s.finished:
            s.step()
    a, b = solvers
    assert a.stage == b.stage and a.stage > 0
    scale = np.abs(a.u).max()
    assert np.abs(a.u - b.u).max() < 1e-10 * scale
    assert abs(a.action() - b.action()) < 1e-10 * a.action()


# ------------------------------------------------------------------ bad input
def _error(cli, path, *needles):
    code, _, err = cli("check", path)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for needle in (str(path),) + needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_input(cli, tmp_path):
    perm = list(range(8))
    dup = perm[:]
    dup[3] = 5
    _error(cli, write_case(tmp_path, sigma=f'type = "permutation"\nindices = {dup}'),
           "sigma.indices", "measure-preserving", "permutation", "point 5")
    _error(cli, write_case(tmp_path, sigma='type = "permutation"\nindices = [0, 1, 2]'),
           "sigma.indices", "expected 8 indices")
    _error(cli, write_case(tmp_path, sigma=f'type = "permutation"\nindices = {perm[:-1] + [8]}'),
           "sigma.indices", "not a grid point")
    _error(cli, write_case(tmp_path, sigma='type = "swirl"'), "sigma.type")
    _error(cli, write_case(tmp_path, extra="epsilon_start = 0.001\n"), "solver.epsilon_start")
    _error(cli, write_case(tmp_path, grid="dim = 3\nn = 8"), "grid.dim")
    _error(cli, write_case(tmp_path, extra="epsilon_factor = 1.5\n"), "solver.epsilon_factor")
    _error(cli, write_case(tmp_path, sigma='type = "inversion"\nindices = [0]'), "sigma.indices",
           "permutation")
    # a valid explicit permutation runs
    path = write_case(tmp_path, sigma=f'type = "permutation"\nindices = {perm[::-1]}')
    assert cli("check", path)[0] == 0


# ------------------------------------------------------------------ restart and failure
def test_restart_continues_bit_for_bit(cli, tmp_path):
    path = write_case(tmp_path, extra="max_iterations = 120\ntol = 1e-14\n[output]\nevery = 20\n")
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    args = ["--backend", "numpy", "--set", "run.progress=none",
            "--keep-checkpoint"]  # the final states are compared; part restarts from its
    assert cli("run", path, "-o", full, *args)[0] == 0
    assert cli("run", path, "-o", part, *args, "--set", "solver.max_iterations=60")[0] == 0
    with h5py.File(part, "r+") as f:
        f.attrs["status"] = "interrupted"
    code, _, err = cli("run", path, "-o", part, *args, "--restart")
    assert code == 0, err
    with ResultFile(full) as a, ResultFile(part) as b:
        assert b.status == "completed" and len(b.history()["iteration"]) == 120
        ca, cb = a.checkpoint()[0], b.checkpoint()[0]
        assert np.array_equal(ca["u"], cb["u"]) and np.array_equal(ca["psi"], cb["psi"])
        assert np.array_equal(a.history()["marginal_error"], b.history()["marginal_error"])
        assert np.array_equal(a.field("pressure"), b.field("pressure"))
        assert a.summary()["action"] == b.summary()["action"]


def test_blow_up_marks_the_file_failed(cli, tmp_path, monkeypatch):
    """Acceptance 5: a NaN mid-run stops with exit 1, status failed, a message naming the
    iteration and the time step, every history row before it kept."""
    from ot_pde.euler.generalized import solver as solver_module

    real = solver_module._logsumexp0
    calls = {"n": 0}

    def poisoned(a):
        calls["n"] += 1
        out = real(a)
        if calls["n"] > 3 * 25 + 1:  # K - 1 = 3 updates per sweep: the 26th sweep, step k = 2
            out = out.copy()
            out[0] = np.nan
        return out

    monkeypatch.setattr(solver_module, "_logsumexp0", poisoned)
    path = write_case(tmp_path, extra="[output]\nevery = 10\n")
    out = tmp_path / "x.h5"
    code, _, err = cli("run", path, "-o", out, "--backend", "numpy", "--set",
                       "run.progress=none")
    assert code == 1, err
    assert "iteration 26" in err and "time step k = 2" in err
    with ResultFile(out) as rf:
        assert rf.status == "failed"
        np.testing.assert_array_equal(rf.history()["iteration"], np.arange(1, 26))
        assert rf.checkpoint()[1] == 20
