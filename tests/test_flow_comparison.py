"""The flow_comparison kind: a flow that is an affine map of a Gaussian (closed-form answers),
numpy/numba agreement of the exported models, the discrete OT estimators, the shipped cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ot_pde.backends import get_backend
from ot_pde.flows.discrete_ot import assignment_cost, estimate_w2, gelbrich_bound
from ot_pde.flows.exported import (
    CouplingFlow,
    build_flow,
    load_checkpoint,
    save_checkpoint,
)
from ot_pde.flows.integrators import sample
from ot_pde.flows.potentials import OneHiddenLayer
from ot_pde.io import ResultFile
from ot_pde.transport.benamou_brenier import bures_w2_squared

from .conftest import CASES, ROOT, json_line


def _affine_checkpoint(path, shear: float):
    r"""Two affine couplings in 2D: constant scales, shifts linear in the other coordinate.

    Layer 0 (condition on x0): x1 <- e^{a} x1 + shear x0 + 0.3; layer 1 (condition on x1):
    x0 <- e^{b} x0 - 0.2. So T(z) = M z + m with M lower-triangular-ish; returns (M, m).
    """
    a, b = math.atanh(0.4), math.atanh(-0.25)  # scales are tanh(bias): e^{0.4}, e^{-0.25}
    zero = np.zeros((1, 1))
    params = {
        "coupling0.s.0.weight": zero, "coupling0.s.0.bias": np.array([a]),
        "coupling0.t.0.weight": np.array([[shear]]), "coupling0.t.0.bias": np.array([0.3]),
        "coupling1.s.0.weight": zero, "coupling1.s.0.bias": np.array([b]),
        "coupling1.t.0.weight": zero.copy(), "coupling1.t.0.bias": np.array([-0.2]),
    }
    meta = {"model_type": "realnvp", "dim": 2, "layer_sizes": [1, 1], "activation": "tanh",
            "direction": "latent_to_data", "integrator": None, "steps": None,
            "dtype": "float64",
            "config": {"split": 1, "permutations": [[0, 1], [1, 0]], "scale_activation": "tanh"}}
    M0 = np.array([[1.0, 0.0], [shear, math.exp(0.4)]])
    M1 = np.array([[math.exp(-0.25), 0.0], [0.0, 1.0]])
    M, m = M1 @ M0, M1 @ np.array([0.0, 0.3]) + np.array([-0.2, 0.0])
    z = np.random.default_rng(0).standard_normal((8, 2))
    x = z @ M.T + m
    logp = -0.5 * np.sum(z * z, 1) - math.log(2 * math.pi) - 0.4 + 0.25
    save_checkpoint(path, meta, params, {"input": z, "output": x, "log_density": logp})
    return M, m


def _case(tmp_path, ckpt, extra=""):
    case = tmp_path / "case.toml"
    case.write_text(f'[case]\nproblem = "flow_comparison"\n[model]\npath = "{ckpt}"\n'
                    f'[comparison]\nn_samples = 20000\not_sizes = [128, 256, 512]\n'
                    f'ot_repeats = 4\n[data]\nn_test = 2000\n' + extra)
    return case


@pytest.mark.parametrize("shear", [0.0, 0.8])
def test_affine_flow_against_bures(cli, tmp_path, shear):
    M, m = _affine_checkpoint(tmp_path / "affine.npz", shear)
    code, out, err = cli("run", _case(tmp_path, tmp_path / "affine.npz",
                                      "[grid]\ncheck = false\n"),
                         "-o", tmp_path / "o.h5", "--backend", "numpy", "--json")
    assert code == 0, err
    s = json_line(out)["summary"]
    bures = bures_w2_squared(np.zeros(2), np.eye(2), m, M @ M.T)
    cost = float(m @ m + np.sum((M - np.eye(2)) ** 2))
    assert abs(s["transport_cost"] - cost) <= 4 * s["transport_cost_stderr"]
    assert abs(s["ot_lower_bound"] - bures) <= 4 * s["ot_lower_bound_stderr"] + 0.01
    assert abs(s["gelbrich_lower_bound"] - bures) <= 0.02  # exact for Gaussians
    assert s["layerwise_cost"] >= s["transport_cost"] - 1e-12
    assert s["reference_max_abs_error"] <= 1e-14
    if shear == 0.0:  # a diagonal positive map is the gradient of a convex function: optimal
        assert abs(cost - bures) <= 1e-12
        assert s["paired_gap"] == pytest.approx(0.0, abs=1e-12)
    else:
        assert cost - bures > 0.05
        assert 0.0 < s["paired_gap"] <= cost - bures
        assert s["optimality_gap"] > 3 * s["optimality_gap_stderr"]
    # log-likelihood on the flow's own samples = minus the entropy of N(m, M M^T)
    entropy = 1 + math.log(2 * math.pi) + math.log(abs(np.linalg.det(M)))
    assert abs(s["mean_log_likelihood"] + entropy) <= 4 * s["mean_log_likelihood_stderr"]


def test_2d_run_with_benamou_brenier_and_plot(cli, tmp_path):
    _affine_checkpoint(tmp_path / "affine.npz", 0.0)
    case = _case(tmp_path, tmp_path / "affine.npz",
                 "[grid]\nn = 24\nnt = 8\nlower = [-5.0, -5.0]\nupper = [5.0, 5.0]\n"
                 "[solver]\nmax_iterations = 30\n[output]\nevery = 10\n")
    out = tmp_path / "o.h5"
    code, _, err = cli("run", case, "-o", out, "--backend", "numpy")
    assert code == 0, err
    with ResultFile(out) as f:
        s = f.summary()
        assert f.status == "completed" and s["iterations"] == 30
        assert abs(s["flow_mass_on_grid"] - 1.0) <= 1e-3
        assert {"flow_density", "bb_density_mid", "ot_plain"} <= set(f.field_names())
    code, _, err = cli("plot", out, "-o", tmp_path / "o.png")
    assert code == 0 and (tmp_path / "o.png").stat().st_size > 0, err


def test_coupling_flow_numpy_numba_agree():
    ck = load_checkpoint(ROOT / "checkpoints" / "realnvp_moons.npz")
    a, b = build_flow(ck, get_backend("numpy")), build_flow(ck, get_backend("numba"))
    assert isinstance(a, CouplingFlow)
    z = np.random.default_rng(1).standard_normal((500, 2))
    for fa, fb in ((a.to_data, b.to_data), (a.to_latent, b.to_latent)):
        (xa, la), (xb, lb) = fa(z), fb(z)
        assert np.abs(xa - xb).max() <= 1e-12 and np.abs(la - lb).max() <= 1e-12


def test_monge_ampere_checkpoint_is_native(tmp_path):
    pot = OneHiddenLayer(2, 8, activation="tanh", bias=True, time_dependent=True, rng=3)
    z = np.random.default_rng(2).standard_normal((6, 2))
    x, lq = sample(pot, z, T=1.0, n_steps=8)
    meta = {"model_type": "monge_ampere", "dim": 2, "layer_sizes": [2, 8, 1],
            "activation": "tanh", "direction": "latent_to_data", "integrator": "rk4",
            "steps": 8, "dtype": "float64",
            "config": {"family": "one_hidden_layer", "width": 8, "bias": True,
                       "time_dependent": True, "T": 1.0}}
    save_checkpoint(tmp_path / "ma.npz", meta, {"params": np.asarray(pot.params)},
                    {"input": z, "output": x, "log_density": lq})
    flow = build_flow(load_checkpoint(tmp_path / "ma.npz"), get_backend("numpy"))
    x2, lq2 = flow.to_data(z)
    assert np.abs(x2 - x).max() == 0.0 and np.abs(lq2 - lq).max() == 0.0
    assert len(flow.trajectory(z)) == 9


def test_discrete_ot_basics():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 3))
    w, perm = assignment_cost(a, a[rng.permutation(200)])
    assert w == pytest.approx(0.0, abs=1e-12)
    w, _ = assignment_cost(a, a + np.array([1.0, 2.0, 0.0]))  # translation: |b|^2
    assert w == pytest.approx(5.0, rel=1e-12)
    # the debiased estimator is exactly |b|^2 in expectation for a translation
    est = estimate_w2(lambda n, r: r.standard_normal((n, 2)),
                      lambda n, r: r.standard_normal((n, 2)) + 1.0, [64, 128], 4, rng, 2)
    assert abs(est.value - 2.0) <= 4 * est.stderr + 0.02
    x = rng.standard_normal((50000, 2)) @ np.array([[2.0, 0.0], [0.5, 0.5]]).T
    cov = np.array([[4.0, 1.0], [1.0, 0.5]])
    assert gelbrich_bound(x) == pytest.approx(bures_w2_squared(np.zeros(2), np.eye(2),
                                                               np.zeros(2), cov), abs=0.02)


@pytest.mark.parametrize("name", ["compare_realnvp_moons", "compare_otflow_swissroll",
                                  "compare_otflow_miniboone"])
def test_shipped_cases_check(cli, name):
    code, _, err = cli("check", CASES / f"{name}.toml")
    assert code == 0, err


@pytest.mark.slow
def test_otflow_swissroll_case_gap_is_small(cli, tmp_path):
    code, out, err = cli("run", CASES / "compare_otflow_swissroll.toml", "-o",
                         tmp_path / "o.h5", "--json")
    assert code == 0, err
    s = json_line(out)["summary"]
    assert s["reference_max_abs_error"] <= 1e-12
    assert abs(s["flow_mass_on_grid"] - 1.0) <= 1e-3
    assert abs(s["bb_W2_squared"] - s["transport_cost"]) <= 0.05 * s["transport_cost"]
