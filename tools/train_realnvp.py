#!/usr/bin/env python
"""Train the small RealNVP flows shipped in ``checkpoints/`` on the 2D toy sets (CPU, minutes).

    python tools/train_realnvp.py [--data moons eight_gaussians checkerboard] [--iters 4000]
    python tools/train_realnvp.py --data digits [--iters 6000]

For each set: 8 affine couplings (random permutations, seed 0), scale and shift MLPs
1 -> 64 -> 64 -> 1 with tanh, maximum likelihood on fresh batches of 512 drawn by
``ot_pde.flows.data`` (the same generators the ``flow_comparison`` cases evaluate on), Adam
with cosine-decayed learning rate, float32. Writes ``checkpoints/realnvp_<data>.pt`` (the
state dict, the input of ``tools/convert_realnvp.py``) and ``checkpoints/realnvp_<data>.npz``
(through that converter, with float64 torch reference pairs). Prints the held-out mean
log-likelihood. Needs torch; never imported by ``ot_pde``.

``digits`` (the 64-dimensional baseline of ``cases/maflow_digits.toml``): the same fixed
training split and logit transform as the ``digits`` target (``ot_pde.flows.targets``, alpha
0.05), each batch of 256 training images dequantized afresh; 8 couplings of split 32 with
MLPs 32 -> 64 -> 64 -> 32, Adam at 1e-3 with cosine decay. With 1197 training images it
overfits within a thousand steps (measured: validation NLL 55 nats at step 500, 74 at step
1500 with width 128), so the parameters kept are those of the best validation NLL, checked
every 100 steps (early stopping on the validation split, never on the test split). The
held-out number it prints is in logit space on the validation split; the test bits per
dimension in pixel space are the kind's (``target.checkpoint`` of the case).
"""
from __future__ import annotations

import argparse
import math
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
from ot_pde.flows import targets  # noqa: E402


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


def train_digits(iters: int, out_dir: Path, seed: int = 0, layers: int = 8, hidden: int = 64,
                 batch: int = 256, lr: float = 1e-3, alpha: float = 0.05) -> Path:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    split = targets.digits_split(targets.digits_images("tools/train_realnvp.py"))
    pixels = targets.PixelSpace(toy.LogitPixels(targets.DIGITS_LEVELS, alpha), split["train"],
                                None, {}, {})
    d = targets.DIGITS_DIM
    model = realnvp_torch.RealNVP(permutations(d, layers, rng), d // 2, [hidden, hidden], "tanh")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters, eta_min=lr / 20)
    data_rng = np.random.default_rng(seed + 1)
    val = torch.tensor(pixels.transform.to_logit(pixels.transform.dequantize(
        split["validation"], np.random.default_rng(seed + 2))), dtype=torch.float32)
    start = time.perf_counter()
    best, best_it, best_state = math.inf, 0, None
    for it in range(iters):
        x = torch.tensor(pixels.sampler(data_rng, batch), dtype=torch.float32)
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (it + 1) % 100 == 0:
            with torch.no_grad():
                v = -model.log_prob(val).mean().item()
            if v < best:
                best, best_it = v, it + 1
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            print(f"digits: iteration {it + 1:5d} nll {loss.item():.2f} validation {v:.2f}",
                  flush=True)
    model.load_state_dict(best_state)
    print(f"digits: kept the parameters of step {best_it}")
    with torch.no_grad():
        ll = model.double().log_prob(val.double()).mean().item()
    wall = time.perf_counter() - start
    print(f"digits: validation mean log-likelihood (logit space) {ll:.3f} ({wall:.0f} s)")
    pt = out_dir / "realnvp_digits.pt"
    torch.save(model.state_dict(), pt)
    dst = out_dir / "realnvp_digits.npz"
    convert_realnvp.convert_state(model.state_dict(), dst, "tanh", extra={
        "data": "digits", "alpha": alpha, "train_iterations": iters, "train_batch": batch,
        "seed": seed, "train_wall_seconds": round(wall), "early_stopping_step": best_it,
        "validation_mean_log_likelihood": ll})
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
        if name == "digits":
            train_digits(a.iters, a.out)
        else:
            train(name, a.iters, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
