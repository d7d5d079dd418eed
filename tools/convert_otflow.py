#!/usr/bin/env python
"""Convert a published OT-Flow checkpoint (``.pth``) into an ot_pde flow checkpoint (``.npz``).

    python tools/convert_otflow.py IN.pth -o OUT.npz [--data swiss_roll] [--n-ref 16]

The ``.pth`` (a pickle of ``{'args': argparse.Namespace, 'state_dict': OrderedDict}``, see
``/work/shared/external/ot-flow/README.md``) is read by the restricted unpickler of
``tools/torch_pickle.py``: a file that names anything beyond a tensor state dict is refused
(exit 2) before any of it runs.

The reference pairs stored with the checkpoint are computed here by PyTorch, from an
independent re-implementation of the model in torch (autograd gradient and autograd Hessian
trace, fixed-step RK4 of ``dx/dt = -grad_x Phi / alph[0]``, ``dl/dt = -tr Hess_x Phi / alph[0]``
from data at t = 0 to latent at t = 1) in the checkpoint's own precision (``args.prec``), with
the validation number of steps ``args.nt_val``. Reference inputs: samples of the 2D toy set
(``--data``, drawn by ``ot_pde.flows.data`` with ``--seed``) for d = 2, standard-normal
points otherwise (MiniBOONE's inputs are standardized).

Needs torch (this script only; ``ot_pde`` never imports it). Exit codes: 0 written, 2 refused
or unreadable input.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_pickle  # noqa: E402


def read_otflow(path) -> tuple[dict, dict]:
    """(args as a dict, state dict of numpy arrays), refusing anything else in the pickle."""
    obj = torch_pickle.load(path)
    if not isinstance(obj, dict) or "state_dict" not in obj or "args" not in obj:
        raise ValueError("expected a dict with 'args' and 'state_dict'")
    args = obj["args"]
    if not isinstance(args, torch_pickle.Namespace):
        raise ValueError("'args' is not an argparse.Namespace")
    state = dict(obj["state_dict"])
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"state_dict[{key!r}] is not a tensor")
    return dict(args.__dict__), state


class TorchOTFlow:
    """OT-Flow's potential and RK4 in torch (re-implemented from the published equations)."""

    def __init__(self, torch, state: dict, n_layers: int, alpha0: float, dtype):
        self.torch, self.dtype = torch, dtype
        t = {k: torch.tensor(v, dtype=dtype) for k, v in state.items()}
        self.A, self.cw, self.cb, self.w = t["A"], t["c.weight"], t["c.bias"], t["w.weight"]
        self.K = [t[f"N.layers.{i}.weight"] for i in range(n_layers)]
        self.b = [t[f"N.layers.{i}.bias"] for i in range(n_layers)]
        self.h = 1.0 / (n_layers - 1)
        self.alpha0 = alpha0

    @staticmethod
    def act(z):
        return z.abs() + (-2.0 * z.abs()).exp().log1p()  # log(2 cosh z)

    def phi(self, s):
        u = self.act(s @ self.K[0].T + self.b[0])
        for K, b in zip(self.K[1:], self.b[1:]):
            u = u + self.h * self.act(u @ K.T + b)
        quad = 0.5 * ((s @ self.A.T) ** 2).sum(1)
        return (u @ self.w.T).squeeze(1) + quad + (s @ self.cw.T).squeeze(1) + self.cb

    def rhs(self, x, t):
        """(-grad_x Phi / alph0, -tr Hess_x Phi / alph0) by autograd."""
        torch = self.torch
        x = x.detach().requires_grad_(True)
        s = torch.cat([x, torch.full((x.shape[0], 1), t, dtype=self.dtype)], 1)
        g = torch.autograd.grad(self.phi(s).sum(), x, create_graph=True)[0]
        tr = torch.zeros(x.shape[0], dtype=self.dtype)
        for k in range(x.shape[1]):
            tr = tr + torch.autograd.grad(g[:, k].sum(), x, retain_graph=True)[0][:, k]
        return -g.detach() / self.alpha0, -tr.detach() / self.alpha0

    def to_latent(self, x, nt: int):
        """RK4 from data (t = 0) to latent (t = 1); returns z and log p(x)."""
        torch = self.torch
        h = 1.0 / nt
        l = torch.zeros(x.shape[0], dtype=self.dtype)
        for n in range(nt):
            t = n * h
            k1x, k1l = self.rhs(x, t)
            k2x, k2l = self.rhs(x + 0.5 * h * k1x, t + 0.5 * h)
            k3x, k3l = self.rhs(x + 0.5 * h * k2x, t + 0.5 * h)
            k4x, k4l = self.rhs(x + h * k3x, t + h)
            x = x + (h / 6.0) * (k1x + 2 * k2x + 2 * k3x + k4x)
            l = l + (h / 6.0) * (k1l + 2 * k2l + 2 * k3l + k4l)
        d = x.shape[1]
        logp = -0.5 * d * math.log(2 * math.pi) - 0.5 * (x ** 2).sum(1) + l
        return x, logp


def convert(src, dst, data: str = "swiss_roll", n_ref: int = 16, seed: int = 0) -> dict:
    """Read ``src``, compute the torch references and write ``dst``; returns the metadata."""
    # Read (and refuse) the file before torch is even imported: reading needs no torch.
    args, state = read_otflow(src)
    import torch

    from ot_pde.flows import data as toy
    from ot_pde.flows.exported.checkpoint import save_checkpoint

    r, D = state["A"].shape
    d, m, n_layers = D - 1, int(args["m"]), int(args["nTh"])
    dtype_name = {"double": "float64", "single": "float32"}[args.get("prec", "single")]
    dtype = getattr(torch, dtype_name)
    nt_val = int(args.get("nt_val", args["nt"]))
    alph = [float(a) for a in args["alph"]]
    model = TorchOTFlow(torch, state, n_layers, alph[0], dtype)
    rng = np.random.default_rng(seed)
    if d == 2:
        x_ref = toy.sample(data, n_ref, rng)
    else:
        x_ref = rng.standard_normal((n_ref, d))
    x_ref = x_ref.astype(dtype_name)
    z, logp = model.to_latent(torch.tensor(x_ref, dtype=dtype), nt_val)
    meta = {
        "model_type": "otflow", "dim": d, "layer_sizes": [D] + [m] * n_layers,
        "activation": "log2cosh", "direction": "data_to_latent", "integrator": "rk4",
        "steps": nt_val, "dtype": dtype_name,
        "config": {"rank": int(r), "alpha": alph, "train_steps": int(args["nt"]),
                   "T": 1.0, "data": str(args.get("data", "")),
                   "source": f"OT-Flow (Onken et al. 2021) {Path(src).name}, "
                             "EmoryMLIP/OT-Flow@4d66618e2a2f4d8e8ce080cf1b3c769c78b2590d",
                   "reference_by": f"torch {torch.__version__}, tools/convert_otflow.py"},
    }
    params = {k: v.astype(dtype_name) for k, v in state.items()}
    save_checkpoint(dst, meta, params, {"input": x_ref, "output": z.numpy(),
                                        "log_density": logp.numpy()})
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="OT-Flow .pth checkpoint")
    p.add_argument("-o", "--output", required=True, help="output .npz (or .safetensors)")
    p.add_argument("--data", default="swiss_roll", help="2D toy set for the reference inputs")
    p.add_argument("--n-ref", type=int, default=16, help="number of reference pairs")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    meta = torch_pickle.converted(a.src, "OT-Flow checkpoint",
                                  lambda: convert(a.src, a.output, a.data, a.n_ref, a.seed))
    if meta is None:
        return 2
    print(f"wrote {a.output}: otflow d = {meta['dim']}, layers {meta['layer_sizes']}, "
          f"{meta['steps']} RK4 steps, {meta['dtype']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
