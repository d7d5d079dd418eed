"""Write ``checkpoints/gp_affine_4d.npz``: a 4D RealNVP whose couplings are affine (constant
scales, shifts linear in the conditioning coordinates), so T(z) = M z + m exactly.

Used by ``cases/gp_affine_4d.toml`` (gp_flow, d > 2). The optimal Gaussian-preserving
rearrangement of an affine flow is a rotation: with the polar factorization M = P R (P
symmetric positive definite, R orthogonal), T o R^T (z) = P z + m is the Brenier map and the
transport cost drops from |m|^2 + |M - I|_F^2 to the Bures value |m|^2 + |P - I|_F^2. The
script prints both. Only numpy and ot_pde are needed:

    .venv/bin/python tools/make_gp_affine_checkpoint.py [OUT.npz]
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ot_pde.flows.exported import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]

#: (permutation, scale biases s (tanh -> log-scale), shift weights W (2 x 2), shift biases)
LAYERS = [
    ([0, 1, 2, 3], [0.3, -0.2], [[0.9, -0.4], [0.3, 0.8]], [0.2, -0.1]),
    ([2, 3, 0, 1], [-0.25, 0.15], [[-0.8, 0.2], [-0.5, -0.7]], [0.0, 0.3]),
    ([0, 2, 1, 3], [0.1, 0.2], [[0.5, -0.6], [0.4, 0.3]], [-0.2, 0.0]),
]


def affine_realnvp(path, layers=LAYERS, seed: int = 0):
    """Write the checkpoint; returns ``(M, m)`` with T(z) = M z + m."""
    d, split = 4, 2
    params, M, m, total_log_scale = {}, np.eye(d), np.zeros(d), 0.0
    for l, (perm, s, W, b) in enumerate(layers):
        s, W, b = np.array(s, float), np.array(W, float), np.array(b, float)
        params[f"coupling{l}.s.0.weight"] = np.zeros((d - split, split))
        params[f"coupling{l}.s.0.bias"] = np.arctanh(s)          # tanh(bias) = s
        params[f"coupling{l}.t.0.weight"] = W
        params[f"coupling{l}.t.0.bias"] = b
        cond, trans = perm[:split], perm[split:]
        A, c = np.eye(d), np.zeros(d)
        A[np.ix_(trans, trans)] = np.diag(np.exp(s))
        A[np.ix_(trans, cond)] = W
        c[trans] = b
        M, m = A @ M, A @ m + c
        total_log_scale += float(s.sum())
    meta = {"model_type": "realnvp", "dim": d, "layer_sizes": [split, d - split],
            "activation": "tanh", "direction": "latent_to_data", "integrator": None,
            "steps": None, "dtype": "float64",
            "config": {"split": split, "permutations": [list(p) for p, *_ in layers],
                       "scale_activation": "tanh"}}
    z = np.random.default_rng(seed).standard_normal((8, d))
    x = z @ M.T + m
    logp = -0.5 * np.sum(z * z, 1) - 0.5 * d * math.log(2 * math.pi) - total_log_scale
    save_checkpoint(path, meta, params, {"input": z, "output": x, "log_density": logp})
    return M, m


def bures_values(M, m):
    """``(cost of T, Bures W2^2 = cost of the Brenier map, R)`` for T(z) = M z + m."""
    u, sv, vt = np.linalg.svd(M)
    P = u @ np.diag(sv) @ u.T
    R = u @ vt                                    # M = P R
    d = M.shape[0]
    return (float(m @ m + np.sum((M - np.eye(d)) ** 2)),
            float(m @ m + np.sum((P - np.eye(d)) ** 2)), R)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "checkpoints" / "gp_affine_4d.npz"
    M, m = affine_realnvp(out)
    before, bures, R = bures_values(M, m)
    angles = np.abs(np.angle(np.linalg.eigvals(R)))
    print(f"wrote {out}\ncost before {before:.6f}  Bures W2^2 {bures:.6f}  "
          f"rotation angles of R {np.round(np.sort(angles), 4).tolist()}")
