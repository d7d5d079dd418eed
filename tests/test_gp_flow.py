"""The gp_flow kind: the 2D Gaussian Euler (lake) solver in Hermite-Galerkin form (steady
states, energy conservation to the RK4 order, exact Gaussian preservation, adjoint gradients)
and the shooting optimization on a shipped RealNVP (cost drops, density unchanged, restart,
backends, bad input, blow-up); for d > 2 the antisymmetric-matrix fields with the Euler penalty
(exact Gaussian preservation, rotations as exact steady solutions, gradients against finite
differences) and an affine 4D flow whose optimal rearrangement is the polar rotation."""
from __future__ import annotations

import importlib.util
import math

import h5py
import numpy as np
import pytest

from ot_pde.flows.gp.antisymmetric import AntisymmetricGP
from ot_pde.flows.gp.hermite import HermiteEuler, radial_theta

from .conftest import ROOT, json_line

CKPT = ROOT / "checkpoints" / "realnvp_moons.npz"


def _log_gamma(x):
    return -0.5 * np.sum(x * x, axis=1)


def test_galerkin_tensor_is_energy_conserving():
    eu = HermiteEuler(5, 8)
    # antisymmetric in (q, r): d/dt |theta|^2 / 2 = 0 for the semi-discrete system
    assert np.abs(eu.C + eu.C.transpose(2, 1, 0)).max() < 1e-12 * np.abs(eu.C).max()
    theta = np.random.default_rng(0).standard_normal(eu.size)
    assert abs(theta @ eu.rhs(theta)) < 1e-12 * np.linalg.norm(theta) ** 3


@pytest.mark.parametrize("taper", [None, (2.5, 3.5)])
def test_field_preserves_the_gaussian_pointwise(taper):
    """div(gamma v) = 0, i.e. div v = x . v, for every coefficient vector (taper included)."""
    eu = HermiteEuler(6, 8, taper=taper)
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(eu.size)
    x = 2.0 * rng.standard_normal((500, 2))
    v, jac, (bx, by) = eu.velocity(theta, x, gradient=True)
    div = jac[:, 0, 0] + jac[:, 1, 1]
    scale = np.abs(div).max() + np.abs(np.sum(x * v, 1)).max()
    assert np.abs(div - np.sum(x * v, 1)).max() < 1e-11 * scale
    assert np.allclose(np.stack([bx @ theta, by @ theta], 1), v, atol=1e-12 * np.abs(v).max())
    # the Jacobian against central differences
    h = 1e-6
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        fd = (eu.velocity(theta, x + e) - eu.velocity(theta, x - e)) / (2 * h)
        assert np.abs(fd - jac[:, :, j]).max() < 1e-6 * (1 + np.abs(jac).max())


@pytest.mark.parametrize("substeps", [0, 3])
def test_radial_steady_state_stays_steady(substeps):
    """v = f(|x|) x^perp is an exact steady Euler solution: coefficients unchanged, particles
    on circles, zero Euler residual."""
    eu = HermiteEuler(4, 32, taper=(3.0, 4.0), substeps=substeps)
    theta = radial_theta(eu, [1.0, 0.3])
    v = eu.velocity(theta, np.array([[1.0, 0.5], [-2.0, 0.3]]))
    assert np.abs(np.sum(v * np.array([[1.0, 0.5], [-2.0, 0.3]]), 1)).max() < 1e-13
    x = np.random.default_rng(2).standard_normal((400, 2))
    te, xe, _, path = eu.integrate(theta, x)
    assert np.abs(path - theta).max() < 1e-12
    assert np.abs(np.hypot(*xe.T) - np.hypot(*x.T)).max() < 1e-4  # RK4 error only
    assert np.abs(xe - x).max() > 0.1  # it does move
    assert eu.euler_residual(theta)[0] < 1e-12


def test_energy_conservation_converges_at_rk4_order():
    theta = 0.2 * np.random.default_rng(3).standard_normal(HermiteEuler(4, 1).size)
    drifts = []
    for steps in (16, 32, 64):
        eu = HermiteEuler(4, steps)
        te = eu.integrate(theta, np.zeros((1, 2)))[0]
        drifts.append(abs(eu.energy(te) - eu.energy(theta)) / eu.energy(theta))
    orders = np.log2(np.array(drifts[:-1]) / np.array(drifts[1:]))
    # observed: 5.0, 5.2 (the drift of a quadratic invariant under RK4 is at least O(dt^4))
    assert drifts[-1] < 1e-5
    assert orders.min() >= 3.7, (drifts, orders)


def test_coefficient_substeps_resolve_a_stiff_path():
    """The coefficient ODE on its own finer path: the energy drift falls by the RK4 order in
    the substeps (a degree-6 path that 48 coupled steps leave at a drift of 1e-2), and the
    particles still converge to the same map."""
    d = np.random.default_rng(0).standard_normal(HermiteEuler(6, 1).size)
    theta = d / np.linalg.norm(d)        # energy 0.5
    z = np.random.default_rng(1).standard_normal((200, 2))
    drift, ends = {}, {}
    for sub in (0, 2, 4):
        eu = HermiteEuler(6, 48, taper=(3.0, 4.0), substeps=sub)
        te, ends[sub], _, _ = eu.integrate(theta, z)
        drift[sub] = abs(eu.energy(te) - 0.5) / 0.5
    assert drift[0] > 5e-3
    assert drift[2] < 1e-4 and drift[4] < drift[2] / 10.0, drift
    fine = HermiteEuler(6, 192, taper=(3.0, 4.0), substeps=4).integrate(theta, z)[1]
    assert np.abs(ends[4] - fine).max() < np.abs(ends[0] - fine).max()


@pytest.mark.parametrize("substeps", [0, 2])
def test_gaussian_log_likelihood_defect_is_integration_error(substeps):
    """ln gamma(G z) + ln det DG(z) - ln gamma(z) = 0 in continuous time; RK4 leaves O(dt^4)."""
    z = np.random.default_rng(4).standard_normal((2000, 2))
    theta = 0.2 * np.random.default_rng(5).standard_normal(HermiteEuler(4, 1).size)
    defects = []
    for steps in (32, 64):
        eu = HermiteEuler(4, steps, taper=(3.0, 4.0), substeps=substeps)
        _, gz, ld, _ = eu.integrate(theta, z, logdet=True)
        defects.append(np.abs(_log_gamma(gz) + ld - _log_gamma(z)).mean())
        # the inverse by backward RK4 returns the points
        te = eu.integrate(theta, z[:10])[0]
        back = eu.integrate(te, gz[:10], backward=True)[1]
        assert np.abs(back - z[:10]).max() < 1e-4
    assert defects[-1] <= 1e-4
    assert defects[0] / defects[1] > 8.0


@pytest.mark.parametrize("substeps", [0, 2])
def test_adjoint_gradient_matches_finite_differences(substeps):
    """Coupled RK4 (substeps 0) and the coefficients on a finer path of their own."""
    eu = HermiteEuler(3, 6, taper=(2.0, 3.0), substeps=substeps)
    rng = np.random.default_rng(6)
    z, target = rng.standard_normal((40, 2)), rng.standard_normal((40, 2))
    w = np.array([1.0, 2.0])
    theta = 0.3 * rng.standard_normal(eu.size)

    def cost(th):
        te, xe, _, _ = eu.integrate(th, z)
        return np.sum(w * (xe - target) ** 2) + 0.3 * te @ te

    te, xe, _, (_, stages) = eu.integrate(theta, z, store=True)
    grad, _ = eu.adjoint(stages, 2 * w * (xe - target), 0.6 * te)
    eps = 1e-6
    fd = np.array([(cost(theta + eps * e) - cost(theta - eps * e)) / (2 * eps)
                   for e in np.eye(eu.size)])
    assert np.abs(grad - fd).max() < 1e-6 * np.abs(fd).max()


def _case(tmp_path, extra=""):
    case = tmp_path / "gp.toml"
    case.write_text(
        f'[case]\nproblem = "gp_flow"\n[run]\nseed = 3\n[model]\npath = "{CKPT}"\n'
        '[data]\ntype = "moons"\nn_test = 300\n[basis]\ndegree = 3\n[time]\nsteps = 16\n'
        '[solver]\nn_samples = 200\nmax_iterations = 4\nchunk = 2\n'
        '[comparison]\nn_eval = 500\not_sizes = [32, 64]\not_repeats = 2\n'
        '[output]\nsamples = 100\n' + extra)
    return case


@pytest.mark.parametrize("extra", [
    (),
    # the pulled-back objective on fresh pairs per chunk, coefficients on a finer path
    ("--set", "solver.pulled_back=true", "--set", "solver.resample=true",
     "--set", "time.coefficient_substeps=2"),
])
def test_shooting_on_realnvp_moons(cli, tmp_path, extra):
    code, out, err = cli("run", _case(tmp_path), "-o", tmp_path / "r.h5", "--backend",
                         "numpy", "--json", "--set", "solver.max_iterations=2", *extra)
    assert code == 0, err
    res = json_line(out)
    s = res["summary"]
    assert res["status"] == "completed"
    for key in ("transport_cost_before", "transport_cost_after", "ot_lower_bound",
                "gap_closed_fraction", "log_likelihood_change", "euler_residual"):
        assert math.isfinite(s[key]), key
    assert s["training_cost_after"] < s["training_cost_before"] - 0.05
    assert s["transport_cost_after"] < s["transport_cost_before"]
    assert s["gap_closed_fraction"] > 0.0
    assert abs(s["log_likelihood_change"]) <= 1e-4
    assert s["gaussian_defect_max_abs"] < 1e-2
    # the figure
    code, _, err = cli("plot", tmp_path / "r.h5", "-o", tmp_path / "r.png")
    assert code == 0, err
    assert (tmp_path / "r.png").stat().st_size > 10000


@pytest.mark.slow
@pytest.mark.parametrize("sets", [
    (),
    ("--set", "solver.pulled_back=true", "--set", "solver.resample=true",
     "--set", "time.coefficient_substeps=2"),
])
def test_restart_is_bit_for_bit(cli, tmp_path, sets):
    case = _case(tmp_path)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    assert cli("run", case, "-o", full, "--backend", "numpy", *sets)[0] == 0
    code, _, err = cli("run", case, "-o", part, "--backend", "numpy", "--set",
                       "solver.max_iterations=2", "--keep-checkpoint", *sets)  # restarted below
    assert code == 0, err
    with h5py.File(part, "r+") as f:
        f.attrs["status"] = "interrupted"
    code, _, err = cli("run", case, "-o", part, "--backend", "numpy", "--restart", *sets)
    assert code == 0, err
    with h5py.File(full, "r") as a, h5py.File(part, "r") as b:
        assert np.array_equal(a["fields/theta0"][()], b["fields/theta0"][()])
        assert np.array_equal(a["history/cost"][()], b["history/cost"][()])
        assert a.attrs["summary" if "summary" in a.attrs else "status"] is not None
        for key in ("transport_cost_after", "log_likelihood_change"):
            assert a["summary"].attrs[key] == b["summary"].attrs[key]


@pytest.mark.slow
def test_moons_case_gives_its_header(cli, tmp_path):
    """The shipped gp_realnvp_moons (about 15 min on a loaded core): the numbers of its
    header. 58 % of the gap to its discrete-OT bound; issue 24 asks for 60 %, not met."""
    code, stdout, err = cli("run", ROOT / "cases" / "gp_realnvp_moons.toml", "-o",
                            tmp_path / "m.h5", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["transport_cost_before"] - 1.9798) < 1e-3
    assert abs(s["transport_cost_after"] - 1.3820) < 5e-3
    assert abs(s["ot_lower_bound"] - 0.9499) < 1e-3
    assert abs(s["gap_closed_fraction"] - 0.580) < 0.005
    assert abs(s["log_likelihood_change"]) <= 1e-5
    assert s["log_likelihood_change_max_abs"] <= 1e-3
    assert s["energy_drift"] < 1e-5


@pytest.mark.slow
def test_eight_gaussians_case_gives_its_header(cli, tmp_path):
    """The shipped gp_realnvp_eight_gaussians (about 11 min on a loaded core): 58 % of the
    gap to its discrete-OT bound (issue 24 asks for 60 %, not met)."""
    code, stdout, err = cli("run", ROOT / "cases" / "gp_realnvp_eight_gaussians.toml", "-o",
                            tmp_path / "e.h5", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["transport_cost_before"] - 4.6618) < 1e-3
    assert abs(s["transport_cost_after"] - 3.4820) < 5e-3
    assert abs(s["ot_lower_bound"] - 2.6172) < 1e-3
    assert abs(s["gap_closed_fraction"] - 0.577) < 0.005
    assert abs(s["log_likelihood_change"]) <= 1e-5
    assert s["log_likelihood_change_max_abs"] <= 1e-3
    assert s["energy_drift"] < 1e-5


@pytest.mark.slow
def test_numpy_and_numba_agree(cli, tmp_path):
    from ot_pde.backends import available_backends

    if "numba" not in available_backends():
        pytest.skip("numba not installed")
    case = _case(tmp_path, "")
    outs = {}
    for b in ("numpy", "numba"):
        code, out, err = cli("run", case, "-o", tmp_path / f"{b}.h5", "--backend", b,
                             "--json", "--set", "solver.max_iterations=2")
        assert code == 0, err
        outs[b] = json_line(out)["summary"]
    for key in ("training_cost_after", "transport_cost_after", "log_likelihood_change"):
        assert outs["numba"][key] == pytest.approx(outs["numpy"][key], rel=1e-8, abs=1e-12)


def test_bad_input_exits_2(cli, tmp_path):
    code, _, err = cli("check", _case(tmp_path, ""), "--set", "basis.taper_outer=2.0")
    assert code == 2
    assert "taper_outer" in err and "gp.toml" in err
    code, _, err = cli("check", _case(tmp_path), "--set", "basis.degree=-1")
    assert code == 2 and "basis.degree" in err
    # a flow of dimension 43: the d > 2 construction's exact Euler penalty is too large
    case = tmp_path / "gp43.toml"
    case.write_text(_case(tmp_path).read_text().replace(
        str(CKPT), str(ROOT / "checkpoints" / "otflow_miniboone.npz")).replace(
        'type = "moons"', 'type = "model"').replace("degree = 3", "degree = 0"))
    code, _, err = cli("check", case)
    assert code == 2 and "basis.degree" in err and "d = 43" in err
    # d > 2 with a 2D toy data set
    ckpt4 = tmp_path / "affine4.npz"
    _affine_tool().affine_realnvp(ckpt4)
    case = tmp_path / "gp4.toml"
    case.write_text(_case(tmp_path).read_text().replace(str(CKPT), str(ckpt4)))
    code, _, err = cli("check", case)
    assert code == 2 and "data.type" in err and "d = 4" in err


def test_blow_up_exits_1_with_failed_status(cli, tmp_path):
    out = tmp_path / "bad.h5"
    code, stdout, err = cli("run", _case(tmp_path), "-o", out, "--backend", "numpy",
                            "--set", "initial.amplitude=1e6")
    assert code == 1, err
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "failed"


# -- d > 2: antisymmetric-matrix fields, penalized Euler ---------------------------------------
def _affine_tool():
    spec = importlib.util.spec_from_file_location(
        "make_gp_affine_checkpoint", ROOT / "tools" / "make_gp_affine_checkpoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("d, degree, taper", [(3, 2, None), (4, 1, (2.5, 3.5))])
def test_antisymmetric_field_preserves_the_gaussian_pointwise(d, degree, taper):
    """div(gamma v) = 0, i.e. div v = x . v, for every coefficient vector (taper included);
    the Jacobian against central differences."""
    f = AntisymmetricGP(d, degree, 1, 4, taper=taper)
    rng = np.random.default_rng(11)
    theta = rng.standard_normal(f.size)
    x = 1.5 * rng.standard_normal((300, d))
    v, jac, _ = f.velocity(theta, x, 0.3, gradient=True)
    div = np.einsum("mii->m", jac)
    assert np.abs(div - np.sum(x * v, 1)).max() < 1e-12 * np.abs(div).max()
    h = 1e-6
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        fd = (f.velocity(theta, x + e, 0.3) - f.velocity(theta, x - e, 0.3)) / (2 * h)
        assert np.abs(fd - jac[:, :, j]).max() < 1e-5 * np.abs(jac).max()


def test_antisymmetric_rotation_is_an_exact_steady_euler_solution():
    """Constant A (degree 0 part only): v = -A x, G = expm(-A); the acceleration A^2 x is a
    gradient, so the Euler residual and the penalty vanish; the density is unchanged."""
    from scipy.linalg import expm

    d = 4
    f = AntisymmetricGP(d, 1, 1, 32, taper=(4.0, 5.0))
    theta = np.zeros(f.shape)
    theta[0, :, 0] = 0.7 * np.random.default_rng(12).standard_normal(f.n_pairs)
    theta = theta.ravel()
    A = f._antisym(theta.reshape(f.shape)[0])[:, :, 0]
    z = np.random.default_rng(13).standard_normal((2000, d))
    z = z[np.linalg.norm(z, axis=1) < 3.9]          # inside the taper
    gz, ld, _ = f.integrate(theta, z, logdet=True)
    assert np.abs(gz - z @ expm(-A).T).max() < 1e-6
    assert np.abs(ld).max() < 1e-12
    assert f.penalty(theta) < 1e-24
    rel, absolute, energy = f.residual(theta, 0.4)
    assert rel < 1e-12 and energy > 0.1
    # a generic nonlinear, time-dependent field is not a geodesic
    other = 0.3 * np.random.default_rng(14).standard_normal(f.size)
    assert f.residual(other, 0.4)[0] > 0.1 and f.penalty(other) > 1e-3


def test_antisymmetric_gradients_match_finite_differences():
    """Exact gradients: the RK4 adjoint of the particles and the closed-form penalty."""
    f = AntisymmetricGP(3, 1, 1, 6, taper=(2.0, 3.0))
    rng = np.random.default_rng(15)
    z, target = rng.standard_normal((40, 3)), rng.standard_normal((40, 3))
    theta = 0.3 * rng.standard_normal(f.size)

    def cost(th):
        return np.sum((f.integrate(th, z)[0] - target) ** 2) + 0.7 * f.penalty(th)

    xe, _, stages = f.integrate(theta, z, store=True)
    grad = f.adjoint(theta, stages, 2 * (xe - target))[0] + 0.7 * f.penalty(theta, True)[1]
    eps = 1e-6
    fd = np.array([(cost(theta + eps * e) - cost(theta - eps * e)) / (2 * eps)
                   for e in np.eye(f.size)])
    assert np.abs(grad - fd).max() < 1e-6 * np.abs(fd).max()


def test_antisymmetric_log_likelihood_defect_is_integration_error():
    z = np.random.default_rng(16).standard_normal((2000, 4))
    theta = 0.15 * np.random.default_rng(17).standard_normal(AntisymmetricGP(4, 1, 1, 1).size)
    defects = []
    for steps in (16, 32):
        f = AntisymmetricGP(4, 1, 1, steps, taper=(4.0, 5.0))
        gz, ld, _ = f.integrate(theta, z, logdet=True)
        defects.append(np.abs(_log_gamma(gz) + ld - _log_gamma(z)).mean())
        back = f.integrate(theta, gz[:10], backward=True)[0]
        assert np.abs(back - z[:10]).max() < 1e-4
    assert defects[-1] <= 1e-5
    assert defects[0] / defects[1] > 8.0


def _affine_case(tmp_path, ckpt, degree):
    case = tmp_path / "gp4.toml"
    case.write_text(
        f'[case]\nproblem = "gp_flow"\n[run]\nseed = 1\n[model]\npath = "{ckpt}"\n'
        f'[data]\nn_test = 500\n[basis]\ndegree = {degree}\ntime_degree = 1\n'
        'taper_inner = 4.0\ntaper_outer = 5.0\n[time]\nsteps = 12\n'
        '[solver]\nn_samples = 512\nmax_iterations = 40\nchunk = 20\neuler_penalty = 10.0\n'
        '[comparison]\nn_eval = 4000\not_sizes = [64, 128]\not_repeats = 2\n'
        '[output]\nsamples = 2000\n')
    return case


@pytest.mark.parametrize("degree", [0, 1])
def test_affine_4d_flow_reaches_the_bures_value(cli, tmp_path, degree):
    """T(z) = M z + m in d = 4: the optimal Gaussian-preserving rearrangement is the rotation
    R^T of M = P R; the cost falls to the Bures value, the density is unchanged."""
    tool = _affine_tool()
    M, m = tool.affine_realnvp(tmp_path / "affine4.npz")
    before, bures, R = tool.bures_values(M, m)
    out = tmp_path / "r4.h5"
    code, stdout, err = cli("run", _affine_case(tmp_path, tmp_path / "affine4.npz", degree),
                            "-o", out, "--backend", "numpy", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    for key in ("transport_cost_before", "transport_cost_after", "ot_lower_bound",
                "gap_closed_fraction", "log_likelihood_change", "euler_residual"):
        assert math.isfinite(s[key]), key
    assert abs(s["log_likelihood_change"]) <= 1e-4
    assert s["gaussian_defect_max_abs"] < 1e-3
    # paired on the written latent points: cost of T o G against the Brenier map P z + m
    with h5py.File(out, "r") as f:
        z, gz = f["particles/latent"][()], f["particles/rearranged"][()]
    P = M @ R.T
    c_after = np.sum((gz @ M.T + m - z) ** 2, 1).mean()
    c_brenier = np.sum((z @ P.T + m - z) ** 2, 1).mean()
    c_before = np.sum((z @ M.T + m - z) ** 2, 1).mean()
    assert (c_before - c_after) / (c_before - c_brenier) > 0.95, (c_before, c_after, c_brenier)
    # G ~ R^T (z @ R = R^T z), up to the fit to 512 training draws: on them the sample term
    # |M G z|^2 depends on G, and the fitted rotation beats R^T there (measured: training
    # cost 6.695 against 6.798 for R^T, mean |G z - R^T z| 0.10 at degree 0)
    assert np.abs(gz - z @ R).mean() < 0.2
    assert s["transport_cost_after"] < s["transport_cost_before"] - 3.0
    assert s["euler_residual"] < (1e-3 if degree == 0 else 0.2)
    assert abs(s["gelbrich_bound"] - bures) < 0.3
