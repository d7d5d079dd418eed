r"""``entropic_potentials`` with ``[potentials] representation = "neural"``: potentials learned
from samples (:mod:`.neural`), the recovered flow (:mod:`.recovery`), and their checks.

Sources: ``gaussian`` (any dimension; the closed forms of Janati et al. 2020 are the
reference), ``dataset`` (the 2D toy sets of :mod:`ot_pde.flows.data`), ``checkerboard`` (the
smoothed board of the grid representation, sampled by rejection; with a ``[grid]`` the grid
solver at the same :math:`\varepsilon` is run too and the velocities are compared). The target
must be a ``gaussian``: its density enters the importance sampling of the dual.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from ...core.problem import FieldData, GridAxis, ParticleData, Problem
from ...errors import InputError
from ...flows import data as toy_data
from .dual_training import DualTraining
from .grid_compare import COMPARE_TIMES, grid_fields
from .neural import (
    DualObjective,
    GaussianTarget,
    QuadraticNetwork,
    conditional_proposal,
    gaussian_entropy,
    initialize_pair,
)
from .problem import checkerboard_log_pdf, entropic_gaussian
from .recovery import EntropicFlow

log = logging.getLogger("ot_pde")

def _gaussian_spec(spec, where, key):
    mean = np.asarray(spec["mean"], dtype=np.float64)
    d = len(mean)
    if (spec.get("std") is None) == (spec.get("cov") is None):
        raise InputError("give exactly one of 'std' and 'cov'", source=where, key=f"{key}.std")
    if spec.get("std") is not None:
        return mean, np.eye(d) * spec["std"] ** 2
    cov = np.asarray(spec["cov"], dtype=np.float64)
    if cov.shape != (d, d) or not np.allclose(cov, cov.T):
        raise InputError(f"expected a symmetric {d}x{d} matrix, got shape {cov.shape}",
                         source=where, key=f"{key}.cov")
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise InputError("covariance is not positive definite", source=where, key=f"{key}.cov")
    return mean, cov


class SampleSource:
    """Sampler of the source, and what is known of it (for the checks only)."""

    def __init__(self, spec, where):
        kind = spec["type"]
        self.kind = kind
        self.gaussian = None
        self.entropy = None
        self.log_prob = None
        if kind == "gaussian":
            mean, cov = _gaussian_spec(spec, where, "source")
            chol = np.linalg.cholesky(cov)
            self.dim = len(mean)
            self.gaussian = (mean, cov)
            self.sample = lambda n, rng: mean + rng.standard_normal((n, len(mean))) @ chol.T
            self.entropy = gaussian_entropy(cov)
            target = GaussianTarget(mean, cov)
            self.log_prob = target.log_prob
        elif kind == "dataset":
            name = spec["name"]
            self.dim = 2
            self.sample = lambda n, rng: toy_data.sample(name, n, rng)
            if name == "eight_gaussians":
                mix = toy_data.eight_gaussians_mixture()
                self.entropy = mix.entropy()
                self.log_prob = mix.log_prob
            elif name == "checkerboard":
                self.entropy = math.log(32.0)
                self.log_prob = _ffjord_checkerboard_log_prob
        elif kind == "checkerboard":
            self._smoothed_checkerboard(spec, where)
        else:
            raise InputError(f"source type {kind!r} is not available with neural potentials "
                             "(expected gaussian, dataset or checkerboard)", source=where,
                             key="source.type")

    def _smoothed_checkerboard(self, spec, where):
        lo, hi = np.asarray(spec["lower"], float), np.asarray(spec["upper"], float)
        if len(lo) != 2 or len(hi) != 2 or np.any(hi <= lo):
            raise InputError("expected a 2D board with upper > lower", source=where,
                             key="source.upper")
        self.dim = 2
        box_lo, box_hi = lo - 6 * spec["edge"], hi + 6 * spec["edge"]
        # normalization and entropy by the midpoint rule on a fine grid of the bounding box
        m = 1024
        axes = [box_lo[k] + (box_hi[k] - box_lo[k]) * (np.arange(m) + 0.5) / m for k in (0, 1)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
        lp = checkerboard_log_pdf(pts, spec)
        cell = float(np.prod((box_hi - box_lo) / m))
        top = lp.max()
        offset = -top - math.log(float(np.exp(lp - top).sum()) * cell)
        p = np.exp(lp + offset)
        self.entropy = float(-(p * (lp + offset)).sum() * cell)
        self.log_prob = lambda x: checkerboard_log_pdf(x, spec) + offset

        def sample(n, rng):
            out, have = [], 0
            while have < n:
                cand = box_lo + (box_hi - box_lo) * rng.random((2 * n, 2))
                keep = cand[np.log(rng.random(2 * n)) < checkerboard_log_pdf(cand, spec)]
                out.append(keep)
                have += len(keep)
            return np.concatenate(out)[:n]

        self.sample = sample


def _ffjord_checkerboard_log_prob(x):
    """Log-density of :func:`ot_pde.flows.data.checkerboard`: ln(1/32) on its squares."""
    i = np.floor(x[:, 0] / 2.0)
    j = np.floor(x[:, 1] / 2.0)
    inside = (np.abs(x) < 4.0).all(axis=1) & ((i + j) % 2 == 0)
    with np.errstate(divide="ignore"):
        return np.where(inside, -math.log(32.0), -np.inf)


class SampleProblem(Problem):
    """Learned potentials between a sampled source and a Gaussian target."""

    mpi_mode = "replicated"  # data-parallel training (DualTraining's comm); evaluation on each rank

    def __init__(self, case):
        super().__init__(case)
        where = case.source
        self.epsilon = case.get("solver.epsilon")
        self.opts = case.section("potentials")
        self.source = SampleSource(case.section("source"), where)
        tspec = case.section("target")
        if tspec["type"] != "gaussian":
            raise InputError("neural potentials need a gaussian target (its density enters "
                             "the importance sampling of the dual)", source=where,
                             key="target.type")
        self.target = GaussianTarget(*_gaussian_spec(tspec, where, "target"))
        d = self.source.dim
        if self.target.dim != d:
            raise InputError(f"expected a target of dimension {d} like the source, got "
                             f"{self.target.dim}", source=where, key="target.mean")
        self.dim = d
        self.box = None
        if case.get("grid.lower") is not None or case.get("grid.upper") is not None:
            lower, upper, n = (case.get("grid.lower"), case.get("grid.upper"),
                               case.get("grid.n"))
            if lower is None or upper is None or n is None:
                raise InputError("give grid.lower, grid.upper and grid.n together",
                                 source=where, key="grid.n")
            if d != 2 or len(lower) != 2 or len(upper) != 2:
                raise InputError("neural potentials write grid fields in 2D only: expected "
                                 "2 values", source=where, key="grid.lower")
            if any(b <= a for a, b in zip(lower, upper)):
                raise InputError("expected upper > lower on every axis", source=where,
                                 key="grid.upper")
            self.box = (np.asarray(lower, float), np.asarray(upper, float), n)
        o = self.opts
        if o["nll_points"] > o["n_test"]:
            raise InputError(f"expected at most potentials.n_test = {o['n_test']} points",
                             source=where, key="potentials.nll_points")
        seed = case.get("run.seed")
        rng = np.random.default_rng([seed, 1])
        self.train = self.source.sample(o["n_train"], rng) if o["n_train"] > 0 else None
        self.test = self.source.sample(o["n_test"], np.random.default_rng([seed, 2]))
        self._cache = None

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        o = self.opts
        fam = "quadratic" if o["width"] == 0 else f"quadratic + {o['width']}-unit network"
        data = f"{o['n_train']} samples" if o["n_train"] else "fresh samples"
        return (f"{self.dim}D entropic OT (eps = {self.epsilon:g}) learned from {data}: "
                f"{fam} potentials, {o['iterations']} {o['optimizer']} steps")

    def max_iterations(self) -> int:
        return self.opts["iterations"]

    def make_solver(self, backend):
        if backend.on_gpu:
            raise InputError(f"neural potentials run on the numpy and numba backends, not "
                             f"{backend.name!r}", source=self.case.source, key="run.backend")
        o = self.opts
        seed = self.case.get("run.seed")
        d = self.dim
        phi = QuadraticNetwork(d, o["width"], o["activation"], seed=seed, backend=backend)
        psi = QuadraticNetwork(d, o["width"], o["activation"], seed=seed + 1,
                               backend=backend)
        fit = self.train if self.train is not None else \
            self.source.sample(max(1000, 10 * d), np.random.default_rng([seed, 3]))
        initialize_pair(phi, psi, fit.mean(axis=0), np.atleast_2d(np.cov(fit.T)), self.target,
                        self.epsilon)
        objective = DualObjective(phi, psi, self.target, self.epsilon, draws=o["draws"])
        kwargs = {"train": self.train} if self.train is not None else \
            {"sampler": self.source.sample}
        return DualTraining(objective, iterations=o["iterations"], batch=o["batch"], lr=o["lr"],
                            lr_final=o["lr_final"], seed=seed, optimizer=o["optimizer"],
                            adam_lr=o["adam_lr"], adam_lr_final=o["adam_lr_final"],
                            shards=self._checked_shards(), comm=self.comm, **kwargs)

    def _checked_shards(self) -> int:
        shards, batch = self.opts["shards"], self.opts["batch"]
        if shards > batch:
            raise InputError(f"potentials.shards = {shards} exceeds potentials.batch = {batch}",
                             source=self.case.source, key="potentials.shards")
        ranks = 1 if self.comm is None else self.comm.Get_size()
        if shards < ranks:
            raise InputError(f"potentials.shards = {shards} cannot be spread over {ranks} MPI "
                             "ranks (each rank takes whole shards): set it to a multiple of "
                             "the number of ranks; the serial run with the same shards gives "
                             "the same history to the bit", source=self.case.source,
                             key="potentials.shards")
        return shards

    def grid(self) -> list[GridAxis]:
        if self.box is None:
            return []
        lo, hi, n = self.box
        return [GridAxis(name, lo[k] + (hi[k] - lo[k]) * (np.arange(n) + 0.5) / n, "length",
                         f"cell centres along {name}", "space") for k, name in enumerate("xy")] \
            + [GridAxis("t_compare", np.asarray(COMPARE_TIMES), "1",
                        "times of the written velocities", "time"),
               GridAxis("component", np.arange(2, dtype=float), "1", "velocity component",
                        "other")]

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, solver):
        if self._cache is not None and self._cache[0] == (id(solver), solver.iteration):
            return self._cache[1]
        start = time.perf_counter()
        o, eps = self.opts, self.epsilon
        obj = solver.objective
        seed = self.case.get("run.seed")
        rng = np.random.default_rng([seed, 4])
        y = self.target.sample(o["n_eval"], rng)
        xi = rng.standard_normal((o["n_eval"], obj.draws, self.dim))
        res = obj.value_and_grad(self.test, y, xi, want_grad=False)
        a, b = res["terms"]
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        dual = res["value"] + eps + eps * self.target.entropy()
        summary = {"epsilon": eps, "iterations": solver.iteration,
                   "dual_value": dual, "dual_value_se": se, "plan_mass": res["mass"]}
        if self.source.entropy is not None:
            summary["entropic_cost"] = 2 * (dual + eps * self.source.entropy)
            summary["entropic_cost_se"] = 2 * se
        if self.source.gaussian is not None:
            summary.update(self._gaussian_checks(obj, summary["entropic_cost"], y))
        flow = EntropicFlow(obj.phi, obj.psi, eps, draws=o["heat_draws"], seed=seed + 7)
        nt = self.case.get("time.nt")
        out = {"summary": summary, "fields": [], "particles": []}
        if o["nll_points"] > 0:
            pts = self.test[:o["nll_points"]]
            logp = flow.log_density_at_0(pts, self.target, nt)
            summary["nll_test"] = float(-logp.mean())
            summary["nll_test_se"] = float(logp.std(ddof=1) / math.sqrt(len(logp)))
            if self.source.entropy is not None:
                summary["nll_test_exact"] = float(self.source.entropy)
            out["particles"].append(ParticleData("test_logp", logp, "1",
                                                 "model log-density (CNF) at held-out points"))
            out["particles"].append(ParticleData("test", pts, "length", "held-out points"))
        n = self.case.get("flow.samples")
        if n > 0:
            y0 = self.target.sample(n, np.random.default_rng([seed, 5]))
            x0, logp0 = flow.sample(y0, self.target, nt)
            out["particles"] += [
                ParticleData("x0", x0, "length", "target samples pushed back to t = 0"),
                ParticleData("logp0", logp0, "1", "their model log-densities")]
            ref = self.test
            summary["flow_mean_error"] = float(np.linalg.norm(x0.mean(0) - ref.mean(0)))
            cov_ref = np.atleast_2d(np.cov(ref.T))
            summary["flow_cov_rel_error"] = float(
                np.linalg.norm(np.atleast_2d(np.cov(x0.T)) - cov_ref) / np.linalg.norm(cov_ref))
        if self.box is not None:
            out["fields"], extra = self._grid_fields(flow, nt)
            summary.update(extra)
        summary["recovery_seconds"] = time.perf_counter() - start
        self._cache = ((id(solver), solver.iteration), out)
        return out

    def _gaussian_checks(self, obj, cost, y):
        """Entropic cost, cross-covariance and mean against the closed forms."""
        m0, a = self.source.gaussian
        m1, b = self.target.mean, self.target.cov
        exact, cross = entropic_gaussian(m0, a, m1, b, self.epsilon)
        if obj.phi.net is None:
            # E[x|y] = P^{-1}(b_phi + y) exactly under the learned plan
            p_inv, _, _, b_phi = conditional_proposal(obj.phi)
            mean_x = p_inv @ (b_phi + m1)
            cross_l = p_inv @ b
            cov_x = self.epsilon * p_inv + p_inv @ b @ p_inv
        else:
            x, logw, _ = obj.log_weights(y, np.random.default_rng(11).standard_normal(
                (len(y), obj.draws, self.dim)))
            w = np.exp(logw - logw.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            tx = (w[..., None] * x).sum(1)
            mean_x = tx.mean(0)
            cross_l = (tx - mean_x).T @ (y - y.mean(0)) / (len(y) - 1)
            cov_x = np.cov(x.reshape(-1, self.dim).T, aweights=np.exp(logw).reshape(-1))
        return {"entropic_cost_exact": exact, "relative_error": abs(cost - exact) / abs(exact),
                "cross_cov_rel_error": float(np.linalg.norm(cross_l - cross)
                                             / np.linalg.norm(cross)),
                "mean_error": float(np.linalg.norm(mean_x - m0)),
                "plan_cov_rel_error": float(np.linalg.norm(cov_x - a) / np.linalg.norm(a))}

    def _grid_fields(self, flow, nt):
        return grid_fields(self, flow, nt)

    # -- results ----------------------------------------------------------------------------
    def summary(self, solver) -> dict:
        return dict(self._evaluate(solver)["summary"])

    def fields(self, solver) -> list[FieldData]:
        return self._evaluate(solver)["fields"]

    def particles(self, solver) -> list[ParticleData]:
        return self._evaluate(solver)["particles"]
