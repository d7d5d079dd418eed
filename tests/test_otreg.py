"""The ``otreg_flow`` kind: OT-Flow objective, exact discrete adjoint, export, CLI contract."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from ot_pde.flows.exported import flow_from_file, load_checkpoint
from ot_pde.flows.otreg import integrate_ot, ot_loss, ot_loss_and_grad
from ot_pde.flows.potentials import OneHiddenLayer, OTFlowResNet

from .conftest import CASES, ROOT, fd_param_grad, json_line, run_full_and_restarted

TERMS = {"transport": (1.0, 0.0, 0.0), "nll": (0.0, 1.0, 0.0), "hjb": (0.0, 0.0, 1.0),
         "published_mix": (1.0, 30.0, 15.0)}


def _potentials():
    return [OTFlowResNet(2, 5, n_layers=3, rng=3), OTFlowResNet(3, 4, n_layers=2, rng=5),
            OneHiddenLayer(2, 6, time_dependent=True, rng=2)]


@pytest.mark.parametrize("term", list(TERMS))
@pytest.mark.parametrize("k", range(3))
def test_gradient_of_each_term_matches_finite_differences(term, k):
    pot = _potentials()[k]
    x = np.random.default_rng(k).standard_normal((6, pot.dim))
    alpha = TERMS[term]
    value, terms, grad = ot_loss_and_grad(pot, x, alpha, n_steps=3)
    assert value == pytest.approx(ot_loss(pot, x, alpha, n_steps=3)[0], rel=1e-14)
    fd = fd_param_grad(pot, lambda: ot_loss(pot, x, alpha, n_steps=3)[0], eps=1e-5)
    assert np.abs(grad - fd).max() <= 1e-6 * np.abs(fd).max()


@pytest.mark.parametrize("k", range(3))
def test_time_derivative_and_its_vjp(k):
    pot = _potentials()[k]
    rng = np.random.default_rng(10 + k)
    x = rng.standard_normal((5, pot.dim))
    t, eps = 0.37, 1e-6
    g, dt, lap = pot.grad_time_laplacian(x, t)
    g0, lap0 = pot.grad_and_laplacian(x, t)
    np.testing.assert_allclose(g, g0, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(lap, lap0, rtol=1e-14, atol=1e-14)
    fd_t = (pot.value(x, t + eps) - pot.value(x, t - eps)) / (2 * eps)
    np.testing.assert_allclose(dt, fd_t, rtol=1e-7, atol=1e-8)
    a, a_t, b = rng.standard_normal((5, pot.dim)), rng.standard_normal(5), rng.standard_normal(5)

    def scalar():
        gg, tt, ll = pot.grad_time_laplacian(x, t)
        return float((a * gg).sum() + a_t @ tt + b @ ll)

    x_bar, theta_bar = pot.vjp_time(x, t, a, a_t, b)
    fd = fd_param_grad(pot, scalar, eps=1e-6)
    assert np.abs(theta_bar - fd).max() <= 1e-6 * np.abs(fd).max()
    fd_x = np.empty_like(x)
    for i in range(x.shape[0]):
        for j in range(pot.dim):
            xp_, xm = x.copy(), x.copy()
            xp_[i, j] += eps
            xm[i, j] -= eps
            gp, tp, lp = pot.grad_time_laplacian(xp_, t)
            gm, tm, lm = pot.grad_time_laplacian(xm, t)
            fd_x[i, j] = ((a * (gp - gm)).sum() + a_t @ (tp - tm) + b @ (lp - lm)) / (2 * eps)
    np.testing.assert_allclose(x_bar, fd_x, rtol=1e-6, atol=1e-7 * np.abs(fd_x).max())


def test_dynamics_are_otflow_on_the_published_checkpoint():
    """alpha_0 = 1: our run is bit-for-bit the to_latent of flow_comparison's OTFlow, and the
    cost states are the published model's (its HJB residual is small: it was trained with it)."""
    flow = flow_from_file(ROOT / "checkpoints" / "otflow_swissroll.npz")
    x = np.random.default_rng(0).standard_normal((64, 2))
    run = integrate_ot(flow.resnet, x, n_steps=12)
    z, lp = flow.to_latent(x)
    assert np.array_equal(run.z, z)
    logp = -0.5 * (run.z ** 2).sum(axis=1) - math.log(2 * math.pi) + run.l
    np.testing.assert_allclose(logp, lp, rtol=0, atol=1e-12)
    assert np.all(run.layerwise >= ((run.z - x) ** 2).sum(axis=1) - 1e-12)
    assert np.all(run.v > 0) and np.all(run.r >= 0)


TINY = """
[case]
problem = "otreg_flow"
[run]
seed = 3
[model]
family = "{family}"
width = 6
[time]
n_steps = 3
[target]
type = "moons"
[training]
alpha = [1.0, 2.0, 0.5]
iterations = {iterations}
batch_size = 32
lr = {lr}
n_train = 500
n_test = 200
[evaluation]
ot_sizes = [16, 32]
ot_repeats = 2
paired_size = 64
[grid]
n = 8
[output]
every = 2
samples = 50
checkpoint = "{ckpt}"
"""


def _tiny(tmp_path, family="otflow_resnet", iterations=6, lr=0.01, name="tiny"):
    ckpt = tmp_path / f"{name}.npz"
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(family=family, iterations=iterations, lr=lr, ckpt=ckpt))
    return path, ckpt


@pytest.mark.parametrize("family", ["otflow_resnet", "one_hidden_layer"])
def test_cli_run_history_summary_and_export(cli, tmp_path, family):
    case, ckpt = _tiny(tmp_path, family)
    out = tmp_path / "out.h5"
    code, stdout, err = cli("run", case, "-o", out, "--backend", "numpy", "--json")
    assert code == 0, err
    res = json_line(stdout)
    assert res["status"] == "completed"
    s = res["summary"]
    for key in ("nll_test", "transport_term_test", "hjb_test", "transport_cost", "ot_bound",
                "ot_gap", "paired_gap", "layerwise_cost"):
        assert math.isfinite(s[key]), key
    assert s["paired_gap"] >= -1e-12
    with h5py.File(out, "r") as f:
        for name in ("loss", "transport_term", "nll_term", "hjb_term", "lr"):
            assert f[f"history/{name}"].shape == (6,)
        loss = f["history/loss"][()]
        terms = [f[f"history/{k}_term"][()] for k in ("transport", "nll", "hjb")]
    np.testing.assert_allclose(loss, 1.0 * terms[0] + 2.0 * terms[1] + 0.5 * terms[2],
                               rtol=1e-12)
    ck = load_checkpoint(ckpt)  # the flow_comparison reader accepts it
    flow = flow_from_file(ckpt)
    if family == "otflow_resnet":
        assert ck.meta["model_type"] == "otflow"
        z, lp = flow.to_latent(ck.reference["input"])
        assert np.abs(z - ck.reference["output"]).max() <= 1e-14
        assert np.abs(lp - ck.reference["log_density"]).max() <= 1e-12
    else:
        # the one-hidden-layer potential is exported as a Monge-Ampere flow (latent at t = 0):
        # its inverse run reproduces our data -> latent map up to the b + c T rounding
        assert ck.meta["model_type"] == "monge_ampere"
        with h5py.File(out, "r") as f:
            x, z_ours = f["particles/test_data"][:20], f["particles/test_latent"][:20]
        z, _ = flow.to_latent(x)
        np.testing.assert_allclose(z, z_ours, rtol=0, atol=1e-12)


def test_restart_is_bit_for_bit(cli, tmp_path):
    case, _ = _tiny(tmp_path, iterations=6)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    run_full_and_restarted(cli, case, full, part, stop_at=4, total=6)
    with h5py.File(full, "r") as a, h5py.File(part, "r") as b:
        assert a.attrs["status"] == b.attrs["status"] == "completed"
        for name in set(a["history"]) - {"wall_seconds"}:
            assert np.array_equal(a[f"history/{name}"][()], b[f"history/{name}"][()]), name
        for key, value in a["summary"].attrs.items():
            if key != "wall_seconds":
                assert b["summary"].attrs[key] == value, key


@pytest.mark.parametrize("setting, key", [
    ("training.alpha=[1.0, 2.0]", "training.alpha"),
    ("training.alpha=[-1.0, 2.0, 0.0]", "training.alpha"),
    ("model.family=\"one_hidden_layer\"", None),
])
def test_bad_input_exits_2(cli, tmp_path, setting, key):
    case, _ = _tiny(tmp_path)
    args = ["check", case, "--set", setting]
    if key is None:
        args += ["--set", "model.time_dependent=false"]
        key = "model.time_dependent"
    code, _, err = cli(*args)
    assert code == 2
    assert key in err
    assert ("tiny.toml" if key == "model.time_dependent" else "--set") in err


def test_nan_fails_with_status_and_history_kept(cli, tmp_path):
    case, _ = _tiny(tmp_path, iterations=20, lr=1e8)
    out = tmp_path / "nan.h5"
    code, _, err = cli("run", case, "-o", out, "--backend", "numpy")
    assert code == 1, err
    assert "non-finite" in err
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "failed"
        assert f["history/loss"].shape[0] >= 1


def test_shipped_cases_validate(cli):
    for name in ("otreg_swissroll.toml", "otreg_alpha_scan_moons.toml"):
        code, _, err = cli("check", CASES / name)
        assert code == 0, err
