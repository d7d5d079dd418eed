"""The benchmarks run: ``make bench --only flows`` part (c) crashed for a session after the
backend objects replaced backend names (``as_backend`` refuses names), and nothing ran it.
Timings are not asserted here (they belong to ``make bench``); only that a part runs to its
end and that the float32 twin's gradient agrees with float64 to single precision."""
from __future__ import annotations

import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_flows_training_iteration_runs(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("bench_flows", None)
    import bench_flows

    bench_flows.bench_training(quick=True)
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^\s+(\S+-f(?:32|64))\s+[\d.]+ ms\s+gradient vs \S+: (\S+)$", out,
                           re.MULTILINE))
    ours = [name for name in rows if not name.startswith("torch")]
    assert len(ours) == 2, out
    assert all(float(rows[name]) <= 1e-5 for name in rows), out
