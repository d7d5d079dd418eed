#!/usr/bin/env python
"""Where the learned checkerboard velocity of ``cases/ek_samples_checkerboard.toml`` loses its
accuracy: the network family, the heat smoothing's Monte Carlo, or the training's sampler.

    python tools/ek_checkerboard_diagnosis.py [--width 32] [--maxiter 3000] [--draws 32 1024]
    python tools/ek_checkerboard_diagnosis.py --train shipped|pooled [--steps 1500] [--lr 3e-3]

No learning from samples here. The grid (Sinkhorn) solution of the case at its epsilon on its
64^2 box is the reference; each potential family (quadratic + one-hidden-layer network of
``--width`` units, :class:`~ot_pde.transport.entropic.neural.QuadraticNetwork`) is fitted to
the grid's plan potentials by maximizing the dual in that potential with the other one fixed
at the grid's and the integral done by quadrature on the grid cells,

    max_phi  sum_i mu_i phi(x_i) - eps sum_i exp((phi(x_i) - f_i)/eps)

(maximizer: phi = f + eps log mu, the grid's plan potential; likewise psi with g and nu), by
L-BFGS. This is the best a trainer with exact integrals could reach within the family, in the
dual's own metric. Printed, as relative L2(rho_t) velocity errors against the grid solver at
t = 1/4, 1/2, 3/4 (the case's metric):

1. the fitted pair smoothed by the grid's own heat semigroup (quadrature, no Monte Carlo), and
   each fitted potential beside the grid's other one: the family's error;
2. the fitted pair through the shipped recovery (:class:`~.recovery.EntropicFlow`, Monte Carlo
   over ``--draws`` heat draws from the quadratic part's tilted Gaussian): the recovery's error;
3. the training's importance sampler (:meth:`~.neural.DualObjective.log_weights`, draws from the
   Gaussian conditional of phi's quadratic part) at the fitted pair: the effective sample size
   per target sample and the plan-mass estimate, beside the pair's plan mass by quadrature.

With ``--train``, instead, phi alone is learned from the case's samples and judged with psi
its exact transform (quadrature) and the quadrature smoothing, so that only the training is
measured: ``shipped`` is the case's own training (:class:`~.dual_training.DualTraining`);
``pooled`` ascends the semi-dual in phi with log Z_phi(y) = log int exp((phi(x) - |x - y|^2/2)
/eps) dx estimated over one shared pool per step of ``--pool`` points from a defensive mixture,
half a kernel density estimate of fresh data (bandwidth ``--bandwidth``) and half a broad
Gaussian, by Adam on all of phi's parameters (rate ``--lr`` decaying to ``--lr-final``).

Exit codes: 0 done, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from ot_pde.backends import get_backend
from ot_pde.config import load_case
from ot_pde.flows.training import Adam, geometric_lr
from ot_pde.transport.entropic.grid_compare import COMPARE_TIMES, velocity_l2_error
from ot_pde.transport.entropic.neural import (
    DualObjective,
    QuadraticNetwork,
    gaussian_quadratic,
)
from ot_pde.transport.entropic.problem import build_source_density
from ot_pde.transport.entropic.recovery import EntropicFlow
from ot_pde.transport.entropic.sample_problem import SampleProblem
from ot_pde.transport.entropic.solver import (
    EntropicSolver,
    SpaceTimeGrid,
    lattice_log_norm,
)

EXP_CAP = 30.0
CASE = Path(__file__).resolve().parent.parent / "cases" / "ek_samples_checkerboard.toml"


def fit(pts, dual, dens, width, eps, cell, maxiter, seed):
    """The family's maximizer of the one-potential dual (module docstring); returns the
    potential and its dual gap to the grid's plan potential (per unit mass, >= 0)."""
    pot = QuadraticNetwork(2, width, "softplus", seed=seed, backend=get_backend("numba"))
    scale = dens.sum()

    def negative_dual(theta):
        pot.set_params(theta)
        v = pot.value(pts)
        # exp continued linearly beyond EXP_CAP (convex, C^1): L-BFGS's trial steps stay
        # finite, and the maximizer, where exp stays far below the cap, is unchanged
        r = (v - dual) / eps
        e = np.exp(np.minimum(r, EXP_CAP))
        de = e.copy()
        big = r > EXP_CAP
        e[big] *= 1.0 + r[big] - EXP_CAP
        value = -(dens @ v - eps * e.sum()) / scale
        return float(value), -pot.param_grad(pts, dens - de) / scale

    # start: the least-squares quadratic of the dual potential over the box plus eps log of
    # the density's Gaussian fit, so that exp((pot - dual)/eps) starts near that fit
    theta = pot.params.copy()
    feats = pot.linear_features(pts)
    lin = np.linalg.lstsq(feats, dual, rcond=None)[0]
    w = dens / scale
    m = w @ pts
    cov = (pts - m).T @ ((pts - m) * w[:, None])
    s2, b2, c2 = gaussian_quadratic(m, cov, eps)
    lin[:4] += s2.reshape(-1)
    lin[4:6] += b2
    lin[6] += c2 + eps * math.log(scale * cell)
    theta[:pot.n_quad] = lin
    res = minimize(negative_dual, theta, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter})
    pot.set_params(res.x)
    best = (dens @ (dual + eps * np.log(np.maximum(dens, 1e-300))) - eps * scale) / scale
    return pot, best + res.fun


def kernel_grad(smoothed, z, s):
    r"""The gradient of :math:`\varepsilon\log H_s[e^{\varphi/\varepsilon}]` in its kernel
    form :math:`\varepsilon\,\mathbb E_p[(x - z)/s]`, :math:`p \propto k_s(z - x)e^{\varphi(x)
    /\varepsilon}`, by self-normalized weights over the same draws as the shipped pathwise form
    (:meth:`~.recovery.SmoothedPotential.evaluate`), which averages the network's gradient
    instead: both are consistent, their variances differ."""
    eps = smoothed.eps
    qinv, qisqrt, _, b, _ = smoothed._gaussian(s)
    out = np.empty_like(z)
    rows = max(1, 2 ** 20 // len(smoothed.xi))  # points per chunk: bounded memory
    for lo in range(0, len(z), rows):
        zz = z[lo:lo + rows]
        x = ((b / eps + zz / s) @ qinv)[:, None, :] + (smoothed.xi @ qisqrt)[None]
        n, k = x.shape[:2]
        hv = smoothed.pot.net_value_grad(x.reshape(n * k, -1))[0].reshape(n, k) / eps
        w = np.exp(hv - hv.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        out[lo:lo + rows] = eps * (w[..., None] * (x - zz[:, None, :])).sum(1) / s
    return out


def pooled_training(prob, phi, steps, lr, lr_final, pool, bandwidth, batch=256, seed=11):
    """Adam ascent of the semi-dual in ``phi`` with the pooled defensive-mixture sampler
    (module docstring); prints the batch semi-dual and the median effective pool size."""
    eps, rng = prob.epsilon, np.random.default_rng(seed)
    adam = Adam(phi.n_params, lr=lr)
    log_2pi = math.log(2 * math.pi)
    for k in range(steps):
        xs = prob.source.sample(batch, rng)
        y = prob.target.sample(batch, rng)
        centres = prob.source.sample(pool // 2, rng)
        m = xs.mean(0)
        chol = np.linalg.cholesky(np.cov(xs.T) * 2.0 + 0.1 * np.eye(2))
        x = np.concatenate([centres + bandwidth * rng.standard_normal(centres.shape),
                            m + rng.standard_normal((pool - pool // 2, 2)) @ chol.T])
        d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        log_kde = np.log(np.exp(-d2 / (2 * bandwidth ** 2)).mean(1) + 1e-300) - log_2pi \
            - 2 * math.log(bandwidth)
        r = np.linalg.solve(chol, (x - m).T).T
        log_gauss = -0.5 * (r ** 2).sum(1) - log_2pi - np.log(np.diag(chol)).sum()
        log_q = np.logaddexp(log_kde, log_gauss) + math.log(0.5)
        logr = ((phi.value(x) - eps * log_q)[:, None]
                - 0.5 * ((x[:, None, :] - y[None]) ** 2).sum(-1)) / eps
        top = logr.max(0, keepdims=True)
        e = np.exp(logr - top)
        tot = e.sum(0, keepdims=True)
        log_z = (np.log(tot / pool) + top)[0]
        value = phi.value(xs).mean() - eps * log_z.mean()  # at the parameters of the step
        grad = phi.param_grad(xs, np.full(batch, 1.0 / batch)) \
            - phi.param_grad(x, (e / tot).sum(1) / batch)
        adam.lr = geometric_lr(lr, lr_final, k, steps)
        phi.set_params(adam.step(phi.params.copy(), -grad))
        if (k + 1) % 250 == 0:
            ess = tot[0] ** 2 / (e ** 2).sum(0)
            print(f"  step {k + 1}: batch semi-dual {value:.4f}, effective pool size median "
                  f"{np.median(ess):.0f} of {pool}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--maxiter", type=int, default=3000)
    ap.add_argument("--draws", type=int, nargs="+", default=[32, 1024])
    ap.add_argument("--train", choices=("shipped", "pooled"), default=None)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--lr-final", type=float, default=1e-3)
    ap.add_argument("--pool", type=int, default=2048)
    ap.add_argument("--bandwidth", type=float, default=0.15)
    args = ap.parse_args(argv)
    if min(args.width, args.maxiter, args.steps, args.pool, *args.draws) < 1 \
            or min(args.lr, args.lr_final, args.bandwidth) <= 0:
        ap.error("--width, --maxiter, --draws, --steps, --pool, --lr, --lr-final and "
                 "--bandwidth must be positive")
    case = load_case(CASE)
    if args.train:
        case.data["potentials"].update(width=args.width, iterations=args.steps)
    prob = SampleProblem(case)
    lo, hi, n = prob.box
    eps = prob.epsilon
    grid = SpaceTimeGrid(tuple(lo), tuple(hi), (n, n), 4)
    dens = [build_source_density(case.section(k), grid, where=str(CASE), key_prefix=k).values
            for k in ("source", "target")]
    start = time.perf_counter()
    sol = EntropicSolver(*dens, grid, get_backend("numpy"), epsilon=eps, tol=1e-8,
                         max_iterations=3000)
    while not sol.finished:
        sol.step()
    print(f"grid: {sol.iteration} Sinkhorn iterations, entropic cost {sol.entropic_cost():.4f}")
    ref = [sol.fields_at(t) for t in COMPARE_TIMES]
    axes = [lo[k] + (hi[k] - lo[k]) * (np.arange(n) + 0.5) / n for k in (0, 1)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    cell = float(np.prod(grid.spacing))
    half = 0.5 * (math.log(cell) + sum(lattice_log_norm(h, eps) for h in grid.spacing))

    def grad(w):
        return np.stack([np.gradient(w, h, axis=k, edge_order=2)
                         for k, h in enumerate(grid.spacing)])

    def quadrature_errors(a, b):
        """Velocity errors of the plan potentials a, b (grid values) smoothed by the grid's
        heat semigroup."""
        errs = []
        for j, t in enumerate(COMPARE_TIMES):
            la = sol.conv.log_heat(a / eps, t * eps) + half
            lb = sol.conv.log_heat(b / eps, (1 - t) * eps) + half
            errs.append(velocity_l2_error(0.5 * grad(eps * (lb - la)), ref[j][1], ref[j][0]))
        return np.round(errs, 3)

    if args.train:
        solver = prob.make_solver(get_backend("numba"))
        phi = solver.objective.phi
        start = time.perf_counter()
        if args.train == "shipped":
            while not solver.finished:
                solver.step()
        else:
            pooled_training(prob, phi, args.steps, args.lr, args.lr_final, args.pool,
                            args.bandwidth)
        values = phi.value(pts).reshape(n, n)
        # psi: the exact transform of phi, eps log nu - eps log int exp((phi - c)/eps) dx
        psi_values = sol._c_transform(values, np.zeros((n, n))) + eps * sol.log_nu
        print(f"{args.train} training of phi, width {args.width}, {args.steps} steps "
              f"({time.perf_counter() - start:.0f} s); with its exact transform and quadrature "
              f"smoothing: velocity errors {quadrature_errors(values, psi_values)}")
        return 0
    mu, nu = sol.mu.reshape(-1), sol.nu.reshape(-1)
    phi, gap_phi = fit(pts, sol.f.reshape(-1), mu, args.width, eps, cell, args.maxiter, 0)
    psi, gap_psi = fit(pts, sol.g.reshape(-1), nu, args.width, eps, cell, args.maxiter, 1)
    print(f"width {args.width}: dual gap of the fitted phi {gap_phi:.2e}, psi {gap_psi:.2e} "
          f"({time.perf_counter() - start:.0f} s)")

    grid_phi, grid_psi = sol.f + eps * sol.log_mu, sol.g + eps * sol.log_nu
    fit_phi, fit_psi = phi.value(pts).reshape(n, n), psi.value(pts).reshape(n, n)
    for name, a, b in (("fitted pair", fit_phi, fit_psi), ("fitted phi, grid psi", fit_phi,
                                                            grid_psi),
                       ("grid phi, fitted psi", grid_phi, fit_psi)):
        print(f"  quadrature smoothing, {name}: velocity errors {quadrature_errors(a, b)}")
    for k in args.draws:
        flow = EntropicFlow(phi, psi, eps, draws=k, seed=7)
        errs = [velocity_l2_error(flow.velocity(pts, t)[0].T.reshape(2, n, n), ref[j][1],
                                  ref[j][0]) for j, t in enumerate(COMPARE_TIMES)]
        kernel = [velocity_l2_error(0.5 * (kernel_grad(flow.psi_t, pts, (1 - t) * eps)
                                           - kernel_grad(flow.phi_t, pts, t * eps)
                                           ).T.reshape(2, n, n), ref[j][1], ref[j][0])
                  for j, t in enumerate(COMPARE_TIMES)]
        print(f"  shipped Monte Carlo smoothing, {k} heat draws: velocity errors "
              f"{np.round(errs, 3)}; the same draws, kernel-form gradient {np.round(kernel, 3)}")
    # the fitted pair's plan mass by quadrature on the box, what the sampler estimates below
    transform = sol._c_transform(psi.value(pts).reshape(n, n), np.zeros((n, n)))
    mass = cell * float(np.exp((fit_phi - transform) / eps).sum())
    print(f"  plan mass of the fitted pair by quadrature: {mass:.3f}")
    rng = np.random.default_rng(3)
    y = prob.target.sample(512, rng)
    for k in args.draws:
        obj = DualObjective(phi, psi, prob.target, eps, draws=k)
        _, logw, _ = obj.log_weights(y, rng.standard_normal((len(y), k, 2)))
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        ess = w.sum(1) ** 2 / (w ** 2).sum(1) / k
        print(f"  training sampler, {k} draws per target sample: ESS/draws median "
              f"{np.median(ess):.3f}, 10th percentile {np.quantile(ess, 0.1):.4f}; plan mass "
              f"estimate {np.exp(logw).mean():.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
