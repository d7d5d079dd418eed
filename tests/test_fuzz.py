"""Property-based fuzzing of the input contract (issue 21), with hypothesis.

Generated inputs: ``--set`` values of every key of every kind's schema (numbers at and past
the limits of int64 and float64, NaN and infinities, strings, nested lists, TOML junk), case
files with lines dropped, duplicated or replaced, pickles for ``tools/torch_pickle.py``,
runs of a small case with one such override under ``--json``, mutated ``.npy``/``.npz``/HDF5
array files and flow checkpoints read by the loaders, and restarts from result files with
a flipped bit in the checkpoint or a checkpoint altered with valid checksums (entries
dropped, reshaped, retyped, the iteration changed). The contract asserted on every one:

* the exit code is 0, 1, 2 or 130 and no traceback or "internal error" is printed;
* under ``--json`` stdout holds exactly one JSON object with a ``status`` (and an ``error``
  when the exit code is not 0);
* a loader returns a real numeric array or raises :class:`~ot_pde.errors.InputError`;
* no output file is left with status ``running`` once the command returned.

``make test`` runs a quick slice (a few dozen cases, deterministic); ``make test-all`` runs
the ``slow`` test, about 1880 cases. Every case runs under a 2 GiB memory budget
(``OT_PDE_MAX_MEMORY``) and a 60 s alarm (a hang is a failure too).
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import zipfile

import h5py
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ot_pde.cli import main  # noqa: E402
from ot_pde.core.registry import get_kind  # noqa: E402
from ot_pde.errors import InputError  # noqa: E402
from ot_pde.io.arrays import load_array  # noqa: E402

from .conftest import CASES  # noqa: E402
from .hostile_files import CHECKPOINT  # noqa: E402

#: one shipped case per kind, with overrides that keep a `check` cheap
KIND_CASES = {
    "benamou_brenier": ("bb_gaussian_2d", ["grid.n=16", "time.nt=8"]),
    "monge_ampere_flow": ("maflow_moons_density", []),
    "ising_variational": ("ising_L4_critical", []),
    "generalized_geodesic": ("generalized_inversion_1d", []),
    "flow_comparison": ("compare_realnvp_moons", []),
    "otreg_flow": ("otreg_swissroll", []),
    "gp_flow": ("gp_affine_4d", []),
    "euler_lagrangian": ("euler_lagrangian_rotation_square", ["particles.n=8"]),
    "euler_spectral": ("euler_shifted_taylor_green", []),
    "entropic_potentials": ("ek_gaussians_degenerate", []),
}
CODES = {0, 1, 2, 130}
COUNT = {"cases": 0}


class _Hang(BaseException):
    """Raised by the alarm: not an Exception, so the CLI's bug net cannot swallow it."""


@contextlib.contextmanager
def _alarm(seconds: int = 60):
    def ring(signum, frame):
        raise _Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with _alarm(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    COUNT["cases"] += 1
    return code, out.getvalue(), err.getvalue()


def _assert_contract(code, stdout, stderr, *, json_expected=False):
    assert code in CODES, (code, stderr)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    if json_expected:
        lines = [ln for ln in stdout.splitlines() if ln.strip()]
        assert len(lines) == 1, stdout
        obj = json.loads(lines[0])
        assert isinstance(obj, dict) and obj.get("status") in (
            "completed", "failed", "interrupted"), obj
        if code != 0:
            assert obj.get("error"), obj
        return obj
    return None


# -- values ----------------------------------------------------------------------------------
_EDGE_INTS = [0, -1, 1, 2, 3, 2 ** 31, 2 ** 62, 2 ** 63, -2 ** 63, 2 ** 64, 10 ** 23, 10 ** 6,
              4096, 100_000]
_EDGE_FLOATS = [0.0, -0.0, 1e308, -1e308, 1e-308, 5e-324, 1e300, -1e300, 1e-300, 0.5, 1e6,
                float("inf"), float("-inf"), float("nan")]


def _toml_float(x: float) -> str:
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return repr(x)


scalars = st.one_of(
    st.integers(-5, 80).map(str),
    st.sampled_from(_EDGE_INTS).map(str),
    st.integers().map(str),
    st.sampled_from(_EDGE_FLOATS).map(_toml_float),
    st.floats(allow_nan=True, allow_infinity=True).map(_toml_float),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=10).map(json.dumps),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4).map(
    lambda items: "[" + ", ".join(items) + "]"), max_leaves=8)
junk = st.text(alphabet="[]{}=,.\"'0123456789eE+-_abxyz \\\n\t", max_size=24)


def _keys(kind: str) -> list[str]:
    schema = get_kind(kind).schema
    keys = [f"{s}.{k}" for s, sec in schema.sections.items() for k in sec.all_keys()]
    return keys + ["grid.nope", "nosection.key", "case.problem"]


@st.composite
def overrides(draw, kind: str):
    keys = _keys(kind)
    n = draw(st.integers(1, 3))
    out = []
    for _ in range(n):
        key = draw(st.sampled_from(keys))
        if key == "output.path":
            continue  # a generated path would write anywhere
        value = draw(st.one_of(values, values, junk))
        out.append(f"{key}={value}")
    return out


def _check_case(kind, sets):
    name, base = KIND_CASES[kind]
    args = ["check", CASES / f"{name}.toml", "-q"]
    for s in base + sets:
        args += ["--set", s]
    return _assert_contract(*_cli(*args))


# -- schema and --set fuzz: `check` of every kind -------------------------------------------
def _schema_fuzz(max_examples: int):
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        kind = data.draw(st.sampled_from(sorted(KIND_CASES)))
        _check_case(kind, data.draw(overrides(kind)))
    run()


# -- whole case files: lines dropped, duplicated, replaced by junk, values replaced -----------
@st.composite
def case_texts(draw):
    kind = draw(st.sampled_from(sorted(KIND_CASES)))
    lines = (CASES / f"{KIND_CASES[kind][0]}.toml").read_text().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "junk", "value", "header", "value"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "junk":
            lines[i] = draw(junk)
        elif op == "header":
            header = draw(st.sampled_from(["grid", "case", "x", "run.x", "[output]", "source"]))
            lines.insert(i, f"[{header}]")
        elif "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + draw(values)
    return kind, "\n".join(lines) + "\n"


def _case_file_fuzz(max_examples: int, folder):
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(item=case_texts())
    def run(item):
        kind, text = item
        path = CASES / f"{KIND_CASES[kind][0]}.toml"
        dst = folder / path.name  # relative paths (checkpoints) resolve against cases/
        dst.write_text(text.replace('"../checkpoints/', f'"{CASES.parent}/checkpoints/'))
        args = ["check", dst, "-q"]
        for s in KIND_CASES[kind][1]:
            args += ["--set", s]
        _assert_contract(*_cli(*args))
    run()


# -- the restricted torch unpickler (tools/torch_pickle.py) on generated pickles --------------
def _torch_pickle_fuzz(max_examples: int, folder):
    import pickle
    import sys

    sys.path.insert(0, str(CASES.parent / "tools"))
    try:
        import torch_pickle
    finally:
        sys.path.pop(0)
    leaves = st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none())
    objects = st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3),
        st.tuples(inner, inner)), max_leaves=10)
    accepted = (pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError)

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(obj=objects, legacy=st.booleans(), mutation=st.tuples(
        st.sampled_from(["none", "truncate", "flip", "insert"]), st.integers(0, 10 ** 6),
        st.integers(0, 255)))
    def run(obj, legacy, mutation):
        body = pickle.dumps(obj, protocol=2)
        if legacy:
            head = b"".join(pickle.dumps(x, protocol=2)
                            for x in (torch_pickle.LEGACY_MAGIC, 1001, {}))
            data = head + body + pickle.dumps([], protocol=2)
        else:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("archive/data.pkl", body)
            data = buf.getvalue()
        kind, pos, byte = mutation
        if kind != "none" and data:
            data = _mutate(data, (kind, pos % len(data), byte))
        path = folder / "f.pt"
        path.write_bytes(data)
        COUNT["cases"] += 1
        with _alarm():
            try:
                torch_pickle.load(path)
            except accepted:  # what the converters report as "not a readable file"
                pass
    run()


# -- --json runs of a small case with one generated override ---------------------------------
#: cheap runs: (case, kind, overrides before the generated one, caps after it)
RUN_CASES = {
    "bb": ("bb_translation_1d", "benamou_brenier", ["grid.n=16"],
           ["solver.max_iterations=25"]),
    "generalized": ("generalized_inversion_1d", "generalized_geodesic", [], []),
    "spectral": ("euler_shifted_taylor_green", "euler_spectral", [], []),
}


def _run_fuzz(max_examples: int, folder, which: str = "bb"):
    name, kind, before, after = RUN_CASES[which]
    keys = [k for k in _keys(kind) if not k.startswith(("output.path", "run."))]

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(key=st.sampled_from(keys), value=st.one_of(values, junk))
    def run(key, value):
        out = folder / "run.h5"
        if out.exists():
            out.unlink()
        sets = [a for o in before + [f"{key}={value}"] + after + [
            "run.max_wall_seconds=3", "output.xdmf=false"] for a in ("--set", o)]
        code, stdout, stderr = _cli(
            "run", CASES / f"{name}.toml", "-q", "--backend", "numpy", "--json", *sets,
            "-o", out, "--overwrite")
        obj = _assert_contract(code, stdout, stderr, json_expected=True)
        assert (code == 0) == (obj["status"] in ("completed", "interrupted")), obj
        if out.exists() and out.stat().st_size:
            with h5py.File(out, "r", locking=False) as f:
                assert f.attrs["status"] != "running"
    run()


# -- loaders on mutated files ----------------------------------------------------------------
def _valid_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arr = rng.random((8, 8))
    np.save(folder / "a.npy", arr)
    np.savez(folder / "a.npz", x=arr)
    np.savez_compressed(folder / "c.npz", x=arr)
    with h5py.File(folder / "a.h5", "w") as f:
        f["x"] = arr
    return {"a.npy": None, "a.npz": "x", "c.npz": "x", "a.h5": "x"}


@st.composite
def mutations(draw, size: int, hdf5: bool):
    kind = draw(st.sampled_from(["truncate", "flip"] if hdf5 else
                                ["truncate", "flip", "flip", "insert", "zero"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, max(size - 1, 0))), 0
    pos = draw(st.integers(0, size - 1))
    return kind, pos, draw(st.integers(0, 255))


def _mutate(data: bytes, mutation, raw_range=None) -> bytes:
    kind, pos, byte = mutation
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[:pos])
    if raw_range is not None:  # HDF5: only the raw data (metadata damage can crash libhdf5)
        lo, hi = raw_range
        pos = lo + pos % max(hi - lo, 1)
    if kind == "flip":
        b[pos] ^= 1 << (byte % 8)
    elif kind == "insert":
        b[pos:pos] = bytes([byte])
    else:
        b[pos] = 0
    return bytes(b)


def _loader_fuzz(max_examples: int, folder):
    from ot_pde.flows.exported.checkpoint import load_checkpoint

    files = _valid_files(folder / "valid")
    files["realnvp_moons.npz"] = "checkpoint"
    shutil.copy(CHECKPOINT, folder / "valid" / "realnvp_moons.npz")
    with h5py.File(folder / "valid" / "a.h5", "r") as f:
        off = f["x"].id.get_offset()
        raw = (off, off + f["x"].id.get_storage_size())

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        name = data.draw(st.sampled_from(sorted(files)))
        src = (folder / "valid" / name).read_bytes()
        hdf5 = name.endswith(".h5")
        mutation = data.draw(mutations(len(src), hdf5))
        dst = folder / f"m_{name}"
        dst.write_bytes(_mutate(src, mutation, raw if hdf5 else None))
        COUNT["cases"] += 1
        with _alarm():
            try:
                if files[name] == "checkpoint":
                    load_checkpoint(dst)
                else:
                    arr = load_array(dst, files[name], source="fuzz", key="path")
                    assert isinstance(arr, np.ndarray) and arr.dtype.kind in "biuf"
            except InputError as exc:
                assert str(exc)
    run()


# -- restarts from mutated result files ------------------------------------------------------
_RESTART = ["--backend", "numpy", "--set", "grid.n=16", "--set", "output.every=5",
            "--set", "output.xdmf=false", "--set", "solver.tol=1e-300"]


def _restart_fuzz(max_examples: int, folder):
    base = folder / "base.h5"
    case = CASES / "bb_translation_1d.toml"
    code, _, err = _cli("run", case, "-q", *_RESTART, "--set", "solver.max_iterations=20",
                        "-o", base, "--keep-checkpoint")  # the mutations target its state
    assert code == 0, err
    with h5py.File(base, "r+") as f:
        f.attrs["status"] = "interrupted"
        ranges = [(ds.id.get_offset(), ds.id.get_offset() + ds.id.get_storage_size())
                  for ds in f["checkpoint"].values() if ds.id.get_offset() is not None]
    data0 = base.read_bytes()

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(which=st.integers(0, len(ranges) - 1), pos=st.integers(0, 10 ** 6),
           bit=st.integers(0, 7))
    def run(which, pos, bit):
        lo, hi = ranges[which]
        b = bytearray(data0)
        b[lo + pos % (hi - lo)] ^= 1 << bit
        path = folder / "mutated.h5"
        path.write_bytes(bytes(b))
        code, stdout, stderr = _cli("run", case, "-q", *_RESTART, "--set",
                                    "solver.max_iterations=30", "-o", path, "--restart",
                                    "--json")
        obj = _assert_contract(code, stdout, stderr, json_expected=True)
        assert code == 2 and "checksum mismatch" in obj["error"], obj  # every flip is seen
        with h5py.File(path, "r", locking=False) as f:
            assert f.attrs["status"] == "interrupted"
    run()


# -- restarts from checkpoints altered with valid checksums (the structural checks) ----------
def _tamper_fuzz(max_examples: int, folder, which: str = "bb"):
    from ot_pde.io import ResultFile, ResultWriter

    name, kind, before, after = RUN_CASES[which]
    case = CASES / f"{name}.toml"
    sets = [a for o in before + after + ["output.every=5", "output.xdmf=false",
                                         "run.max_wall_seconds=3"] for a in ("--set", o)]
    base = folder / f"tamper_{which}.h5"
    code, _, err = _cli("run", case, "-q", "--backend", "numpy", *sets, "--set",
                        "run.max_wall_seconds=0.5", "-o", base, "--overwrite",
                        "--keep-checkpoint")  # a run done within the limit keeps its state
    assert code == 0, err
    with h5py.File(base, "r+") as f:
        f.attrs["status"] = "interrupted"
    with ResultFile(base) as rf:
        state0, iteration0 = rf.checkpoint()
    names = sorted(state0)
    edits = st.sampled_from(["drop", "ravel", "slice", "int", "float32", "bool", "scalar",
                             "string", "transpose", "iteration"])

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(key=st.sampled_from(names), edit=edits, number=st.integers(-10, 10 ** 7))
    def run(key, edit, number):
        state, iteration = dict(state0), iteration0
        value = np.asarray(state[key])
        if edit == "drop":
            del state[key]
        elif edit == "ravel":
            state[key] = value.ravel()
        elif edit == "slice":
            state[key] = value.ravel()[: max(value.size - 1, 0)]
        elif edit == "transpose":
            state[key] = value.T.copy() if value.ndim > 1 else value[None]
        elif edit in ("int", "float32", "bool"):
            state[key] = value.astype({"int": np.int64, "float32": np.float32,
                                       "bool": np.bool_}[edit])
        elif edit == "scalar":
            state[key] = float(number)
        elif edit == "string":
            state[key] = str(number)
        else:
            iteration = number
        path = folder / "tampered.h5"
        shutil.copy(base, path)
        writer = ResultWriter.__new__(ResultWriter)
        writer.path, writer._file = path, None
        writer.write_checkpoint(state, iteration)
        code, stdout, stderr = _cli("run", case, "-q", "--backend", "numpy", *sets, "-o", path,
                                    "--restart", "--json")
        _assert_contract(code, stdout, stderr, json_expected=True)
        assert code in (0, 2), stderr
        with h5py.File(path, "r", locking=False) as f:
            assert f.attrs["status"] == ("interrupted" if code == 2 else f.attrs["status"])
            assert f.attrs["status"] != "running"
    run()


@pytest.fixture
def small_memory(monkeypatch):
    monkeypatch.setenv("OT_PDE_MAX_MEMORY", "2G")


def test_fuzz_quick_slice(tmp_path, small_memory):
    """The slice in `make test`: every generator a little (about 90 cases, ~20 s)."""
    COUNT["cases"] = 0
    _schema_fuzz(40)
    _case_file_fuzz(15, tmp_path)
    _run_fuzz(8, tmp_path)
    _loader_fuzz(30, tmp_path)
    _torch_pickle_fuzz(15, tmp_path)
    _restart_fuzz(6, tmp_path)
    _tamper_fuzz(8, tmp_path)
    assert COUNT["cases"] >= 120


@pytest.mark.slow
def test_fuzz_thousand_cases(tmp_path, small_memory):
    """`make test-all`: over 1000 generated cases, zero tracebacks."""
    COUNT["cases"] = 0
    _schema_fuzz(700)
    _case_file_fuzz(300, tmp_path)
    _run_fuzz(120, tmp_path)
    _run_fuzz(40, tmp_path, "generalized")
    _run_fuzz(40, tmp_path, "spectral")
    _loader_fuzz(300, tmp_path)
    _torch_pickle_fuzz(200, tmp_path)
    _restart_fuzz(60, tmp_path)
    _tamper_fuzz(60, tmp_path)
    _tamper_fuzz(40, tmp_path, "generalized")
    _tamper_fuzz(30, tmp_path, "spectral")
    print(f"fuzz: {COUNT['cases']} generated cases")
    assert COUNT["cases"] >= 1000
