"""``entropic_potentials`` with neural potentials learned from samples: the dual estimator's
derivatives, the exact recovery of the Gaussian interpolation, the Gaussian closed forms
(Janati et al. 2020) after training, restart, bad input; slow: d = 16, the checkerboard against
the grid solver."""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.config import load_case
from ot_pde.densities import gaussian_pdf
from ot_pde.io import ResultFile
from ot_pde.transport.entropic import entropic_gaussian, entropic_gaussian_interpolation
from ot_pde.transport.entropic.dual_training import DualTraining
from ot_pde.transport.entropic.neural import (
    DualObjective,
    GaussianTarget,
    QuadraticNetwork,
    conditional_proposal,
    exact_gaussian_pair,
    initialize_pair,
    quadratic_transform,
)
from ot_pde.transport.entropic.recovery import EntropicFlow, SmoothedPotential

from .conftest import CASES

M0 = np.array([0.5, -0.3])
A = np.array([[0.6, 0.2], [0.2, 0.3]])

GAUSS_TOML = """
[case]
problem = "entropic_potentials"
[potentials]
representation = "neural"
iterations = 600
n_train = 0
n_eval = 50000
nll_points = 1000
[source]
type = "gaussian"
mean = [0.5, -0.3]
cov = [[0.6, 0.2], [0.2, 0.3]]
[target]
type = "gaussian"
mean = [0.0, 0.0]
std = 1.0
[solver]
epsilon = 0.1
[flow]
samples = 4000
[output]
xdmf = false
every = 100
"""


@pytest.fixture
def gauss(tmp_path):
    path = tmp_path / "ek_samples_gauss.toml"
    path.write_text(GAUSS_TOML)
    return path


def _pair(width, seed=0, eps=0.3):
    target = GaussianTarget(np.zeros(2), np.eye(2))
    phi, psi = QuadraticNetwork(2, width, seed=seed), QuadraticNetwork(2, width, seed=seed + 1)
    initialize_pair(phi, psi, M0, A, target, eps)
    rng = np.random.default_rng(seed)
    theta = np.concatenate([phi.params, psi.params])
    # perturb everything (the networks' output weights start at 0)
    theta = theta + 0.05 * rng.standard_normal(theta.size)
    obj = DualObjective(phi, psi, target, eps, draws=3)
    obj.set_params(theta)
    return obj, rng


def test_dual_gradient_and_curvature_match_finite_differences():
    obj, rng = _pair(width=5)
    xs = M0 + rng.standard_normal((40, 2)) @ np.linalg.cholesky(A).T
    y = rng.standard_normal((30, 2))
    xi = rng.standard_normal((30, 3, 2))
    frozen = conditional_proposal(obj.phi)
    res = obj.value_and_grad(xs, y, xi, want_curvature=True, proposal=frozen)
    theta = obj.params()
    h = 1e-6

    def value(th):
        obj.set_params(th)
        return obj.value_and_grad(xs, y, xi, want_grad=False, proposal=frozen)["value"]

    def grad(th):
        obj.set_params(th)
        return obj.value_and_grad(xs, y, xi, proposal=frozen)["grad"]

    fd = np.array([(value(theta + h * e) - value(theta - h * e)) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(res["grad"], fd, rtol=1e-5, atol=1e-7)
    # the curvature is minus the Hessian in the linear parameters
    quad = obj.linear_index()
    hess = np.array([(grad(theta + h * e) - grad(theta - h * e))[quad] / (2 * h)
                     for e in np.eye(theta.size)[quad]])
    np.testing.assert_allclose(-hess, res["curvature"], rtol=1e-4, atol=1e-6)


def test_semi_dual_gradient_and_curvature():
    """The semi-dual's gradient in the network weights against finite differences of its
    estimate (the draws depend only on the quadratic part), and its curvature against the
    exact conditional covariance of the linear features."""
    obj, rng = _pair(width=4)
    xs = M0 + rng.standard_normal((40, 2)) @ np.linalg.cholesky(A).T
    y = rng.standard_normal((30, 2))
    xi = rng.standard_normal((30, 3, 2))
    res = obj.semi_dual(xs, y, xi, want_curvature=True)
    theta = obj.params()
    n_phi = obj.phi.n_params
    lin = obj.phi.linear_index()
    net = np.setdiff1d(np.arange(n_phi), lin)  # hidden weights: the draws do not move
    h = 1e-6

    def at(th):
        full = theta.copy()
        full[:n_phi] = th
        obj.set_params(full)
        return obj.semi_dual(xs, y, xi)

    base = theta[:n_phi]
    fd = np.array([(at(base + h * e)["value"] - at(base - h * e)["value"]) / (2 * h)
                   for e in np.eye(n_phi)[net]])
    np.testing.assert_allclose(res["grad"][net], fd, rtol=1e-5, atol=1e-7)
    # curvature: eps^-1 E Cov_{pi(x|y)} of the features; in the linear block (features x) the
    # conditional covariance is eps P^-1 exactly (quadratic phi, its own proposal)
    obj.set_params(theta)
    quad, _ = _pair(width=0)
    xi = rng.standard_normal((30, 4000, 2))
    curv = quad.semi_dual(xs, y, xi, want_curvature=True)["curvature"]
    p_inv = conditional_proposal(quad.phi)[0]
    np.testing.assert_allclose(curv[4:6, 4:6], p_inv, rtol=0.03, atol=0.01)
    assert np.linalg.eigvalsh(curv).min() > -1e-10


def test_heat_smoothed_velocity_derivatives_match_finite_differences():
    obj, rng = _pair(width=6, eps=0.2)
    flow = EntropicFlow(obj.phi, obj.psi, 0.2, draws=8, seed=1)
    z = rng.standard_normal((6, 2))
    h = 1e-5
    for t in (0.0, 0.3, 1.0):
        for pot, s in ((flow.phi_t, t * 0.2), (flow.psi_t, (1 - t) * 0.2)):
            _, g, lap = pot.evaluate(z, s)
            fd_g = np.stack([(pot.evaluate(z + h * e, s)[0] - pot.evaluate(z - h * e, s)[0])
                             / (2 * h) for e in np.eye(2)], axis=1)
            fd_lap = sum((pot.evaluate(z + h * e, s)[1][:, k] - pot.evaluate(z - h * e, s)[1][:, k])
                         / (2 * h) for k, e in enumerate(np.eye(2)))
            np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(lap, fd_lap, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_exact_pair_recovers_the_closed_form_interpolation_and_density(eps):
    """Plan potentials read off the closed-form plan: rho_t equals the closed-form marginal
    of the bridge, and the CNF carries N(0, I) to N(m0, A) with its log-density."""
    phi_q, psi_q, lxy = exact_gaussian_pair(M0, A, np.zeros(2), np.eye(2), eps)
    np.testing.assert_allclose(lxy, -np.eye(2) / eps, atol=1e-9 / eps)
    phi, psi = QuadraticNetwork(2), QuadraticNetwork(2)
    phi.set_quadratic(*phi_q)
    psi.set_quadratic(*psi_q)
    # the exact psi is the transform of the exact phi (second marginal N(0, I))
    for got, want in zip(quadratic_transform(phi, GaussianTarget(np.zeros(2), np.eye(2)), eps),
                         psi_q):
        np.testing.assert_allclose(got, want, atol=1e-10)
    flow = EntropicFlow(phi, psi, eps, draws=1, seed=0)
    rng = np.random.default_rng(3)
    for t in (0.0, 0.25, 0.5, 1.0):
        m, c = entropic_gaussian_interpolation(M0, A, np.zeros(2), np.eye(2), eps, t)
        z = rng.multivariate_normal(m, c, 200)
        np.testing.assert_allclose(flow.log_rho(z, t), np.log(gaussian_pdf(z, m, c)),
                                   atol=1e-10)
    target = GaussianTarget(np.zeros(2), np.eye(2))
    x = rng.multivariate_normal(M0, A, 300)
    errs = [np.abs(flow.log_density_at_0(x, target, nt) - np.log(gaussian_pdf(x, M0, A))).max()
            for nt in (16, 32)]
    order = np.log2(errs[0] / errs[1])
    assert errs[1] < 1e-5 and abs(order - 4) < 0.3, (errs, order)  # RK4 (3.97, 3.90 measured)
    x0, logp0 = flow.sample(rng.standard_normal((300, 2)), target, 32)
    np.testing.assert_allclose(logp0, np.log(gaussian_pdf(x0, M0, A)), atol=1e-5)


def test_heat_smoothing_of_a_network_converges_to_quadrature():
    """The Monte Carlo heat smoothing of a quadratic + network potential (network of
    amplitude about eps) against a 2D quadrature of the same integral: value and gradient of
    eps log H_s[exp(phi/eps)] at three points (the derivative tests check the estimate's
    derivatives, this its limit)."""
    eps, s = 0.1, 0.025
    pot = QuadraticNetwork(2, 16, seed=3)
    pot.set_quadratic(np.diag([0.5, 0.3]), np.array([0.1, -0.2]), 0.0)
    theta = pot.params.copy()
    theta[-16:] = 0.05 * np.random.default_rng(0).standard_normal(16)  # the output weights
    pot.set_params(theta)
    assert np.array_equal(pot.net.param_blocks()["w2"], theta[-16:])
    z = np.array([[0.3, -0.2], [1.0, 1.0], [-1.5, 0.5]])
    sp = SmoothedPotential(pot, eps, np.random.default_rng(1).standard_normal((4096, 2)))
    value, grad, _ = sp.evaluate(z, s)
    g = np.linspace(-1.2, 1.2, 601)  # +- 7.6 kernel widths
    for i, zz in enumerate(z):
        x = np.stack(np.meshgrid(zz[0] + g, zz[1] + g, indexing="ij"), -1).reshape(-1, 2)
        logk = -((x - zz) ** 2).sum(1) / (2 * s) - np.log(2 * np.pi * s)
        lv = logk + pot.value(x) / eps
        w = np.exp(lv - lv.max())
        log_h = np.log(w.sum() * (g[1] - g[0]) ** 2) + lv.max()
        assert abs(value[i] - sp.c0 - eps * log_h) < 1e-3
        grad_q = eps * (w[:, None] * (x - zz)).sum(0) / w.sum() / s
        assert np.abs(grad[i] - grad_q).max() < 5e-4


def test_velocity_comparison_against_the_grid_solver_is_consistent():
    """The exact Gaussian plan potentials' velocity equals the grid (Sinkhorn) solver's in
    L2(rho_t): the metric of the checkerboard comparison compares like with like."""
    from ot_pde.backends import get_backend
    from ot_pde.transport.entropic.grid_compare import velocity_l2_error
    from ot_pde.transport.entropic.solver import EntropicSolver, SpaceTimeGrid

    eps, n = 0.2, 48
    grid = SpaceTimeGrid((-6.0, -6.0), (6.0, 6.0), (n, n), 4)
    pts = np.stack(grid.mesh(), -1).reshape(-1, 2)
    mu = gaussian_pdf(pts, M0, A).reshape(n, n)
    nu = gaussian_pdf(pts, np.zeros(2), np.eye(2)).reshape(n, n)
    solver = EntropicSolver(mu / (mu.sum() * grid.cell_volume), nu / (nu.sum() * grid.cell_volume),
                            grid, get_backend("numpy"), epsilon=eps, tol=1e-10)
    while not solver.finished:
        solver.step()
    phi_q, psi_q, _ = exact_gaussian_pair(M0, A, np.zeros(2), np.eye(2), eps)
    phi, psi = QuadraticNetwork(2), QuadraticNetwork(2)
    phi.set_quadratic(*phi_q)
    psi.set_quadratic(*psi_q)
    flow = EntropicFlow(phi, psi, eps, draws=1, seed=0)
    for t in (0.25, 0.5, 0.75):
        rho, v, _ = solver.fields_at(t)
        learned = flow.velocity(pts, t)[0].T.reshape(2, n, n)
        assert velocity_l2_error(learned, v, rho) < 1e-3  # 1.2e-5 to 2.5e-5 measured at 64^2


def test_gaussian_d2_matches_the_closed_form(gauss, cli, tmp_path):
    out = tmp_path / "g.h5"
    code, _, err = cli("run", gauss, "-o", out, "--backend", "numpy",
                       "--set", "grid.lower=[-4.0, -4.0]", "--set", "grid.upper=[4.0, 4.0]",
                       "--set", "grid.n=32")
    assert code == 0, err
    with ResultFile(out) as rf:
        s = rf.summary()
        hist = rf.history()
        x0 = rf.particles("x0")
        model, true = rf.field("model_log_density"), rf.field("true_log_density")
    # the CNF's density on the grid: unit mass, close to the true one where it matters
    assert abs(s["model_density_mass"] - 1) < 0.01
    assert np.abs(np.exp(model) - np.exp(true)).sum() * (8 / 32) ** 2 < 0.05
    png = tmp_path / "g.png"
    code, _, err = cli("plot", out, "-o", png)
    assert code == 0 and png.stat().st_size > 10_000, err
    exact, _ = entropic_gaussian(M0, A, np.zeros(2), np.eye(2), 0.1)
    assert s["entropic_cost_exact"] == pytest.approx(exact, rel=1e-12)
    assert s["relative_error"] < 0.05
    assert s["cross_cov_rel_error"] < 0.05 and s["plan_cov_rel_error"] < 0.05
    assert s["mean_error"] < 0.05
    assert abs(s["nll_test"] - s["nll_test_exact"]) < 4 * s["nll_test_se"] + 0.02
    assert np.abs(np.cov(x0.T) - A).max() < 0.05 and np.abs(x0.mean(0) - M0).max() < 0.05
    assert len(hist["dual"]) == 600 and np.isfinite(hist["dual"]).all()


def test_training_restarts_bit_for_bit():
    obj, _ = _pair(width=4, eps=0.3)
    theta0 = obj.params()
    chol = np.linalg.cholesky(A)
    sampler = lambda n, rng: M0 + rng.standard_normal((n, 2)) @ chol.T  # noqa: E731

    def trainer():
        obj.set_params(theta0)
        return DualTraining(obj, iterations=12, batch=64, lr=0.2, lr_final=0.05, seed=4,
                            sampler=sampler)

    full = trainer()
    while not full.finished:
        full.step()
    want = obj.params()
    part = trainer()
    for _ in range(5):
        part.step()
    state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in part.state().items()}
    again = trainer()
    again.load_state(state)
    while not again.finished:
        again.step()
    assert np.array_equal(obj.params(), want)


@pytest.mark.parametrize("optimizer", ["newton", "adam"])
def test_sharded_training_agrees_with_one_shard(optimizer):
    """The batch summed in 2 or 3 shards (the unit of MPI data parallelism) follows the
    one-shard run up to round-off: the dual history to 1e-12 and the learned potentials'
    values to 1e-9 after 30 steps, each centred (the constant of phi against psi's, and the
    antisymmetric part of S, are directions the dual does not see: only the Newton step's
    1e-8 damping holds them, so round-off moves them by 1e-8)."""
    chol = np.linalg.cholesky(A)
    sampler = lambda n, rng: M0 + rng.standard_normal((n, 2)) @ chol.T  # noqa: E731
    pts = M0 + np.random.default_rng(9).standard_normal((50, 2))

    def run(shards):
        obj, _ = _pair(width=6, eps=0.3)
        train = DualTraining(obj, iterations=30, batch=64, lr=0.3, lr_final=0.05, seed=4,
                             sampler=sampler, shards=shards, optimizer=optimizer,
                             adam_lr=1e-2, adam_lr_final=1e-3)
        hist = [train.step()["dual"] for _ in range(30)]
        phi, psi = obj.phi.value(pts), obj.psi.value(pts)
        return np.array(hist), phi - phi.mean(), psi - psi.mean()

    want = run(1)
    for shards in (2, 3):
        got = run(shards)
        assert np.max(np.abs(got[0] - want[0])) < 1e-12, shards
        for a, b in zip(got[1:], want[1:]):
            assert np.max(np.abs(a - b)) < 1e-9, shards


def test_shards_must_fit_the_batch(gauss, cli, tmp_path):
    code, _, err = cli("run", gauss, "-o", tmp_path / "r.h5", "--set", "potentials.shards=300")
    assert code == 2 and "potentials.shards" in err.strip().splitlines()[-1], err


def test_runner_restart_continues_bit_for_bit(gauss, cli, tmp_path, monkeypatch):
    """Interrupted (Ctrl-C) at step 15 of 40, then continued from the checkpoint."""
    import h5py

    from ot_pde.transport.entropic import dual_training

    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    common = ["--backend", "numpy", "--set", "potentials.iterations=40",
              "--set", "output.every=10", "--set", "potentials.nll_points=0",
              "--set", "flow.samples=0", "--set", "potentials.n_eval=1000"]
    assert cli("run", gauss, "-o", full, *common)[0] == 0
    real = dual_training.DualTraining.step

    def interrupted(self):
        if self.iteration == 15:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(dual_training.DualTraining, "step", interrupted)
    code, _, err = cli("run", gauss, "-o", part, *common)
    assert code == 130, err
    with h5py.File(part, "r") as f:
        assert f.attrs["status"] == "interrupted"
        assert 10 <= int(np.asarray(f["checkpoint/iteration"])) <= 15
    monkeypatch.setattr(dual_training.DualTraining, "step", real)
    code, _, err = cli("run", gauss, "-o", part, *common, "--restart")
    assert code == 0, err
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.history()["dual"], b.history()["dual"])
        assert a.summary()["dual_value"] == b.summary()["dual_value"]


@pytest.mark.parametrize("override, key", [
    ("target.type=mixture", "target"),
    ("potentials.nll_points=30000", "potentials.nll_points"),
    ("potentials.width=-1", "potentials.width"),
    ("potentials.optimiser=adam", "potentials.optimiser"),
    ("target.mean=[0.0, 0.0, 0.0]", "target.mean"),
])
def test_bad_input_exits_2_naming_file_and_key(gauss, cli, tmp_path, override, key):
    code, _, err = cli("run", gauss, "-o", tmp_path / "r.h5", "--set", override)
    assert code == 2, err
    assert key in err.strip().splitlines()[-1], err


def test_dataset_source_needs_the_neural_representation(cli, tmp_path):
    case = tmp_path / "bad.toml"
    case.write_text((CASES / "ek_checkerboard_2d.toml").read_text().replace(
        'type = "checkerboard"\nlower = [-2.0, -2.0]\nupper = [2.0, 2.0]\ncells = 4\nedge = 0.1',
        'type = "dataset"\nname = "moons"'))
    code, _, err = cli("check", case)
    code, _, err = cli("run", case, "-o", tmp_path / "r.h5")
    assert code == 2 and "source.type" in err and "neural" in err, err


def test_shipped_sample_cases_check(cli):
    names = sorted(p for p in CASES.glob("ek_samples_*.toml"))
    assert len(names) == 4
    for case in names:
        code, _, err = cli("check", case)
        assert code == 0, (case, err)
        assert load_case(case).get("potentials.representation") == "neural"


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 8, 16])
@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_gaussian_closed_form_d2_d8_d16(d, eps, cli, tmp_path):
    """The acceptance: entropic cost within 1 %, cross-covariance and the plan's mean and
    covariance within 2 % (Frobenius, relative) in d = 2, 8 and 16, eps = 0.1 and 1."""
    out = tmp_path / "g.h5"
    overrides = {2: _d2_overrides, 8: _d8_overrides, 16: list}[d]()
    code, _, err = cli("run", CASES / "ek_samples_gaussians_d16.toml", "-o", out,
                       "--set", f"solver.epsilon={eps}", *overrides)
    assert code == 0, err
    with ResultFile(out) as rf:
        s = rf.summary()
    assert s["relative_error"] < 0.01, s
    assert s["cross_cov_rel_error"] < 0.02 and s["plan_cov_rel_error"] < 0.02, s
    assert s["mean_error"] < 0.02 * np.sqrt(d), s


def _d8_overrides():
    """The leading 8 x 8 block of the d = 16 case's pair (a principal block of a positive
    definite matrix: positive definite; eigenvalues in [0.59, 1.87])."""
    src = load_case(CASES / "ek_samples_gaussians_d16.toml").section("source")
    mean = np.asarray(src["mean"])[:8]
    cov = np.asarray(src["cov"])[:8, :8]
    return ["--set", f"source.mean={mean.tolist()}", "--set", f"source.cov={cov.tolist()}",
            "--set", f"target.mean={[0.0] * 8}"]


def _d2_overrides():
    return ["--set", "source.mean=[0.5, -0.3]", "--set", "source.cov=[[0.6, 0.2], [0.2, 0.3]]",
            "--set", "target.mean=[0.0, 0.0]", "--set", "potentials.iterations=1000"]


@pytest.mark.slow
def test_sample_sinkhorn_velocity_approaches_the_grid_solver_on_the_checkerboard():
    """The checkerboard comparison without any learning: the bridge between the empirical
    measures of N board and N Gaussian samples (sample Sinkhorn, ``sample_velocity``: the same
    eps, cost |x-y|^2/2, time direction and velocity formula, no network) approaches the grid
    solver's velocity in L2(rho_t) as N grows, like a Monte Carlo error. So the grid reference,
    the sampled board and the conventions agree; the learned velocity's error is the
    networks'. Measured (seed 0 draws): N = 1000: 0.37, 0.35, 0.53; N = 4000: 0.24, 0.23,
    0.30 at t = 1/4, 1/2, 3/4, ratios 0.63, 0.65, 0.57 (N = 8000: 0.14, 0.14, 0.20); about
    90 s. A mismatch of eps, cost or time direction would leave an error that does not fall
    with N."""
    from ot_pde.transport.entropic import sample_velocity, sinkhorn_samples
    from ot_pde.transport.entropic.grid_compare import (
        COMPARE_TIMES,
        _grid_reference,
        velocity_l2_error,
    )
    from ot_pde.transport.entropic.sample_problem import SampleProblem

    problem = SampleProblem(load_case(CASES / "ek_samples_checkerboard.toml"))
    lo, hi, n = problem.box
    ref, rho = _grid_reference(problem, lo, hi, n)
    axes = [lo[k] + (hi[k] - lo[k]) * (np.arange(n) + 0.5) / n for k in (0, 1)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    errs = {}
    for size in (1000, 4000):
        rng = np.random.default_rng(0)
        x, y = problem.source.sample(size, rng), rng.standard_normal((size, 2))
        f, g, _, _ = sinkhorn_samples(x, y, problem.epsilon, tol=1e-6)
        errs[size] = []
        for j, t in enumerate(COMPARE_TIMES):
            v = np.concatenate([sample_velocity(pts[i:i + 1024], t, x, y, f, g, problem.epsilon)
                                for i in range(0, len(pts), 1024)])
            errs[size].append(velocity_l2_error(v.T.reshape(2, n, n), ref[j], rho[j]))
    small, large = np.array(errs[1000]), np.array(errs[4000])
    # a Monte Carlo error: 4 times the samples, 0.57-0.65 times the error (0.5 for 1/sqrt(N))
    assert np.all(large < 0.7 * small) and large.max() < 0.4, errs


@pytest.mark.slow
def test_checkerboard_velocity_against_the_grid_solver(cli, tmp_path):
    """The learned velocity against the grid solver at the same eps, t = 1/4, 1/2, 3/4.

    Measured with the shipped case: relative L2(rho_t) errors of about 0.7-0.8 (see the
    docs); this guards that level. The issue's 5 % is not reached: the xfail-strict test
    below records it and fails the day it is met, so that the docs get updated."""
    out = tmp_path / "cb.h5"
    code, _, err = cli("run", CASES / "ek_samples_checkerboard.toml", "-o", out)
    assert code == 0, err
    with ResultFile(out) as rf:
        s = rf.summary()
        v, v_grid = rf.field("v"), rf.field("v_grid")
    errs = [s[f"velocity_l2_rel_error_t{k:03d}"] for k in (25, 50, 75)]
    assert max(errs) < 0.9, errs
    assert v.shape == v_grid.shape == (3, 2, 64, 64)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the issue's 5 % in L2(rho_t) is not reached (measured "
                                       "0.7-0.8: the one-hidden-layer networks learn the board "
                                       "slowly; the grid side and the conventions are checked "
                                       "by test_velocity_comparison_against_the_grid_solver_"
                                       "is_consistent and test_sample_sinkhorn_velocity_"
                                       "approaches_the_grid_solver_on_the_checkerboard); "
                                       "tools/ek_checkerboard_diagnosis.py measures the "
                                       "family's floor (0.2 at width 32 with exact integrals) "
                                       "and the samplers' failure; see "
                                       "docs/kinds/entropic_potentials.rst")
def test_checkerboard_velocity_within_five_percent(cli, tmp_path):
    out = tmp_path / "cb.h5"
    code, _, err = cli("run", CASES / "ek_samples_checkerboard.toml", "-o", out)
    assert code == 0, err
    with ResultFile(out) as rf:
        s = rf.summary()
    assert max(s[f"velocity_l2_rel_error_t{k:03d}"] for k in (25, 50, 75)) < 0.05
