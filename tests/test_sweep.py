"""``ot-pde sweep``: a case run at every point of a grid of key values (issue 9).

The MPI sweep (same file as the serial one) is tested in tests/test_mpi.py.
"""
from __future__ import annotations

import h5py
import numpy as np

from ot_pde.core.converge import study_from_file
from ot_pde.io import ResultFile

from .conftest import CASES, json_line

TAYLOR_GREEN = CASES / "euler_shifted_taylor_green.toml"


def test_sweep_runs_the_cartesian_product_and_links_every_run(cli, tmp_path):
    out = tmp_path / "sweep.h5"
    code, stdout, err = cli("sweep", CASES / "bb_translation_1d.toml", "--vary", "grid.n=16,32",
                            "--vary", "solver.max_iterations=40,80", "-o", out, "--json",
                            # one grid from the linear start: the error falls with the
                            # iterations (multilevel runs capped on a coarse level need not, nor
                            # runs from the case's affine start, which begin at the continuous
                            # solution and move to the grid's)
                            "--set", "solver.method=douglas_rachford",
                            "--set", "solver.start=linear")
    assert code == 0, err
    got = json_line(stdout)
    assert got["keys"] == ["grid.n", "solver.max_iterations"]
    assert got["points"] == [[16, 40], [16, 80], [32, 40], [32, 80]]  # last key fastest
    assert got["status"] == "completed"
    with ResultFile(out) as rf:
        rows = rf.history()
        assert rf.summary() == {"runs": 4, "failed_runs": 0}
        assert rf.status == "completed"
    assert list(rows["grid_n"]) == [16, 16, 32, 32]
    assert list(rows["solver_max_iterations"]) == [40, 80, 40, 80]
    assert list(rows["status_code"]) == [0, 0, 0, 0]
    for i, run in enumerate(got["runs"]):
        # each row is its run's summary, and the sweep file links the run's own file
        assert rows["W2_squared"][i] == run["summary"]["W2_squared"]
        with ResultFile(run["output"]) as one:
            assert one.summary()["W2_squared"] == run["summary"]["W2_squared"]
            assert one.h5.attrs["case_toml"].count("max_iterations = %d" % got["points"][i][1])
        with h5py.File(out) as f:
            assert f[f"runs/{i:03d}/summary"].attrs["W2_squared"] == run["summary"]["W2_squared"]
    # more iterations, smaller error, at both resolutions: the runs really differ
    assert rows["relative_error"][1] < rows["relative_error"][0]
    assert rows["relative_error"][3] < rows["relative_error"][2]


def test_sweep_records_a_failed_run_and_goes_on(cli, tmp_path):
    """dt = 2 is far past RK4's stability limit: that run fails, the others complete."""
    out = tmp_path / "sweep.h5"
    code, stdout, err = cli("sweep", TAYLOR_GREEN, "--vary", "time.dt=0.1,2.0",
                            "--set", "time.t_final=4.0", "-o", out, "--json")
    assert code == 1, err
    got = json_line(stdout)
    assert [r["status"] for r in got["runs"]] == ["completed", "failed"]
    assert got["status"] == "failed"
    with ResultFile(out) as rf:
        assert rf.status == "failed" and rf.summary()["failed_runs"] == 1
        assert list(rf.history()["status_code"]) == [0, 2]
        assert np.isnan(rf.history()["energy"][1])
    with ResultFile(got["runs"][1]["output"]) as failed:
        assert failed.status == "failed"


def test_sweep_bad_input_stops_before_running(cli, tmp_path):
    code, _, err = cli("sweep", TAYLOR_GREEN, "--vary", "time.dt=0.1,-1", "-o",
                       tmp_path / "s.h5")
    assert code == 2 and "time.dt" in err
    assert not (tmp_path / "s_runs").exists()  # nothing ran
    code, _, err = cli("sweep", TAYLOR_GREEN, "--vary", "time.dtt=0.1", "-o", tmp_path / "s.h5")
    assert code == 2 and "dtt" in err
    code, _, err = cli("sweep", TAYLOR_GREEN, "--vary", "time.dt=0.1", "--vary", "time.dt=0.2")
    assert code == 2 and "twice" in err


def test_plot_draws_sweep_and_study_files(cli, tmp_path):
    """``ot-pde plot`` knows the files of ``sweep`` and ``converge -o`` (not run files)."""
    sweep = tmp_path / "sweep.h5"
    assert cli("sweep", CASES / "bb_translation_1d.toml", "--vary", "grid.n=16,32", "--vary",
               "solver.max_iterations=40,80", "-o", sweep)[0] == 0
    code, out, err = cli("plot", sweep, "-o", tmp_path / "sweep.png")
    assert code == 0, err
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    study = tmp_path / "study.h5"
    assert cli("converge", CASES / "bb_translation_1d.toml", "--vary", "grid.n=16,32",
               "-o", study)[0] == 0
    code, out, err = cli("plot", study, "-o", tmp_path / "study.png")
    assert code == 0, err
    assert (tmp_path / "study.png").stat().st_size > 10_000
    with ResultFile(study) as rf:
        got = study_from_file(rf)
    assert got.key == "grid.n" and got.values == [16, 32]
    assert "W2_squared_rel" in got.errors and len(got.errors["W2_squared_rel"]) == 2
