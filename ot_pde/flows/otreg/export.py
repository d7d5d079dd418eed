"""Write a trained transport-regularized flow as an exported checkpoint of ``flow_comparison``.

The file is the ``.npz`` format of :mod:`ot_pde.flows.exported.checkpoint`, with the
parameter names of the PyTorch OT-Flow state dict (``A``, ``c.weight``, ``c.bias``,
``w.weight``, ``N.layers.{i}.weight/bias``), so a model trained here and one converted from
PyTorch are read, checked and compared by the same code. ``config.alpha[0]`` is the velocity
scale of OT-Flow (1 here: see :mod:`.objective`); the loss weights are ``config.loss_weights``.
A time-dependent one-hidden-layer potential is written as a ``monge_ampere`` model (latent at
``t = 0``): :math:`\\tilde\\varphi(x, s) = \\varphi(x, T - s)`, i.e. ``c -> -c``,
``b -> b + c T``.
"""
from __future__ import annotations

import numpy as np

from ..integrators import to_host
from ..potentials import OneHiddenLayer, OTFlowResNet


def checkpoint_arrays(potential, *, T: float, n_steps: int, scheme: str, alpha,
                      extra: dict | None = None) -> tuple[dict, dict]:
    """(metadata, params) of the export of ``potential``."""
    extra = dict(extra or {})
    d = potential.dim
    if isinstance(potential, OTFlowResNet):
        if T != 1.0:
            raise ValueError("OT-Flow checkpoints run on t in [0, 1]; export needs T = 1")
        p = {k: to_host(v).copy() for k, v in potential.param_blocks().items()}
        m = potential.width
        params = {"A": p["A"], "c.weight": p["c"].reshape(1, d + 1), "c.bias": p["c0"],
                  "w.weight": p["w"].reshape(1, m)}
        for i in range(potential.n_layers):
            params[f"N.layers.{i}.weight"] = p[f"K{i}"]
            params[f"N.layers.{i}.bias"] = p[f"b{i}"]
        meta = {"model_type": "otflow", "dim": d,
                "layer_sizes": [d + 1] + [m] * potential.n_layers, "activation": "log2cosh",
                "direction": "data_to_latent", "integrator": scheme, "steps": int(n_steps),
                "dtype": "float64",
                "config": {"rank": potential.rank, "alpha": [1.0, float(alpha[1]),
                                                             float(alpha[2])],
                           "loss_weights": [float(a) for a in alpha], "T": 1.0, **extra}}
        return meta, params
    if isinstance(potential, OneHiddenLayer) and potential.time_dependent and potential.bias:
        p = {k: to_host(v).copy() for k, v in potential.param_blocks().items()}
        p["b"], p["c"] = p["b"] + p["c"] * T, -p["c"]
        flat = np.concatenate([p[name].reshape(-1) for name, _ in potential._layout])
        meta = {"model_type": "monge_ampere", "dim": d, "layer_sizes": [d, potential.width, 1],
                "activation": potential.activation, "direction": "latent_to_data",
                "integrator": scheme, "steps": int(n_steps), "dtype": "float64",
                "config": {"family": "one_hidden_layer", "width": potential.width,
                           "bias": True, "time_dependent": True, "T": float(T),
                           "loss_weights": [float(a) for a in alpha], **extra}}
        return meta, {"params": flat}
    raise ValueError(f"cannot export {type(potential).__name__} (OTFlowResNet, or a "
                     "OneHiddenLayer with bias and time dependence)")
