"""The neural antisymmetric Gaussian-preserving field of gp_flow (d > 2): exact Gaussian
preservation checked independently of its own derivatives (a 5-point finite-difference
divergence of gamma v), the hand-written input derivatives (Jacobian, divergence,
acceleration) and the discrete adjoint against finite differences, the quadratic-pressure
Euler residual on exact steady solutions, the log-density defect as integration error; end to
end on the affine 4D flow, and (slow) the shipped MiniBOONE case."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from ot_pde.flows.gp.neural_field import NeuralAntisymmetricGP, quadratic_pressure_gradient

from .conftest import ROOT, json_line


def _field(d=5, width=7, steps=6, scale=0.5, seed=0):
    f = NeuralAntisymmetricGP(d, width, steps)
    return f, scale * np.random.default_rng(seed).standard_normal(f.size)


@pytest.mark.parametrize("d", [3, 6])
def test_div_gamma_v_vanishes_by_finite_differences(d):
    """div(gamma v) / gamma by a 5-point stencil on gamma(y)/gamma(x) v(y): 0 to 1e-10
    relative to |v| at random points (truncation h^4 ~ 1e-12, rounding ~ 1e-13)."""
    f, th = _field(d=d, width=9)
    rng = np.random.default_rng(1)
    x, t, h = rng.standard_normal((25, d)), 0.37, 1e-3

    def phi(y):
        return np.exp(-0.5 * (np.sum(y * y, 1) - np.sum(x * x, 1)))[:, None] \
            * f.velocity(th, y, t)

    div = 0.0
    for l in range(d):
        e = h * np.eye(d)[l]
        div = div + (-phi(x + 2 * e)[:, l] + 8 * phi(x + e)[:, l] - 8 * phi(x - e)[:, l]
                     + phi(x - 2 * e)[:, l]) / (12 * h)
    scale = np.abs(f.velocity(th, x, t)).max()
    assert scale > 1.0
    assert np.abs(div).max() <= 1e-10 * scale


def test_input_derivatives_are_exact():
    f, th = _field()
    rng = np.random.default_rng(2)
    x, t, h = rng.standard_normal((20, f.dim)), 0.3, 1e-6
    jac = f.jacobian(th, x, t)
    jfd = np.stack([(f.velocity(th, x + h * e, t) - f.velocity(th, x - h * e, t)) / (2 * h)
                    for e in np.eye(f.dim)], axis=2)
    assert np.abs(jac - jfd).max() < 1e-7 * np.abs(jac).max()
    # the O(MHd) divergence = trace of the Jacobian = x . v (Gaussian preservation)
    tr = np.einsum("mii->m", jac)
    assert np.abs(f.divergence(th, x, t) - tr).max() < 1e-12 * np.abs(tr).max()
    assert np.abs(tr - np.sum(x * f.velocity(th, x, t), 1)).max() < 1e-12 * np.abs(tr).max()
    # acceleration dv/dt + (v . grad) v = directional derivative along (v, 1)
    v, acc = f.acceleration(th, x, t)
    afd = (f.velocity(th, x + h * v, t + h) - f.velocity(th, x - h * v, t - h)) / (2 * h)
    assert np.abs(acc - afd).max() < 1e-7 * np.abs(acc).max()


def test_vjp_and_adjoint_match_finite_differences():
    f, th = _field(scale=0.3)
    rng = np.random.default_rng(3)
    x, g, t = rng.standard_normal((20, f.dim)), rng.standard_normal((20, f.dim)), 0.6
    gt, gx = f.vjp(f.unpack(th), x, t, g)
    assert np.abs(gx - np.einsum("mi,mil->ml", g, f.jacobian(th, x, t))).max() < 1e-12
    idx = rng.choice(f.size, 12, replace=False)
    eps = 1e-6
    for k in idx:
        e = np.zeros(f.size)
        e[k] = eps
        fd = (np.sum(g * f.velocity(th + e, x, t)) - np.sum(g * f.velocity(th - e, x, t))) \
            / (2 * eps)
        assert abs(gt[k] - fd) <= 1e-7 * max(1.0, abs(fd)), k
    # the discrete adjoint of RK4, with the action term
    z, y, mu = rng.standard_normal((30, f.dim)), rng.standard_normal((30, f.dim)), 0.7

    def objective(p):
        xe, _, action, stages = f.integrate(p, z, store=True)
        return np.mean(np.sum((xe - y) ** 2, 1)) + mu * action, xe, stages

    _, xe, stages = objective(th)
    grad, _ = f.adjoint(th, stages, 2.0 * (xe - y) / z.shape[0], mu)
    for k in idx:
        e = np.zeros(f.size)
        e[k] = eps
        fd = (objective(th + e)[0] - objective(th - e)[0]) / (2 * eps)
        assert abs(grad[k] - fd) <= 1e-6 * max(1.0, abs(fd)), k


def test_affine_control_variate_keeps_the_objective_and_its_gradient_exact():
    """With the control variate the objective is |y|^2 - 2 y.H + H.M H + c.H + d - tr M:
    its gradient (the same RK4 adjoint) against central differences; for a rotation H
    (exactly gamma-preserving) its mean over many draws equals E|y - H|^2 within sampling
    error; at the identity the per-sample cotangent shrinks to the affine fit's residual."""
    from ot_pde.flows.gp.neural_run import PulledBackShooting, affine_control_variate

    f, th = _field(d=4, width=5, steps=4, scale=0.3)
    rng = np.random.default_rng(8)
    a = rng.standard_normal((4, 4))
    target = lambda w: w @ (a @ a.T + np.eye(4)) + 0.3 * np.sin(w) + 1.0  # noqa: E731
    w = rng.standard_normal((40, 4))
    obj = PulledBackShooting(f, lambda k: (w, target(w)), 0.4, False, control_variate=True)
    value, grad = obj(th)
    eps = 1e-6
    for k in rng.choice(f.size, 10, replace=False):
        e = np.zeros(f.size)
        e[k] = eps
        fd = (obj(th + e)[0] - obj(th - e)[0]) / (2 * eps)
        assert abs(grad[k] - fd) <= 1e-6 * max(1.0, abs(fd)), k
    # unbiased: H a rotation, M and c fitted on other draws
    big = rng.standard_normal((200000, 4))
    m, c = affine_control_variate(big[:2000], target(big[:2000]))
    q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    hw, y = big @ q.T, target(big)
    plain = np.sum((y - hw) ** 2, 1)
    cv = np.sum(y * y - 2 * y * hw + (hw @ m) * hw + c * hw, 1) + 4 - np.trace(m)
    se = np.hypot(plain.std(), cv.std()) / math.sqrt(big.shape[0])
    assert abs(plain.mean() - cv.mean()) < 4 * se
    # at the identity the per-sample cotangent is the affine fit's residual, not y - w
    w0, y0 = big[:5000], target(big[:5000])
    assert np.mean((w0 @ m + 0.5 * c - y0) ** 2) < 0.05 * np.mean((w0 - y0) ** 2)


def test_quadratic_pressure_and_rotations():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, 5))
    s = rng.standard_normal((5, 5))
    s = s + s.T
    a = rng.standard_normal(5) + x @ s
    assert np.abs(a + quadratic_pressure_gradient(x, a)).max() < 1e-12
    # bias only: a constant rotation v = -Bx, an exact steady Euler solution (a = B^2 x)
    f = NeuralAntisymmetricGP(5, 4, 8)
    th = np.zeros(f.size)
    th[-f.n_pairs:] = rng.standard_normal(f.n_pairs)
    rel, _, energy = f.residual(th, 0.5, x)
    assert energy > 0.1 and rel < 1e-12
    # a generic field is not a geodesic
    _, th2 = _field(d=5, width=4)
    assert f.residual(th2, 0.5, x)[0] > 0.1


def test_log_density_defect_is_integration_error():
    """|ln gamma(Hz) + ln det DH - ln gamma(z)| from the exact divergence: RK4 error only,
    decreasing at order 4; the backward map inverts the forward one."""
    _, th = _field(d=4, width=6, scale=0.3)
    z = np.random.default_rng(5).standard_normal((300, 4))
    defects = []
    for steps in (8, 16):
        f = NeuralAntisymmetricGP(4, 6, steps)
        hz, ld, _, _ = f.integrate(th, z, logdet=True)
        defects.append(np.abs(-0.5 * np.sum(hz ** 2, 1) + ld + 0.5 * np.sum(z ** 2, 1)).mean())
        back, ldb, _, _ = f.integrate(th, hz, backward=True, logdet=True)
        assert np.abs(back - z).max() < 1e-3 and np.abs(ld + ldb).max() < 1e-3
    assert defects[1] < 1e-5
    assert defects[0] / defects[1] > 10.0


def _affine_tool():
    spec = importlib.util.spec_from_file_location(
        "make_gp_affine_checkpoint", ROOT / "tools" / "make_gp_affine_checkpoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_neural_field_on_the_affine_4d_flow(cli, tmp_path):
    """T(z) = M z + m: the neural field closes most of the gap to the Bures value (the exact
    optimum), with the density unchanged."""
    tool = _affine_tool()
    M, m = tool.affine_realnvp(tmp_path / "affine4.npz")
    before, bures, _ = tool.bures_values(M, m)
    case = tmp_path / "n4.toml"
    case.write_text(
        f'[case]\nproblem = "gp_flow"\n[run]\nseed = 1\n[model]\npath = '
        f'"{tmp_path / "affine4.npz"}"\n[data]\nn_test = 500\n[basis]\nfield = "neural"\n'
        'width = 8\n[time]\nsteps = 8\n[solver]\nn_samples = 512\nmax_iterations = 60\n'
        'chunk = 30\naction_weight = 0.001\n[comparison]\nn_eval = 4000\not_sizes = [64, 128]\n'
        'ot_repeats = 2\n[output]\nsamples = 100\n')
    code, stdout, err = cli("run", case, "-o", tmp_path / "n4.h5", "--backend", "numpy",
                            "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["log_likelihood_change"]) <= 1e-4
    assert abs(s["gelbrich_bound"] - bures) < 0.3
    closed = (s["transport_cost_before"] - s["transport_cost_after"]) / (before - bures)
    assert closed > 0.8, (s["transport_cost_before"], s["transport_cost_after"], bures)
    assert math.isfinite(s["euler_residual"])


@pytest.mark.slow
def test_miniboone_case_gives_its_header(cli, tmp_path):
    """The shipped 43-dimensional case: the numbers of its header. The density is unchanged;
    the cost on fresh draws does not fall (the acceptance of issue 24, >= 30 % of the gap to
    the Gelbrich bound, is not met: the header says why)."""
    code, stdout, err = cli("run", ROOT / "cases" / "gp_otflow_miniboone.toml", "-o",
                            tmp_path / "mb.h5", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["log_likelihood_change"]) <= 1e-4
    assert s["log_likelihood_change_max_abs"] <= 1e-4
    assert abs(s["gelbrich_bound"] - 20.00) < 3 * s["gelbrich_bound_stderr"]
    assert abs(s["transport_cost_before"] - 30.18) < 0.02
    assert abs(s["transport_cost_after"] - 30.56) < 0.1
    assert 0.0 < s["euler_residual"] <= 1.0


@pytest.mark.slow
def test_digits_case_gives_its_header(cli, tmp_path):
    """The shipped 64-dimensional case: a gain on fresh draws, density unchanged."""
    code, stdout, err = cli("run", ROOT / "cases" / "gp_realnvp_digits.toml", "-o",
                            tmp_path / "dg.h5", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["log_likelihood_change"]) <= 1e-4
    assert abs(s["gelbrich_bound"] - 215.98) < 3 * s["gelbrich_bound_stderr"]
    assert abs(s["transport_cost_before"] - 243.03) < 0.05
    assert s["transport_cost_after"] < s["transport_cost_before"] - 5 * s["cost_change_stderr"]
    assert abs(s["gap_closed_fraction_gelbrich"] - 0.18) < 0.03
    assert 0.0 < s["euler_residual"] <= 1.0


def test_neural_field_in_2d_is_refused(cli, tmp_path):
    case = tmp_path / "n2.toml"
    case.write_text(
        f'[case]\nproblem = "gp_flow"\n[model]\npath = '
        f'"{ROOT / "checkpoints" / "realnvp_moons.npz"}"\n[data]\ntype = "moons"\n'
        '[basis]\nfield = "neural"\n')
    code, _, err = cli("check", case)
    assert code == 2 and "basis.field" in err and "Traceback" not in err
