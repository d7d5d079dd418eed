"""A RealNVP (affine coupling) flow in PyTorch, the layout ``tools/convert_realnvp.py`` reads.

Coupling layer ``l`` holds a permutation buffer ``perm`` (conditioning set ``perm[:split]``,
transformed set ``perm[split:]``, updated in place) and two MLPs ``s`` and ``t``
(``nn.Sequential`` of ``Linear`` and activation modules, no activation after the last
``Linear``); the scale is ``tanh(s(x_c))``. State-dict keys:
``couplings.{l}.perm``, ``couplings.{l}.{s,t}.{k}.weight`` / ``.bias`` (``k`` the index in the
Sequential). Direction latent -> data: ``y_tau = x_tau * exp(s) + t``.

Needs torch; never imported by ``ot_pde``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
               "softplus": nn.Softplus}


def mlp(sizes, activation):
    layers = []
    for j in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[j], sizes[j + 1]))
        if j < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Coupling(nn.Module):
    def __init__(self, perm, split, hidden, activation):
        super().__init__()
        d = len(perm)
        self.split = split
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))
        sizes = [split] + list(hidden) + [d - split]
        self.s, self.t = mlp(sizes, activation), mlp(sizes, activation)

    def st(self, xc):
        return torch.tanh(self.s(xc)), self.t(xc)

    def forward(self, x):
        c, tau = self.perm[:self.split], self.perm[self.split:]
        s, t = self.st(x[:, c])
        y = x.clone()
        y[:, tau] = x[:, tau] * torch.exp(s) + t
        return y, s.sum(1)

    def inverse(self, y):
        c, tau = self.perm[:self.split], self.perm[self.split:]
        s, t = self.st(y[:, c])
        x = y.clone()
        x[:, tau] = (y[:, tau] - t) * torch.exp(-s)
        return x, s.sum(1)


class RealNVP(nn.Module):
    def __init__(self, perms, split, hidden, activation="tanh"):
        super().__init__()
        self.couplings = nn.ModuleList(Coupling(p, split, hidden, activation) for p in perms)

    @staticmethod
    def log_normal(z):
        return -0.5 * (z ** 2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)

    def to_data(self, z):
        x, logdet = z, torch.zeros(z.shape[0], dtype=z.dtype)
        for c in self.couplings:
            x, ld = c(x)
            logdet = logdet + ld
        return x, self.log_normal(z) - logdet

    def log_prob(self, x):
        z, logdet = x, torch.zeros(x.shape[0], dtype=x.dtype)
        for c in reversed(self.couplings):
            z, ld = c.inverse(z)
            logdet = logdet + ld
        return self.log_normal(z) - logdet


def from_state_dict(state: dict, activation: str) -> RealNVP:
    """Rebuild the module from a state dict of numpy arrays or tensors (sizes inferred)."""
    n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("couplings."))
    perms = [[int(i) for i in state[f"couplings.{l}.perm"]] for l in range(n)]
    lin = sorted({int(k.split(".")[3]) for k in state if k.startswith("couplings.0.s.")})
    first = state[f"couplings.0.s.{lin[0]}.weight"]
    split = first.shape[1]
    hidden = [state[f"couplings.0.s.{k}.weight"].shape[0] for k in lin[:-1]]
    model = RealNVP(perms, split, hidden, activation)
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return model
