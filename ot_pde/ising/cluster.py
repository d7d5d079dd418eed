r"""Swendsen-Wang cluster moves for the Ising model and for its continuous relaxation.

Why
---
At :math:`\beta_c` the typical spin configuration has domains the size of the lattice. Local
moves need of order :math:`L^{2.17}` sweeps to renew them; a Swendsen-Wang update (R. H.
Swendsen and J.-S. Wang, Phys. Rev. Lett. 58, 86 (1987)) renews them in a few steps. The
annealed importance sampler of :mod:`ot_pde.ising.variational.ais` uses it to move the flow's
samples towards the domains that the flow itself does not draw.

The spin update
---------------
:func:`swendsen_wang`: every bond (each site's right and lower bond, so the :math:`2N` bonds of
:math:`E(s)` in :mod:`ot_pde.ising.exact`, doubled ones at :math:`L = 2` included) joining
equal spins is kept with probability :math:`1 - e^{-2\beta J}`; the clusters the kept bonds
make (union-find) are each flipped with probability 1/2. It is the Gibbs sampler of the
Edwards-Sokal joint distribution of spins and bonds, so it is reversible with respect to
:math:`P(s) \propto e^{-\beta E(s)}` (ferromagnet, :math:`J > 0`).

The move on the relaxation
--------------------------
The relaxation's density is the :math:`x`-marginal of
:math:`p(x, s) \propto \exp(-\frac12 x^\top\mathbf K'^{-1}x + s^\top x)`, whose conditionals
are :math:`p(s\mid x) = \prod_i \sigma(2 s_i x_i)`, :math:`p(x\mid s) = \mathcal N(\mathbf K's,
\mathbf K')`, and whose :math:`s`-marginal is the Ising model. :func:`cluster_move` draws
:math:`s \mid x`, updates :math:`s` by Swendsen-Wang and draws :math:`x' \mid s'`. The kernel
:math:`k(x, x') = \sum_{s, s'} p(s\mid x)\,T(s, s')\,p(x'\mid s')` satisfies
:math:`\tilde\pi(x)k(x, x') = \tilde\pi(x')k(x', x)` because
:math:`\tilde\pi(x)p(s\mid x) = p(x\mid s)P(s)` and :math:`P(s)T(s, s') = P(s')T(s', s)`:
it is reversible with respect to :math:`\tilde\pi`, so it can serve as a Metropolis-Hastings
proposal for any density :math:`f`, with acceptance ratio
:math:`f(x')\tilde\pi(x) / (f(x)\tilde\pi(x'))`.
"""
from __future__ import annotations

import math

import numpy as np

from ..backends import NUMBA, Backend, as_backend
from ._union_find import swendsen_wang_loops
from .exact import IsingRelaxation


def _numba_swendsen_wang():
    from ._kernels_numba import swendsen_wang_kernel

    return swendsen_wang_kernel


def swendsen_wang(spins: np.ndarray, beta_J: float, rng: np.random.Generator,
                  backend: Backend | None = None) -> np.ndarray:
    r"""One Swendsen-Wang update of each row of ``spins`` (shape (B, N), :math:`N = L^2`,
    values :math:`\pm1`) at coupling :math:`\beta J > 0`; returns the new spins (a new array).
    ``backend`` numba runs the union-find in a kernel, numpy (the default) in Python."""
    spins = np.asarray(spins, dtype=np.float64)
    B, N = spins.shape
    L = math.isqrt(N)
    if L * L != N:
        raise ValueError(f"spins must have L^2 columns, got {N}")
    if not beta_J > 0.0:
        raise ValueError(f"Swendsen-Wang needs a ferromagnet, beta J > 0, got {beta_J!r}")
    lattice = spins.reshape(B, L, L)
    out = np.empty_like(lattice)
    kernel = as_backend(backend).bind({NUMBA: _numba_swendsen_wang},
                                      default=lambda: swendsen_wang_loops)
    kernel(lattice, -math.expm1(-2.0 * beta_J), rng.random((B, L, L, 2)), rng.random((B, N)), out)
    return out.reshape(B, N)


def cluster_move(relax: IsingRelaxation, x: np.ndarray, rng: np.random.Generator,
                 backend: Backend | None = None) -> np.ndarray:
    r"""The :math:`\tilde\pi`-reversible proposal of the module notes: :math:`s \mid x`, one
    Swendsen-Wang update, :math:`x' \mid s'`; ``x`` is (B, N)."""
    x = np.asarray(x, dtype=np.float64)
    spins = relax.spins_from_uniforms(x, rng.random(x.shape))
    spins = swendsen_wang(spins, relax.beta * relax.J, rng, backend)
    return relax.draw_given_spins(spins, rng.standard_normal(x.shape))
