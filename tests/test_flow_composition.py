"""Symmetry-composed flows (ot_pde.flows.composition), the log-determinant check
(ot_pde.flows.logdet) and float32 training twins: exact derivatives against finite
differences, consistency of the carried log-density, and the kind's options end to end."""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.backends import get_backend
from ot_pde.flows.composition import Composition
from ot_pde.flows.integrators import (
    integrate,
    integrate_adjoint,
    standard_normal_log_prob,
)
from ot_pde.flows.logdet import carried_and_exact_logdet, logdet_error_per_site
from ot_pde.flows.potentials import (
    GroupAveraged,
    OneHiddenLayer,
    reflections_2d,
    spin_flip,
    translations_2d,
)
from ot_pde.flows.training import ReverseKL, Trainer, loss_and_grad
from ot_pde.io import ResultFile
from ot_pde.ising.exact import IsingRelaxation

from .conftest import json_line, run_full_and_restarted
from .test_ising_variational import SMALL

L = 3
D = L * L


def _lattice_group(L):
    return translations_2d(L) + reflections_2d(L) + spin_flip(L * L)


def _composed(per, backend="numpy", rng=1):
    pot = OneHiddenLayer(D, 7, "logcosh", bias=True, time_dependent=True, rng=rng,
                         backend=get_backend(backend))
    return pot, Composition(pot, _lattice_group(L), per=per)


def test_group_of_the_lattice_has_the_expected_order():
    assert Composition(OneHiddenLayer(D, 2), _lattice_group(L)).order == 16 * D


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("per", ["step", "stage"])
def test_adjoint_of_the_composed_flow_matches_finite_differences(per, backend):
    """Parameter and start-point cotangents of a linear functional of (x_T, l_T) against
    central differences along random directions (the draws fixed)."""
    pot, comp = _composed(per, backend)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((5, D))
    l0 = standard_normal_log_prob(x0)
    actions = comp.draw(rng, 5, 3, 4)
    lam_x, lam_l = rng.standard_normal((5, D)), rng.standard_normal(5)
    flow = dict(T=0.7, n_steps=3, actions=actions)

    def functional(theta, x):
        pot.set_params(theta)
        xT, lT = integrate(comp, x, l0, **flow)
        return float((lam_x * xT).sum() + (lam_l * lT).sum())

    theta = pot.params.copy()
    _, _, traj = integrate(comp, x0, l0, store=True, **flow)
    lam_x0, _, grad = integrate_adjoint(comp, traj, lam_x, lam_l)
    eps = 1e-6
    e_theta, e_x = rng.standard_normal(theta.size), rng.standard_normal(x0.shape)
    fd_theta = (functional(theta + eps * e_theta, x0)
                - functional(theta - eps * e_theta, x0)) / (2 * eps)
    fd_x = (functional(theta, x0 + eps * e_x) - functional(theta, x0 - eps * e_x)) / (2 * eps)
    assert abs(fd_theta - grad @ e_theta) <= 1e-6 * abs(fd_theta)
    assert abs(fd_x - (lam_x0 * e_x).sum()) <= 1e-6 * abs(fd_x)


def test_identity_draws_give_the_plain_flow():
    """With every draw the identity (index 0), the composed flow is the potential's own."""
    pot, comp = _composed("step")
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((4, D))
    l0 = standard_normal_log_prob(x0)
    plain = integrate(pot, x0, l0, T=1.0, n_steps=4)
    ident = integrate(comp, x0, l0, T=1.0, n_steps=4,
                      actions=np.zeros((4, 4, 1), dtype=np.int64))
    assert np.array_equal(plain[0], ident[0]) and np.array_equal(plain[1], ident[1])


def test_composed_step_is_the_conjugated_step():
    """One composed step of sample b equals g_b^T applied to a plain step from g_b x."""
    pot, comp = _composed("step")
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((3, D))
    actions = comp.draw(rng, 3, 1, 4)
    x1, _ = integrate(comp, x0, np.zeros(3), T=0.3, n_steps=1, actions=actions)
    for b in range(3):
        perm, signs = comp._perms[actions[b, 0, 0]], comp._signs[actions[b, 0, 0]]
        y1, _ = integrate(pot, (x0[b][perm] * signs)[None], np.zeros(1), T=0.3, n_steps=1)
        back = np.empty(D)
        back[perm] = y1[0] * signs  # g^T y: (g^T y)_{perm_k} = s_k y_k
        np.testing.assert_allclose(x1[b], back, rtol=0, atol=1e-14)


def test_misused_draws_are_refused():
    pot, comp = _composed("step")
    x0 = np.zeros((2, D))
    with pytest.raises(ValueError, match="needs its draws"):
        integrate(comp, x0, np.zeros(2), n_steps=2)
    with pytest.raises(ValueError, match="not a composed flow"):
        integrate(pot, x0, np.zeros(2), n_steps=2, actions=np.zeros((2, 2, 1), int))
    with pytest.raises(ValueError, match="actions must have shape"):
        integrate(comp, x0, np.zeros(2), n_steps=2, actions=np.zeros((2, 3, 1), int))


# ------------------------------------------------------------------------- log-determinant
def test_exact_logdet_matches_a_finite_difference_jacobian():
    pot, comp = _composed("step", rng=3)
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((1, D))
    actions = comp.draw(rng, 1, 5, 4)
    flow = dict(T=1.0, n_steps=5, actions=actions)
    jac, eps = np.empty((D, D)), 1e-6
    for k in range(D):
        e = np.zeros((1, D))
        e[0, k] = eps
        jac[:, k] = (integrate(comp, x0 + e, np.zeros(1), **flow)[0]
                     - integrate(comp, x0 - e, np.zeros(1), **flow)[0])[0] / (2 * eps)
    _, exact = carried_and_exact_logdet(comp, x0, **flow)
    assert abs(exact[0] + np.linalg.slogdet(jac)[1]) < 1e-7


def test_logdet_check_is_tiny_for_consistent_steps_and_not_for_per_stage_draws():
    """A fixed potential and per-step draws carry the log-density of the discrete map to
    RK4's order (h = 0.1: ~1e-7 per site); per-stage draws integrate no single field per
    step and miss it by orders of magnitude more."""
    L4, d = 4, 16
    pot = OneHiddenLayer(d, 16, "logcosh", bias=False, time_dependent=False, rng=1)
    pot.param_blocks()["w2"][...] *= 3.0
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((3, d))
    flow = dict(T=1.0, n_steps=10)
    errors = {"fixed": logdet_error_per_site(pot, x0, **flow)}
    for per in ("step", "stage"):
        comp = Composition(pot, _lattice_group(L4), per=per)
        errors[per] = logdet_error_per_site(comp, x0, actions=comp.draw(rng, 3, 10, 4), **flow)
    assert errors["fixed"] < 2e-6 and errors["step"] < 2e-6, errors
    assert errors["stage"] > 1e-3, errors


# ------------------------------------------------------------------------------- float32
def test_float32_twin_gives_the_float64_loss_and_gradient_to_single_precision():
    relax = IsingRelaxation(L, 0.44, 1.0, None)
    pot = GroupAveraged(OneHiddenLayer(D, 8, "logcosh", bias=True, time_dependent=True,
                                       rng=0, backend=get_backend("numba")), spin_flip(D))
    comp = Composition(pot, _lattice_group(L))
    rng = np.random.default_rng(4)
    z, actions = rng.standard_normal((16, D)), comp.draw(rng, 16, 4, 4)
    obj = ReverseKL(relax.log_prob, relax.grad_log_prob)
    l64, g64 = loss_and_grad(comp, obj, z, T=1.0, n_steps=4, actions=actions)
    twin = comp.astype(np.float32)
    assert twin.params.dtype == np.float32 and comp.params.dtype == np.float64
    l32, g32 = loss_and_grad(twin, obj, z.astype(np.float32), T=1.0, n_steps=4,
                             actions=actions)
    assert abs(l32 - l64) < 1e-5 * abs(l64)
    assert np.abs(g32 - g64).max() < 1e-4 * np.abs(g64).max()
    # the trainer keeps float64 parameters and copies them to its twin every step
    trainer = Trainer(comp, obj, batch_size=8, n_steps=4, seed=0, dtype=np.float32)
    before = comp.params.copy()
    trainer.step()
    assert comp.params.dtype == np.float64 and not np.array_equal(before, comp.params)


# ------------------------------------------------------------------------ the kind end to end
COMPOSED = SMALL.replace('symmetry = ["spin_flip"]',
                         'symmetry = ["spin_flip"]\n'
                         'compose = ["lattice_translations", "lattice_reflections"]')


def test_composed_run_reports_its_logdet_check_and_restarts_bit_for_bit(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(COMPOSED)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    run_full_and_restarted(cli, case, full, part, stop_at=10, total=20)
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.checkpoint()[0]["params"], b.checkpoint()[0]["params"])
        sa, sb = a.summary(), b.summary()
    assert sa["lnZ_per_site_importance"] == sb["lnZ_per_site_importance"]
    assert 0 <= sa["logdet_error_per_site"] < 1e-4  # RK4 with h = 1/3: 2e-5 measured
    assert sa["lnZ_per_site_variational"] < sa["lnZ_per_site_exact"] + \
        4 * sa["lnZ_per_site_variational_stderr"]


def test_composed_run_with_float32_training_and_annealing(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(COMPOSED)
    code, out, err = cli("run", case, "-o", tmp_path / "r.h5", "--json", "--set",
                         "training.dtype=\"float32\"", "--set", "estimate.ais_chains=16",
                         "--set", "estimate.ais_steps=5", "--set", 'model.compose_per="stage"')
    assert code == 0, err
    s = json_line(out)["summary"]
    assert s["logdet_error_per_site"] > 1e-3  # per-stage draws: visibly inconsistent
    assert np.isfinite(s["lnZ_per_site_ais"])


@pytest.mark.parametrize("override,key", [
    ('model.compose=["rotation"]', "model.compose"),
    ('model.compose_per="sample"', "model.compose_per"),
    ('training.dtype="float16"', "training.dtype"),
])
def test_bad_composition_input_exits_2(cli, tmp_path, override, key):
    case = tmp_path / "ising.toml"
    case.write_text(COMPOSED)
    code, _, err = cli("check", case, "--set", override)
    assert code == 2 and key in err, err


def test_float32_with_fft_translations_is_refused(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(COMPOSED.replace("L = 3", "L = 12").replace(
        'symmetry = ["spin_flip"]', 'symmetry = ["lattice_translations"]'))
    code, _, err = cli("check", case, "--set", 'training.dtype="float32"')
    assert code == 2 and "training.dtype" in err, err


# ------------------------------------------------------------------- monge_ampere_flow kind
def test_composed_density_estimation_keeps_unit_mass_and_refuses_the_fv_check(cli, tmp_path):
    """A symmetric mixture learned by a flow composed with the axis mirrors: every realization
    of the draws is a density, so the grid estimate of the model density (the mean over
    draws) integrates to 1 to quadrature accuracy; the finite-volume check, which solves one
    fixed flow, is refused."""
    from .test_maflow import small_case

    case = small_case(tmp_path, extra="")
    text = case.read_text().replace("[model]\n", '[model]\ncompose = ["axis_mirrors"]\n')
    case.write_text(text)
    code, _, err = cli("check", case)
    assert code == 2 and "model.compose" in err and "grid.check" in err, err
    case.write_text(text.replace("[grid]\n", "[grid]\ncheck = false\n"))
    code, out, err = cli("run", case, "-o", tmp_path / "m.h5", "--json")
    assert code == 0, err
    s = json_line(out)["summary"]
    assert abs(s["particle_mass_on_grid"] - 1.0) < 5e-4  # 1.2e-4 measured, as uncomposed
    assert np.isfinite(s["nll_test"]) and np.isfinite(s["kl_estimate"])
