"""Annealed importance sampling at L = 16: where one temperature's time goes.

The setting of ``cases/ising_L16_critical.toml``: 256 chains, the checkerboard base with 4
coupling layers, the width-8 potential averaged over the whole symmetry group, 2 RK4 steps.
One temperature of :func:`ot_pde.ising.variational.ais.annealed_importance` (half the time of
a 3-temperature run less a 1-temperature one) costs two flow evaluations per chain, a base
draw, a base log-density, two relaxation log-densities and a cluster move; each is timed alone
(median of repeats) and reported as a share of the whole temperature, measured in the same
process. The Swendsen-Wang update (numba union-find) is set beside
a reference with the same bond rule written with ``scipy.sparse.csgraph.connected_components``
on the block-diagonal graph of all chains. The potential's weights are its initial ones: the
cost does not depend on them. Nothing is asserted.

Run ``python benchmarks/bench_ising_ais.py [--quick]`` or ``python benchmarks/run.py --only
ising``.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from bench_flows import median_time  # benchmarks/ is sys.path[0] when run as a script
from scipy import sparse
from scipy.sparse import csgraph

from ot_pde.backends import get_backend
from ot_pde.config import load_case
from ot_pde.flows.integrators import integrate
from ot_pde.flows.model import flow_options
from ot_pde.ising.cluster import cluster_move, swendsen_wang
from ot_pde.ising.variational.ais import FlowModel, annealed_importance
from ot_pde.ising.variational.base import CheckerboardMixtureBase
from ot_pde.ising.variational.problem import IsingVariationalProblem

CASE = Path(__file__).resolve().parent.parent / "cases" / "ising_L16_critical.toml"


def swendsen_wang_csgraph(spins, beta_J, rng):
    """The same update with scipy's connected components (the reference)."""
    B, N = spins.shape
    L = math.isqrt(N)
    lattice = spins.reshape(B, L, L)
    site = np.arange(B * N).reshape(B, L, L)
    keep = -math.expm1(-2.0 * beta_J)
    rows, cols = [], []
    for axis in (2, 1):  # right, lower bonds
        neighbour = np.roll(site, -1, axis=axis)
        kept = (lattice == np.roll(lattice, -1, axis=axis)) & (rng.random((B, L, L)) < keep)
        rows.append(site[kept])
        cols.append(neighbour[kept])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(B * N, B * N))
    _, labels = csgraph.connected_components(graph, directed=False)
    flip = rng.random(labels.max() + 1) < 0.5
    return np.where(flip[labels], -1.0, 1.0).reshape(B, N) * spins


def main(quick: bool = False) -> None:
    case = load_case(CASE)
    problem = IsingVariationalProblem(case)
    relax = problem.relax
    pot = problem.build_potential(get_backend("numba"))
    base = CheckerboardMixtureBase(relax.L, relax.beta, relax.J, case.get("base.components"),
                                   case.get("base.couplings"))
    options = flow_options(case)
    chains = 64 if quick else case.get("estimate.ais_chains")
    repeats = 3 if quick else 7
    rng = np.random.default_rng(0)

    def draw(generator, n):
        drawn = base.draw(generator, n)
        return drawn[:, :-1], drawn[:, -1]

    def log_weight(x0, log_q0):
        x, log_q = integrate(pot, x0, log_q0, **options)
        return relax.log_prob(x) - log_q

    x0, log_q0 = draw(rng, chains)
    spins = relax.spins_from_uniforms(x0, rng.random(x0.shape))
    # each part, and how many times a temperature calls it
    parts = {
        "flow evaluation": (lambda: log_weight(x0, log_q0), 2),
        "base draw": (lambda: draw(rng, chains), 1),
        "base log-density": (lambda: base.log_prob(x0), 1),
        "relaxation log-density": (lambda: relax.log_prob(x0), 2),
        "cluster move": (lambda: cluster_move(relax, x0, rng), 1),
    }
    times = {name: median_time(fn, repeats) for name, (fn, _) in parts.items()}
    model = FlowModel(draw, base.log_prob, log_weight)
    # one temperature: the run of 3 minus the run of 1 (which holds the chains' start), halved
    runs = {k: median_time(lambda: annealed_importance(model, relax, chains, k, rng), repeats)
            for k in (1, 3)}
    step = (runs[3] - runs[1]) / 2
    print(f"\nAnnealing at L = {relax.L}, {chains} chains, one temperature: "
          f"{step * 1e3:8.1f} ms ({step / chains * 1e3:.2f} ms per chain)")
    for name, t in times.items():
        calls = parts[name][1]
        print(f"  {name + f' (x{calls})':<28} {t * 1e3:8.1f} ms  ({t * calls / step:6.1%} of "
              f"the step)")
    t_numba = median_time(lambda: swendsen_wang(spins, relax.beta, rng), repeats)
    t_ref = median_time(lambda: swendsen_wang_csgraph(spins, relax.beta, rng), repeats)
    print(f"  Swendsen-Wang alone: numba {t_numba * 1e3:.2f} ms, scipy csgraph reference "
          f"{t_ref * 1e3:.2f} ms (ratio reference/numba {t_ref / t_numba:.1f}x)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
