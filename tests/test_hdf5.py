"""The HDF5 result file (layout contract, round trips, crash safety, netCDF/xarray views,
compaction); its XDMF sidecar is tested in test_xdmf.py."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from ot_pde import __version__
from ot_pde.errors import InputError
from ot_pde.io import FORMAT_VERSION, ResultFile, ResultWriter, open_result
from ot_pde.io.finalize import compact

ROOT = Path(__file__).resolve().parents[1]


def make_writer(path: Path, **kwargs) -> ResultWriter:
    args = dict(problem="benamou_brenier", case_toml='[case]\nproblem = "benamou_brenier"\n',
                backend="numpy", seed=7)
    args.update(kwargs)
    return ResultWriter(path, **args)


# --- layout -----------------------------------------------------------------------------


def test_root_attrs_and_layout(tmp_path):
    path = tmp_path / "run.h5"
    w = make_writer(path)
    assert w.path == path
    w.write_grid("x", np.linspace(0, 1, 5), units="m", description="cell centres")
    w.write_field("rho", np.ones(5), dims=["x"], units="1/m", description="density")
    w.write_particles("positions", np.zeros((10, 2)), units="m", description="samples")
    w.append_history({"iteration": [0], "residual": [1.0]})
    w.write_checkpoint({"u": np.zeros(5)}, iteration=0)
    w.write_summary({"iterations": 1})
    with h5py.File(path, "r") as f:
        assert set(f) >= {"grid", "fields", "particles", "history", "checkpoint", "summary"}
        attrs = dict(f.attrs)
        assert attrs["ot_pde_version"] == __version__
        assert attrs["problem"] == "benamou_brenier"
        assert attrs["case_toml"].startswith("[case]")
        assert attrs["backend"] == "numpy"
        assert attrs["status"] == "running"
        assert attrs["seed"] == 7
        assert datetime.fromisoformat(attrs["created_utc"]).utcoffset().total_seconds() == 0
        assert dict(f["particles/positions"].attrs) == {"units": "m", "description": "samples"}
    with ResultFile(path) as r:
        assert (r.problem, r.status, r.backend) == ("benamou_brenier", "running", "numpy")
        assert r.case_toml.startswith("[case]")
        assert r.attrs["seed"] == 7 and type(r.attrs["seed"]) is int
        np.testing.assert_array_equal(r.particles("positions"), np.zeros((10, 2)))


def test_dimension_scales_attached(tmp_path):
    path = tmp_path / "run.h5"
    w = make_writer(path)
    t, x, y = np.linspace(0, 1, 3), np.linspace(0, 1, 4), np.linspace(0, 2, 5)
    with w.batch():
        w.write_grid("t", t, units="s", kind="time")
        w.write_grid("x", x, units="m", description="x centres")
        w.write_grid("y", y)
        w.write_field("rho", np.random.rand(3, 4, 5), dims=("t", "x", "y"), units="kg")
        w.write_field("x", np.arange(4.0), dims=("x",))
    with h5py.File(path, "r") as f:
        # the scales are the /grid datasets (also linked into /fields for netCDF readers,
        # so their .name may say either path)
        assert f["fields/x"].dims[0][0] == f["grid/x"]
        assert [f["fields/rho"].dims[i][0] for i in range(3)] == [f["grid/t"], f["grid/x"],
                                                                  f["grid/y"]]
        assert f["fields/t"] == f["grid/t"] and f["fields/x"] != f["grid/x"]
        assert f["grid/x"].is_scale
        assert dict(f["grid/x"].attrs)["kind"] == "space"
        assert f["grid/t"].attrs["kind"] == "time"
    with ResultFile(path) as r:
        assert r.field_dims("rho") == ("t", "x", "y")
        assert r.field_attrs("rho") == {"units": "kg", "description": ""}
        assert r.grid_attrs("x") == {"units": "m", "description": "x centres", "kind": "space"}
        assert sorted(r.field_names()) == ["rho", "x"]
        np.testing.assert_array_equal(r.grid()["y"], y)


def test_field_overwrite_and_bad_dims(tmp_path):
    path = tmp_path / "run.h5"
    w = make_writer(path)
    w.write_grid("x", np.arange(4.0))
    w.write_grid("y", np.arange(3.0))
    w.write_field("phi", np.zeros((4, 3)), dims=("x", "y"))
    w.write_field("phi", np.ones((4, 3)), dims=("x", "y"))
    w.write_field("phi", np.ones(3, dtype=np.float32), dims=("y",))
    with h5py.File(path, "r") as f:
        assert f["fields/phi"].dtype == np.float32
        assert f["fields/phi"].dims[0][0] == f["grid/y"]
        # The replaced dataset is no longer listed as a user of /grid/x.
        assert "REFERENCE_LIST" not in f["grid/x"].attrs
    with pytest.raises(ValueError, match="dims"):
        w.write_field("bad", np.zeros((4, 3)), dims=("x",))
    with pytest.raises(ValueError, match="no grid axis 'z'"):
        w.write_field("bad", np.zeros(4), dims=("z",))
    with pytest.raises(ValueError, match="length"):
        w.write_field("bad", np.zeros((3, 3)), dims=("x", "y"))
    with pytest.raises(ValueError, match="fields use it"):
        w.write_grid("y", np.arange(5.0))
    with pytest.raises(ValueError, match="kind"):
        w.write_grid("s", np.arange(5.0), kind="spatial")


def test_batch_reuses_one_handle_and_closes(tmp_path):
    w = make_writer(tmp_path / "run.h5")
    with pytest.raises(RuntimeError):
        with w.batch() as outer:
            with w.batch() as inner:
                assert inner is outer
                w.append_history({"iteration": [1]})
            raise RuntimeError("solver failed mid-step")
    assert not outer  # closed although the block raised ...
    with ResultFile(w.path) as r:  # ... and what was written before is there
        np.testing.assert_array_equal(r.history()["iteration"], [1])


# --- history, checkpoint, summary, status ---------------------------------------------


def test_history_append_and_truncate(tmp_path):
    w = make_writer(tmp_path / "run.h5")
    w.append_history({"iteration": [0, 1], "residual": [1.0, 0.5]})
    w.append_history({"iteration": 2, "residual": 0.25})
    w.append_history({"iteration": np.array([3, 4]), "residual": np.array([0.1, 0.05])})
    with h5py.File(w.path, "r") as f:
        assert f["history/iteration"].maxshape == (None,)
        assert f["history/iteration"].chunks is not None
    with ResultFile(w.path) as r:
        h = r.history()
    np.testing.assert_array_equal(h["iteration"], np.arange(5))
    assert h["iteration"].dtype.kind == "i"
    np.testing.assert_array_equal(h["residual"], [1.0, 0.5, 0.25, 0.1, 0.05])
    w.truncate_history(3)
    w.append_history({"iteration": [3], "residual": [0.125]})
    with ResultFile(w.path) as r:
        np.testing.assert_array_equal(r.history()["residual"], [1.0, 0.5, 0.25, 0.125])
    with pytest.raises(ValueError, match="iteration"):
        w.append_history({"residual": [1.0]})
    with pytest.raises(ValueError, match="equal length"):
        w.append_history({"iteration": [5, 6], "residual": [1.0]})
    with pytest.raises(ValueError, match="differ"):
        w.append_history({"iteration": [5], "energy": [1.0]})
    with pytest.raises(ValueError, match="truncate"):
        w.truncate_history(10)


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(1)
    special = np.array([np.nan, -0.0, 5e-324, np.inf, -np.inf, 1 / 3])
    state = {
        "u": rng.standard_normal((6, 7, 8)),
        "special": special,
        "phase": rng.standard_normal(5) + 1j * rng.standard_normal(5),
        "labels": rng.integers(0, 100, size=9, dtype=np.int32),
        "t": 0.1 + 0.2,
        "dt": np.float64(1e-3) / 3,
        "step": 41,
        "converged": False,
        "rng_state": '{"bit_generator": "PCG64"}',
        "zero_d": np.array(2.5),
    }
    w = make_writer(tmp_path / "run.h5")
    w.write_checkpoint(state, iteration=41)
    with ResultFile(w.path) as r:
        got, iteration = r.checkpoint()
    assert iteration == 41 and type(iteration) is int
    assert set(got) == set(state)
    for key in ("u", "special", "phase", "labels"):
        assert got[key].dtype == state[key].dtype and got[key].shape == state[key].shape
        assert got[key].tobytes() == state[key].tobytes(), key
    python_types = {"t": float, "dt": float, "step": int, "converged": bool, "rng_state": str}
    for key, kind in python_types.items():
        assert type(got[key]) is kind and got[key] == state[key], key
    assert isinstance(got["zero_d"], np.ndarray) and got["zero_d"].shape == ()


def test_checkpoint_replacement(tmp_path):
    w = make_writer(tmp_path / "run.h5")
    with ResultFile(w.path) as r:
        assert r.checkpoint() is None
    rng = np.random.default_rng(2)
    big = rng.random(50_000)  # 400 kB
    w.write_checkpoint({"u": big, "extra": 1.0}, iteration=1)
    w.write_checkpoint({"u": big + 1, "k": 2}, iteration=2)
    sizes = []
    for i in range(3, 13):
        w.write_checkpoint({"u": big + i, "k": i}, iteration=i)
        sizes.append(w.path.stat().st_size)
    with ResultFile(w.path) as r:
        state, iteration = r.checkpoint()
    assert iteration == 12 and set(state) == {"u", "k"} and state["k"] == 12
    assert state["u"].tobytes() == (big + 12).tobytes()
    # Two state buffers alternate in place: the file does not grow with each checkpoint.
    assert sizes[-1] == sizes[0] < 3 * big.nbytes
    with h5py.File(w.path, "r") as f:
        assert set(f) == {"checkpoint", "checkpoint_tmp"}


def test_repeated_output_steps_do_not_grow_file(tmp_path):
    # Each step reopens the file; HDF5 does not reclaim space freed in earlier sessions,
    # so rewrites must happen in place (strings included) for the size to stay flat.
    w = make_writer(tmp_path / "run.h5")
    w.write_grid("x", np.linspace(0, 1, 32), units="m", description="centres")
    w.write_grid("t", np.linspace(0, 1, 8), kind="time")
    rng = np.random.default_rng(3)
    sizes = []
    for i in range(12):
        with w.batch():
            w.append_history({"iteration": [i], "residual": [0.1 * i]})
            w.write_field("rho", rng.random((8, 32)), dims=("t", "x"), units="1/m",
                          description="density")
            w.write_particles("positions", rng.random((10, 2)), units="m")
            w.write_checkpoint({"rho": rng.random((8, 32)), "step": i, "rng": f"state {i}"}, i)
            w.write_summary({"residual": 0.1 * i, "iterations": i, "converged": False})
            w.set_status("running", message=f"step {i}")
            w.set_attrs(last_output=f"step {i}")
        sizes.append(w.path.stat().st_size)
    assert len(set(sizes[2:])) == 1, sizes


def test_summary_round_trip_types(tmp_path):
    w = make_writer(tmp_path / "run.h5")
    w.write_summary({"W2_squared": 0.25, "iterations": 300, "converged": True,
                     "ratio": np.float64(0.5), "n": np.int32(4)})
    w.write_summary({"W2_squared": 0.125, "iterations": 301, "converged": False,
                     "nan_value": math.nan})
    with ResultFile(w.path) as r:
        summary = r.summary()
    assert set(summary) == {"W2_squared", "iterations", "converged", "nan_value"}
    assert summary["W2_squared"] == 0.125 and type(summary["W2_squared"]) is float
    assert summary["iterations"] == 301 and type(summary["iterations"]) is int
    assert summary["converged"] is False
    assert math.isnan(summary["nan_value"])
    with pytest.raises(ValueError, match="summary value 'bad'"):
        w.write_summary({"bad": np.zeros(3)})


def test_status_values(tmp_path):
    w = make_writer(tmp_path / "run.h5")
    for status in ("completed", "failed", "interrupted", "running"):
        w.set_status(status)
        with ResultFile(w.path) as r:
            assert r.status == status
    w.set_status("failed", message="NaN in rho at iteration 12")
    with ResultFile(w.path) as r:
        assert r.attrs["status_message"] == "NaN in rho at iteration 12"
    w.set_status("completed")
    with ResultFile(w.path) as r:
        assert "status_message" not in r.attrs
    with pytest.raises(ValueError, match="status must be"):
        w.set_status("done")
    with pytest.raises(ValueError, match="set_status"):
        w.set_attrs(status="completed")
    w.set_attrs(git_commit="abc123", n_ranks=1)
    with ResultFile(w.path) as r:
        assert r.attrs["git_commit"] == "abc123" and r.attrs["n_ranks"] == 1


# --- errors and restart -----------------------------------------------------------------


def test_missing_output_folders_are_created(tmp_path):
    path = tmp_path / "no" / "such" / "run.h5"
    make_writer(path)
    assert ResultFile(path).status == "running"


@pytest.mark.parametrize("where", ["parent_is_file", "read_only_dir"])
def test_unwritable_output_path(tmp_path, where):
    if where == "parent_is_file":
        (tmp_path / "plain").write_text("a file, not a directory")
        path = tmp_path / "plain" / "run.h5"
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores directory permissions")
        (tmp_path / "ro").mkdir(mode=0o500)
        path = tmp_path / "ro" / "run.h5"
    with pytest.raises(InputError) as info:
        make_writer(path)
    assert info.value.key == "output.path"
    assert info.value.source == str(path)
    assert "cannot write output file" in info.value.message


def test_result_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such result file") as info:
        ResultFile(tmp_path / "missing.h5")
    assert info.value.source == str(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        ResultFile(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(InputError, match="not an ot_pde result file"):
        ResultFile(foreign)
    w = make_writer(tmp_path / "run.h5")
    with ResultFile(w.path) as r, pytest.raises(InputError) as info:
        r.field("rho")
    assert info.value.key == "fields/rho"


def test_restart_keeps_contents(tmp_path):
    w = make_writer(tmp_path / "run.h5")
    w.append_history({"iteration": [0, 1, 2]})
    w.write_checkpoint({"u": np.arange(3.0)}, iteration=1)
    w.set_status("interrupted", message="SIGINT")
    again = make_writer(w.path, restart=True, case_toml="changed")
    with ResultFile(again.path) as r:
        assert r.status == "running" and "status_message" not in r.attrs
        assert r.case_toml.startswith("[case]")
        assert r.checkpoint()[1] == 1
        n_rows = int(np.searchsorted(r.history()["iteration"], 1, side="right"))
    again.truncate_history(n_rows)
    again.append_history({"iteration": [2, 3]})
    with ResultFile(again.path) as r:
        np.testing.assert_array_equal(r.history()["iteration"], [0, 1, 2, 3])


def test_restart_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        make_writer(tmp_path / "missing.h5", restart=True)
    assert info.value.key == "--restart"
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w"):
        pass
    with pytest.raises(InputError, match="not an ot_pde result file") as info:
        make_writer(foreign, restart=True)
    assert info.value.key == "--restart"
    make_writer(tmp_path / "run.h5")
    with pytest.raises(InputError, match="'benamou_brenier' run"):
        make_writer(tmp_path / "run.h5", restart=True, problem="ising_variational")


# --- crash safety -----------------------------------------------------------------------

CHILD_PRELUDE = """
import os, signal, sys, time
import numpy as np
from ot_pde.io import ResultWriter

def state(i):
    return {"u": np.random.default_rng(i).standard_normal((16, 16)), "step": i}

w = ResultWriter(sys.argv[1], problem="benamou_brenier", case_toml="", backend="numpy", seed=0)
w.write_grid("x", np.linspace(0.0, 1.0, 16))
for i in range(3):
    with w.batch():
        w.append_history({"iteration": [i], "residual": [0.5 ** i]})
        w.write_checkpoint(state(i), iteration=i)
"""


def child_env() -> dict[str, str]:
    """Environment for writer subprocesses: this checkout's ot_pde first on the path."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def run_child(body: str, path: Path, until: str) -> subprocess.Popen:
    """Start a writer process and wait until it prints ``until``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD_PRELUDE) + textwrap.dedent(body), str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        line = proc.stdout.readline().strip()
    finally:
        watchdog.cancel()
    if line != until:
        proc.kill()
        pytest.fail(f"writer printed {line!r}, not {until!r}; stderr:\n{proc.communicate()[1]}")
    return proc


def check_flushed(path: Path, n_rows: int) -> None:
    """The first ``n_rows`` history rows and a self-consistent checkpoint are readable."""
    with ResultFile(path) as r:
        assert r.status == "running"
        history = r.history()
        state, iteration = r.checkpoint()
    assert len(history["iteration"]) >= n_rows
    np.testing.assert_array_equal(history["iteration"][:n_rows], np.arange(n_rows))
    np.testing.assert_array_equal(history["residual"][:n_rows], 0.5 ** np.arange(n_rows))
    assert iteration >= n_rows - 1 and state["step"] == iteration
    expected = np.random.default_rng(iteration).standard_normal((16, 16))
    assert state["u"].tobytes() == expected.tobytes()


def test_sigkill_during_output_loop(tmp_path):
    path = tmp_path / "killed.h5"
    proc = run_child("""
        print("flushed", flush=True)
        i = 3
        while True:
            with w.batch():
                w.append_history({"iteration": [i], "residual": [0.5 ** i]})
                w.write_checkpoint(state(i), iteration=i)
            i += 1
        """, path, until="flushed")
    # Let it append for a while, so the kill lands at an arbitrary point of the loop.
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    check_flushed(path, 3)


def test_sigkill_right_after_flush(tmp_path):
    path = tmp_path / "killed.h5"
    code = textwrap.dedent(CHILD_PRELUDE) + "os.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, env=child_env(), timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    check_flushed(path, 3)
    with ResultFile(path) as r:
        state, iteration = r.checkpoint()
        assert iteration == 2 and len(r.history()["iteration"]) == 3


def test_sigkill_while_file_is_open(tmp_path):
    # Killed in the middle of a session: the default (earliest) file format has no
    # "open for write" superblock flag, so the file opens without h5clear.
    path = tmp_path / "killed.h5"
    proc = run_child("""
        with w.batch():
            w.append_history({"iteration": [3], "residual": [0.125]})
            w.write_field("rho", np.ones(16), dims=("x",))
            print("inside", flush=True)
            time.sleep(60)
        """, path, until="inside")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    with open(path, "rb") as f:
        assert f.read(9)[8] < 3  # superblock version; consistency flags exist from 3 on
    with h5py.File(path, "r"):  # default locking, as any HDF5 tool would open it
        pass
    check_flushed(path, 3)


def test_reader_in_another_process_does_not_block_writer(tmp_path):
    w = make_writer(tmp_path / "run.h5")
    w.append_history({"iteration": [0]})
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r'); print('open', flush=True); "
         "time.sleep(60)", str(w.path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "open"
        w.append_history({"iteration": [1]})
    finally:
        reader.kill()
        reader.communicate()
    with ResultFile(w.path) as r:
        np.testing.assert_array_equal(r.history()["iteration"], [0, 1])




# --- netCDF-4 / xarray views, format version, compaction ---------------------------------


def _small_run(path: Path) -> None:
    w = make_writer(path)
    with w.batch():
        w.write_grid("t", np.linspace(0, 1, 5), kind="time", units="1")
        w.write_grid("x", np.linspace(0, 1, 400), units="length")
        w.write_field("rho", np.random.default_rng(0).random((5, 400)), dims=("t", "x"),
                      units="1/length", description="density")
        w.append_history({"iteration": np.arange(1, 4), "residual": [1.0, 0.5, 0.25]})
        w.write_checkpoint({"state": np.arange(1000.0)}, iteration=3)
        w.write_summary({"W2_squared": 0.2, "iterations": 3})
        w.set_status("completed")


def test_format_version_and_file_kind(tmp_path):
    _small_run(tmp_path / "r.h5")
    with open_result(tmp_path / "r.h5") as r:
        assert r.format_version == FORMAT_VERSION == 2
        assert r.file_kind == "run"
        assert r.field_names() == ["rho"]  # the coordinates linked into /fields are not fields
        assert r.field_dims("rho") == ("t", "x")
    with pytest.raises(ValueError, match="file_kind"):
        make_writer(tmp_path / "bad.h5", file_kind="movie")


def test_netcdf_readers_see_real_coordinates(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    path = tmp_path / "r.h5"
    _small_run(path)
    with xr.open_dataset(path, group="fields", engine="h5netcdf") as fields:
        assert fields["rho"].dims == ("t", "x")
        np.testing.assert_array_equal(fields["x"], np.linspace(0, 1, 400))
        assert fields["rho"].attrs["units"] == "1/length"
    with xr.open_dataset(path, group="history", engine="h5netcdf") as history:
        assert history["residual"].dims == ("iteration",)
        np.testing.assert_array_equal(history["iteration"], [1, 2, 3])


def test_open_result_reads_a_file_xarray_holds_open(tmp_path):
    """A notebook's next line after xarray.open_dataset: HDF5 refuses a second open of the
    same file with other locking flags, so the reader falls back to the default flags. In a
    fresh interpreter, on a file written by the CLI (pytest's own process does not show it)."""
    pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    out = tmp_path / "r.h5"
    run = subprocess.run([sys.executable, "-m", "ot_pde", "run", "bb_translation_1d", "-o",
                          str(out), "-q", "--set", "grid.n=16"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    script = ("import sys, xarray, ot_pde\n"
              "ds = xarray.open_dataset(sys.argv[1], group='fields', engine='h5netcdf')\n"
              "with ot_pde.open_result(sys.argv[1]) as r:\n"
              "    assert (r.field('rho') == ds['rho'].values).all()\n")
    both = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert both.returncode == 0, both.stderr


def test_to_xarray_returns_fields_history_and_summary(tmp_path):
    pytest.importorskip("xarray")
    path = tmp_path / "r.h5"
    _small_run(path)
    with open_result(path) as r:
        ds = r.to_xarray()
        rho = r.field("rho")
    np.testing.assert_array_equal(ds["rho"].values, rho)
    np.testing.assert_array_equal(ds["t"].values, np.linspace(0, 1, 5))
    np.testing.assert_array_equal(ds["history_residual"].values, [1.0, 0.5, 0.25])
    assert ds["history_residual"].dims == ("iteration",)
    assert ds.attrs["summary_W2_squared"] == 0.2 and ds.attrs["summary_iterations"] == 3
    assert ds.attrs["problem"] == "benamou_brenier" and ds.attrs["status"] == "completed"


def test_compact_drops_the_restart_state_and_keeps_everything_else(tmp_path):
    path = tmp_path / "r.h5"
    _small_run(path)
    new = compact(path)
    with h5py.File(path, "r") as a, h5py.File(new, "r") as b:
        assert set(a) - set(b) == {"checkpoint"}
        assert dict(a.attrs) == dict(b.attrs)
        np.testing.assert_array_equal(a["fields/rho"][()], b["fields/rho"][()])
        assert b["fields/rho"].compression == "gzip" and b["fields/rho"].shuffle
        assert b["fields/x"] == b["grid/x"]  # the link is still one dataset
        assert dict(b["summary"].attrs) == dict(a["summary"].attrs)
    with open_result(new) as r:
        assert r.field_dims("rho") == ("t", "x")
        assert r.checkpoint() is None
        assert list(r.history()["residual"]) == [1.0, 0.5, 0.25]
    assert new.stat().st_size < path.stat().st_size


def test_a_completed_run_has_no_restart_state_unless_kept(cli, tmp_path):
    case = ROOT / "cases" / "bb_gaussian_2d.toml"
    # the linear start: the affine one solves this Gaussian pair in a few iterations
    small = ["--set", "grid.n=24", "--set", "time.nt=8", "--set", "solver.max_iterations=60",
             "--set", "solver.start=linear",
             "-q"]
    assert cli("run", case, "-o", tmp_path / "a.h5", *small)[0] == 0
    assert cli("run", case, "-o", tmp_path / "b.h5", "--keep-checkpoint", *small)[0] == 0
    with ResultFile(tmp_path / "a.h5") as a, ResultFile(tmp_path / "b.h5") as b:
        assert a.status == b.status == "completed"
        assert not {"checkpoint", "checkpoint_tmp"} & set(a.h5)
        assert b.checkpoint()[1] == 60
        np.testing.assert_array_equal(a.field("rho"), b.field("rho"))
    # the state is 10 times the fields: the completed file is several times smaller
    assert (tmp_path / "b.h5").stat().st_size > 3 * (tmp_path / "a.h5").stat().st_size
