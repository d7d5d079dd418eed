"""Observed order of accuracy of the Benamou-Brenier scheme (issue 2, acceptance 2).

The staggered discretization is second order: the L1 error of rho(t, x) against the exact
geodesic (cell averages of McCann's interpolant by 1D quantiles) must show order 2 on the
finest pair, within 0.3 (``abs(observed - expected) <= tol`` as Oceananigans and Athena++ do).
W2^2 itself converges at least as fast (observed ~3.7 for this symmetric translation), so
its order is asserted from below.
"""
from __future__ import annotations

import h5py
import pytest

from .conftest import CASES, json_line

EXPECTED_ORDER = 2.0
TOL = 0.3
# The density field converges much more slowly in the iterations than W2^2 (stationary at the
# optimum), so a field study adds the residual criterion to the W2^2 accuracy; every run must
# converge (ot-pde converge refuses an unconverged one).
FIELD_SOLVE = ["--set", "solver.rtol=1e-5", "--set", "solver.tol=1e-6",
               "--set", "solver.max_iterations=60000"]


def _study(cli, tmp_path, values, extra=()):
    code, out, err = cli("converge", CASES / "bb_translation_1d.toml", "--vary",
                         f"grid.n={values}", "--json", "--plot", tmp_path / "conv.png",
                         "-o", tmp_path / "conv.h5", *extra)
    assert code == 0, err
    return json_line(out)


@pytest.mark.convergence
def test_translation_1d_second_order(cli, tmp_path):
    study = _study(cli, tmp_path, "16,32,64", FIELD_SOLVE)
    assert study["values"] == [16, 32, 64]
    assert abs(study["orders"]["rho L1"][-1] - EXPECTED_ORDER) <= TOL
    assert study["orders"]["W2_squared rel"][-1] >= EXPECTED_ORDER - TOL
    assert (tmp_path / "conv.png").stat().st_size > 10_000
    with h5py.File(tmp_path / "conv.h5", "r") as f:
        assert f.attrs["status"] == "completed"
        assert list(f["history/h"][:]) == [1 / 16, 1 / 32, 1 / 64]
        assert f["summary"].attrs["order_rho_L1"] == pytest.approx(study["orders"]["rho L1"][-1])


@pytest.mark.slow
@pytest.mark.convergence
def test_translation_1d_acceptance_command(cli, tmp_path):
    """The command of the issue: grid.n = 32, 64, 128, 256, solved as a field study.

    Measured 1.80 on the finest pair with the case's affine start (docs/convergence.rst);
    it was 1.09 from the linear start, where the unfinished iteration floored the error.
    """
    study = _study(cli, tmp_path, "32,64,128,256", FIELD_SOLVE)
    assert abs(study["orders"]["rho L1"][-1] - EXPECTED_ORDER) <= TOL


def test_vary_must_be_a_resolution(cli):
    code, _, err = cli("converge", CASES / "bb_translation_1d.toml", "--vary",
                       "solver.gamma=0.1,0.2")
    assert code == 2 and "--vary" in err and "resolution" in err


def test_no_reference_is_an_error(cli):
    code, _, err = cli("converge", CASES / "bb_mixture_2d.toml", "--vary", "grid.n=8,16")
    assert code == 2 and "no exact reference" in err
