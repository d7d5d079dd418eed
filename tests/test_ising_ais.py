"""Swendsen-Wang moves and annealed importance sampling on top of the flow, against
enumeration of the Ising states."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ot_pde.backends import get_backend
from ot_pde.io import ResultFile
from ot_pde.ising.cluster import cluster_move, swendsen_wang
from ot_pde.ising.estimators import log_partition_estimates, weighted_mean
from ot_pde.ising.exact import BETA_C, IsingRelaxation, WhitenedIsingRelaxation, brute_force

RELAXATIONS = [IsingRelaxation, WhitenedIsingRelaxation]
from ot_pde.ising.variational.ais import FlowModel, annealed_importance
from ot_pde.ising.variational.estimate import energy_per_site

from .conftest import json_line
from .test_ising_variational import SCAN, SMALL


def _states(L):
    N = L * L
    return (((np.arange(2 ** N)[:, None] >> np.arange(N)) & 1) * 2 - 1).astype(np.float64)


def _index(spins):
    return ((spins > 0).astype(np.int64) << np.arange(spins.shape[1])).sum(axis=1)


def _boltzmann(L, beta):
    states = _states(L)
    log_p = -beta * L * L * energy_per_site(states, L, 1.0)
    p = np.exp(log_p - log_p.max())
    return states, p / p.sum()


def _stationarity_chi2(counts, p, n):
    """Pearson's chi-square of ``counts`` against ``n p``, the states expected fewer than
    5 times pooled into one bin; returns its p-value."""
    expected = n * p
    rare = expected < 5
    obs, exp = counts[~rare], expected[~rare]
    if rare.any():
        obs, exp = np.append(obs, counts[rare].sum()), np.append(exp, expected[rare].sum())
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("L,beta", [(2, 0.6), (3, BETA_C)])
def test_swendsen_wang_keeps_the_boltzmann_distribution(L, beta):
    """Exact draws, one update: the states are still Boltzmann-distributed (chi-square), and
    the same test rejects updates made with a wrong coupling, so it has the power to."""
    states, p = _boltzmann(L, beta)
    rng = np.random.default_rng(1)
    n = 200_000
    drawn = rng.choice(len(p), size=n, p=p)
    numba = get_backend("numba")
    moved = _index(swendsen_wang(states[drawn], beta, rng, numba))
    assert _stationarity_chi2(np.bincount(moved, minlength=len(p)), p, n) > 1e-4
    wrong = _index(swendsen_wang(states[drawn], 1.3 * beta, rng, numba))
    assert _stationarity_chi2(np.bincount(wrong, minlength=len(p)), p, n) < 1e-10
    if L == 2:  # detailed balance: the joint counts of (before, after) are symmetric
        pairs = np.zeros((len(p), len(p)))
        np.add.at(pairs, (drawn, moved), 1.0)
        both = pairs + pairs.T
        seen = both > 0
        z = (pairs - pairs.T)[seen] / np.sqrt(both[seen])
        assert np.max(np.abs(z)) < 5.0


@pytest.mark.parametrize("L", [2, 5, 8])
def test_swendsen_wang_numpy_and_numba_agree_to_the_bit(L):
    """The Python union-find of the numpy backend is the numba kernel's algorithm: the same
    random numbers give the same clusters and the same flips."""
    spins = np.where(np.random.default_rng(L).random((300, L * L)) < 0.5, -1.0, 1.0)
    a = swendsen_wang(spins, 0.4, np.random.default_rng(7), get_backend("numpy"))
    b = swendsen_wang(spins, 0.4, np.random.default_rng(7), get_backend("numba"))
    assert np.array_equal(a, b) and not np.array_equal(a, spins)


def test_swendsen_wang_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="L\\^2"):
        swendsen_wang(np.ones((2, 5)), 0.4, rng)
    with pytest.raises(ValueError, match="ferromagnet"):
        swendsen_wang(np.ones((2, 4)), -0.4, rng)


def _exact_relaxation_draws(relax, rng, n):
    """x ~ pi~ exactly: Boltzmann spins by enumeration, then x | s (N(K's, K') for the field
    variables, N(K'^1/2 s, I) for the whitened ones), written out here."""
    states, p = _boltzmann(relax.L, relax.beta)
    s = states[rng.choice(len(p), size=n, p=p)]
    normals = rng.standard_normal(s.shape)
    if isinstance(relax, WhitenedIsingRelaxation):
        return s @ relax.sqrt_Kp + normals, states, p
    return s @ relax.Kp + normals @ relax.chol_Kp.T, states, p


@pytest.mark.parametrize("Relaxation", RELAXATIONS)
def test_cluster_move_keeps_the_relaxation_and_its_second_moments(Relaxation):
    """Exact draws of pi~ at L = 2, one cluster move: E[x x^T] stays K' + K' E[s s^T] K'
    (whitened: I + K'^1/2 E[s s^T] K'^1/2; its exact value, from enumeration) to within 5
    standard errors per entry."""
    relax = Relaxation(2, 0.6)
    rng = np.random.default_rng(2)
    x, states, p = _exact_relaxation_draws(relax, rng, 200_000)
    moved = cluster_move(relax, x, rng, get_backend("numba"))
    second = (states.T * p) @ states
    if isinstance(relax, WhitenedIsingRelaxation):
        exact = np.eye(relax.N) + relax.sqrt_Kp @ second @ relax.sqrt_Kp
    else:
        exact = relax.Kp + relax.Kp @ second @ relax.Kp
    products = moved[:, :, None] * moved[:, None, :]
    err = products.std(axis=0) / np.sqrt(len(moved))
    assert np.max(np.abs(products.mean(axis=0) - exact) / err) < 5.0
    # a move that skipped the spin update would keep them too; one that drew x | s with the
    # wrong covariance would not, and neither would one that dropped the mean K's
    assert not np.allclose(moved, x)


def _exact_start(relax):
    """The flow model whose base is the relaxation at relax's own or another temperature,
    drawn and normalized exactly (enumeration), with no flow on top."""
    lnZ = relax.lnZ_relax_exact()

    def draw(rng, n):
        x = _exact_relaxation_draws(relax, rng, n)[0]
        return x, relax.log_prob(x) - lnZ

    return draw, lambda x: relax.log_prob(x) - lnZ


@pytest.mark.parametrize("Relaxation", RELAXATIONS)
def test_annealing_from_the_target_itself_gives_ln_Z_on_every_chain(Relaxation):
    """With q0 = pi~ / Z every weight is Z: each chain's ln W is ln Z_relax (to rounding) and
    every move is accepted."""
    relax = Relaxation(3, BETA_C)
    draw, log_q0 = _exact_start(relax)
    model = FlowModel(draw, log_q0, lambda x0, lq: relax.log_prob(x0) - lq)
    out = annealed_importance(model, relax, 50, 10, np.random.default_rng(3),
                              backend=get_backend("numba"))
    assert np.max(np.abs(out["log_weights"] - relax.lnZ_relax_exact())) < 1e-10
    assert np.all(out["acceptance_independent"] == 1.0)
    assert np.all(out["acceptance_cluster"] == 1.0)


@pytest.mark.parametrize("L,Relaxation", [(3, IsingRelaxation), (4, IsingRelaxation),
                                          (3, WhitenedIsingRelaxation)])
def test_annealing_from_another_temperature_recovers_brute_force(L, Relaxation):
    """Start at beta = 0.3 (exact draws and density), target beta_c: ln of the mean
    annealed weight lies within 4 standard errors of enumeration, and the weights spread far
    less than the plain importance weights of the same start (measured: 1.0 and 1.1
    standard errors of 0.006 and 0.013)."""
    target, start = Relaxation(L, BETA_C), Relaxation(L, 0.3)
    draw, log_q0 = _exact_start(start)
    model = FlowModel(draw, log_q0, lambda x0, lq: target.log_prob(x0) - lq)
    out = annealed_importance(model, target, 1000, 200, np.random.default_rng(4),
                              backend=get_backend("numba"))
    est = log_partition_estimates(out["log_weights"])
    exact = brute_force(L, BETA_C)["lnZ"] - target.constant
    assert abs(est["importance"] - exact) < 4 * est["importance_stderr"]
    assert est["importance_stderr"] < 0.02
    x, lq = draw(np.random.default_rng(5), 1000)
    plain = log_partition_estimates(target.log_prob(x) - lq)
    # measured ESS 0.97 and 0.85 against the plain weights' 0.05 and 0.01; in whitened
    # variables the two temperatures overlap more (measured at L = 3: 0.99 against 0.37)
    assert est["ess_fraction"] > 0.7
    assert plain["ess_fraction"] < (0.1 if Relaxation is IsingRelaxation else 0.5)
    # the independence moves carry the start, the cluster moves the end of the path
    assert out["acceptance_independent"][0] > 0.8 and out["acceptance_cluster"][-1] > 0.8
    # the last states, weighted by W, sample the target: its energy within 4 standard errors
    spins = target.spins_from_uniforms(out["x0"], np.random.default_rng(6).random((1000,
                                                                                  L * L)))
    energy, err = weighted_mean(energy_per_site(spins, L, 1.0), out["log_weights"])
    assert abs(energy - brute_force(L, BETA_C)["energy_per_site"]) < 4 * err


# the short run's flow is poor (plain ESS 0.002); the annealing still lands near exact
AIS_SMALL = SMALL.replace("chunk = 200", "chunk = 200\nais_chains = 300\nais_steps = 200")


def test_run_reports_the_annealed_estimate(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(AIS_SMALL)
    code, stdout, err = cli("run", case, "-o", tmp_path / "r.h5", "--json", "--backend",
                            "numpy")
    assert code == 0, err
    assert "annealing chains 200..299: temperature 200/200" in err
    s = json_line(stdout)["summary"]
    assert s["ais_chains"] == 300 and s["ais_steps"] == 200
    assert 0 < s["ais_ess_fraction"] <= 1 and 0 < s["ais_largest_weight_fraction"] <= 1
    assert 0 <= s["ais_acceptance_independent"] <= 1 and 0 <= s["ais_acceptance_cluster"] <= 1
    assert s["ais_error_in_stderr"] == pytest.approx(
        abs(s["lnZ_per_site_ais"] - s["lnZ_per_site_exact"]) / s["lnZ_per_site_ais_stderr"])
    # measured: 1.6 % and 0.46 standard errors (the plain estimate 17 %)
    assert s["relative_error_ais"] < 0.05 and s["ais_error_in_stderr"] < 3.0


def test_scan_writes_the_annealed_fields(cli, tmp_path):
    case = tmp_path / "scan.toml"
    case.write_text(SCAN.replace("chunk = 200", "chunk = 200\nais_chains = 20\nais_steps = 3"))
    code, _, err = cli("run", case, "-o", tmp_path / "s.h5", "--backend", "numpy")
    assert code == 0, err
    with ResultFile(tmp_path / "s.h5") as rf:
        for name in ("lnZ_per_site_ais", "lnZ_per_site_ais_stderr", "ais_ess_fraction"):
            assert np.all(np.isfinite(rf.field(name))), name
