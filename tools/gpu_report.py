"""The Python half of ``tools/gpu_check.sh``: probe the GPU, record versions, write the report.

Subcommands (each writes one JSON or Markdown file into the check's folder):

``probe --out probe.json``
    Is there an NVIDIA GPU, by ``nvidia-smi`` (standard library only, so any ``python3`` runs
    it before an environment exists): name, driver, the CUDA version the driver supports
    (which picks the cupy wheel), or the reasons there is none. Exit 0 with a GPU, 3 without.
``versions --out versions.json``
    Run by the environment's Python: the versions of Python, numpy, scipy, numba, h5py, POT,
    pytest, ot_pde and cupy, and what CuPy sees (devices, CUDA runtime and driver). Exit 0
    when CuPy sees a device, 3 when not (the reason is recorded).
``report --dir DIR [--step NAME=SECONDS:STATUS ...] [--env TEXT]``
    Gather ``probe.json``, ``versions.json``, ``gpu_tests.xml`` (pytest's JUnit XML of
    ``make test-gpu``) and ``bench.json`` (``benchmarks/bench_gpu.py --json``) into
    ``report.md``, print it, and exit 0 (every ``gpu`` test passed, none skipped for want of
    a device, the benchmarks ran), 1 (something failed or did not run) or 3 (no GPU).

Never imported by ot_pde.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

NO_GPU = 3


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------ probe
def probe() -> dict:
    """What ``nvidia-smi`` says, without any package: {"gpu": bool, "reasons": [...], ...}."""
    info: dict = {"gpu": False, "reasons": [], "host": platform.node(),
                  "machine": platform.machine(), "system": platform.system()}
    if os.environ.get("OT_PDE_DISABLE_CUPY", "0") not in ("", "0"):
        info["reasons"].append("OT_PDE_DISABLE_CUPY is set: acting as if CuPy were absent")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        info["reasons"].append("nvidia-smi not found on PATH (no NVIDIA driver here)")
        devices = [p for p in ("/dev/nvidia0", "/dev/nvidiactl") if os.path.exists(p)]
        if devices:
            info["reasons"].append(f"but {', '.join(devices)} exist(s)")
        return info
    try:
        query = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total,compute_cap",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        header = subprocess.run([smi], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["reasons"].append(f"nvidia-smi failed: {exc}")
        return info
    if query.returncode != 0:
        info["reasons"].append(f"nvidia-smi exit {query.returncode}: "
                               f"{(query.stderr or query.stdout).strip()[:300]}")
        return info
    rows = [r.strip() for r in query.stdout.splitlines() if r.strip()]
    if not rows:
        info["reasons"].append("nvidia-smi lists no GPU")
        return info
    fields = [f.strip() for f in rows[0].split(",")]
    info.update(devices=rows, name=fields[0], driver=fields[1] if len(fields) > 1 else "")
    m = re.search(r"CUDA Version:\s*([0-9]+)\.([0-9]+)", header.stdout)
    if m:
        info["cuda_driver"] = f"{m.group(1)}.{m.group(2)}"
        major = int(m.group(1))
        # cupy-cuda12x runs on a CUDA 12 or newer driver; a CUDA 13 driver gets the 13 wheel
        info["extra"] = "gpu-cuda13" if major >= 13 else "gpu"
        if major < 12:
            info["reasons"].append(f"the driver supports CUDA {info['cuda_driver']}; the cupy "
                                   "wheels of ot_pde[gpu] need 12 or newer")
    else:
        info["extra"] = "gpu"
    info["gpu"] = not info["reasons"]
    return info


# --------------------------------------------------------------------------------- versions
def versions() -> dict:
    """Versions of what the check runs on, and CuPy's view of the GPU."""
    out: dict = {"python": sys.version.split()[0], "executable": sys.executable,
                 "platform": platform.platform(), "cpu_count": os.cpu_count(), "packages": {}}
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("numpy", "scipy", "numba", "h5py", "pot", "pytest", "ot_pde", "mpi4py",
                 "cupy", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            out["packages"][dist] = version(dist)
        except PackageNotFoundError:
            pass
    try:
        cupy = import_module("cupy")
        rt = cupy.cuda.runtime
        out["cupy_devices"] = int(rt.getDeviceCount())
        out["cuda_runtime"] = rt.runtimeGetVersion()
        out["cuda_driver"] = rt.driverGetVersion()
        props = rt.getDeviceProperties(0)
        name = props["name"]
        out["device"] = name.decode() if isinstance(name, bytes) else str(name)
        out["compute_capability"] = f"{props['major']}.{props['minor']}"
        out["device_memory_GiB"] = round(props["totalGlobalMem"] / 2 ** 30, 1)
        # a first kernel: the check fails here, not in every test, if CUDA cannot compile
        x = cupy.arange(8, dtype=cupy.float64)
        out["first_kernel_ok"] = float((x * x).sum()) == 140.0
    except Exception as exc:  # recorded: the report says why there is no usable GPU
        out["cupy_error"] = f"{type(exc).__name__}: {exc}"[:500]
        out.setdefault("cupy_devices", 0)
    try:
        from ot_pde.backends import available_backends

        out["ot_pde_backends"] = available_backends()
    except Exception as exc:
        out["ot_pde_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return out


# ----------------------------------------------------------------------------------- report
def read_junit(path: Path) -> list[dict]:
    """One row per test case: {"test", "outcome", "seconds", "message"}."""
    rows = []
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error",
                           "skipped": "skipped"}[child.tag]
                message = (child.get("message") or (child.text or "")).strip()
                break
        name = ".".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
        rows.append({"test": name, "outcome": outcome,
                     "seconds": float(case.get("time", 0) or 0),
                     "message": message.splitlines()[0][:160] if message else ""})
    return rows


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def build_report(folder: Path, steps: list[str], env: str) -> tuple[str, int]:
    """The Markdown report and the exit code (see the module docstring)."""
    probe_info = _read(folder / "probe.json") or {}
    ver = _read(folder / "versions.json") or {}
    bench = _read(folder / "bench.json")
    junit = folder / "gpu_tests.xml"
    problems: list[str] = []
    lines = [f"# ot_pde GPU check, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}", ""]

    no_gpu = list(probe_info.get("reasons", [])) if not probe_info.get("gpu") else []
    if probe_info.get("gpu") and ver and not ver.get("cupy_devices"):
        no_gpu.append(f"CuPy sees no device: {ver.get('cupy_error', 'device count 0')}")
    if not probe_info:
        no_gpu.append("no probe.json (the probe did not run)")

    body: list[str] = ["## Machine", ""]
    body.append(f"- host: {probe_info.get('host', '?')} ({probe_info.get('system', '?')} "
                f"{probe_info.get('machine', '?')})")
    if probe_info.get("name"):
        body.append(f"- GPU: {probe_info['name']}, driver {probe_info.get('driver', '?')}, "
                    f"CUDA {probe_info.get('cuda_driver', '?')} (nvidia-smi)")
    if ver:
        if ver.get("device"):
            body.append(f"- CuPy sees {ver.get('cupy_devices')} device(s): {ver['device']} "
                        f"(compute capability {ver.get('compute_capability')}, "
                        f"{ver.get('device_memory_GiB')} GiB), CUDA runtime "
                        f"{ver.get('cuda_runtime')}, driver API {ver.get('cuda_driver')}")
        body.append(f"- Python {ver.get('python')} ({ver.get('executable')}), "
                    f"{ver.get('cpu_count')} CPU cores, {ver.get('platform')}")
        pkgs = ", ".join(f"{k} {v}" for k, v in sorted(ver.get("packages", {}).items()))
        body.append(f"- packages: {pkgs}")
        if ver.get("ot_pde_backends") is not None:
            body.append(f"- ot_pde backends usable: {', '.join(ver['ot_pde_backends'])}")
    if env:
        body.append(f"- environment: {env}")
    body.append("")

    if no_gpu:
        status = NO_GPU
    else:
        body += ["## gpu tests (`make test-gpu`)", ""]
        if not junit.exists():
            problems.append("the gpu tests did not run (no gpu_tests.xml)")
            body.append("No results: the tests did not run (see gpu_check.log).")
        else:
            rows = read_junit(junit)
            counts = {o: sum(r["outcome"] == o for r in rows)
                      for o in ("passed", "failed", "error", "skipped")}
            body.append(", ".join(f"{n} {o}" for o, n in counts.items()) +
                        f" ({sum(r['seconds'] for r in rows):.1f} s)")
            body += ["", "| test | outcome | s | message |", "|---|---|---:|---|"]
            body += [f"| {_md_cell(r['test'])} | {r['outcome']} | {r['seconds']:.2f} | "
                     f"{_md_cell(r['message'])} |" for r in rows]
            if counts["failed"] or counts["error"]:
                problems.append(f"{counts['failed']} gpu test(s) failed, {counts['error']} "
                                "error(s)")
            if not counts["passed"]:
                problems.append("no gpu test passed")
            nodev = [r for r in rows if r["outcome"] == "skipped"
                     and "no cupy device" in r["message"].lower()]
            if nodev:
                problems.append(f"{len(nodev)} gpu test(s) skipped for want of a CuPy device "
                                "on a machine that has a GPU")
        body.append("")
        body += ["## Benchmarks: cupy against numba, same machine, same run", ""]
        if bench is None:
            problems.append("the benchmarks did not run (no bench.json)")
            body.append("No results (see gpu_check.log).")
        elif bench.get("skipped"):
            problems.append(f"benchmarks skipped: {bench['skipped']}")
            body.append(f"Skipped: {bench['skipped']}")
        else:
            if not bench.get("complete", True):
                problems.append("the benchmarks stopped before the end")
            ref, other = bench["backends"]
            body.append(f"Seconds per step (numba threads: {bench.get('numba_threads')}, "
                        f"{bench.get('cpu_count')} cores; device: {bench.get('device')}); "
                        f"speed-up = {ref} / {other}.")
            body += ["", f"| case | step | {ref} s | {other} s | speed-up |",
                     "|---|---|---:|---:|---:|"]
            for r in bench["results"]:
                if "error" in r:
                    problems.append(f"benchmark {r['name']} failed")
                    body.append(f"| {r['name']} | {r['unit']} | | | FAILED: "
                                f"{_md_cell(r['error'][:160])} |")
                else:
                    body.append(f"| {r['name']} | {r['unit']} | {r[ref]['step_s']:.4g} | "
                                f"{r[other]['step_s']:.4g} | {r['speedup']:.2f}x |")
        body.append("")
        status = 1 if problems else 0

    for step in steps:
        if step.endswith(":timeout"):
            problems.append(f"step {step.split('=')[0]} ran out of time")
            status = max(status, 1) if status != NO_GPU else status
    verdict = {0: "PASS: every gpu test passed and the benchmarks ran",
               1: "FAIL: " + "; ".join(problems),
               NO_GPU: "NO GPU: " + "; ".join(no_gpu)}[status]
    lines += [f"**{verdict}** (exit {status})", ""] + body
    if steps:
        lines += ["## Steps", "", "| step | seconds | status |", "|---|---:|---|"]
        for step in steps:
            name, _, rest = step.partition("=")
            secs, _, st = rest.partition(":")
            lines.append(f"| {name} | {secs} | {st} |")
        lines.append("")
    lines.append("Full output: gpu_check.log beside this file.")
    return "\n".join(lines) + "\n", status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("probe", "versions"):
        sp = sub.add_parser(name)
        sp.add_argument("--out", type=Path, required=True)
    rp = sub.add_parser("report")
    rp.add_argument("--dir", type=Path, required=True)
    rp.add_argument("--step", action="append", default=[], metavar="NAME=SECONDS:STATUS")
    rp.add_argument("--env", default="", help="how the environment was made")
    args = p.parse_args(argv)
    if args.cmd == "probe":
        info = probe()
        _write(args.out, info)
        return 0 if info["gpu"] else NO_GPU
    if args.cmd == "versions":
        info = versions()
        _write(args.out, info)
        return 0 if info.get("cupy_devices") else NO_GPU
    text, status = build_report(args.dir, args.step, args.env)
    (args.dir / "report.md").write_text(text)
    sys.stdout.write(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
