"""The ``monge_ampere_flow`` problem kind: shipped cases, grid cross-check, bad input, restart."""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.config import load_case
from ot_pde.core.converge import run_study
from ot_pde.core.registry import get_kind
from ot_pde.io import ResultFile

from .conftest import CASES, json_line, run_full_and_restarted

FIXED = CASES / "maflow_fixed_fv.toml"
DENSITY = CASES / "maflow_mixture_density.toml"
VARIATIONAL = CASES / "maflow_mixture_variational.toml"

# A small training case, seconds to run: forward KL on a 2-component mixture.
SMALL_CASE = """\
[case]
problem = "monge_ampere_flow"
[model]
width = 8
[time]
n_steps = 4
[target]
{target}
[training]
objective = "{objective}"
iterations = 30
batch_size = 32
n_train = 500
n_test = 200
[grid]
n = 24
[output]
every = 10
samples = 64
"""
MIXTURE = 'type = "mixture"\nmeans = [[-1.0, 0.0], [1.0, 0.0]]\nstds = [0.5, 0.5]'


def small_case(tmp_path, target=MIXTURE, objective="forward_kl", extra=""):
    path = tmp_path / "case.toml"
    path.write_text(SMALL_CASE.format(target=target, objective=objective) + extra)
    return path


# ------------------------------------------------------------------ fixed potential, grid
def test_fixed_potential_mass_and_fv_agreement(cli, tmp_path):
    """Acceptance 1: the particle density integrates to 1 +- 1e-4 over the grid, and the
    finite-volume solution agrees with it (at n = 96 the measured L1 gap is 8.2e-3, the
    scheme's O(h^2) error; 0.02 leaves room for round-off of other BLAS builds, not for a
    first-order scheme, whose gap here would be ~0.1)."""
    out = tmp_path / "fixed.h5"
    code, stdout, err = cli("run", FIXED, "-o", out, "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["particle_mass_on_grid"] - 1.0) <= 1e-4
    assert abs(s["fv_mass"] - 1.0) <= 1e-6  # conservative scheme, Gaussian 6 std inside
    assert s["fv_particle_L1"] < 0.02
    assert s["fv_edge_mass"] < 1e-6
    with ResultFile(out) as rf:
        rho, rho_p = rf.field("rho"), rf.field("rho_particle")
        assert rf.field_dims("rho") == ("x", "y") and rho.shape == (96, 96)
        cell = (12.0 / 96) ** 2
        assert abs(float(np.abs(rho - rho_p).sum() * cell) - s["fv_particle_L1"]) < 1e-12
        assert rf.particles("samples").shape == (4096, 2)
        assert np.all(np.isfinite(rf.particles("samples_log_density")))


@pytest.mark.convergence
def test_fv_observed_order_via_converge(tmp_path):
    """Acceptance 1: ``ot-pde converge --vary grid.n=64,128,256`` gives order >= 1.8 on the
    finest pair (measured: L1 2.29, L2 2.38, Linf 2.33)."""
    case = load_case(FIXED)
    study = run_study(case, "grid.n=64,128,256", backend="numba" if _has_numba() else "numpy")
    orders = study.orders()
    for norm in ("L1", "L2", "Linf"):
        p = orders[f"rho {norm}"][-1]
        assert p >= 1.8, (norm, orders)
        assert p <= 2.6, (norm, orders)  # a much higher order would mean a wrong reference


def test_converge_needs_a_fixed_potential(cli, tmp_path):
    code, _, err = cli("converge", DENSITY, "--vary", "grid.n=16,32")
    assert code == 2 and "no exact reference" in err


def _has_numba():
    from ot_pde.backends import available_backends

    return "numba" in available_backends()


def test_reference_is_independent_of_the_backend(tmp_path):
    """The particle density of the fixed case on numpy and numba agrees to 1e-10."""
    if not _has_numba():
        pytest.skip("numba not installed")
    kind = get_kind("monge_ampere_flow")
    case = load_case(FIXED, ["grid.n=32"])
    problem = kind.build(case)
    from ot_pde.backends import get_backend

    dens = [problem._particle_density_on_grid(problem.build_potential(get_backend(b)))
            for b in ("numpy", "numba")]
    assert np.max(np.abs(dens[0] - dens[1])) <= 1e-10 * np.max(dens[0])


# ----------------------------------------------------------------------- trained cases
def test_density_estimation_reaches_the_entropy(cli, tmp_path):
    """Acceptance 3: test NLL within 0.05 nats of the mixture's exact entropy (measured gap
    0.006, kl_estimate 0.004 +- 0.0006)."""
    code, stdout, err = cli("run", DENSITY, "-o", tmp_path / "d.h5", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["nll_test"] - s["entropy_exact"]) <= 0.05
    assert 0.0 < s["kl_estimate"] + 3 * s["kl_stderr"] and s["kl_estimate"] <= 0.05
    assert abs(s["nll_train"] - s["nll_test"]) < 0.05
    assert s["iterations"] == 1500


def test_reverse_kl_reaches_small_kl(cli, tmp_path):
    """Acceptance 3: reverse-KL training reaches KL(q || p) <= 0.02 nats (measured 0.005 +-
    0.0009)."""
    code, stdout, err = cli("run", VARIATIONAL, "-o", tmp_path / "v.h5", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["kl_estimate"] + 2 * s["kl_stderr"] <= 0.02
    assert abs(s["nll_test"] - s["entropy_exact"]) <= 0.05


@pytest.mark.slow
def test_moons_case(cli, tmp_path):
    """The shipped moons case: trained density integrates to one on the grid; train and test
    likelihoods agree (no overfitting). Measured nll_test 2.452, nll_train 2.446."""
    code, stdout, err = cli("run", CASES / "maflow_moons_density.toml", "-o",
                            tmp_path / "m.h5", "--json")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert abs(s["particle_mass_on_grid"] - 1.0) <= 1e-4
    assert s["nll_test"] < 2.6 and abs(s["nll_train"] - s["nll_test"]) < 0.05


def test_training_lowers_the_loss_and_writes_the_layout(cli, tmp_path):
    out = tmp_path / "r.h5"
    code, stdout, err = cli("run", small_case(tmp_path), "-o", out, "--json", "--backend",
                            "numpy", "--keep-checkpoint")  # its state is read below
    assert code == 0, err
    obj = json_line(stdout)
    assert obj["problem"] == "monge_ampere_flow" and obj["status"] == "completed"
    for key in ("nll_train", "nll_test", "kl_estimate", "iterations", "wall_seconds",
                "entropy_exact", "particle_mass_on_grid", "fv_particle_L1"):
        assert key in obj["summary"], key
    with ResultFile(out) as rf:
        hist = rf.history()
        assert list(hist["iteration"]) == list(range(1, 31))
        assert hist["loss"][-10:].mean() < hist["loss"][:10].mean()
        assert set(rf.field_names()) >= {"phi", "rho", "rho_particle"}
        assert rf.particles("test_log_density").shape == (200,)
        state, iteration = rf.checkpoint()
        assert iteration == 30 and "params" in state and "adam_m" in state
    code, _, err = cli("plot", out, "-o", tmp_path / "r.png")
    assert code == 0, err
    assert (tmp_path / "r.png").stat().st_size > 0


def test_higher_dimension_and_symmetry(cli, tmp_path):
    """d = 4 mixture (no grid outputs), potential averaged over x -> -x: the learnt density
    is exactly even, whatever the training did."""
    target = ('type = "mixture"\nmeans = [[-1.0, 0.0, 0.5, 0.0], [1.0, 0.0, -0.5, 0.0]]\n'
              'stds = [0.7, 0.7]')
    path = small_case(tmp_path, target=target, extra='')
    text = path.read_text().replace("[model]\n", '[model]\nsymmetry = ["spin_flip"]\n'
                                    'family = "otflow_resnet"\n')
    path.write_text(text)
    out = tmp_path / "r.h5"
    code, stdout, err = cli("run", path, "-o", out, "--json", "--backend", "numpy",
                            "--keep-checkpoint")  # the trained parameters are read from it
    assert code == 0, err
    with ResultFile(out) as rf:
        assert rf.field_names() == []
        assert rf.particles("samples").shape == (64, 4)
    kind = get_kind("monge_ampere_flow")
    problem = kind.build(load_case(path))
    from ot_pde.backends import get_backend

    pot = problem.build_potential(get_backend("numpy"))
    with ResultFile(out) as rf:
        pot.set_params(rf.checkpoint()[0]["params"])
    x = np.random.default_rng(3).standard_normal((5, 4))
    lp = problem._log_density(pot, x)
    lm = problem._log_density(pot, -x)
    assert np.max(np.abs(lp - lm)) < 1e-12


# ------------------------------------------------------------------ restart and failures
def test_restart_continues_bit_for_bit(cli, tmp_path):
    path = small_case(tmp_path)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    run_full_and_restarted(cli, path, full, part, stop_at=20, total=30)
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.checkpoint()[0]["params"], b.checkpoint()[0]["params"])
        assert np.array_equal(a.history()["loss"], b.history()["loss"])
        assert a.summary()["nll_test"] == b.summary()["nll_test"]


def test_nan_mid_run_marks_the_file_failed(cli, tmp_path, monkeypatch):
    """Acceptance 6: a diverging run stops with exit 1, status failed, history kept."""
    from ot_pde.flows import training

    real = training.ForwardKL.draw
    calls = {"n": 0}

    def poisoned(self, rng, batch_size, dim):
        calls["n"] += 1
        batch = real(self, rng, batch_size, dim)
        if calls["n"] > 25:
            batch[0, 0] = np.nan  # a diverged state: the loss turns NaN
        return batch

    monkeypatch.setattr(training.ForwardKL, "draw", poisoned)
    out = tmp_path / "r.h5"
    code, _, err = cli("run", small_case(tmp_path), "-o", out, "--backend", "numpy")
    assert code == 1 and "non-finite" in err
    with ResultFile(out) as rf:
        assert rf.status == "failed"
        assert list(rf.history()["iteration"]) == list(range(1, 26))


def test_fast_velocity_skips_the_fv_check_with_a_warning(cli, tmp_path):
    out = tmp_path / "r.h5"
    code, stdout, err = cli("run", FIXED, "-o", out, "--json", "--set", "grid.max_steps=3",
                            "--set", "grid.n=32")
    assert code == 0, err
    assert "finite-volume check skipped" in err
    s = json_line(stdout)["summary"]
    assert s["fv_skipped"] is True and "fv_particle_L1" not in s


# ------------------------------------------------------------------------------ bad input
def _samples_file(tmp_path, arr):
    path = tmp_path / "samples.npy"
    np.save(path, arr)
    return f'type = "file"\npath = "{path}"'


@pytest.mark.parametrize("make_target,extra,key,words", [
    (lambda p: _samples_file(p, np.r_[np.ones((9, 2)), [[np.nan, 0.0]]]), "",
     "target.path", "not finite"),
    (lambda p: _samples_file(p, np.ones(50)), "", "target.path", "shape (N, d)"),
    (lambda p: MIXTURE, "", "time.n_steps", ">= 1"),
    (lambda p: MIXTURE, "", "model.symmetry", "spin_flip"),
    (lambda p: 'type = "moons"', "", "training.objective", "known density"),
    (lambda p: MIXTURE.replace("[0.5, 0.5]", "[0.5]"), "", "target.stds", "one std"),
    (lambda p: MIXTURE, "", "model.symmetry", "L^2"),
    (lambda p: 'type = "spiral"', "", "target.type", "moons"),
    (lambda p: _samples_file(p, np.ones((100, 2))), "", "training.n_test", "200"),
])
def test_bad_input_exits_2(cli, tmp_path, make_target, extra, key, words):
    """Acceptance 6: exit 2, one message naming the case file and the key."""
    target = make_target(tmp_path)
    objective = "reverse_kl" if key == "training.objective" else "forward_kl"
    path = small_case(tmp_path, target=target, objective=objective)
    overrides = []
    if key == "time.n_steps":
        overrides = ["--set", "time.n_steps=0"]
    elif key == "model.symmetry" and words == "spin_flip":
        overrides = ["--set", 'model.symmetry=["spin_flipp"]']
    elif key == "model.symmetry":
        overrides = ["--set", 'model.symmetry=["lattice_translations"]']
    code, _, err = cli("run", path, "-o", tmp_path / "r.h5", *overrides)
    assert code == 2, err
    assert key in err and words in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r.h5").exists()


def test_check_accepts_every_shipped_case(cli):
    for case in sorted(CASES.glob("maflow_*.toml")):
        code, _, err = cli("check", case)
        assert code == 0, (case, err)
