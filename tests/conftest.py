"""Shared fixtures: backends available here, CLI runners (in-process and subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ot_pde.backends import available_backends
from ot_pde.cli import main

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "cases"


_BACKEND_PARAMS = [b for b in ("numpy", "numba") if b in available_backends()]
_BACKEND_PARAMS.append(pytest.param("cupy", marks=[
    pytest.mark.gpu,
    pytest.mark.skipif("cupy" not in available_backends(), reason="no CuPy device")]))


@pytest.fixture(params=_BACKEND_PARAMS)
def backend_name(request):
    """Every backend (POT's conftest pattern); cupy runs under ``-m gpu`` where a GPU is."""
    return request.param


@pytest.fixture
def cli(capsys):
    """Run ``ot-pde ARGS`` in-process; returns (exit code, stdout, stderr)."""
    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def run_subprocess(*args, timeout=300, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "ot_pde", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def json_line(stdout: str) -> dict:
    """The single JSON object of ``--json`` output (fails if there is anything else)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def fd_param_grad(potential, fun, eps=1e-5):
    """Central differences of ``fun()`` in the flat parameters of ``potential`` (restored)."""
    theta = np.array(potential.params, copy=True)
    grad = np.empty(theta.size)
    try:
        for k in range(theta.size):
            step = np.zeros_like(theta)
            step[k] = eps
            potential.set_params(theta + step)
            up = fun()
            potential.set_params(theta - step)
            grad[k] = (up - fun()) / (2 * eps)
    finally:
        potential.set_params(theta)
    return grad


def run_full_and_restarted(cli, case, full, part, *, stop_at: int, total: int) -> None:
    """Run ``case`` (``training.iterations = total``) into ``full``; run it with
    ``training.iterations = stop_at`` into ``part``, mark that file as interrupted with the full
    case (as if a ``total``-iteration run had been killed after its checkpoint at ``stop_at``)
    and continue it with ``--restart``. The caller compares the two files."""
    import h5py

    # the completed files keep their restart state (--keep-checkpoint): ``part`` is
    # restarted from it, and the callers compare the final states
    keep = "--keep-checkpoint"
    assert cli("run", case, "-o", full, "--backend", "numpy", keep)[0] == 0
    code, _, err = cli("run", case, "-o", part, "--backend", "numpy", keep, "--set",
                       f"training.iterations={stop_at}")
    assert code == 0, err
    with h5py.File(part, "r+") as f:
        f.attrs["status"] = "interrupted"
        f.attrs["case_toml"] = f.attrs["case_toml"].replace(f"iterations = {stop_at}",
                                                            f"iterations = {total}")
    code, _, err = cli("run", case, "-o", part, "--backend", "numpy", "--restart", keep)
    assert code == 0, err
