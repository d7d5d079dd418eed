"""Flow checkpoints: the published OT-Flow files against their PyTorch references, density
normalization and round trip; refusal of hostile pickles; bad .npz files give exit 2."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ot_pde.backends import get_backend
from ot_pde.flows.exported import build_flow, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CK = ROOT / "checkpoints"
TOOLS = ROOT / "tools"
SWISSROLL = CK / "otflow_swissroll.npz"
MINIBOONE = CK / "otflow_miniboone.npz"
OTFLOW_PTH = Path("/work/shared/external/ot-flow/pretrained_swissroll_alph30_15_m32_checkpt.pth")
REALNVP = [CK / f"realnvp_{n}.npz" for n in ("moons", "eight_gaussians", "checkerboard")]


@pytest.fixture(scope="module")
def swissroll():
    return load_checkpoint(SWISSROLL)


# -- the published OT-Flow files -----------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_otflow_swissroll_equals_torch_references(swissroll, backend):
    assert swissroll.meta["dtype"] == "float64" and swissroll.meta["steps"] == 12
    flow = build_flow(swissroll, get_backend(backend))
    z, logp = flow.to_latent(swissroll.reference["input"])
    assert np.abs(z - swissroll.reference["output"]).max() <= 1e-10
    assert np.abs(logp - swissroll.reference["log_density"]).max() <= 1e-10


def test_otflow_swissroll_density_integrates_to_one(swissroll):
    flow = build_flow(swissroll, get_backend("numpy"))
    n = 72  # midpoint rule on [-6, 6]^2, h = 1/6
    c = -6.0 + (np.arange(n) + 0.5) * 12.0 / n
    X, Y = np.meshgrid(c, c, indexing="ij")
    mass = np.exp(flow.log_prob(np.stack([X.ravel(), Y.ravel()], 1))).sum() * (12.0 / n) ** 2
    assert abs(mass - 1.0) <= 1e-3


def test_otflow_swissroll_round_trip(swissroll):
    flow = build_flow(swissroll, get_backend("numpy"))
    x = swissroll.reference["input"]
    z, lp = flow.to_latent(x)
    x_back, lp_back = flow.to_data(z)
    assert np.abs(x_back - x).max() <= 1e-5
    assert np.abs(lp_back - lp).max() <= 1e-4


def test_otflow_miniboone_float32_references():
    ck = load_checkpoint(MINIBOONE)
    assert ck.meta["dim"] == 43 and ck.meta["dtype"] == "float32"
    assert ck.params["N.layers.1.weight"].dtype == np.float32
    flow = build_flow(ck, get_backend("numpy"))
    z, logp = flow.to_latent(ck.reference["input"])
    ref_z, ref_lp = ck.reference["output"], ck.reference["log_density"]
    eps = np.finfo(np.float32).eps
    assert np.abs(z - ref_z).max() <= 100 * eps * np.abs(ref_z).max()
    assert np.max(np.abs(logp - ref_lp) / np.abs(ref_lp)) <= 100 * eps


@pytest.mark.parametrize("path", REALNVP, ids=lambda p: p.stem)
def test_shipped_realnvp_references(path):
    ck = load_checkpoint(path)
    flow = build_flow(ck, get_backend("numpy"))
    x, lp = flow.to_data(ck.reference["input"])
    assert np.abs(x - ck.reference["output"]).max() <= 1e-10
    assert np.abs(lp - ck.reference["log_density"]).max() <= 1e-10
    z, lp2 = flow.to_latent(x)
    assert np.abs(z - ck.reference["input"]).max() <= 1e-12
    assert np.abs(lp2 - lp).max() <= 1e-12


def test_safetensors_round_trip(swissroll, tmp_path):
    dst = save_checkpoint(tmp_path / "s.safetensors", {k: v for k, v in swissroll.meta.items()
                                                       if not k.startswith("format")},
                          swissroll.params, swissroll.reference)
    back = load_checkpoint(dst)
    assert back.meta == swissroll.meta
    for k, v in swissroll.params.items():
        np.testing.assert_array_equal(back.params[k], v)
    flow = build_flow(back, get_backend("numpy"))
    z, _ = flow.to_latent(back.reference["input"])
    assert np.abs(z - back.reference["output"]).max() <= 1e-10


# -- hostile pickles ---------------------------------------------------------------------------
class _Payload:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _legacy_pth(path: Path, obj) -> None:
    """A file in torch's legacy layout (magic, protocol, system info, the object, keys)."""
    with open(path, "wb") as f:
        for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001,
                                                    "little_endian": True}, obj, []):
            pickle.dump(part, f, protocol=2)


def _run_converter(*args):
    return subprocess.run([sys.executable, str(TOOLS / "convert_otflow.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("layout", ["legacy", "zip", "magic"])
def test_hostile_pth_is_refused_and_never_runs(tmp_path, layout):
    marker = tmp_path / "pwned"
    payload = _Payload(f"touch {marker}")
    src = tmp_path / "hostile.pth"
    if layout == "legacy":
        _legacy_pth(src, {"args": payload, "state_dict": {}})
    elif layout == "magic":  # the payload where the magic number should be
        with open(src, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps({"state_dict": payload}, protocol=2))
    proc = _run_converter(src, "-o", tmp_path / "out.npz")
    assert proc.returncode == 2, proc.stderr
    assert "refused to load the global posix.system" in proc.stderr or \
        "refused to load the global os.system" in proc.stderr, proc.stderr
    assert str(src) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "out.npz").exists()


def test_restricted_unpickler_reads_only_whitelisted_globals(tmp_path):
    sys.path.insert(0, str(TOOLS))
    try:
        import torch_pickle
    finally:
        sys.path.remove(str(TOOLS))
    if not OTFLOW_PTH.exists():
        pytest.skip("the published OT-Flow files are not here")
    obj = torch_pickle.load(OTFLOW_PTH)
    assert obj["args"].alph == [1.0, 30.0, 15.0] and obj["args"].nt == 12
    np.testing.assert_array_equal(obj["state_dict"]["A"], load_checkpoint(SWISSROLL).params["A"])
    src = tmp_path / "eval.pth"
    _legacy_pth(src, {"x": eval})  # a builtin is not a tensor
    with pytest.raises(torch_pickle.RefusedPickle, match="eval"):
        torch_pickle.load(src)


# -- bad .npz files: exit 2 with a one-line message naming the file and the key ---------------
def _case(tmp_path, ckpt: Path) -> Path:
    case = tmp_path / "case.toml"
    case.write_text(f'[case]\nproblem = "flow_comparison"\n[model]\npath = "{ckpt}"\n'
                    f'[comparison]\nn_samples = 64\not_sizes = [16]\not_repeats = 2\n'
                    f'[data]\nn_test = 16\n[grid]\ncheck = false\n')
    return case


def _expect_exit_2(cli, tmp_path, ckpt, key):
    code, out, err = cli("run", _case(tmp_path, ckpt), "-o", tmp_path / "o.h5", "--backend",
                         "numpy")
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error")]
    assert code == 2, err
    assert len(lines) == 1 and str(ckpt) in lines[0] and key in lines[0], err
    return lines[0]


def test_truncated_npz_exit_2(cli, tmp_path):
    bad = tmp_path / "truncated.npz"
    data = SWISSROLL.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    _expect_exit_2(cli, tmp_path, bad, "file")


def _rewrite(tmp_path, name, edit_meta=None, edit_params=None) -> Path:
    ck = load_checkpoint(SWISSROLL)
    meta, params = dict(ck.meta), dict(ck.params)
    if edit_meta:
        edit_meta(meta)
    if edit_params:
        edit_params(params)
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"reference/{k}": v for k, v in ck.reference.items()})
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    dst = tmp_path / name
    np.savez(dst, **arrays)
    return dst


@pytest.mark.parametrize("label, edit_meta, edit_params, key", [
    ("dim", lambda m: m.update(dim=3), None, "reference/input"),
    ("dtype", lambda m: m.update(dtype="float32"), None, "param/A"),
    ("model_type", lambda m: m.update(model_type="realnvp"), None, "metadata.direction"),
    ("alpha", lambda m: m.update(config={**m["config"], "alpha": [2.0, 30.0, 15.0]}), None,
     "reference/output"),
    ("missing", None, lambda p: p.pop("N.layers.1.bias"), "param/N.layers.1.bias"),
    ("shape", None, lambda p: p.update(A=p["A"][:2]), "param/A"),
])
def test_mislabelled_npz_exit_2(cli, tmp_path, label, edit_meta, edit_params, key):
    _expect_exit_2(cli, tmp_path, _rewrite(tmp_path, f"{label}.npz", edit_meta, edit_params),
                   key)


def test_pickled_array_in_npz_is_refused(cli, tmp_path):
    ck = load_checkpoint(SWISSROLL)
    arrays = {f"param/{k}": v for k, v in ck.params.items()}
    arrays["metadata"] = np.frombuffer(json.dumps(ck.meta).encode(), dtype=np.uint8)
    arrays["param/evil"] = np.array([_Payload("true")], dtype=object)
    dst = tmp_path / "objects.npz"
    np.savez(dst, **arrays)
    line = _expect_exit_2(cli, tmp_path, dst, "param/evil")
    assert "never unpickled" in line  # refused from the header, before any byte is read


# -- converters (need torch) -------------------------------------------------------------------
def test_realnvp_state_dict_converter(tmp_path):
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(TOOLS))
    try:
        import convert_realnvp
        import realnvp_torch
    finally:
        sys.path.remove(str(TOOLS))
    torch.manual_seed(0)
    model = realnvp_torch.RealNVP([[2, 0, 1], [1, 2, 0], [0, 1, 2]], 1, [8, 8], "elu")
    src = tmp_path / "state.pt"
    torch.save(model.state_dict(), src)  # zip layout, read by the restricted unpickler
    assert convert_realnvp.main([str(src), "-o", str(tmp_path / "f.npz"), "--activation",
                                 "elu"]) == 0
    ck = load_checkpoint(tmp_path / "f.npz")
    for backend in ("numpy", "numba"):
        x, lp = build_flow(ck, get_backend(backend)).to_data(ck.reference["input"])
        assert np.abs(x - ck.reference["output"]).max() <= 1e-12
        assert np.abs(lp - ck.reference["log_density"]).max() <= 1e-12


@pytest.mark.slow
def test_otflow_converter_reproduces_shipped_file(tmp_path):
    pytest.importorskip("torch")
    if not OTFLOW_PTH.exists():
        pytest.skip("the published OT-Flow files are not here")
    proc = _run_converter(OTFLOW_PTH, "-o", tmp_path / "s.npz")
    assert proc.returncode == 0, proc.stderr
    new, old = load_checkpoint(tmp_path / "s.npz"), load_checkpoint(SWISSROLL)
    for k in old.reference:
        np.testing.assert_array_equal(new.reference[k], old.reference[k])
