"""The CLI contract: commands, JSON output, exit codes, bad input, crash safety, restart."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ot_pde.io import ResultFile

from .conftest import CASES, json_line, run_subprocess

SMALL = ["--set", "grid.n=24", "--set", "solver.max_iterations=300", "--backend", "numpy"]

CASE_1D = """\
[case]
problem = "benamou_brenier"
[grid]
lower = [0.0]
upper = [1.0]
n = 16
[source]
type = "gaussian"
mean = [0.3]
std = 0.05
[target]
{target}
[solver]
max_iterations = 50
"""
GAUSS_TARGET = 'type = "gaussian"\nmean = [0.7]\nstd = 0.05'


def write_case(tmp_path, target=GAUSS_TARGET, extra=""):
    path = tmp_path / "case.toml"
    path.write_text(CASE_1D.format(target=target) + extra)
    return path


def test_run_json_is_one_object(cli, tmp_path):
    out = tmp_path / "r.h5"
    code, stdout, stderr = cli("run", CASES / "bb_translation_1d.toml", "-o", out, "--json", *SMALL)
    assert code == 0, stderr
    obj = json_line(stdout)
    assert set(obj) == {"problem", "case", "output", "backend", "summary", "status"}
    assert obj["problem"] == "benamou_brenier" and obj["status"] == "completed"
    assert obj["backend"] == "numpy" and obj["output"] == str(out)
    for key in ("W2_squared", "W2_squared_exact", "relative_error", "iterations", "converged",
                "wall_seconds"):
        assert key in obj["summary"]
    assert "INFO" in stderr  # logs go to stderr


def test_output_file_layout(cli, tmp_path):
    out = tmp_path / "r.h5"
    assert cli("run", CASES / "bb_gaussian_2d.toml", "-o", out, "--set", "grid.n=12",
               "--set", "time.nt=6", "--set", "solver.max_iterations=40", "--set",
               "output.every=10", "--keep-checkpoint")[0] == 0
    with ResultFile(out) as rf:
        assert rf.status == "completed"
        for attr in ("ot_pde_version", "problem", "case_toml", "backend", "created_utc", "seed"):
            assert attr in rf.attrs
        assert "n = 12" in rf.case_toml  # the resolved case, overrides applied
        assert rf.field("rho").shape == (7, 12, 12)
        assert rf.field_dims("rho") == ("t", "x", "y")
        assert rf.field("m_x").shape == (6, 12, 12)
        assert len(rf.history()["iteration"]) == 40
        state, iteration = rf.checkpoint()
        assert iteration == 40
    assert out.with_suffix(".xmf").exists()


def test_check_cases_info_plot(cli, tmp_path):
    code, out, _ = cli("check", CASES / "bb_mixture_2d.toml")
    assert code == 0 and "ok" in out
    code, out, _ = cli("cases")
    assert code == 0 and "bb_gaussian_2d " in out and "make demo" in out
    shipped = sorted(p.stem for p in CASES.glob("*.toml"))
    code, out, _ = cli("cases", "--json")
    listed = json_line(out)["cases"]
    assert code == 0 and [c["name"] for c in listed] == shipped
    assert all(c["description"] for c in listed)
    code, out, _ = cli("info", "--json")
    info = json_line(out)
    assert "numpy" in info["backends"]
    res = tmp_path / "r.h5"
    cli("run", CASES / "bb_translation_1d.toml", "-o", res, *SMALL)
    code, out, _ = cli("plot", res, "-o", tmp_path / "fig.png")
    assert code == 0 and (tmp_path / "fig.png").stat().st_size > 10_000


def _one_error_line(code, stderr, *needles):
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("extra,key", [
    ("[output]\neverything = 3\n", "output.everything"),     # unknown key
    ("", None),
])
def test_unknown_key(cli, tmp_path, extra, key):
    if key is None:
        path = tmp_path / "case.toml"
        path.write_text(CASE_1D.format(target=GAUSS_TARGET).replace("n = 16", "nn = 16"))
        code, _, err = cli("check", path)
        _one_error_line(code, err, str(path), "grid.nn", "did you mean 'n'")
        return
    path = write_case(tmp_path, extra=extra)
    code, _, err = cli("check", path)
    _one_error_line(code, err, str(path), key, "did you mean 'every'")


@pytest.mark.parametrize("old,new,key,expect", [
    ("n = 16", 'n = "abc"', "grid.n", "integer"),                 # wrong type
    ("n = 16", "n = 1", "grid.n", ">= 2"),                         # out of range
    ("std = 0.05\n[target]", "std = -0.08\n[target]", "source.std", "> 0"),
    ("max_iterations = 50", "max_iterations = 1.5", "solver.max_iterations", "integer"),
])
def test_bad_values(cli, tmp_path, old, new, key, expect):
    path = tmp_path / "case.toml"
    path.write_text(CASE_1D.format(target=GAUSS_TARGET).replace(old, new, 1))
    code, _, err = cli("run", path, "-o", tmp_path / "x.h5")
    _one_error_line(code, err, str(path), key, expect)


@pytest.mark.parametrize("values,expect", [
    (np.r_[np.ones(15), -1.0], "negative"),
    (np.r_[np.ones(15), np.nan], "non-finite"),
    (np.r_[np.ones(15), np.inf], "non-finite"),
])
def test_bad_density_file(cli, tmp_path, values, expect):
    np.save(tmp_path / "rho.npy", values)
    path = write_case(tmp_path, target='type = "file"\npath = "rho.npy"')
    code, _, err = cli("run", path, "-o", tmp_path / "x.h5")
    _one_error_line(code, err, str(path), "target.path", expect)


def test_density_file_shape_and_missing(cli, tmp_path):
    np.save(tmp_path / "rho.npy", np.ones(10))
    path = write_case(tmp_path, target='type = "file"\npath = "rho.npy"')
    _one_error_line(*cli("check", path)[::2], str(path), "target.path", "shape")
    path = write_case(tmp_path, target='type = "file"\npath = "missing.npy"')
    _one_error_line(*cli("check", path)[::2], str(path), "target.path", "not found")


def test_density_file_runs(cli, tmp_path):
    x = (np.arange(16) + 0.5) / 16
    np.save(tmp_path / "rho.npy", np.exp(-((x - 0.7) / 0.05) ** 2 / 2))
    path = write_case(tmp_path, target='type = "file"\npath = "rho.npy"')
    code, out, err = cli("run", path, "-o", tmp_path / "x.h5", "--json")
    assert code == 0, err
    assert json_line(out)["summary"]["W2_squared"] > 0


def test_unwritable_output(cli, tmp_path):
    path = write_case(tmp_path)
    (tmp_path / "plain").write_text("a file where a folder should be")
    target = tmp_path / "plain" / "x.h5"
    code, _, err = cli("run", path, "-o", target)
    _one_error_line(code, err, str(target), "output.path")


def test_missing_case_and_bad_override(cli, tmp_path):
    _one_error_line(*cli("check", tmp_path / "nope.toml")[::2], "nope.toml", "not found")
    path = write_case(tmp_path)
    _one_error_line(*cli("check", path, "--set", "grid.n=zero")[::2], "--set", "grid.n")
    _one_error_line(*cli("check", path, "--set", "gird.n=3")[::2], "--set", "gird",
                    "did you mean 'grid'")


def test_unusable_backend_is_an_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OT_PDE_DISABLE_CUPY", "1")
    path = write_case(tmp_path)
    _one_error_line(*cli("run", path, "-o", tmp_path / "x.h5", "--backend", "cupy")[::2],
                    "--backend", "cupy")


def test_numerical_failure_marks_file_failed(cli, tmp_path, monkeypatch):
    """A NaN mid-run: exit 1, status failed, every history row before it kept."""
    from ot_pde.errors import NumericalError
    from ot_pde.spacetime.solver import BenamouBrenierSolver

    original = BenamouBrenierSolver.step

    def failing_step(self):
        if self.iteration == 30:
            raise NumericalError("injected NaN at iteration 31")
        return original(self)

    monkeypatch.setattr(BenamouBrenierSolver, "step", failing_step)
    path = write_case(tmp_path, extra="[output]\nevery = 10\n")
    code, _, err = cli("run", path, "-o", tmp_path / "x.h5")
    assert code == 1 and "injected NaN" in err
    with ResultFile(tmp_path / "x.h5") as rf:
        assert rf.status == "failed"
        np.testing.assert_array_equal(rf.history()["iteration"], np.arange(1, 31))
    # --json still prints exactly one object, with the failed status (the CLI contract)
    code, out, err = cli("run", path, "-o", tmp_path / "y.h5", "--json")
    assert code == 1 and "injected NaN" in err
    result = json_line(out)
    assert result["status"] == "failed" and result["summary"] == {}
    assert result["output"] == str(tmp_path / "y.h5") and result["problem"] == "benamou_brenier"


KILL_ARGS = ["--backend", "numpy", "--set", "grid.n=32", "--set", "solver.max_iterations=4000",
             "--set", "solver.tol=1e-12", "--set", "output.every=250"]


def _checkpoint_iteration(path):
    try:
        with ResultFile(path) as rf:
            cp = rf.checkpoint()
            return 0 if cp is None else cp[1]
    except Exception:  # the writer may be mid-flush; try again
        return 0


def test_sigkill_then_restart_is_bit_for_bit(tmp_path, cli):
    case = CASES / "bb_translation_1d.toml"
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-m", "ot_pde", "run", str(case), "-o", str(out),
                             *KILL_ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _checkpoint_iteration(out) < 1000 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with ResultFile(out) as rf:
        assert rf.status == "running"
        state, iteration = rf.checkpoint()
        assert 1000 <= iteration < 4000
        hist = rf.history()["iteration"]
        np.testing.assert_array_equal(hist[:iteration], np.arange(1, iteration + 1))

    code, stdout, err = cli("run", case, "-o", out, "--restart", "--json", *KILL_ARGS)
    assert code == 0, err
    restarted = json_line(stdout)
    code, stdout, _ = cli("run", case, "-o", tmp_path / "straight.h5", "--json", *KILL_ARGS)
    straight = json_line(stdout)
    assert restarted["summary"]["W2_squared"] == straight["summary"]["W2_squared"]
    with ResultFile(out) as a, ResultFile(tmp_path / "straight.h5") as b:
        assert a.status == "completed"
        np.testing.assert_array_equal(a.field("rho"), b.field("rho"))
        ha, hb = a.history(), b.history()
        np.testing.assert_array_equal(ha["iteration"], hb["iteration"])
        np.testing.assert_array_equal(ha["primal_residual"], hb["primal_residual"])


def test_restart_rejects_a_different_case(cli, tmp_path):
    path = write_case(tmp_path, extra="[output]\nevery = 10\n")
    out = tmp_path / "x.h5"
    proc = subprocess.Popen([sys.executable, "-m", "ot_pde", "run", str(path), "-o", str(out),
                             "--set", "solver.max_iterations=100000", "--backend", "numpy"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while _checkpoint_iteration(out) < 10 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, _, err = cli("run", path, "-o", out, "--restart", "--set", "grid.n=20",
                       "--backend", "numpy")
    _one_error_line(code, err, str(out), "grid.n")


def test_sigint_exits_130_and_marks_interrupted(tmp_path):
    out = tmp_path / "x.h5"
    proc = subprocess.Popen([sys.executable, "-m", "ot_pde", "run",
                             str(CASES / "bb_translation_1d.toml"), "-o", str(out),
                             "--backend", "numpy", "--set", "solver.tol=1e-14",
                             "--set", "output.every=100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while _checkpoint_iteration(out) < 100 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    with ResultFile(out) as rf:
        assert rf.status == "interrupted"
        _, iteration = rf.checkpoint()
        assert len(rf.history()["iteration"]) == iteration


def test_second_signal_skips_a_slow_summary_and_still_marks_the_file(tmp_path):
    """An Ising run's summary samples afresh (here 2^21 flow samples, many seconds): a second
    SIGINT while it runs skips it, and the file is still marked interrupted with its
    checkpoint, ready for --restart."""
    out = tmp_path / "x.h5"
    proc = subprocess.Popen([sys.executable, "-m", "ot_pde", "run",
                             str(CASES / "ising_L4_critical.toml"), "-o", str(out),
                             "--backend", "numpy", "--set", "output.every=5",
                             "--set", "estimate.n_samples=2097152"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while _checkpoint_iteration(out) < 5 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    err = []
    for line in proc.stderr:  # wait until the summary has started
        err.append(line)
        if "signal again to skip" in line:
            proc.send_signal(signal.SIGINT)
            break
    err.extend(proc.stderr)
    proc.wait(timeout=60)
    err = "".join(err)
    assert proc.returncode == 130, err
    assert "summary skipped" in err
    with ResultFile(out) as rf:
        assert rf.status == "interrupted"
        assert rf.checkpoint()[1] >= 5
        assert not rf.summary()


def test_python_dash_m_entry_point():
    res = run_subprocess("--version", timeout=60)
    assert res.returncode == 0 and "ot_pde" in res.stdout
