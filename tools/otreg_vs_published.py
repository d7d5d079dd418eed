"""A model trained by ``cases/otreg_swissroll.toml`` against the published OT-Flow swiss-roll
checkpoint, both through the ``flow_comparison`` loader on the case's own 10000 held-out
samples: test NLL and transport cost E|T(x) - x|^2 with standard errors (issue 10, acceptance 1).

    ot-pde run cases/otreg_swissroll.toml -o otreg_sr.h5      # writes otreg_swissroll.npz
    python tools/otreg_vs_published.py otreg_swissroll.npz
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ot_pde.config import load_case
from ot_pde.flows.exported.models import flow_from_file
from ot_pde.flows.otreg.problem import OTRegFlowProblem

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    test = OTRegFlowProblem(load_case(str(ROOT / "cases" / "otreg_swissroll.toml"))).target.test
    rows = {}
    for name, path in (("published", ROOT / "checkpoints" / "otflow_swissroll.npz"),
                       ("ours", Path(argv[0]))):
        z, log_p = flow_from_file(path).to_latent(test)
        nll, cost = -np.asarray(log_p), ((np.asarray(z) - test) ** 2).sum(axis=1)
        rows[name] = (nll, cost)
        print(f"{name:10s} NLL {nll.mean():.4f} +- {nll.std(ddof=1) / math.sqrt(nll.size):.4f}"
              f"   E|T(x)-x|^2 {cost.mean():.4f} +- "
              f"{cost.std(ddof=1) / math.sqrt(cost.size):.4f}")
    (n_pub, c_pub), (n_our, c_our) = rows["published"], rows["ours"]
    print(f"NLL difference {n_our.mean() - n_pub.mean():+.4f} nats (target: within 0.05); "
          f"transport cost {c_our.mean() / c_pub.mean() - 1:+.2%} (target: within 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
