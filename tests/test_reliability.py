"""Issue 21's reproducers, one test each: sizes, nesting, hostile files, non-finite
summaries, tampered checkpoints, concurrent writers, the JSON and exit-code contract.

Every test asserts the contract's answer (exit 0/1/2/130, a one-line error naming the input,
no traceback, one JSON object under ``--json``, a file never left ``running``).
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from ot_pde.io import ResultFile, ResultWriter

from .conftest import CASES, json_line
from .hostile_files import checkpoint_files, density_files

BB1 = CASES / "bb_translation_1d.toml"
BB2 = CASES / "bb_gaussian_2d.toml"
SMALL = ["--backend", "numpy", "--set", "grid.n=32", "--set", "solver.tol=1e-12",
         "--set", "output.every=20", "--set", "output.xdmf=false"]


def _status(path) -> str:
    with h5py.File(path, "r", locking=False) as f:
        return f.attrs["status"]


def _one_line_error(code, err, *, expect_code=2, text=""):
    assert code == expect_code, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert text in err, err


# -- sizes and arithmetic: refused by `check`, before anything is allocated or written ------
@pytest.mark.parametrize("case, overrides", [
    (BB2, ["grid.n=99999999999999999999999"]),
    (BB2, ["grid.n=100000"]),
    (BB2, [f"time.nt={2 ** 62}"]),
    (CASES / "maflow_moons_density.toml", ["training.n_train=1e308"]),
    (CASES / "euler_lagrangian_rotation_square.toml", ["time.steps_ratio=1e308"]),
    (CASES / "euler_shifted_taylor_green.toml", ["initial.mean_velocity=[1e300,0]"]),
    (CASES / "euler_shifted_taylor_green.toml", ["time.t_final=1e308"]),
], ids=["n_huge_int", "n_1e5", "nt_2^62", "n_train_1e308", "steps_ratio", "velocity_1e300",
        "t_final_1e308"])
def test_sizes_beyond_the_machine_are_exit_2_in_check_and_run(
        cli, tmp_path, case, overrides, monkeypatch):
    monkeypatch.setenv("OT_PDE_MAX_MEMORY", "2G")  # a shared test machine
    sets = [a for o in overrides for a in ("--set", o)]
    code, _, err = cli("check", case, *sets)
    _one_line_error(code, err, text=str(case.relative_to(CASES.parent)))
    out = tmp_path / "x.h5"
    code, stdout, err = cli("run", case, *sets, "--backend", "numpy", "-o", out, "--json")
    _one_line_error(code, err)
    assert json_line(stdout)["status"] == "failed" and json_line(stdout)["error"]
    assert not out.exists()  # nothing was created, so nothing is left `running`


def test_memory_budget_refuses_before_allocating(cli, monkeypatch):
    """A grid that fits NumPy's limits but not the budget: refused by the address-space
    cap as a MemoryError (exit 2), not killed by the operating system later."""
    monkeypatch.setenv("OT_PDE_MAX_MEMORY", "200M")
    code, _, err = cli("check", BB2, "--set", "grid.n=4000")
    _one_line_error(code, err, text="not enough memory")


@pytest.mark.parametrize("text", [
    "n = " + "[" * 5000 + "]" * 5000,
    "n = " + "{a=" * 3000 + "1" + "}" * 3000,
], ids=["arrays_5000", "inline_tables_3000"])
def test_deep_toml_nesting_is_exit_2(cli, tmp_path, text):
    path = tmp_path / "deep.toml"
    path.write_text(f'[case]\nproblem = "benamou_brenier"\n[grid]\n{text}\n')
    code, _, err = cli("check", path)
    _one_line_error(code, err, text="nested more than")
    code, _, err = cli("check", BB1, "--set", "grid.n=" + "[" * 5000 + "]" * 5000)
    _one_line_error(code, err, text="--set: grid.n")


# -- one safe array loader ------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return density_files(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("label", [
    "empty", "npz_named_npy", "structured", "huge_header", "truncated", "complex", "strings",
    "not_an_array", "directory", "fifo", "hdf5_str", "hdf5_fixed_str", "hdf5_compound",
    "hdf5_soft", "hdf5_ext", "hdf5_grp", "hdf5_absent", "hdf5_no_dataset"])
def test_hostile_density_file_is_exit_2(cli, hostile, label):
    path, dataset, text = hostile[label]
    sets = ["--set", "source.type=file", "--set", f"source.path={path}"]
    if dataset is not None:
        sets += ["--set", f"source.dataset={dataset}"]
    code, _, err = cli("check", BB2, *sets)
    _one_line_error(code, err, text=text)
    assert "source." in err  # the key at fault


@pytest.mark.parametrize("label", ["npz_named_npy", "hdf5_grp", "complex", "fifo"])
def test_hostile_sample_file_is_exit_2(cli, hostile, label):
    path, dataset, text = hostile[label]
    sets = ["--set", "target.type=file", "--set", f"target.path={path}"]
    if dataset is not None:
        sets += ["--set", f"target.dataset={dataset}"]
    code, _, err = cli("check", CASES / "maflow_moons_density.toml", *sets)
    _one_line_error(code, err, text=text)


def test_overflowing_density_says_so(cli, tmp_path):
    """Not "masses differ (0 vs 1); set normalize = true" when normalize is true."""
    np.save(tmp_path / "big.npy", np.full((64, 64), 1e306))
    code, _, err = cli("check", BB2, "--set", "source.type=file",
                       "--set", f"source.path={tmp_path / 'big.npy'}")
    _one_line_error(code, err, text="mass overflows")


@pytest.mark.parametrize("label", ["corrupt_deflate", "npy_named_npz", "reference_0d",
                                   "member_not_npy", "safetensors_list",
                                   "safetensors_negative", "metadata_deep"])
def test_damaged_flow_checkpoint_is_exit_2(cli, tmp_path, label):
    path, _, text = checkpoint_files(tmp_path)[label]
    for case in ("compare_realnvp_moons", "gp_realnvp_moons"):
        code, _, err = cli("check", CASES / f"{case}.toml", "--set", f"model.path={path}")
        _one_line_error(code, err, text=text)


def test_torch_pickle_nested_deep_is_refused(tmp_path):
    import pickle
    import zipfile

    sys.path.insert(0, str(CASES.parent / "tools"))
    try:
        import torch_pickle
    finally:
        sys.path.pop(0)
    deep = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."
    with zipfile.ZipFile(tmp_path / "deep.pt", "w") as z:
        z.writestr("archive/data.pkl", deep)
    with pytest.raises(pickle.UnpicklingError, match="nested too deeply"):
        torch_pickle.load(tmp_path / "deep.pt")


# -- what run would refuse, check refuses first ----------------------------------------------
@pytest.mark.parametrize("values, text", [
    (np.array([[0.0, np.nan]] * 10), "not finite"),
    (np.zeros((10, 3)), "expected samples of shape (N, 2)"),
    (np.full((10, 2), "1.5"), "strings"),
], ids=["nan", "shape", "strings"])
def test_comparison_data_file_is_refused_by_check(cli, tmp_path, values, text):
    np.save(tmp_path / "d.npy", values)
    code, _, err = cli("check", CASES / "compare_realnvp_moons.toml", "--set", "data.type=file",
                       "--set", f"data.path={tmp_path / 'd.npy'}")
    _one_line_error(code, err, text=text)


def test_empty_ot_sizes_refused_by_check(cli):
    code, _, err = cli("check", CASES / "compare_realnvp_moons.toml",
                       "--set", "comparison.ot_sizes=[]")
    _one_line_error(code, err, text="comparison.ot_sizes")


# -- one finiteness check on every summary ---------------------------------------------------
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_summary_fails_the_run(cli, tmp_path, monkeypatch, bad):
    from ot_pde.transport.benamou_brenier.problem import BenamouBrenierProblem

    original = BenamouBrenierProblem.summary
    monkeypatch.setattr(BenamouBrenierProblem, "summary",
                        lambda self, solver: {**original(self, solver), "W2_squared": bad})
    out = tmp_path / "x.h5"
    code, stdout, err = cli("run", BB1, *SMALL, "--set", "solver.max_iterations=50", "-o", out,
                            "--json")
    _one_line_error(code, err, expect_code=1, text="W2_squared")
    result = json_line(stdout)
    assert result["status"] == "failed" and result["summary"]["W2_squared"] is None
    with ResultFile(out) as rf:
        assert rf.status == "failed"
        assert len(rf.history()["iteration"]) == 50  # the steps so far are kept
        assert rf.summary()["iterations"] == 50


def test_error_while_writing_the_summary_never_leaves_running(cli, tmp_path, monkeypatch):
    from ot_pde.transport.benamou_brenier.problem import BenamouBrenierProblem

    def broken(self, solver):
        raise np.linalg.LinAlgError("injected")

    monkeypatch.setattr(BenamouBrenierProblem, "summary", broken)
    out = tmp_path / "x.h5"
    code, stdout, err = cli("run", BB1, *SMALL, "--set", "solver.max_iterations=30", "-o", out,
                            "--json")
    _one_line_error(code, err, expect_code=1, text="numerical failure: LinAlgError: injected")
    assert json_line(stdout)["status"] == "failed"
    assert _status(out) == "failed"
    with ResultFile(out) as rf:
        assert rf.checkpoint()[1] == 30 and len(rf.history()["iteration"]) == 30


def test_a_bug_in_a_step_is_one_line_and_marks_the_file(cli, tmp_path, monkeypatch):
    from ot_pde.spacetime.solver import BenamouBrenierSolver

    original = BenamouBrenierSolver.step

    def buggy(self):
        if self.iteration == 12:
            raise KeyError("injected bug")
        return original(self)

    monkeypatch.setattr(BenamouBrenierSolver, "step", buggy)
    out = tmp_path / "x.h5"
    code, stdout, err = cli("run", BB1, *SMALL, "-o", out, "--json")
    assert code == 1 and "internal error" in err and "Traceback" not in err
    assert json_line(stdout)["status"] == "failed" and _status(out) == "failed"


# -- checksummed checkpoints, tampered restarts ----------------------------------------------
@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A file stopped after 40 iterations (checkpoint at 40), marked interrupted."""
    from ot_pde.cli import main

    out = tmp_path_factory.mktemp("restart") / "base.h5"
    assert main(["run", str(BB1), *SMALL, "--set", "solver.max_iterations=40",
                 "-o", str(out), "-q", "--keep-checkpoint"]) == 0
    with h5py.File(out, "r+") as f:
        f.attrs["status"] = "interrupted"
    return out


def _copy(interrupted, tmp_path):
    dst = tmp_path / "copy.h5"
    shutil.copy(interrupted, dst)
    return dst


def _restart(cli, path):
    return cli("run", BB1, *SMALL, "--set", "solver.max_iterations=60", "-o", path,
               "--restart", "--json")


def test_clean_restart_continues(cli, interrupted, tmp_path):
    path = _copy(interrupted, tmp_path)
    code, stdout, err = _restart(cli, path)
    assert code == 0, err
    assert json_line(stdout)["summary"]["iterations"] == 60


def test_one_flipped_bit_in_a_checkpoint_is_refused(cli, interrupted, tmp_path):
    path = _copy(interrupted, tmp_path)
    with h5py.File(path, "r") as f:
        ds = f["checkpoint"]["z"] if "z" in f["checkpoint"] else max(
            (d for d in f["checkpoint"].values() if d.size > 1), key=lambda d: d.size)
        name, offset = ds.name.rsplit("/", 1)[1], ds.id.get_offset()
        assert offset is not None and ds.dtype == np.float64
    with open(path, "r+b") as fh:  # the lowest mantissa bit of the first value
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 1]))
    code, stdout, err = _restart(cli, path)
    _one_line_error(code, err, text=f"checkpoint/{name}: checksum mismatch")
    assert json_line(stdout)["status"] == "failed"
    assert _status(path) == "interrupted"  # not flipped to running


def _rewrite_checkpoint(path, edit):
    """Rewrite the checkpoint through the writer (valid checksums) after ``edit(state)``:
    tampering that a checksum cannot see must be caught by the structural checks."""
    with ResultFile(path) as rf:
        state, iteration = rf.checkpoint()
    iteration = edit(state) or iteration
    w = ResultWriter.__new__(ResultWriter)
    w.path, w._file = path, None
    w.write_checkpoint(state, iteration)


def _drop(name):
    def edit(state):
        del state[name]
    return edit


def _reshape(state):
    state["z_u0"] = state["z_u0"].ravel()[:-1]


@pytest.mark.parametrize("edit, text", [
    (_drop("z_u0"), "checkpoint/z_u0: the dataset is missing"),  # one the solver always has
    (_drop("x_prev0"), "checkpoint/x_prev1: the checkpoint's entries do not match"),
    (_reshape, "checkpoint/z_u0: expected float64 of shape (17, 32)"),
    (lambda state: -5, "negative"),
    (lambda state: 10_000, "fewer than the checkpoint's iteration"),
    (lambda state: 20, "iteration attribute says 20"),
], ids=["array_missing", "array_of_a_set_missing", "wrong_shape", "iteration_negative",
        "beyond_history",
        "iteration_disagrees"])
def test_tampered_restart_is_exit_2_and_keeps_the_status(cli, interrupted, tmp_path, edit,
                                                         text):
    path = _copy(interrupted, tmp_path)
    _rewrite_checkpoint(path, edit)
    code, stdout, err = _restart(cli, path)
    _one_line_error(code, err, text=text)
    assert _status(path) == "interrupted"


@pytest.mark.parametrize("damage, text", [
    ("history", "fewer than the checkpoint's iteration"),
    ("group_checksum", "checkpoint@checksum"),
    ("dataset_checksum", "@checksum"),
    ("scalar", "@scalar"),
    ("iteration", "checkpoint@iteration"),
], ids=["short_history", "no_group_checksum", "no_dataset_checksum", "no_scalar_attr",
        "no_iteration_attr"])
def test_missing_attributes_or_rows_are_exit_2(cli, interrupted, tmp_path, damage, text):
    path = _copy(interrupted, tmp_path)
    with h5py.File(path, "r+") as f:
        group = f["checkpoint"]
        first = next(iter(group.values()))
        if damage == "history":
            for ds in f["history"].values():
                ds.resize((10,))
        elif damage == "group_checksum":
            del group.attrs["checksum"]
        elif damage == "dataset_checksum":
            del first.attrs["checksum"]
        elif damage == "scalar":
            del first.attrs["scalar"]
        else:
            del group.attrs["iteration"]
    code, _, err = _restart(cli, path)
    _one_line_error(code, err, text=text)
    assert _status(path) == "interrupted"


# -- output paths and reruns -----------------------------------------------------------------
def test_rerun_onto_an_interrupted_file_needs_restart_or_overwrite(cli, interrupted, tmp_path):
    path = _copy(interrupted, tmp_path)
    code, _, err = cli("run", BB1, *SMALL, "--set", "solver.max_iterations=30", "-o", path)
    _one_line_error(code, err, text="use --restart to continue it or --overwrite")
    assert _status(path) == "interrupted"
    code, _, err = cli("run", BB1, *SMALL, "--set", "solver.max_iterations=30", "-o", path,
                       "--overwrite")
    assert code == 0, err
    with ResultFile(path) as rf:
        assert rf.status == "completed" and rf.summary()["iterations"] == 30


def test_output_paths_refused(cli, tmp_path):
    case = tmp_path / "c.toml"
    shutil.copy(BB1, case)
    text = case.read_text()
    for output, expect in ((case, "the case file itself"), (os.devnull, "not a regular file"),
                           (tmp_path, "a directory")):
        code, stdout, err = cli("run", case, *SMALL, "-o", output, "--json")
        _one_line_error(code, err, text=expect)
        assert json_line(stdout)["status"] == "failed"
    assert case.read_text() == text
    (tmp_path / "notes.txt").write_text("precious")
    code, _, err = cli("run", case, *SMALL, "-o", tmp_path / "notes.txt")
    _one_line_error(code, err, text="not an ot_pde result file")
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_vary_errors_name_vary(cli):
    code, _, err = cli("converge", BB1, "--vary", "grid.n=a,b")
    _one_line_error(code, err, text="--vary: grid.n")


def test_exit_2_under_json_prints_one_object(cli):
    code, stdout, err = cli("run", BB1, "--set", "grid.n=-1", "--json")
    _one_line_error(code, err, text="--set: grid.n")
    result = json_line(stdout)
    assert result["status"] == "failed" and "grid.n" in result["error"]
    assert result["exit_code"] == 2


def test_broken_pipe_is_quiet():
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m ot_pde cases "
                           "| true"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


# -- one writer per file; signals under --json -----------------------------------------------
def _writer_pid(path):
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs["writer_pid"]) if "checkpoint" in f else None
    except Exception:
        return None


def _start(path, *extra):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ot_pde", "run", str(BB1), *SMALL, "--set",
         "solver.max_iterations=10000000", "--set", "solver.tol=1e-300", "-o", str(path), "--json",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _writer_pid(path) != proc.pid and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert _writer_pid(path) == proc.pid, proc.communicate(timeout=10)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_second_writer_refused_signals_print_json_and_sigkill_leaves_no_lock(cli, tmp_path,
                                                                             sig):
    out = tmp_path / "x.h5"
    proc = _start(out)
    for extra in ((), ("--restart",)):
        code, stdout, err = cli("run", BB1, *SMALL, "-o", out, "--json", *extra)
        _one_line_error(code, err, text=f"another ot-pde run (process {proc.pid})")
        assert json_line(stdout)["status"] == "failed"
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    result = json_line(stdout)
    assert result["status"] == "interrupted" and result["output"] == str(out)
    assert _status(out) == "interrupted"
    if sig != signal.SIGTERM:
        return
    # a SIGKILLed writer leaves no lock behind: --restart takes the file over
    proc = _start(out, "--restart")
    proc.kill()
    proc.communicate(timeout=60)
    assert _status(out) == "running"
    code, stdout, err = cli("run", BB1, *SMALL, "--set", "solver.max_iterations=10000000",
                            "--set", "solver.tol=1e-300", "--set", "run.max_wall_seconds=0.5",
                            "-o", out, "--restart", "--json")
    assert code == 0, err
    assert json_line(stdout)["status"] == "interrupted" and _status(out) == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("case, overrides, key", [
    ("ising_L4_critical", ["lattice.J=1e308", "training.iterations=40"], "lnZ"),
    ("maflow_moons_density", ["training.lr=1e6", "training.iterations=30"], ""),
], ids=["ising_J_1e308", "maflow_lr_1e6"])
def test_reported_non_finite_runs_exit_1(tmp_path, case, overrides, key):
    """The two runs of the issue that reported `completed` with ±inf / NaN summaries (in a
    subprocess: the suite's warnings-as-errors filter would stop them earlier)."""
    from .conftest import run_subprocess

    sets = [a for o in overrides for a in ("--set", o)]
    out = tmp_path / "x.h5"
    proc = run_subprocess("run", CASES / f"{case}.toml", *sets, "--backend", "numpy",
                          "-o", out, "--json")
    code, stdout, err = proc.returncode, proc.stdout, proc.stderr
    _one_line_error(code, err, expect_code=1, text="non-finite")
    result = json_line(stdout)
    assert result["status"] == "failed" and key in result["error"]
    assert _status(out) == "failed"


def test_case_and_checkpoint_paths_that_are_not_files(cli, tmp_path):
    """A FIFO would block the reader forever and /dev/zero never end: refused by stat."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", tmp_path):
        code, _, err = cli("check", path)
        _one_line_error(code, err, text="cannot read case file")
        code, _, err = cli("check", CASES / "compare_realnvp_moons.toml",
                           "--set", f"model.path={path}")
        _one_line_error(code, err, text="expected an .npz or .safetensors checkpoint")


def test_study_outputs_must_be_files(cli, tmp_path):
    code, _, err = cli("sweep", BB1, "--vary", "run.seed=1,2", "-o", os.devnull)
    _one_line_error(code, err, text="not a regular file")
    code, _, err = cli("converge", BB1, "--vary", "grid.n=16,32", "--plot", tmp_path)
    _one_line_error(code, err, text="a directory")


MAFLOW = ["--backend", "numpy", "--set", "training.iterations=4", "--set", "output.every=2",
          "--set", "training.n_train=500", "--set", "training.n_test=500",
          "--set", "output.xdmf=false"]


@pytest.fixture(scope="module")
def maflow_interrupted(tmp_path_factory):
    """A training kind's file (parameters, Adam moments, an RNG state string)."""
    from ot_pde.cli import main

    out = tmp_path_factory.mktemp("maflow") / "base.h5"
    assert main(["run", str(CASES / "maflow_moons_density.toml"), *MAFLOW, "-o", str(out),
                 "-q", "--keep-checkpoint"]) == 0
    with h5py.File(out, "r+") as f:
        f.attrs["status"] = "interrupted"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("edit, text", [
    (lambda s: s.update(rng_state="{not json"), "checkpoint: the checkpoint does not fit"),
    (lambda s: s.update(rng_state=5), "checkpoint/rng_state: expected a str"),
    (lambda s: s.update(params=s["params"][:-1]), "checkpoint/params: expected float64"),
    (_drop("adam_v"), "checkpoint/adam_v: the dataset is missing"),
], ids=["rng_junk", "rng_int", "params_short", "adam_v_missing"])
def test_tampered_training_restart_is_exit_2(cli, maflow_interrupted, tmp_path, edit, text):
    path = _copy(maflow_interrupted, tmp_path)
    _rewrite_checkpoint(path, edit)
    code, _, err = cli("run", CASES / "maflow_moons_density.toml", *MAFLOW, "-o", path,
                       "--restart")
    _one_line_error(code, err, text=text)
    assert _status(path) == "interrupted"
