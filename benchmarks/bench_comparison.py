"""Exported flows: numpy / numba inference vs PyTorch CPU on the same batch and weights.

Workloads (float64, the shipped checkpoints):

(a) RealNVP (``checkpoints/realnvp_moons.npz``, 8 couplings, MLPs 1-64-64-1): samples and
    log-densities ``z -> (T(z), ln p)`` for a batch of 20000 (quick: 5000);
(b) OT-Flow swiss roll (``checkpoints/otflow_swissroll.npz``, d = 2, m = 32, 12 RK4 steps):
    ``x -> (z, ln p)`` for 4096 points (quick: 1024);
(c) OT-Flow MiniBOONE (``checkpoints/otflow_miniboone.npz``, d = 43, m = 256, 10 RK4 steps,
    evaluated in float64): 512 points (quick: 128).

The torch columns run the re-implementations of ``tools/`` (the ones that computed the stored
references): for (a) the RealNVP module, for (b)/(c) the OT-Flow potential with autograd
gradients and the exact Hessian trace by d autograd passes (OT-Flow's own code has a
closed-form trace; this is the generic autograd route). torch is optional: without it only
numpy and numba are timed. Times are medians; ratios are against numpy; outputs are compared
with numpy. Nothing is asserted.

Run ``python benchmarks/bench_comparison.py [--quick]`` or ``python benchmarks/run.py --only
comparison``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from bench_flows import median_time  # benchmarks/ is sys.path[0]

from ot_pde.backends import available_backends, get_backend
from ot_pde.flows.exported import build_flow, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CK = ROOT / "checkpoints"


def _torch():
    try:
        import torch
    except ImportError:
        return None
    sys.path.insert(0, str(ROOT / "tools"))
    return torch


def _torch_runner(torch, name, ck):
    if ck.meta["model_type"] == "realnvp":
        import realnvp_torch

        state = {}
        for l, perm in enumerate(ck.meta["config"]["permutations"]):
            state[f"couplings.{l}.perm"] = np.asarray(perm)
            for w in ("s", "t"):
                for j in range(len(ck.meta["layer_sizes"]) - 1):
                    for p in ("weight", "bias"):
                        state[f"couplings.{l}.{w}.{2 * j}.{p}"] = \
                            ck.params[f"coupling{l}.{w}.{j}.{p}"]
        model = realnvp_torch.from_state_dict(state, ck.meta["activation"]).double()

        def run(x):
            with torch.no_grad():
                return [t.numpy() for t in model.to_data(torch.tensor(x))]
        return run
    from convert_otflow import TorchOTFlow

    model = TorchOTFlow(torch, {k: v.astype(np.float64) for k, v in ck.params.items()},
                        len(ck.meta["layer_sizes"]) - 1, ck.meta["config"]["alpha"][0],
                        torch.float64)

    def run(x):
        return [t.numpy() for t in model.to_latent(torch.tensor(x), ck.meta["steps"])]
    return run


def main(quick: bool = False) -> None:
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    backends = [b for b in ("numpy", "numba") if b in available_backends()]
    work = [("(a) RealNVP moons", "realnvp_moons.npz", 5000 if quick else 20000, 2 if quick else 5),
            ("(b) OT-Flow swiss roll", "otflow_swissroll.npz", 1024 if quick else 4096,
             2 if quick else 3),
            ("(c) OT-Flow MiniBOONE", "otflow_miniboone.npz", 128 if quick else 512, 1 if quick
             else 2)]
    print("Exported flows: inference time per batch (median), ratio to numpy")
    cols = backends + (["torch"] if torch is not None else [])
    print(f"{'workload':>24} {'batch':>6} " + " ".join(f"{c:>16}" for c in cols)
          + "   max |diff| vs numpy")
    for label, fname, batch, repeats in work:
        ck = load_checkpoint(CK / fname)
        x = np.random.default_rng(0).standard_normal((batch, ck.meta["dim"]))
        runs = {b: (lambda f: (lambda: f.apply_stored_direction(x)))(build_flow(ck, get_backend(b)))
                for b in backends}
        if torch is not None:
            tr = _torch_runner(torch, fname, ck)
            runs["torch"] = lambda tr=tr: tr(x)
        ref = runs["numpy"]()
        times, diffs = {}, []
        for c in cols:
            times[c] = median_time(runs[c], repeats)
            out = runs[c]()
            err = max(np.abs(np.asarray(o) - r).max() for o, r in zip(out, ref))
            diffs.append(f"{c} {err:.1e}")
        print(f"{label:>24} {batch:>6} " + " ".join(
            f"{times[c] * 1e3:9.1f}ms {times['numpy'] / times[c]:4.1f}x" for c in cols)
            + "   " + ", ".join(diffs[1:]), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
