#!/usr/bin/env python
"""Convert a RealNVP / affine-coupling state dict (``.pt``) into an ot_pde flow checkpoint.

    python tools/convert_realnvp.py STATE.pt -o OUT.npz [--activation tanh] [--n-ref 16]

The state dict follows the layout of ``tools/realnvp_torch.py`` (``couplings.{l}.perm``,
``couplings.{l}.{s,t}.{k}.weight/bias``); it is read by the restricted unpickler of
``tools/torch_pickle.py`` (anything beyond tensors is refused, exit 2). The reference pairs
(latent z -> data x = T(z), log p(x)) are computed by the torch module in float64.

Needs torch; never imported by ``ot_pde``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_pickle  # noqa: E402


def convert_state(state: dict, dst, activation: str = "tanh", n_ref: int = 16, seed: int = 0,
                  extra: dict | None = None) -> dict:
    """Write ``dst`` from a state dict (numpy arrays or tensors); returns the metadata."""
    import torch

    import realnvp_torch
    from ot_pde.flows.exported.checkpoint import save_checkpoint

    state = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
             for k, v in state.items()}
    model = realnvp_torch.from_state_dict(state, activation).double()
    n = len(model.couplings)
    lin = [k for k, m in enumerate(model.couplings[0].s) if isinstance(m, torch.nn.Linear)]
    c0 = model.couplings[0]
    d, split = len(c0.perm), c0.split
    sizes = [split] + [model.couplings[0].s[k].out_features for k in lin]
    params = {}
    for l in range(n):
        for which in ("s", "t"):
            for j, k in enumerate(lin):
                for p in ("weight", "bias"):
                    params[f"coupling{l}.{which}.{j}.{p}"] = \
                        state[f"couplings.{l}.{which}.{k}.{p}"].astype(np.float64)
    z = np.random.default_rng(seed).standard_normal((n_ref, d))
    with torch.no_grad():
        x, logp = model.to_data(torch.tensor(z, dtype=torch.float64))
    meta = {"model_type": "realnvp", "dim": d, "layer_sizes": sizes, "activation": activation,
            "direction": "latent_to_data", "integrator": None, "steps": None,
            "dtype": "float64",
            "config": {"split": split, "scale_activation": "tanh",
                       "permutations": [[int(i) for i in c.perm] for c in model.couplings],
                       "reference_by": f"torch {torch.__version__}, tools/convert_realnvp.py",
                       **(extra or {})}}
    save_checkpoint(dst, meta, params, {"input": z, "output": x.numpy(),
                                        "log_density": logp.numpy()})
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="state dict saved by torch.save(model.state_dict())")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--activation", default="tanh", choices=("tanh", "relu", "leaky_relu",
                                                              "elu", "softplus"))
    p.add_argument("--n-ref", type=int, default=16)
    a = p.parse_args(argv)
    def convert():
        state = torch_pickle.load(a.src)
        if not isinstance(state, dict) or not all(isinstance(v, np.ndarray)
                                                  for v in state.values()):
            raise ValueError("expected a state dict of tensors")
        return convert_state(state, a.output, a.activation, a.n_ref)

    meta = torch_pickle.converted(a.src, "RealNVP state dict", convert)
    if meta is None:
        return 2
    print(f"wrote {a.output}: realnvp d = {meta['dim']}, "
          f"{len(meta['config']['permutations'])} couplings, sizes {meta['layer_sizes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
