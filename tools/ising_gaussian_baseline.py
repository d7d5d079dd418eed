"""The best Gaussian variational bound on the relaxed 2D Ising model, at beta_c.

A Gaussian q = N(0, S) is what a Monge-Ampere flow with a quadratic potential produces from
N(0, I). For a translation-invariant S (diagonal in the lattice Fourier basis, eigenvalues
s_k) the bound E_q[ln pi~] + H(q) on ln Z_relax is

    -1/2 sum_k s_k / a_k + 1/2 sum_k ln(2 pi e s_k) + N E_{z ~ N(0, v)} ln cosh z,

with a_k the eigenvalues of K' and v = mean(s_k) the per-site variance; the last expectation
is computed by Gauss-Hermite quadrature (80 nodes). Maximized over ln s_k by L-BFGS-B and
converted to Ising units with IsingRelaxation.constant. It shows how far a simple flow is from
the multimodal relaxed density (docs/kinds/ising_variational.rst, "Why larger lattices are
hard").

    python tools/ising_gaussian_baseline.py [L ...]      (default 4 8 16)
"""
from __future__ import annotations

import math
import sys

import numpy as np
from scipy import optimize

from ot_pde.ising.exact import BETA_C, IsingRelaxation, adjacency, kaufman_lnZ


def best_gaussian_lnZ_per_site(L: int, beta: float = BETA_C) -> float:
    relax = IsingRelaxation(L, beta)
    N = L * L
    k_eigs = np.linalg.eigvalsh(beta * adjacency(L))
    a = k_eigs + (0.1 - k_eigs.min())  # the default shift: lambda_min(K') = 0.1
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()

    def log_cosh(x):
        ax = np.abs(x)
        return ax + np.log1p(np.exp(-2.0 * ax)) - math.log(2.0)

    def negative_bound(log_s):
        s = np.exp(log_s)
        v = s.mean()
        return -(-0.5 * np.sum(s / a) + 0.5 * np.sum(np.log(2.0 * math.pi * math.e * s))
                 + N * np.sum(weights * log_cosh(math.sqrt(v) * nodes)))

    res = optimize.minimize(negative_bound, np.log(a), method="L-BFGS-B")
    return (-res.fun + relax.constant) / N


def main(argv: list[str]) -> None:
    for L in [int(a) for a in argv] or [4, 8, 16]:
        bound = best_gaussian_lnZ_per_site(L)
        exact = kaufman_lnZ(L, BETA_C) / (L * L)
        print(f"L = {L:3d}: best Gaussian ln Z/N = {bound:.6f}, exact {exact:.6f}, "
              f"relative error {(exact - bound) / exact:.2%}")


if __name__ == "__main__":
    main(sys.argv[1:])
