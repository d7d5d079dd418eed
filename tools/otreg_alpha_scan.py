"""The alpha_0 scan of a transport-regularized flow case (``otreg_flow``): table and figure.

    python tools/otreg_alpha_scan.py cases/otreg_alpha_scan_moons.toml \\
        --alpha0 0,0.03,0.1,0.3,1 -o otreg_scan [--backend numpy] [--set sec.key=value]...

Runs the case once per alpha_0 with ``training.alpha = [alpha_0, alpha_1, alpha_2]`` (alpha_1,
alpha_2 from the case), each into ``<out>_a<alpha_0>.h5``, and writes ``<out>.json`` (the
summaries), ``<out>.md`` (the table) and ``<out>.png`` (transport cost and OT bound, the gaps
and the NLL against alpha_0). Uses only the ``ot-pde`` CLI.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

COLUMNS = ("alpha0", "nll_test", "transport_term_test", "transport_cost", "layerwise_cost",
           "ot_bound", "ot_bound_stderr", "ot_gap", "relative_ot_gap", "paired_gap",
           "hjb_test", "wall_seconds")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case")
    ap.add_argument("--alpha0", default="0,0.03,0.1,0.3,1")
    ap.add_argument("-o", "--out", default="otreg_scan")
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args(argv)
    import tomllib

    with open(args.case, "rb") as f:
        alpha = tomllib.load(f).get("training", {}).get("alpha", [1.0, 30.0, 15.0])
    rows = []
    for a0 in (float(v) for v in args.alpha0.split(",")):
        out = f"{args.out}_a{a0:g}.h5"
        cmd = [sys.executable, "-m", "ot_pde", "run", args.case, "-o", out, "--backend",
               args.backend, "--json", "--set", f"training.alpha=[{a0}, {alpha[1]}, {alpha[2]}]"]
        for s in args.set:
            cmd += ["--set", s]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        summary = json.loads(proc.stdout)["summary"]
        rows.append({"alpha0": a0, **{k: summary.get(k) for k in COLUMNS[1:]}})
        print(json.dumps(rows[-1]), flush=True)
    with open(f"{args.out}.json", "w") as f:
        json.dump(rows, f, indent=1)
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(f"{r[k]:.4g}" for k in COLUMNS) + " |\n" for r in rows)
    with open(f"{args.out}.md", "w") as f:
        f.write(head + body)
    print(head + body)
    _figure(rows, f"{args.out}.png")
    return 0


def _figure(rows, png) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    a = np.array([r["alpha0"] for r in rows])
    x = np.where(a > 0, a, a[a > 0].min() / 3 if (a > 0).any() else 1.0)
    get = (lambda k: np.array([r[k] for r in rows]))
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.4))
    ax[0].plot(x, get("transport_cost"), "o-", label="E|T(x) - x|^2")
    ax[0].errorbar(x, get("ot_bound"), get("ot_bound_stderr"), fmt="s--",
                   label="W2^2 (discrete OT)")
    ax[0].set_ylabel("cost")
    ax[1].plot(x, get("ot_gap"), "o-", label="transport cost - W2^2")
    ax[1].plot(x, get("paired_gap"), "s-", label="paired gap")
    ax[1].axhline(0.0, color="0.5", lw=0.5)
    ax[2].plot(x, get("nll_test"), "o-", color="C3", label="test NLL")
    for k in range(3):
        ax[k].set_xscale("log")
        ax[k].set_xlabel("alpha_0 (alpha_0 = 0 drawn at the left end)")
        ax[k].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
