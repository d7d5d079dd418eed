"""Entropic potentials (``entropic_potentials``): log-domain separable Sinkhorn beside POT.

1. Time per Sinkhorn iteration (both half-steps) of our separable log-domain solver, numpy vs
   numba, at 64^2, 128^2 and 256^2 (eps = 1e-3 on [0, 1]^2 at 256^2: the iterates stay finite).
2. At 64^2 (4096 points, a dense 4096^2 cost matrix is still affordable): POT's dense
   ``ot.sinkhorn2`` (linear and log domain) on the same histograms, same eps, same
   convention (cost |x-y|^2/2, reg = eps): entropic cost and time to the same tolerance.
3. POT's ``ot.bregman.convolutional_barycenter2d`` (separable linear-domain convolutions,
   Solomon et al. 2015) time per iteration at 256^2 beside ours (its kernel is applied in the
   linear domain, ours in the log domain, which stays finite for small eps).

4. Learned potentials (``representation = "neural"``): one evaluation of the heat-smoothed
   velocity and divergence (both potentials, 64-unit networks, 32 Monte Carlo draws, 4096
   points: 131072 network rows each), numpy reference vs the numba kernel, and one training
   step (batch 256, 16 draws).

POT is optional: without it 1 and 4 run. Run ``python benchmarks/bench_entropic.py [--quick]``
or ``python benchmarks/run.py --only entropic``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ot_pde.backends import available_backends, get_backend
from ot_pde.spacetime.solver import SpaceTimeGrid
from ot_pde.transport.entropic import EntropicSolver


def _densities(grid):
    pts = np.stack(grid.mesh(), axis=-1)
    r0 = np.exp(-np.sum((pts - 0.35) ** 2, -1) / (2 * 0.07 ** 2))
    r1 = np.exp(-np.sum((pts - 0.65) ** 2, -1) / (2 * 0.1 ** 2))
    return r0 / (r0.sum() * grid.cell_volume), r1 / (r1.sum() * grid.cell_volume)


def _grid(n):
    return SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (n, n), 2)


def time_per_iteration(n, backend, eps, iterations):
    grid = _grid(n)
    mu, nu = _densities(grid)
    solver = EntropicSolver(mu, nu, grid, get_backend(backend), epsilon=eps,
                            max_iterations=10 ** 9)
    solver.step()  # JIT compilation
    start = time.perf_counter()
    for _ in range(iterations):
        solver.step()
    finite = bool(np.isfinite(solver.f).all() and np.isfinite(solver.g).all())
    return (time.perf_counter() - start) / iterations, finite


def bench_iterations(quick: bool):
    backends = [b for b in ("numpy", "numba") if b in available_backends()]
    print("Entropic potentials: time per log-domain Sinkhorn iteration (separable)")
    print(f"{'grid':>10} {'eps':>8} " + " ".join(f"{b:>12}" for b in backends) + "  finite")
    for n, eps, its in ((64, 1e-2, 20), (128, 1e-2, 5), (256, 1e-3, 2)):
        if quick and n == 256:
            backends_n = [b for b in backends if b != "numpy"] or backends
        else:
            backends_n = backends
        res = {b: time_per_iteration(n, b, eps, its) for b in backends_n}
        row = f"{n:>7}^2 {eps:8.0e} " + " ".join(
            f"{res[b][0] * 1e3:10.1f}ms" if b in res else f"{'-':>12}" for b in backends)
        print(row + f"  {all(r[1] for r in res.values())}", flush=True)


def bench_pot(quick: bool):
    try:
        import ot
    except ImportError:
        print("POT not installed: skipping the comparison (pip install pot)")
        return
    n, eps, tol = 64, 1e-2, 1e-9
    grid = _grid(n)
    mu, nu = _densities(grid)
    backend = "numba" if "numba" in available_backends() else "numpy"
    solver = EntropicSolver(mu, nu, grid, get_backend(backend), epsilon=eps, tol=tol,
                            max_iterations=20000)
    solver.step()
    start = time.perf_counter()
    while not solver.finished:
        solver.step()
    t_ours = time.perf_counter() - start
    a = (mu * grid.cell_volume).ravel()
    b = (nu * grid.cell_volume).ravel()
    pts = np.stack(grid.mesh(), axis=-1).reshape(-1, 2)
    start = time.perf_counter()
    cost = 0.5 * ot.dist(pts, pts)
    t_cost = time.perf_counter() - start
    print(f"\nEntropic OT at {n}^2, eps = {eps:g}, cost |x-y|^2/2, tolerance {tol:g}")
    print(f"  ours ({backend}, separable log domain): 2 OT_eps = {solver.entropic_cost():.10f} "
          f"({solver.iteration} it) {t_ours:8.2f} s")
    for method in ("sinkhorn", "sinkhorn_log"):
        start = time.perf_counter()
        plan = ot.sinkhorn(a, b, cost, eps, method=method, stopThr=tol, numItermax=20000)
        t_pot = time.perf_counter() - start
        kl = np.sum(plan * np.log(np.maximum(plan, 1e-300) / np.outer(a, b)))
        value = 2 * (np.sum(plan * cost) + eps * kl)
        print(f"  POT ot.sinkhorn method={method:<13}: 2 OT_eps = {value:.10f}          "
              f"{t_pot + t_cost:8.2f} s (ratio POT/ours {(t_pot + t_cost) / t_ours:6.1f}x)")
    n = 128 if quick else 256
    grid = _grid(n)
    mu, nu = _densities(grid)
    hist = np.stack([mu / mu.sum(), nu / nu.sum()])
    reg = 4e-3  # POT's kernel exp(-x^2/reg) on [0, 1]: eps = reg/2 in our convention
    its = 20
    start = time.perf_counter()
    ot.bregman.convolutional_barycenter2d(hist, reg, np.array([0.5, 0.5]), numItermax=its,
                                          stopThr=0.0)
    t_conv = (time.perf_counter() - start) / its
    t_ours, _ = time_per_iteration(n, backend, reg / 2, 3)
    print(f"\n{n}^2, eps = {reg / 2:g}: POT convolutional_barycenter2d {t_conv * 1e3:8.2f} ms/it "
          f"(2 measures, linear domain) vs ours {t_ours * 1e3:8.2f} ms/it (log domain, "
          f"{backend}); ratio ours/POT {t_ours / t_conv:6.1f}x")


def bench_neural(quick: bool):
    from ot_pde.transport.entropic.dual_training import DualTraining
    from ot_pde.transport.entropic.neural import (
        DualObjective,
        GaussianTarget,
        QuadraticNetwork,
        initialize_pair,
    )
    from ot_pde.transport.entropic.recovery import EntropicFlow

    target = GaussianTarget(np.zeros(2), np.eye(2))
    points = np.random.default_rng(0).standard_normal((1024 if quick else 4096, 2))
    print("\nLearned potentials: heat-smoothed velocity + divergence, "
          f"{len(points)} points x 32 draws, width 64")
    times = {}
    for backend in [b for b in ("numpy", "numba") if b in available_backends()]:
        phi = QuadraticNetwork(2, 64, seed=1, backend=get_backend(backend))
        psi = QuadraticNetwork(2, 64, seed=2, backend=get_backend(backend))
        initialize_pair(phi, psi, np.zeros(2), 2 * np.eye(2), target, 0.1)
        theta = np.concatenate([phi.params, psi.params])
        theta += 0.01 * np.random.default_rng(3).standard_normal(theta.size)
        obj = DualObjective(phi, psi, target, 0.1, draws=16)
        obj.set_params(theta)
        flow = EntropicFlow(phi, psi, 0.1, draws=32, seed=0)
        flow.velocity(points[:8], 0.5)  # JIT compilation
        start = time.perf_counter()
        flow.velocity(points, 0.5)
        times[backend] = time.perf_counter() - start
        print(f"  {backend:>6}: {times[backend] * 1e3:9.1f} ms", flush=True)
    if len(times) == 2:
        print(f"  ratio numpy/numba {times['numpy'] / times['numba']:6.1f}x")
    sampler = lambda n, rng: rng.standard_normal((n, 2)) * 1.5  # noqa: E731
    trainer = DualTraining(obj, iterations=10 ** 6, batch=256, lr=0.5, lr_final=0.5, seed=0,
                           sampler=sampler)
    trainer.step()
    its = 5 if quick else 20
    start = time.perf_counter()
    for _ in range(its):
        trainer.step()
    print(f"  training step (batch 256, 16 draws): "
          f"{(time.perf_counter() - start) / its * 1e3:8.1f} ms")


def main(quick: bool = False) -> None:
    bench_iterations(quick)
    bench_pot(quick)
    bench_neural(quick)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
