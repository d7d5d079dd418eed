r"""The estimators of the ``ising_variational`` kind after training: variational and
importance estimates of :math:`\ln Z_{\rm Ising}/N` from flow samples, the spin observables,
the log-determinant check of the discrete map, and annealed importance sampling on top of the
flow. Under MPI the chunks of samples (and the batches of annealing chains) are dealt round the
ranks, each rank drawing every chunk's random numbers in the serial order, so the results are
the serial ones to the bit. Nothing here reads files or prints (progress goes to the log).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ...flows.integrators import integrate, to_host
from ...flows.logdet import logdet_error_per_site
from ...flows.model import flow_options
from ...flows.training import draw_actions
from ..estimators import log_partition_estimates, weighted_mean
from ..exact import IsingRelaxation
from .ais import FlowModel, annealed_importance

log = logging.getLogger("ot_pde")


def energy_per_site(spins: np.ndarray, L: int, J: float) -> np.ndarray:
    r""":math:`E(s)/N = -\frac JN\sum_i s_i(s_{i+\hat x} + s_{i+\hat y})` of rows of ``spins``."""
    s = spins.reshape(-1, L, L)
    bonds = (s * (np.roll(s, -1, axis=2) + np.roll(s, -1, axis=1))).sum(axis=(1, 2))
    return -J * bonds / (L * L)


def estimate(problem, pot, relax: IsingRelaxation,
             rng: np.random.Generator, comm, base) -> tuple[dict, dict]:
    """The estimators of the module notes at ``relax``'s temperature, beside the exact values.

    Returns the summary and the first ``output.samples`` samples (x, spins, log-weights).
    ``lnZ_per_site_variational_base`` is the bound of the base alone on the same draws (the
    start points of the flow), so the difference to ``lnZ_per_site_variational`` is what the
    flow adds.
    Under MPI (``comm``) the chunks of samples are dealt round the ranks and gathered on
    every rank: each rank draws every chunk's random numbers in the serial order (cheap next
    to the flow) and integrates only its own, so the result is the serial one to the bit.
    """
    c, xp = problem.case, pot.xp
    n, chunk = c.get("estimate.n_samples"), c.get("estimate.chunk")
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    mine = {}
    for k, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        drawn = base.draw(rng, m, relax.N)
        u = rng.random((m, relax.N))  # the spins' uniforms: every rank's stream stays in step
        actions = draw_actions(pot, rng, m, c.get("time.n_steps"), c.get("time.scheme"))
        if k % size != rank:
            continue
        x0, log_q0 = drawn[:, :-1], drawn[:, -1]
        x, log_q = integrate(pot, xp.asarray(x0), xp.asarray(log_q0), **flow_options(c),
                             actions=actions)
        x, log_q = to_host(x), to_host(log_q)
        lw = relax.log_prob(x) - log_q
        spins = relax.spins_from_uniforms(x, u)
        keep = c.get("output.samples")
        mine[k] = (lw, *_spin_observables(spins, relax), relax.log_prob(x0) - log_q0,
                   {"x": x[:keep], "spins": spins[:keep], "log_weights": lw[:keep]}
                   if k == 0 else None,
                   _logdet_error(pot, x0, actions, c) if k == 0 else None)
    if comm is not None:
        mine = {k: part for parts in comm.allgather(mine) for k, part in parts.items()}
    chunks = [mine[k] for k in sorted(mine)]
    log_w, energy, abs_mag, log_w_base = ([part[i] for part in chunks] for i in range(4))
    keep, logdet_error = chunks[0][4], chunks[0][5]
    used, est, (e_mean, e_err), (m_mean, m_err) = _weighted_estimates(
        np.concatenate(log_w), np.concatenate(energy), np.concatenate(abs_mag), "log-weights")
    N, const = relax.N, relax.constant
    summary = {
        "L": relax.L, "beta": relax.beta, "J": relax.J, "alpha": relax.alpha,
        "lnZ_per_site_variational": (est["variational"] + const) / N,
        "lnZ_per_site_variational_stderr": est["variational_stderr"] / N,
        "lnZ_per_site_importance": (est["importance"] + const) / N,
        "lnZ_per_site_importance_stderr": est["importance_stderr"] / N,
        "lnZ_relaxation_per_site_variational": est["variational"] / N,
        "lnZ_per_site_variational_base": (float(np.mean(np.concatenate(log_w_base))) + const)
        / N,
        "ess_fraction": est["ess_fraction"],
        "importance_largest_weight_fraction": est["largest_weight_fraction"],
        "energy_per_site_importance": e_mean,
        "energy_per_site_importance_stderr": e_err,
        "abs_magnetization_per_site_importance": m_mean,
        "abs_magnetization_per_site_importance_stderr": m_err,
        "n_samples": used,
    }
    if logdet_error is not None:
        summary["logdet_error_per_site"] = logdet_error
    exact = problem.exact(relax.beta)
    summary["exact_is_brute_force"] = exact.pop("exact_method") == "brute_force"
    summary.update(exact)
    ex = summary["lnZ_per_site_exact"]
    summary["relative_error_variational"] = abs(summary["lnZ_per_site_variational"] - ex) / ex
    summary["relative_error_importance"] = abs(summary["lnZ_per_site_importance"] - ex) / ex
    if summary["lnZ_per_site_importance_stderr"] > 0:
        summary["importance_error_in_stderr"] = (abs(summary["lnZ_per_site_importance"] - ex)
                                                 / summary["lnZ_per_site_importance_stderr"])
    if c.get("estimate.ais_chains"):
        summary.update(anneal(problem, pot, relax, rng, comm, base))
        summary["relative_error_ais"] = abs(summary["lnZ_per_site_ais"] - ex) / ex
        if summary["lnZ_per_site_ais_stderr"] > 0:
            summary["ais_error_in_stderr"] = (abs(summary["lnZ_per_site_ais"] - ex)
                                              / summary["lnZ_per_site_ais_stderr"])
    return summary, keep


def _logdet_error(pot, x0: np.ndarray, actions, case) -> float | None:
    """:func:`~ot_pde.flows.logdet.logdet_error_per_site` on the first
    ``estimate.logdet_samples`` start points (None when 0)."""
    n = min(case.get("estimate.logdet_samples"), x0.shape[0])
    if n == 0:
        return None
    return logdet_error_per_site(pot, pot.xp.asarray(x0[:n]), **flow_options(case),
                                 actions=None if actions is None else actions[:n])


def _spin_observables(spins: np.ndarray, relax: IsingRelaxation):
    """E/N and |M|/N of each row of ``spins``."""
    return energy_per_site(spins, relax.L, relax.J), np.abs(spins.mean(axis=1))


def _weighted_estimates(log_w, energy, abs_mag, what: str):
    """:func:`~ot_pde.ising.estimators.log_partition_estimates` and the weighted means of
    E/N and |M|/N over the finite log-weights (with a warning naming ``what`` if some are
    not). Returns the number used, the estimates, (E/N, error) and (|M|/N, error)."""
    finite = np.isfinite(log_w)
    if not finite.all():
        log.warning("%d of %d %s are not finite; the estimators use the rest",
                    int((~finite).sum()), log_w.size, what)
    log_w = log_w[finite]
    return (int(finite.sum()), log_partition_estimates(log_w),
            weighted_mean(energy[finite], log_w), weighted_mean(abs_mag[finite], log_w))


def anneal(problem, pot, relax: IsingRelaxation,
           rng: np.random.Generator, comm, base) -> dict:
    """Annealed importance sampling from the trained flow (:mod:`.ais`): the summary keys
    ``lnZ_per_site_ais`` and its standard error, ``ais_ess_fraction``,
    ``ais_largest_weight_fraction``, the energy and absolute magnetization from the chains'
    last states (pushed through the flow, spins drawn from p(s | x), weighted by W), the
    mean acceptance of both moves, and the chains and steps.

    The chains run in batches of ``estimate.chunk``, each from its own generator seeded from
    ``rng``; under MPI the batches are dealt round the ranks and gathered, so the result is the
    serial one to the bit.
    """
    c, xp = problem.case, pot.xp
    n, steps, chunk = (c.get("estimate.ais_chains"), c.get("estimate.ais_steps"),
                       c.get("estimate.chunk"))
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    starts = list(range(0, n, chunk))
    seeds = rng.integers(0, 2**63, size=len(starts))

    def draw(generator, m):
        drawn = base.draw(generator, m, relax.N)
        return drawn[:, :-1], drawn[:, -1]

    def log_weight(x0, log_q0, actions):
        x, log_q = integrate(pot, xp.asarray(x0), xp.asarray(log_q0), **flow_options(c),
                             actions=actions)
        return relax.log_prob(to_host(x)) - to_host(log_q)

    mine = {}
    for k, start in enumerate(starts):
        if k % size != rank:
            continue
        m = min(chunk, n - start)
        started = time.perf_counter()

        def progress(step, b, acc_independent, acc_cluster):
            if step % max(1, steps // 10) == 0 or step == steps:
                log.info("annealing chains %d..%d: temperature %d/%d (b = %.3f), acceptance "
                         "%.2f independent, %.2f cluster (%.0f s)", start, start + m - 1, step,
                         steps, b, acc_independent, acc_cluster,
                         time.perf_counter() - started)

        generator = np.random.default_rng(seeds[k])
        # a composed flow keeps one realization of its draws per chain for the whole
        # annealing: each chain anneals from that realization's density q_r, whose weights
        # are unbiased for Z like any other's
        actions = draw_actions(pot, generator, m, c.get("time.n_steps"), c.get("time.scheme"))
        model = FlowModel(draw, base.log_prob,
                          lambda x0, log_q0, a=actions: log_weight(x0, log_q0, a))
        out = annealed_importance(model, relax, m, steps, generator, progress, pot.backend)
        x0 = out["x0"]
        x, _ = integrate(pot, xp.asarray(x0), xp.zeros(m), **flow_options(c), actions=actions)
        spins = relax.spins_from_uniforms(to_host(x), generator.random(x0.shape))
        mine[k] = (out["log_weights"], out["acceptance_independent"] * m,
                   out["acceptance_cluster"] * m, *_spin_observables(spins, relax))
    if comm is not None:
        mine = {k: part for parts in comm.allgather(mine) for k, part in parts.items()}
    used, est, (e_mean, e_err), (m_mean, m_err) = _weighted_estimates(
        *(np.concatenate([mine[k][i] for k in sorted(mine)]) for i in (0, 3, 4)),
        "annealing log-weights")
    N = relax.N
    return {
        "lnZ_per_site_ais": (est["importance"] + relax.constant) / N,
        "lnZ_per_site_ais_stderr": est["importance_stderr"] / N,
        "ais_ess_fraction": est["ess_fraction"],
        "ais_largest_weight_fraction": est["largest_weight_fraction"],
        "energy_per_site_ais": e_mean,
        "energy_per_site_ais_stderr": e_err,
        "abs_magnetization_per_site_ais": m_mean,
        "abs_magnetization_per_site_ais_stderr": m_err,
        "ais_acceptance_independent": float(sum(mine[k][1].sum() for k in mine) / (n * steps)),
        "ais_acceptance_cluster": float(sum(mine[k][2].sum() for k in mine) / (n * steps)),
        "ais_chains": used,
        "ais_steps": int(steps),
    }
