#!/usr/bin/env bash
# The cupy backend on this machine's NVIDIA GPU, in one command (`make gpu-check` runs it):
# make an environment with CuPy, run `make test-gpu` (every `gpu` test: cupy against numpy),
# run the GPU benchmark group (cupy against numba, benchmarks/bench_gpu.py), and write one
# report, DIR/report.md (versions, device, pass/fail per test, timings). Meant to finish in
# under 8 minutes (GPU_CHECK_BUDGET seconds, default 450, shared by the steps).
#
# Usage: tools/gpu_check.sh [DIR]      DIR: default $OUT if set, else out/gpu_check
#
# The environment, in this order:
#   1. online: a venv (GPU_CHECK_VENV, default .venv-gpu) with `pip install -e '.[EXTRA,test]'`,
#      EXTRA chosen from the CUDA version the driver supports (nvidia-smi): `gpu-cuda13`
#      (cupy-cuda13x[ctk]) for CUDA 13 or newer, else `gpu` (cupy-cuda12x[ctk]);
#   2. offline (no package index reachable, or GPU_CHECK_OFFLINE=1): the first of
#      $GPU_CHECK_PYTHON, python3 whose CuPy sees a device, with this checkout on PYTHONPATH
#      (nothing installed; POT from GPU_CHECK_WHEELS=folder of wheels if given: it is needed
#      only by test modules without gpu tests, which are then reported as not collected).
#
# Exit: 0 every gpu test passed and the benchmarks ran; 1 a gpu test failed or errored, a
# step failed or ran out of time; 2 bad usage; 3 no usable NVIDIA GPU (the report says why;
# nothing is installed then). Files in DIR: report.md, gpu_check.log (all output),
# probe.json, versions.json, gpu_tests.xml, bench.json.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
if [ $# -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -gt 1 ] && exit 2 || exit 0
fi
DIR="${1:-${OUT:-out/gpu_check}}"
mkdir -p "$DIR" || exit 2
DIR="$(cd "$DIR" && pwd)"
LOG="$DIR/gpu_check.log"
: >"$LOG"
rm -f "$DIR"/{report.md,probe.json,versions.json,gpu_tests.xml,bench.json}
BUDGET="${GPU_CHECK_BUDGET:-450}"
START=$(date +%s)
STEPS=()
SYS_PY="${GPU_CHECK_PYTHON:-python3}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$ROOT/.numba_cache}" MPLBACKEND=Agg PYTHONUNBUFFERED=1

say() { echo "gpu_check: $*" | tee -a "$LOG" >&2; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
# step NAME CAP CMD...: run CMD with at most min(CAP, time left) seconds, output to the log
step() {
    local name=$1 cap=$2 t0 rc limit
    shift 2
    limit=$(left)
    [ "$limit" -gt "$cap" ] && limit=$cap
    if [ "$limit" -le 5 ]; then
        STEPS+=("$name=0:timeout")
        say "$name: no time left"
        return 124
    fi
    say "$name (at most ${limit} s): $*"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    local st="rc $rc"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && st="timeout"
    STEPS+=("$name=$(($(date +%s) - t0)):$st")
    say "$name: $st"
    return $rc
}
report() {  # report PYTHON ENV_TEXT: write report.md with PYTHON, exit with its status
    "$1" tools/gpu_report.py report --dir "$DIR" --env "$2" \
        $(for s in "${STEPS[@]}"; do printf -- '--step %s ' "${s// /_}"; done) | tee -a "$LOG"
    exit "${PIPESTATUS[0]}"
}

# 1. is there a GPU at all (standard library only)
if ! command -v "$SYS_PY" >/dev/null; then
    say "no $SYS_PY on PATH (set GPU_CHECK_PYTHON)"
    exit 2
fi
step probe 60 "$SYS_PY" tools/gpu_report.py probe --out "$DIR/probe.json"
if [ $? -ne 0 ]; then
    report "$SYS_PY" "none made: no usable GPU"
fi
EXTRA=$("$SYS_PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['extra'])" \
        "$DIR/probe.json")

# 2. an environment with CuPy
PY=""
ENV_TEXT=""
VENV="${GPU_CHECK_VENV:-.venv-gpu}"
if [ "${GPU_CHECK_OFFLINE:-0}" = "0" ]; then
    if step venv 240 bash -c "'$SYS_PY' -m venv '$VENV' && '$VENV/bin/python' -m pip install \
            -q --retries 1 --timeout 20 -e '.[$EXTRA,test]'" \
       && "$VENV/bin/python" -c "import cupy" >>"$LOG" 2>&1; then
        PY="$ROOT/$VENV/bin/python"
        ENV_TEXT="venv $VENV with pip install -e '.[$EXTRA,test]'"
        touch "$VENV/.stamp-base" "$VENV/.stamp-test"  # make test-gpu: nothing to install
    else
        say "online install failed or brought no CuPy: trying a Python that has CuPy"
    fi
fi
if [ -z "$PY" ]; then
    for cand in "${GPU_CHECK_PYTHON:-}" python3; do
        [ -n "$cand" ] && command -v "$cand" >/dev/null || continue
        if "$cand" -c "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() == 0)" \
                >>"$LOG" 2>&1; then
            PY="$(command -v "$cand")"
            break
        fi
    done
    if [ -z "$PY" ]; then
        say "no Python with a working CuPy found, and the online install failed"
        PY="$SYS_PY"
    fi
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    ENV_TEXT="offline: $PY with its own packages, this checkout on PYTHONPATH (nothing installed)"
    if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
        step wheels 120 "$PY" -m pip install -q --no-index --find-links "$GPU_CHECK_WHEELS" pot \
            && ENV_TEXT="$ENV_TEXT; POT from $GPU_CHECK_WHEELS"
    fi
fi
step versions 120 "$PY" tools/gpu_report.py versions --out "$DIR/versions.json" \
    || report "$PY" "$ENV_TEXT"

# 3. make test-gpu (make's venv step skipped: the environment is the one above)
PYTEST_ARGS="--junitxml=$DIR/gpu_tests.xml -rA -p no:cacheprovider"
PYTEST_ARGS="$PYTEST_ARGS --continue-on-collection-errors"
MAKE_ENV=(VENV="$VENV" PY="$PY" -o "$VENV/.stamp-test" PYTEST_ARGS="$PYTEST_ARGS")
if command -v make >/dev/null; then
    step test-gpu 270 make --no-print-directory test-gpu "${MAKE_ENV[@]}"
else  # what the target runs
    say "no make here: running make test-gpu's command directly"
    # shellcheck disable=SC2086
    step test-gpu 270 "$PY" -m pytest -m gpu $PYTEST_ARGS
fi

# 4. the GPU benchmark group
step bench 240 "$PY" benchmarks/bench_gpu.py --seconds "${GPU_CHECK_BENCH_SECONDS:-3}" \
    --json "$DIR/bench.json"

say "total $(($(date +%s) - START)) s; report: $DIR/report.md"
report "$PY" "$ENV_TEXT"
