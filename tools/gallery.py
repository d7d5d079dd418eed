"""Make the gallery's figures: run shipped cases and draw each one's standard figure into
``docs/gallery/<case>.png`` (``docs/gallery.rst`` shows them beside the case files).

    python tools/gallery.py [--max-seconds 60] [--case NAME ...] [--backend numba]

A case whose header states a run time above ``--max-seconds`` is skipped unless named with
``--case`` (the Ising and the longer flow cases take 5-75 minutes). Uses only the ``ot-pde``
command line; the runs go to a temporary folder.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "cases"
GALLERY = ROOT / "docs" / "gallery"


def stated_seconds(case: Path) -> float | None:
    """The run time in the case header's ``# Run time:`` line, in seconds (the first
    number with its unit), or None when the header gives none."""
    for line in case.read_text(encoding="utf-8").splitlines():
        if line.lower().startswith("# run time"):
            m = re.search(r"([\d.]+)(?:-[\d.]+)?\s*(s\b|min|h\b)", line.replace("under a second",
                                                                               "1 s"))
            if m:
                return float(m.group(1)) * {"s": 1, "min": 60, "h": 3600}[m.group(2)]
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--case", action="append", default=[], help="a case name (repeatable)")
    ap.add_argument("--backend", default=None)
    args = ap.parse_args(argv)
    GALLERY.mkdir(parents=True, exist_ok=True)
    names = args.case or [p.stem for p in sorted(CASES.glob("*.toml"))]
    failed = []
    with tempfile.TemporaryDirectory(prefix="ot_pde_gallery_") as tmp:
        for name in names:
            seconds = stated_seconds(CASES / f"{name}.toml")
            if not args.case and (seconds is None or seconds > args.max_seconds):
                print(f"skip {name} (stated run time {seconds} s)")
                continue
            out = Path(tmp) / f"{name}.h5"
            run = [sys.executable, "-m", "ot_pde", "run", name, "-o", str(out), "-q",
                   "--set", "output.xdmf=false"]
            if args.backend:
                run += ["--backend", args.backend]
            plot = [sys.executable, "-m", "ot_pde", "plot", str(out), "-o",
                    str(GALLERY / f"{name}.png")]
            for cmd in (run, plot):
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"FAILED {name}: {done.stderr.strip().splitlines()[-1:]}")
                    failed.append(name)
                    break
            else:
                print(f"made docs/gallery/{name}.png")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
