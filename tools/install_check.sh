#!/usr/bin/env bash
# `pip install .` (not editable) into a fresh venv, then use the installed package from a
# folder outside the checkout: the shipped cases must come from the wheel, not the tree.
# Usage: tools/install_check.sh [PYTHON]; exit 0 when every step worked.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${1:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "$root"
cd "$work"  # nothing of the checkout is importable or readable from here
export NUMBA_CACHE_DIR="$work/numba_cache" MPLBACKEND=Agg
n_cases=$(ls "$root"/cases/*.toml | wc -l)
listed=$("$work/venv/bin/ot-pde" cases --json | "$work/venv/bin/python" -c \
    'import json, sys; print(len(json.load(sys.stdin)["cases"]))')
if [ "$listed" != "$n_cases" ]; then
    echo "install check: ot-pde cases lists $listed cases, the checkout ships $n_cases" >&2
    exit 1
fi
"$work/venv/bin/ot-pde" run bb_translation_1d -o r.h5 --set grid.n=32 --set time.nt=8 -q
"$work/venv/bin/ot-pde" check compare_otflow_swissroll  # a case naming a shipped checkpoint
"$work/venv/bin/ot-pde" plot r.h5 -o r.png
"$work/venv/bin/python" - <<'PY'
import h5py
with h5py.File("r.h5", "r") as f:
    assert f.attrs["status"] == "completed", f.attrs["status"]
    assert "checkpoint" not in f and "checkpoint_tmp" not in f, list(f)
import ot_pde, pathlib
assert "site-packages" in ot_pde.__file__, ot_pde.__file__
PY
echo "install check: pip install . works outside the checkout ($listed cases; run, check, plot ok)"
