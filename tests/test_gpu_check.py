"""``tools/gpu_check.sh`` (``make gpu-check``) where there is no GPU, and its report writer.

The GPU path itself runs only on a machine with one; here: the script's answer without a
GPU (exit 3, a report saying why, nothing installed), its answer where a driver is present
but CuPy is not usable (a stand-in ``nvidia-smi``), and the report's verdict from test and
benchmark results.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ot_pde.backends import available_backends

from .conftest import ROOT

SCRIPT = ROOT / "tools" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "tools"))
import gpu_report  # noqa: E402  (tools/ is not a package)


def _run(tmp_path, env_extra, timeout=60):
    env = dict(os.environ, **env_extra)
    env.pop("OUT", None)
    out = tmp_path / "report"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=tmp_path)
    return proc, out


def test_without_a_gpu_it_reports_why_and_exits_3(tmp_path):
    proc, out = _run(tmp_path, {"OT_PDE_DISABLE_CUPY": "1"})
    assert proc.returncode == 3, proc.stderr
    report = (out / "report.md").read_text()
    assert "**NO GPU: " in report and "(exit 3)" in report
    assert "OT_PDE_DISABLE_CUPY is set" in report
    assert proc.stdout == report
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "probe.json",
                                                     "report.md"]
    assert "gpu_check: venv" not in (out / "gpu_check.log").read_text()  # nothing installed


FAKE_SMI = textwrap.dedent("""\
    #!/bin/sh
    if [ "$1" = "--query-gpu=name,driver_version,memory.total,compute_cap" ]; then
        echo "NVIDIA Stand-in 80GB, 580.00.01, 81559 MiB, 9.0"
    else
        echo "| NVIDIA-SMI 580.00.01   Driver Version: 580.00.01   CUDA Version: 13.0 |"
    fi
    """)


@pytest.mark.skipif("cupy" in available_backends(),
                    reason="a real GPU is here: make gpu-check covers this machine")
def test_driver_present_but_cupy_unusable(tmp_path):
    """nvidia-smi answers (CUDA 13: the gpu-cuda13 extra), but no Python here has a CuPy
    that sees a device: exit 3 with CuPy's reason, after the probe and the versions."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    proc, out = _run(tmp_path, {"PATH": f"{bin_dir}:{os.environ['PATH']}",
                                "GPU_CHECK_OFFLINE": "1", "GPU_CHECK_PYTHON": sys.executable,
                                "OT_PDE_DISABLE_CUPY": "0"})
    assert proc.returncode == 3, proc.stderr
    probe = json.loads((out / "probe.json").read_text())
    assert probe["gpu"] is True and probe["extra"] == "gpu-cuda13"
    assert probe["cuda_driver"] == "13.0" and probe["name"] == "NVIDIA Stand-in 80GB"
    versions = json.loads((out / "versions.json").read_text())
    assert versions["cupy_devices"] == 0 and "cupy_error" in versions
    assert versions["packages"]["numpy"]
    report = (out / "report.md").read_text()
    assert "**NO GPU: CuPy sees no device: " in report
    assert "GPU: NVIDIA Stand-in 80GB, driver 580.00.01, CUDA 13.0" in report
    assert "offline: " in report


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_gpu" name="test_a[cupy]" time="1.5"/>
<testcase classname="tests.test_gpu" name="test_b[cupy]" time="0.5">{b}</testcase>
<testcase classname="tests.test_flow_adjoint" name="test_c[cupy]" time="0.0">
<skipped message="finite differences run on the host"/></testcase>
</testsuite></testsuites>"""
BENCH = {"backends": ["numba", "cupy"], "numba_threads": "all cores", "cpu_count": 16,
         "device": "NVIDIA Stand-in", "results": [
             {"name": "BB", "unit": "iteration", "numba": {"step_s": 0.5},
              "cupy": {"step_s": 0.01}, "speedup": 50.0}]}


def _folder(tmp_path, b="", bench=BENCH):
    (tmp_path / "probe.json").write_text(json.dumps({"gpu": True, "reasons": [],
                                                     "name": "NVIDIA Stand-in"}))
    (tmp_path / "versions.json").write_text(json.dumps({"cupy_devices": 1,
                                                        "device": "NVIDIA Stand-in"}))
    (tmp_path / "gpu_tests.xml").write_text(JUNIT.format(b=b))
    if bench is not None:
        (tmp_path / "bench.json").write_text(json.dumps(bench))
    return tmp_path


def test_gpu_benchmarks_say_why_and_exit_0_without_cupy(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    monkeypatch.setenv("OT_PDE_DISABLE_CUPY", "1")
    assert bench_gpu.main(["--json", str(tmp_path / "bench.json")]) == 0
    assert "GPU benchmarks skipped: backend(s) cupy not usable here" in capsys.readouterr().out
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["skipped"] and bench["results"] == []


@pytest.mark.slow
@pytest.mark.skipif("numba" not in available_backends(), reason="numba not installed")
def test_gpu_benchmarks_run_at_tiny_sizes_on_the_cpu(tmp_path):
    """The benchmark code path itself, numpy against numba at small sizes."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    path = tmp_path / "bench.json"
    assert bench_gpu.main(["--backends", "numpy,numba", "--tiny", "--seconds", "0.05",
                           "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["results"]
    assert [r["name"] for r in rows] == [c[0] for c in bench_gpu.CONFIGS]
    for r in rows:
        assert r["numpy"]["steps"] >= 2 and r["numba"]["step_s"] > 0 and r["speedup"] > 0


def test_report_passes_with_every_test_passed_and_benchmarks(tmp_path):
    text, status = gpu_report.build_report(_folder(tmp_path), ["tests=80:rc_0"], "venv")
    assert status == 0, text
    assert "**PASS" in text and "2 passed, 0 failed, 0 error, 1 skipped" in text
    assert "| BB | iteration | 0.5 | 0.01 | 50.00x |" in text
    assert "| tests.test_flow_adjoint.test_c[cupy] | skipped | 0.00 | finite differences" in text


@pytest.mark.parametrize("b, bench, why", [
    ('<failure message="AssertionError: 3e-9 &gt; 1e-10">trace</failure>', BENCH,
     "1 gpu test(s) failed"),
    ('<skipped message="no CuPy device"/>', BENCH, "skipped for want of a CuPy device"),
    ("", None, "the benchmarks did not run"),
    ("", {**BENCH, "results": [{"name": "BB", "unit": "it", "error": "OutOfMemoryError"}]},
     "benchmark BB failed"),
    ("", {**BENCH, "complete": False}, "the benchmarks stopped before the end"),
])
def test_report_fails_on_a_failure_a_missing_device_or_missing_benchmarks(tmp_path, b, bench,
                                                                           why):
    text, status = gpu_report.build_report(_folder(tmp_path, b, bench), [], "")
    assert status == 1 and "**FAIL: " in text and why in text, text


def test_report_fails_when_a_step_ran_out_of_time(tmp_path):
    text, status = gpu_report.build_report(_folder(tmp_path), ["bench=240:timeout"], "")
    assert status == 1 and "step bench ran out of time" in text
