"""The ``ising_variational`` kind: estimators, relaxation energies, a short run, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from ot_pde.config import load_case_text
from ot_pde.core.registry import get_kind
from ot_pde.io import ResultFile
from ot_pde.ising.estimators import log_partition_estimates, weighted_mean
from ot_pde.ising.exact import IsingRelaxation, brute_force
from ot_pde.ising.variational.estimate import energy_per_site

from .conftest import json_line, run_full_and_restarted

SMALL = """\
[case]
problem = "ising_variational"
[lattice]
L = 3
[model]
width = 8
symmetry = ["spin_flip"]
[time]
n_steps = 3
[training]
iterations = 20
batch_size = 16
[estimate]
n_samples = 512
chunk = 200
[output]
every = 10
samples = 50
"""


# ----------------------------------------------------------------------------- estimators
def test_estimators_on_a_gaussian_with_known_normalization():
    """q = N(0, 1), pi~ = exp(-x^2 / (2 s^2)) with s = 1.2: ln Z = ln(s sqrt(2 pi)); the
    variational estimate is below it by KL(q || pi) = ln s + 1/(2 s^2) - 1/2 (closed form)."""
    rng = np.random.default_rng(0)
    s, n = 1.2, 400_000
    x = rng.standard_normal(n)
    log_q = -0.5 * x * x - 0.5 * math.log(2 * math.pi)
    log_w = -0.5 * x * x / s ** 2 - log_q
    est = log_partition_estimates(log_w)
    ln_z = math.log(s * math.sqrt(2 * math.pi))
    kl = math.log(s) + 1 / (2 * s * s) - 0.5
    assert abs(est["variational"] - (ln_z - kl)) < 4 * est["variational_stderr"]
    assert abs(est["importance"] - ln_z) < 4 * est["importance_stderr"]
    # ESS of this pair: E_q[w]^2 / E_q[w^2] = s^2 sqrt(2/s^2 - 1) = s sqrt(2 - s^2)
    assert abs(est["ess_fraction"] - s * math.sqrt(2 - s * s)) < 5e-3
    mean, err = weighted_mean(x * x, log_w)  # E_pi[x^2] = s^2
    assert abs(mean - s * s) < 4 * err


def test_estimators_exact_for_equal_weights_and_reject_bad_input():
    est = log_partition_estimates(np.full(10, 2.5))
    assert est["variational"] == est["importance"] == 2.5
    assert est["importance_stderr"] == 0.0 and est["ess_fraction"] == 1.0
    assert est["largest_weight_fraction"] == pytest.approx(0.1, abs=1e-15)
    # one weight e^20 times the other nine: it holds e^20 / (e^20 + 9) of the sum
    lopsided = log_partition_estimates(np.r_[20.0, np.zeros(9)])["largest_weight_fraction"]
    assert lopsided == pytest.approx(1 / (1 + 9 * math.exp(-20.0)), rel=1e-14)
    with pytest.raises(ValueError, match="finite"):
        log_partition_estimates([0.0, np.nan])
    with pytest.raises(ValueError, match="at least 2"):
        log_partition_estimates([1.0])


def test_energy_per_site_matches_enumeration():
    """<E>/N from energy_per_site over all states, Boltzmann-weighted, equals brute force."""
    L, beta = 3, 0.35
    states = 1 - 2 * ((np.arange(1 << 9)[:, None] >> np.arange(9)) & 1).astype(float)
    e = energy_per_site(states, L, 1.0)
    logb = -beta * 9 * e
    p = np.exp(logb - logsumexp(logb))
    bf = brute_force(L, beta)
    assert abs(p @ e - bf["energy_per_site"]) < 1e-13
    assert abs(logsumexp(logb) - bf["lnZ"]) < 1e-12


def test_relaxation_spins_reproduce_ising_weights():
    """Joint (x, s) sampling: with exact x ~ pi (here: importance weights from a wide
    Gaussian), spins from p(s|x) have Ising statistics: <E>/N matches brute force."""
    L, beta = 2, 0.4
    relax = IsingRelaxation(L, beta)
    rng = np.random.default_rng(1)
    n, scale = 200_000, 2.5
    x = scale * rng.standard_normal((n, relax.N))
    log_q = (-0.5 * (x / scale) ** 2).sum(1) - relax.N * math.log(scale * math.sqrt(2 * math.pi))
    log_w = relax.log_prob(x) - log_q
    spins = relax.sample_spins_given_x(x, rng)
    mean, err = weighted_mean(energy_per_site(spins, L, 1.0), log_w)
    assert abs(mean - brute_force(L, beta)["energy_per_site"]) < 4 * err
    est = log_partition_estimates(log_w)
    exact = brute_force(L, beta)["lnZ"] - relax.constant
    assert abs(est["importance"] - exact) < 4 * est["importance_stderr"]


# ------------------------------------------------------------------------------- the kind
def test_short_run_writes_estimates_with_the_exact_values(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(SMALL)
    out = tmp_path / "r.h5"
    code, stdout, err = cli("run", case, "-o", out, "--json", "--backend", "numpy")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    for key in ("lnZ_per_site_variational", "lnZ_per_site_importance",
                "lnZ_per_site_importance_stderr", "lnZ_per_site_exact",
                "relative_error_variational", "ess_fraction", "L", "beta"):
        assert key in s, key
    assert s["L"] == 3 and s["exact_is_brute_force"] is True
    assert abs(s["lnZ_per_site_exact"] - brute_force(3, s["beta"])["lnZ"] / 9) < 1e-15
    # the variational estimate is a lower bound (up to its noise)
    assert s["lnZ_per_site_variational"] < s["lnZ_per_site_exact"] + \
        4 * s["lnZ_per_site_variational_stderr"]
    assert 0 < s["ess_fraction"] <= 1
    with ResultFile(out) as rf:
        assert rf.particles("spins").shape == (50, 9)
        assert set(np.unique(rf.particles("spins"))) <= {-1.0, 1.0}
        assert "lnZ_per_site_batch" in rf.history()
    code, _, err = cli("plot", out, "-o", tmp_path / "r.png")
    assert code == 0, err


def test_threads_keep_the_loss_history_to_the_bit(cli, tmp_path):
    """training.threads = 2 computes the two shards of a composed float32 training on two
    threads, one BLAS thread each: the history and the estimates are those of one thread
    with one BLAS thread (the arithmetic of MPI ranks of one thread), to the bit."""
    from threadpoolctl import threadpool_limits

    case = tmp_path / "ising.toml"
    case.write_text(SMALL.replace('symmetry = ["spin_flip"]', 'symmetry = []\n'
                                  'compose = ["spin_flip", "lattice_translations"]'))
    runs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.h5"
        with threadpool_limits(limits=1 if threads == 1 else None, user_api="blas"):
            code, stdout, err = cli("run", case, "-o", out, "--json", "--set",
                                    "training.shards=2", "--set",
                                    f"training.threads={threads}", "--set",
                                    "training.dtype=float32")
        assert code == 0, err
        with ResultFile(out) as rf:
            runs.append((json_line(stdout)["summary"]["lnZ_per_site_variational"],
                         {k: np.asarray(v) for k, v in rf.history().items()}))
    (a, ha), (b, hb) = runs
    assert a == b
    for key in ("loss", "grad_norm"):
        np.testing.assert_array_equal(ha[key], hb[key])
    code, _, err = cli("check", case, "--set", "training.threads=0")
    assert code == 2 and "training.threads" in err


@pytest.mark.parametrize("extra", [
    ["lattice.variables=whitened"],
    ["lattice.variables=whitened", "model.family=lattice_conv", "model.kernel=3",
     "model.channels=2", "model.dense_width=4", "training.dtype=float32"],
])
def test_whitened_variables_and_the_lattice_convolution_run(cli, tmp_path, extra):
    """The same short run in whitened variables (and with the convolution plus a dense layer,
    trained in float32): ln Z of the Ising model comes out the same (the importance estimate
    within 4 standard errors of enumeration) and the bound stays below it."""
    case = tmp_path / "ising.toml"
    case.write_text(SMALL.replace("iterations = 20", "iterations = 40"))
    args = [a for kv in extra for a in ("--set", kv)]
    code, stdout, err = cli("run", case, "-o", tmp_path / "w.h5", "--json", *args)
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["importance_error_in_stderr"] <= 4.0
    assert s["lnZ_per_site_variational"] < s["lnZ_per_site_exact"] + \
        4 * s["lnZ_per_site_variational_stderr"]


def test_restart_continues_bit_for_bit(cli, tmp_path):
    case = tmp_path / "ising.toml"
    case.write_text(SMALL)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    run_full_and_restarted(cli, case, full, part, stop_at=10, total=20)
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.checkpoint()[0]["params"], b.checkpoint()[0]["params"])
        assert a.summary()["lnZ_per_site_importance"] == b.summary()["lnZ_per_site_importance"]


@pytest.mark.parametrize("override,key", [
    ("lattice.L=1", "lattice.L"),
    ("lattice.beta=0", "lattice.beta"),
    ("lattice.alpha=-5.0", "lattice.alpha"),
    ('model.symmetry=["rotation"]', "model.symmetry"),
    ("time.n_steps=0", "time.n_steps"),
    ("training.shards=100000", "training.shards"),  # more shards than samples
    ("estimate.ais_chains=1", "estimate.ais_chains"),  # no error bar from one chain
])
def test_bad_input_exits_2(cli, tmp_path, override, key):
    case = tmp_path / "ising.toml"
    case.write_text(SMALL)
    code, _, err = cli("run", case, "-o", tmp_path / "r.h5", "--set", override)
    assert code == 2, err
    assert key in err and ("--set" in err or str(case) in err)  # where the value came from


def test_kaufman_beyond_brute_force():
    kind = get_kind("ising_variational")
    problem = kind.build(load_case_text(SMALL.replace("L = 3", "L = 6")))
    exact = problem.exact()
    assert exact["exact_method"] == "kaufman"
    assert 0.9 < exact["lnZ_per_site_exact"] < 0.95  # near Onsager's 0.92970 at beta_c


SCAN = SMALL.replace("[estimate]", "[scan]\nbetas = [0.2, 0.3, 0.44]\n[estimate]")


def test_beta_scan_writes_curves_and_restarts_bit_for_bit(cli, tmp_path):
    case = tmp_path / "scan.toml"
    case.write_text(SCAN)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    code, stdout, err = cli("run", case, "-o", full, "--backend", "numpy", "--json",
                            "--keep-checkpoint")  # its final state is compared below
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["scan_points"] == 3 and s["scan_completed"] == 3 and s["iterations"] == 60
    with ResultFile(full) as rf:
        betas = rf.grid()["beta"]
        assert list(betas) == [0.2, 0.3, 0.44]
        exact = rf.field("lnZ_per_site_exact")
        for b, e in zip(betas, exact):
            assert abs(e - brute_force(3, b)["lnZ"] / 9) < 1e-15
        assert np.all(np.isfinite(rf.field("lnZ_per_site_importance")))
        assert list(rf.history()["beta"][[0, 20, 40]]) == [0.2, 0.3, 0.44]
    code, _, err = cli("plot", full, "-o", tmp_path / "scan.png")
    assert code == 0, err
    # Ctrl-C in the middle of the second temperature, then continue from the checkpoint
    import os
    import signal

    from ot_pde.ising.variational.problem import ScanRun

    real_step = ScanRun.step

    def step_then_interrupt(self):
        row = real_step(self)
        if self.iteration == 30:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the runner between iterations
        return row

    ScanRun.step = step_then_interrupt
    try:
        code, _, err = cli("run", case, "-o", part, "--backend", "numpy")
    finally:
        ScanRun.step = real_step
    assert code == 130, err
    with ResultFile(part) as rf:
        assert rf.status == "interrupted" and rf.checkpoint()[1] == 30
    code, _, err = cli("run", case, "-o", part, "--backend", "numpy", "--restart",
                       "--keep-checkpoint")
    assert code == 0, err
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.checkpoint()[0]["params"], b.checkpoint()[0]["params"])
        for name in ("lnZ_per_site_importance", "lnZ_per_site_variational"):
            assert np.array_equal(a.field(name), b.field(name))


def test_relaxation_matches_the_original_codes_published_values():
    """The README of wangleiphy/MongeAmpereFlow lists the 'exact free energy per site' of the
    relaxation at beta_c for L = 4, 8, 16 (their -ln Z_relax / N with the same
    alpha = 0.1 - lambda_min). Ours: Kaufman minus our constant. Measured agreement 4.1e-7,
    1.3e-7, 4.3e-7 relative, which confirms the convention; the residual is on their side (our
    identity is checked to 4e-15 against enumeration), hence the 1e-6 bound."""
    from ot_pde.ising.exact import BETA_C, kaufman_lnZ

    published = {4: 2.33604476445, 8: 2.3227349295609376, 16: 2.3159198563359373}
    for L, value in published.items():
        relax = IsingRelaxation(L, BETA_C)
        ours = (kaufman_lnZ(L, BETA_C) - relax.constant) / relax.N
        assert abs(ours - value) / value < 1e-6, (L, ours, value)


@pytest.mark.slow
def test_L4_critical_case_meets_the_acceptance(cli, tmp_path):
    """Acceptance 2: L = 4 at beta_c, variational ln Z/N within 0.5 % of brute force
    (measured 0.29 %), importance estimate within 3 standard errors (measured 0.4)."""
    from .conftest import CASES

    code, stdout, err = cli("run", CASES / "ising_L4_critical.toml", "-o", tmp_path / "r.h5",
                            "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["relative_error_variational"] <= 0.005
    assert s["importance_error_in_stderr"] <= 3.0
    assert s["exact_is_brute_force"] is True


@pytest.mark.slow
def test_L8_beta_scan_case(cli, tmp_path):
    """cases/ising_beta_scan_L8.toml, from N(0, I), warm-started through the temperatures:
    issue 18 asks every variational error <= 1.5 %; measured 0.54 / 0.90 / 1.19 / 0.98 / 1.12
    / 0.71 % at 0.3 / 0.4 / beta_c / 0.47 / 0.5 / 0.6 (two BLAS threads, as here). The
    importance estimates within 3 standard errors at every point (measured at most 1.24, ESS
    fractions 0.06 to 0.56). 5 min on the quiet 2-core machine."""
    from ot_pde.io import open_result

    from .conftest import CASES

    out = tmp_path / "scan.h5"
    code, stdout, err = cli("run", CASES / "ising_beta_scan_L8.toml", "-o", out, "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["max_relative_error_variational"] <= 0.015
    assert s["max_importance_error_in_stderr"] <= 3.0
    with open_result(out) as rf:
        rel = np.asarray(rf.field("relative_error_variational"))
        ess = np.asarray(rf.field("ess_fraction"))
    assert np.all(rel > 0) and np.all(ess > 0.05)


@pytest.mark.slow
def test_L8_composed_flow_from_the_gaussian(cli, tmp_path):
    """cases/ising_L8_critical.toml: a symmetry-composed flow from N(0, I) at beta_c, warmed
    up through beta = 0.3 and 0.4 (training.anneal_betas), with training.shards = 1 and 2.
    Issue 18 asks the variational estimate within 1.5 % (measured 0.86 % with one shard), the
    importance estimate within 3 standard errors (measured 0.76, ESS fraction 0.36), the two
    shardings within 0.3 % of each other (measured 3.6e-5 relative); the log-density carried consistently (log-det
    check; 9.4e-8 measured; with one BLAS thread 0.49 and 8.0e-8). 2 x 3 min on the quiet
    machine."""
    from .conftest import CASES

    summaries = []
    for shards in (1, 2):
        code, stdout, err = cli("run", CASES / "ising_L8_critical.toml", "-o",
                                tmp_path / f"s{shards}.h5", "--json", "--set",
                                f"training.shards={shards}")
        assert code == 0, err
        summaries.append(json_line(stdout)["summary"])
    for s in summaries:
        assert s["relative_error_variational"] <= 0.015
        assert s["lnZ_per_site_variational"] < s["lnZ_per_site_exact"]
        assert s["importance_error_in_stderr"] <= 3.0
        assert s["ess_fraction"] > 0.1
        assert s["logdet_error_per_site"] <= 1e-5
    a, b = (s["lnZ_per_site_variational"] for s in summaries)
    assert abs(a - b) / abs(a) <= 0.003


@pytest.mark.slow
def test_L16_critical_case_meets_the_acceptance(cli, tmp_path):
    """Acceptance 3: L = 16 at beta_c, variational within 1 % of Kaufman's value (measured
    0.62 %), the annealed importance estimate within 3 of its standard errors (measured 0.99,
    ESS fraction 0.46) with weights that are not heavy-tailed. 22 min on 2 shared cores. The plain
    importance estimate is only reported: its weights are heavy-tailed
    (docs/kinds/ising_variational.rst)."""
    from .conftest import CASES

    code, stdout, err = cli("run", CASES / "ising_L16_critical.toml", "-o", tmp_path / "r.h5",
                            "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["relative_error_variational"] <= 0.01
    assert s["lnZ_per_site_variational"] < s["lnZ_per_site_exact"]
    assert s["exact_is_brute_force"] is False
    assert s["ais_error_in_stderr"] <= 3.0
    assert s["ais_ess_fraction"] > 0.3 and s["ais_largest_weight_fraction"] < 0.1


@pytest.mark.slow
def test_L16_composed_flow_from_the_gaussian(tmp_path):
    """cases/ising_L16_maflow.toml: the symmetry-composed flow (width 1024) from N(0, I) at
    L = 16, warmed up through beta = 0.3 and 0.4, evaluated with averaged parameters. Issue 18
    asks 1.5 %; the case reaches 1.27 %, the annealed estimate within 3 standard errors
    (measured 2.2), the log-det check within the 1e-5 per site asked (1.6e-7). The test runs
    it in one process started with one BLAS thread, its two shards on two threads: the
    arithmetic of two MPI ranks, the realization the case header states (measured: the same
    summary to every digit; a process started with more BLAS threads trains another one).
    26.5 min on the quiet 2-core machine."""
    import os
    import subprocess
    import sys

    from .conftest import CASES

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-m", "ot_pde", "run",
                           str(CASES / "ising_L16_maflow.toml"), "-o", str(tmp_path / "r.h5"),
                           "--json"], env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    s = json_line(done.stdout)["summary"]
    assert s["relative_error_variational"] <= 0.015
    assert s["lnZ_per_site_variational"] < s["lnZ_per_site_exact"]
    assert s["ais_error_in_stderr"] <= 3.0
    assert s["logdet_error_per_site"] <= 1e-5


def test_fft_translations_in_the_model_equal_the_full_group_average(monkeypatch):
    """With lattice translations in model.symmetry (and L large enough) the one-hidden-layer
    potential is the FFT translation average with the point group and spin flip averaged on
    top; that is the average over the whole group (256 elements at L = 4, where the switch is
    lowered for the test), computed directly here."""
    from ot_pde.backends import get_backend
    from ot_pde.flows import model

    monkeypatch.setattr(model, "FFT_TRANSLATIONS_MIN_L", 4)
    from ot_pde.flows.lattice import TranslationAveraged
    from ot_pde.flows.potentials import (
        GroupAveraged,
        OneHiddenLayer,
        reflections_2d,
        spin_flip,
        translations_2d,
    )

    text = SMALL.replace("L = 3", "L = 4").replace(
        'symmetry = ["spin_flip"]',
        'symmetry = ["spin_flip", "lattice_translations", "lattice_reflections"]\n'
        'bias = true\ntime_dependent = true\nactivation = "tanh"')
    problem = get_kind("ising_variational").build(load_case_text(text))
    pot = problem.build_potential(get_backend("numpy"))
    assert isinstance(pot.base, TranslationAveraged) and pot.order == 16
    ref = GroupAveraged(OneHiddenLayer(16, 8, "tanh", bias=True, time_dependent=True),
                        translations_2d(4) + reflections_2d(4) + spin_flip(16))
    assert ref.order == 256
    ref.set_params(pot.params)
    rng = np.random.default_rng(4)
    x, a, b = rng.standard_normal((5, 16)), rng.standard_normal((5, 16)), rng.standard_normal(5)
    for got, want in [(pot.value(x, 0.3), ref.value(x, 0.3)),
                      *zip(pot.grad_and_laplacian(x, 0.3), ref.grad_and_laplacian(x, 0.3)),
                      *zip(pot.vjp(x, 0.3, a, b), ref.vjp(x, 0.3, a, b))]:
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_small_lattices_average_translations_directly():
    from ot_pde.backends import get_backend
    from ot_pde.flows.potentials import OneHiddenLayer

    text = SMALL.replace("L = 3", "L = 4").replace(
        'symmetry = ["spin_flip"]',
        'symmetry = ["spin_flip", "lattice_translations", "lattice_reflections"]')
    pot = get_kind("ising_variational").build(load_case_text(text)).build_potential(
        get_backend("numpy"))
    assert isinstance(pot.base, OneHiddenLayer) and pot.order == 256
