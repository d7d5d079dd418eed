"""The checkerboard mean-field base of the Ising flows (ot_pde.ising.variational.base)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from ot_pde.flows.potentials import reflections_2d, translations_2d
from ot_pde.flows.training import ReverseKL, loss_and_grad
from ot_pde.ising.estimators import log_partition_estimates
from ot_pde.ising.exact import IsingRelaxation, brute_force
from ot_pde.ising.variational.base import (
    CheckerboardMixtureBase,
    _mixture_inverse_cdf,
    spectrum_classes,
)

from .conftest import json_line, run_full_and_restarted
from .test_ising_variational import SMALL


def _random_base(L, seed=0):
    """A base with generic parameters (no symmetry of the values to hide a mistake)."""
    rng = np.random.default_rng(seed)
    base = CheckerboardMixtureBase(L, 0.44, components=3)
    base.params = base.params + 0.2 * rng.standard_normal(base.n_params)
    return base


def test_mixture_inverse_cdf_solves_to_round_off():
    rng = np.random.default_rng(1)
    u = np.concatenate([rng.random(2000), [1e-12, 1 - 1e-12]])
    w = rng.random(u.size)
    z = _mixture_inverse_cdf(u, w, 1.7, 0.8)
    F = w * special.ndtr((z - 1.7) / 0.8) + (1 - w) * special.ndtr((z + 1.7) / 0.8)
    assert np.max(np.abs(F - u)) < 1e-13


def test_density_is_normalized_at_L2():
    """4D trapezoid quadrature of q(z) over a box holding all but ~1e-12 of the mass."""
    base = _random_base(2)
    g = np.linspace(-9.0, 9.0, 73)
    Z = np.stack(np.meshgrid(g, g, g, g, indexing="ij"), axis=-1).reshape(-1, 2, 2)
    q = np.exp(base.log_prob_z(Z))
    total = q.sum() * (g[1] - g[0]) ** 4
    assert abs(total - 1.0) < 1e-6


def test_samples_follow_the_density():
    """Sample moments against quadrature at L = 2: the means by sublattice sign structure
    and the nearest-neighbour correlation, which only the conditional sites carry."""
    base = _random_base(2, seed=3)
    base.params[-spectrum_classes(2).max() - 1:] = 0.0  # A = I: x = z
    g = np.linspace(-9.0, 9.0, 61)
    Z = np.stack(np.meshgrid(g, g, g, g, indexing="ij"), axis=-1).reshape(-1, 2, 2)
    q = np.exp(base.log_prob_z(Z)) * (g[1] - g[0]) ** 4
    exact_sq = (q * Z[:, 0, 0] ** 2).sum()
    exact_nn = (q * Z[:, 0, 0] * Z[:, 0, 1]).sum()
    exact_sign = (q * np.sign(Z[:, 0, 0] * Z[:, 0, 1])).sum()
    x = base.draw(np.random.default_rng(4), 200_000)[:, :4]
    for f, exact in ((x[:, 0] ** 2, exact_sq), (x[:, 0] * x[:, 1], exact_nn),
                     (np.sign(x[:, 0] * x[:, 1]), exact_sign)):
        assert abs(f.mean() - exact) < 4 * f.std() / np.sqrt(f.size)


def test_forcing_a_component_draws_what_the_component_column_would():
    """The fit's stratified draws (``component=j``) are the plain draws that pick j; that
    the plain draws pick components with their weights is checked through the density by
    the next test (two components)."""
    base = _random_base(4, seed=12)
    noise = np.random.default_rng(13).random((4000, 19))
    chosen = np.searchsorted(np.cumsum(np.exp(base.log_weights()))[:-1], noise[:, -1],
                             side="right")
    assert set(np.unique(chosen)) == {0, 1, 2}
    for j in range(3):
        forced = base.transform(noise[chosen == j], component=j)[0]
        assert np.array_equal(forced, base.transform(noise[chosen == j])[0])


@pytest.mark.parametrize("L,couplings,components", [(4, 0, 1), (8, 2, 2)])
def test_samples_and_density_agree_on_a_lattice(L, couplings, components):
    """E_q[q'(x)/q(x)] = 1 for a nearby normalized q': it holds only if the sampler draws
    from the density it reports, at a size where the neighbours are four distinct sites."""
    base = CheckerboardMixtureBase(L, 0.44, components=components, couplings=couplings)
    rng = np.random.default_rng(14)
    base.params = base.params + 0.1 * rng.standard_normal(base.n_params)
    other = CheckerboardMixtureBase(L, 0.44, components=components, couplings=couplings)
    other.params = base.params + 0.02 * rng.standard_normal(base.n_params)
    x, log_q, _ = base.transform(rng.random((50000, L * L + 3)))
    log_a = other.params[other._spectrum:][spectrum_classes(L)]
    z = np.real(np.fft.ifft2(np.fft.fft2(x.reshape(-1, L, L)) / np.exp(log_a)))
    est = log_partition_estimates(other.log_prob_z(z) - log_a.sum() - log_q)
    assert est["ess_fraction"] > 0.5  # light tails: the error bar below is trustworthy
    assert abs(est["importance"]) < 4 * est["importance_stderr"]


def test_log_density_of_x_has_the_linear_maps_determinant():
    L = 4
    base = _random_base(L, seed=5)
    x, log_q, z = base.transform(np.random.default_rng(6).random((7, L * L + 3)))
    a = np.exp(base.params[-spectrum_classes(L).max() - 1:][spectrum_classes(L)])
    A = np.array([np.real(np.fft.ifft2(np.fft.fft2(e.reshape(L, L)) * a)).ravel()
                  for e in np.eye(L * L)]).T
    assert np.allclose(A, A.T, atol=1e-14)  # symmetric: the spectrum respects k -> -k
    sign, logdet = np.linalg.slogdet(A)
    assert sign > 0
    assert np.allclose(x, z.reshape(7, -1) @ A.T, atol=1e-12)
    assert np.allclose(log_q, base.log_prob_z(z) - logdet, atol=1e-10)


@pytest.mark.parametrize("L", [4, 6])
def test_density_respects_the_lattice_symmetries(L):
    base = _random_base(L, seed=L)
    x = base.draw(np.random.default_rng(7), 5)[:, :-1]
    z = np.real(np.fft.ifft2(np.fft.fft2(x.reshape(-1, L, L)) / np.exp(
        base.params[-spectrum_classes(L).max() - 1:][spectrum_classes(L)])))
    ref = base.log_prob_z(z)
    flat = z.reshape(5, -1)
    assert np.allclose(base.log_prob_z(-z), ref, atol=1e-10)
    for perm, signs in translations_2d(L) + reflections_2d(L):
        moved = (flat[:, perm] * signs).reshape(z.shape)
        assert np.allclose(base.log_prob_z(moved), ref, atol=1e-10)


def test_fit_gradient_matches_finite_differences():
    L = 4
    relax = IsingRelaxation(L, 0.44)
    base = _random_base(L, seed=8)
    noise = np.random.default_rng(9).random((64, L * L + 3))
    f, grad = base._bound_and_grad(base.params, noise, relax)
    h = 1e-5
    assert base.components == 3 and base.n_params == 7 + 2 * 2 + 3 + 2 + spectrum_classes(L).max() + 1
    for k in range(base.n_params):
        e = np.zeros(base.n_params)
        e[k] = h
        fd = (base._bound_and_grad(base.params + e, noise, relax)[0]
              - base._bound_and_grad(base.params - e, noise, relax)[0]) / (2 * h)
        assert abs(fd - grad[k]) < 1e-6 * max(1.0, abs(fd)), k


def test_fit_gives_a_tight_lower_bound_at_L4():
    """Fresh samples after the fit: the bound lies below brute force's ln Z and within 1 %."""
    L, beta = 4, 0.4406867935097715
    relax = IsingRelaxation(L, beta)
    base = CheckerboardMixtureBase(L, beta)

    def fresh_bound():
        draws = base.draw(np.random.default_rng(2), 20000)
        lw = relax.log_prob(draws[:, :-1]) - draws[:, -1]
        return (lw.mean() + relax.constant) / relax.N, lw.std() / np.sqrt(lw.size) / relax.N

    before, _ = fresh_bound()
    seen = []
    base.fit(relax, np.random.default_rng(1), 512, 100, lambda k, b: seen.append((k, b)))
    bound, stderr = fresh_bound()
    exact = brute_force(L, beta)["lnZ"] / relax.N
    assert bound > before + 0.01
    assert [k for k, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) > 5
    assert seen[-1][1] > seen[0][1]  # progress reports the bound on the fit's own sample
    assert bound < exact + 4 * stderr
    assert (exact - bound) / exact < 0.01


def test_reverse_kl_with_a_base_has_the_exact_gradient():
    """The flow's adjoint gradient from base draws (x0, ln q0) equals finite differences."""
    from ot_pde.flows.potentials import OneHiddenLayer

    L = 2
    relax = IsingRelaxation(L, 0.44)
    base = _random_base(L, seed=10)
    pot = OneHiddenLayer(4, 5, "tanh", bias=True, time_dependent=True,
                         rng=np.random.default_rng(11))
    objective = ReverseKL(relax.log_prob, relax.grad_log_prob, base=base)
    batch = objective.draw(np.random.default_rng(12), 6, 4)
    assert batch.shape == (6, 5)
    value, grad = loss_and_grad(pot, objective, batch, n_steps=3)
    theta, h = pot.params.copy(), 1e-6
    for k in range(0, pot.n_params, 3):
        e = np.zeros_like(theta)
        e[k] = h
        pot.set_params(theta + e)
        up = objective.loss(pot, batch, T=1.0, n_steps=3, scheme="rk4")
        pot.set_params(theta - e)
        down = objective.loss(pot, batch, T=1.0, n_steps=3, scheme="rk4")
        assert abs((up - down) / (2 * h) - grad[k]) < 1e-7 * max(1.0, abs(grad[k]))
    pot.set_params(theta)
    # with the flow at rest (phi = 0 has no effect) the loss is the base's own bound
    pot.set_params(np.zeros_like(theta))
    assert np.isclose(objective.loss(pot, batch, T=1.0, n_steps=3, scheme="rk4"),
                      np.mean(batch[:, -1] - relax.log_prob(batch[:, :-1])), atol=1e-12)


BASE_SMALL = SMALL.replace("L = 3", "L = 4").replace(
    "[model]", "[base]\nfamily = \"checkerboard_mixture\"\nfit_samples = 64\n"
    "fit_iterations = 5\n[model]\ninit_scale = 0.01")


def test_run_with_the_base_reports_its_bound_and_restarts_bit_for_bit(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(BASE_SMALL)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    code, stdout, err = cli("run", case, "-o", tmp_path / "one.h5", "--json", "--backend",
                            "numpy")
    assert code == 0, err
    assert "fitting the checkerboard base" in err
    s = json_line(stdout)["summary"]
    assert s["lnZ_per_site_variational_base"] < s["lnZ_per_site_exact"]
    run_full_and_restarted(cli, case, full, part, stop_at=10, total=20)
    from ot_pde.io import ResultFile

    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.checkpoint()[0]["params"], b.checkpoint()[0]["params"])
        assert np.array_equal(a.checkpoint()[0]["base_params"], b.checkpoint()[0]["base_params"])
        assert a.summary()["lnZ_per_site_importance"] == b.summary()["lnZ_per_site_importance"]


def test_restart_loads_the_fitted_base_instead_of_refitting(cli, tmp_path):
    import h5py

    case = tmp_path / "ising.toml"
    case.write_text(BASE_SMALL)
    out = tmp_path / "r.h5"
    assert cli("run", case, "-o", out, "--backend", "numpy", "--set",
               "training.iterations=10", "--keep-checkpoint")[0] == 0  # restarted below
    with h5py.File(out, "r+") as f:
        f.attrs["status"] = "interrupted"
        f.attrs["case_toml"] = f.attrs["case_toml"].replace("iterations = 10",
                                                            "iterations = 20")
    code, _, err = cli("run", case, "-o", out, "--backend", "numpy", "--restart")
    assert code == 0, err
    assert "fitting the checkerboard base" not in err


def test_odd_lattice_with_the_base_is_refused(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(BASE_SMALL.replace("L = 4", "L = 5"))
    code, _, err = cli("run", case, "-o", tmp_path / "r.h5")
    assert code == 2
    assert "base.family" in err and str(case) in err and "even" in err


def test_beta_scan_with_the_base_fits_each_temperature(cli, tmp_path):
    case = tmp_path / "scan.toml"
    case.write_text(BASE_SMALL.replace("[estimate]", "[scan]\nbetas = [0.3, 0.44]\n[estimate]"))
    code, stdout, err = cli("run", case, "-o", tmp_path / "s.h5", "--json", "--backend",
                            "numpy")
    assert code == 0, err
    assert err.count("fitting the checkerboard base") == 2
