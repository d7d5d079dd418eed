#!/usr/bin/env python
"""Train the small RealNVP flows shipped in ``checkpoints/`` on the 2D toy sets (CPU, minutes).

    python tools/train_realnvp.py [--data moons eight_gaussians checkerboard] [--iters 4000]

For each set: 8 affine couplings (random permutations, seed 0), scale and shift MLPs
1 -> 64 -> 64 -> 1 with tanh, maximum likelihood on fresh batches of 512 drawn by
``ot_pde.flows.data`` (the same generators the ``flow_comparison`` cases evaluate on), Adam
with cosine-decayed learning rate, float32. Writes ``checkpoints/realnvp_<data>.pt`` (the
state dict, the input of ``tools/convert_realnvp.py``) and ``checkpoints/realnvp_<data>.npz``
(through that converter, with float64 torch reference pairs). Prints the held-out mean
log-likelihood. Needs torch; never imported by ``ot_pde``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import convert_realnvp  # noqa: E402
import realnvp_torch  # noqa: E402
from ot_pde.flows import data as toy  # noqa: E402


def permutations(d: int, n: int, rng) -> list[list[int]]:
    perms = []
    for _ in range(n):
        p = [int(i) for i in rng.permutation(d)]
        if perms and d == 2 and p == perms[-1]:
            p = p[::-1]  # in 2D, never condition on the same coordinate twice in a row
        perms.append(p)
    return perms


def train(name: str, iters: int, out_dir: Path, seed: int = 0, layers: int = 8,
          hidden: int = 64, batch: int = 512, lr: float = 2e-3) -> Path:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    model = realnvp_torch.RealNVP(permutations(2, layers, rng), 1, [hidden, hidden], "tanh")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters, eta_min=lr / 20)
    data_rng = np.random.default_rng(seed + 1)
    start = time.perf_counter()
    for it in range(iters):
        x = torch.tensor(toy.sample(name, batch, data_rng), dtype=torch.float32)
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 500 == 0 or it == iters - 1:
            print(f"{name}: iteration {it:5d} nll {loss.item():.4f}", flush=True)
    test = torch.tensor(toy.sample(name, 20000, np.random.default_rng(seed + 2)),
                        dtype=torch.float64)
    with torch.no_grad():
        ll = model.double().log_prob(test).mean().item()
    print(f"{name}: held-out mean log-likelihood {ll:.4f} ({time.perf_counter() - start:.0f} s)")
    pt = out_dir / f"realnvp_{name}.pt"
    torch.save(model.state_dict(), pt)
    dst = out_dir / f"realnvp_{name}.npz"
    convert_realnvp.convert_state(model.state_dict(), dst, "tanh", extra={
        "data": name, "train_iterations": iters, "train_batch": batch, "seed": seed,
        "heldout_mean_log_likelihood": ll})
    print(f"wrote {pt} and {dst}")
    return dst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["moons", "eight_gaussians", "checkerboard"])
    p.add_argument("--iters", type=int, default=4000)
    p.add_argument("--out", type=Path, default=HERE.parent / "checkpoints")
    a = p.parse_args(argv)
    a.out.mkdir(exist_ok=True)
    for name in a.data:
        train(name, a.iters, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
