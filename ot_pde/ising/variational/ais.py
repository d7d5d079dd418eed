r"""Annealed importance sampling on top of the flow, with Swendsen-Wang moves.

Why
---
The plain importance weights :math:`w = \tilde\pi / q` of the flow are heavy-tailed at
:math:`L = 16`, :math:`\beta_c`: :math:`q` misses the lattice-size spin domains, so the few
samples that happen to fall near one carry much of :math:`\sum w`, and the importance estimate
and its delta-method error bar rest on them. Annealed importance sampling (R. M. Neal,
Statistics and Computing 11, 125 (2001)) moves every sample from :math:`q` towards
:math:`\tilde\pi` through a chain of intermediate densities and keeps weights whose mean is
still exactly :math:`Z`; with Swendsen-Wang moves (:mod:`ot_pde.ising.cluster`) the chain
draws the domains that the flow does not.

The path
--------
A flow sample is :math:`x = F(x_0)`, :math:`x_0 \sim q_0` (the base), with the reported
:math:`\ln q(x)`. Write :math:`\ln w(x_0) = \ln\tilde\pi(F(x_0)) - \ln q(F(x_0))` (the plain
log-weight) and anneal in the base's variables,

.. math:: f_b(x_0) = q_0(x_0)\,w(x_0)^b, \qquad b_k = k/K,\; k = 0..K,

so :math:`f_0 = q_0` (normalized) and :math:`\int f_1 = \mathbb E_{q_0}[w] = Z_{\rm relax}`
(the push-forward of :math:`q_0` by :math:`F` is :math:`q`, to the same accuracy as the plain
estimator's :math:`\ln q`). Each chain starts at :math:`x_0 \sim q_0`, and for
:math:`k = 1..K` adds :math:`(b_k - b_{k-1})\ln w(x)` to its log-weight, then applies two
Metropolis-Hastings moves that leave :math:`f_{b_k}` invariant:

1. *independence*: propose :math:`y \sim q_0` (a fresh draw of the model), accept with
   probability :math:`\min(1, (w(y)/w(x))^{b})`; it carries the chain while :math:`b` is small
   and :math:`f_b` is close to :math:`q_0`;
2. *cluster*: propose :math:`y` by :func:`~ot_pde.ising.cluster.cluster_move` (reversible with
   respect to :math:`\tilde\pi`), accept with probability
   :math:`\min(1, f_b(y)\tilde\pi(x) / (f_b(x)\tilde\pi(y)))`; it carries the chain while
   :math:`b` is close to 1, where it is accepted almost always, and renews the domains.

Then :math:`\mathbb E[W] = Z_{\rm relax}` exactly for any :math:`K` (Neal 2001: importance
sampling on the extended space of the whole chain), so
:func:`~ot_pde.ising.estimators.log_partition_estimates` of :math:`\ln W` gives an importance
estimate, its delta-method error, the effective sample size and the largest weight's share,
as for the plain weights; a better path only makes the weights less spread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...backends import Backend
from ..cluster import cluster_move
from ..exact import IsingRelaxation


@dataclass
class FlowModel:
    """What the annealing needs of a flow and its base.

    Attributes
    ----------
    draw : callable
        ``draw(rng, n) -> (x0, ln q0(x0))``: ``n`` draws of the base.
    log_q0 : callable
        ``log_q0(x0) -> ln q0(x0)``: the base's log-density anywhere.
    log_weight : callable
        ``log_weight(x0, ln q0(x0)) -> ln w``: the plain log-weight of the flow's sample
        :math:`F(x_0)`.
    """

    draw: Callable
    log_q0: Callable
    log_weight: Callable


def annealed_importance(model: FlowModel, relax: IsingRelaxation, n_chains: int, n_steps: int,
                        rng: np.random.Generator, progress=None, backend: Backend | None = None
                        ) -> dict:
    r"""Run ``n_chains`` chains through ``n_steps`` temperatures (module notes).

    ``backend`` runs the cluster move's Swendsen-Wang update (numpy by default).

    ``progress(k, b, acceptance_independent, acceptance_cluster)``, if given, is called after
    each temperature. A proposal whose log-weight is not finite is rejected; a chain that
    starts at one keeps a non-finite log-weight (the caller drops it, with a warning).

    Returns
    -------
    dict
        ``log_weights`` (n_chains,): :math:`\ln W`; ``x0`` (n_chains, d): the chains' last
        states, which with the weights :math:`W` estimate expectations under the pulled-back
        target (self-normalized); ``acceptance_independent`` and ``acceptance_cluster``
        (n_steps,): the fraction of chains that moved at each temperature.
    """
    if n_chains < 1 or n_steps < 1:
        raise ValueError(f"annealing needs chains and steps >= 1, got {n_chains}, {n_steps}")
    b = np.arange(n_steps + 1) / n_steps
    x0, log_q0 = model.draw(rng, n_chains)
    log_w = model.log_weight(x0, log_q0)
    # ln pi~(x0) - ln q0(x0): the cluster move's acceptance needs it at the current state
    base_log_w = relax.log_prob(x0) - log_q0
    log_W = np.zeros(n_chains)
    accepted = np.zeros((2, n_steps))
    for k in range(1, n_steps + 1):
        log_W += (b[k] - b[k - 1]) * log_w
        y, log_q0_y = model.draw(rng, n_chains)
        log_w_y = model.log_weight(y, log_q0_y)
        move = np.log(rng.random(n_chains)) < b[k] * (log_w_y - log_w)
        x0[move], log_w[move] = y[move], log_w_y[move]
        base_log_w[move] = relax.log_prob(y[move]) - log_q0_y[move]
        accepted[0, k - 1] = move.mean()

        y = cluster_move(relax, x0, rng, backend)
        log_q0_y = model.log_q0(y)
        log_w_y = model.log_weight(y, log_q0_y)
        base_log_w_y = relax.log_prob(y) - log_q0_y
        # ln [f_b(y) pi~(x) / (f_b(x) pi~(y))] = b dln w - d(ln pi~ - ln q0)
        move = np.log(rng.random(n_chains)) < (b[k] * (log_w_y - log_w)
                                               - (base_log_w_y - base_log_w))
        x0[move], log_w[move], base_log_w[move] = y[move], log_w_y[move], base_log_w_y[move]
        accepted[1, k - 1] = move.mean()
        if progress is not None:
            progress(k, float(b[k]), float(accepted[0, k - 1]), float(accepted[1, k - 1]))
    return {"log_weights": log_W, "x0": x0, "acceptance_independent": accepted[0],
            "acceptance_cluster": accepted[1]}
