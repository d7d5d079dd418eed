"""Shared fixtures: backends available here, CLI runners (in-process and subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
