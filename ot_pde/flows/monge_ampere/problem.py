r"""The ``monge_ampere_flow`` problem kind: case schema, set-up, training run, checks, outputs.

A case trains (or, with ``training.objective = "none"``, only evaluates) the potential
:math:`\varphi` of a Monge-Ampère flow from :math:`\mathcal N(0, I)` at :math:`t = 0` to a
model density :math:`p_T`, then writes samples, log-densities and diagnostics:

* ``forward_kl``: density estimation from samples of ``[target]`` (maximum likelihood);
* ``reverse_kl``: variational fit of a target known up to normalization (a mixture);
* ``none``: a fixed potential (its seeded initialization), e.g. for the grid cross-check.

In 2D, the end of a run also solves the continuity equation
:math:`\partial_t\rho + \nabla\cdot(\rho\nabla\varphi) = 0` with the finite-volume scheme of
:mod:`ot_pde.flows.fv` from the same Gaussian and compares :math:`\rho(T)` with the particle
density :math:`\exp\ln p_T` at the cell centres; for ``objective = "none"`` that particle
density is the kind's exact reference, so ``ot-pde converge --vary grid.n=...`` measures the
finite-volume scheme's order.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ...backends import Backend, get_backend
from ...config import Field, Section, make_schema
from ...core.problem import (
    EvaluatedOnce,
    FieldData,
    GridAxis,
    ParticleData,
    Problem,
    Reference,
)
from ...errors import InputError
from ..fv import cell_centers, solve_continuity_2d
from ..integrators import log_density, sample, standard_normal_log_prob, to_host
from ..model import (
    SHARDS_FIELD,
    THREADS_FIELD,
    build_potential,
    check_model,
    checked_shards,
    flow_options,
    model_label,
    model_section,
    time_section,
    training_fields,
)
from ..targets import build_target, target_section
from ..training import Adam, ForwardKL, ReverseKL, Trainer, TrainingRun, draw_actions

log = logging.getLogger("ot_pde")

#: rows per call when evaluating log-densities, to bound the memory of large sets
_CHUNK = 8192

#: draws per grid point of a composed flow's density (the mean of the realizations' densities
#: estimates the model's, which is their mixture)
_GRID_DRAWS = 16

SCHEMA = make_schema({
    "model": model_section(composable=True),
    "time": time_section(),
    "target": target_section(images=True),
    "training": Section({
        "objective": Field("str", "forward_kl", choices=("forward_kl", "reverse_kl", "none"),
                           doc="forward_kl: density estimation from samples; reverse_kl: "
                               "variational (target density known); none: fixed potential"),
        **training_fields(),
        "shards": SHARDS_FIELD,
        "threads": THREADS_FIELD,
        "n_train": Field("int", 20000, minimum=1, doc="training samples drawn from the target "
                                                     "(at most this many from a file; digits: "
                                                     "unused, a fixed split)"),
        "n_test": Field("int", 20000, minimum=2, doc="held-out samples for nll_test and the "
                                                    "KL estimates (digits: unused)"),
    }, doc="the optimal-control problem"),
    "grid": Section({
        "check": Field("bool", True, doc="2D: finite-volume solution of the same flow, "
                                         "compared with the particle density"),
        "lower": Field("float_list", [-4.0, -4.0], length=2, doc="lower corner of the 2D box"),
        "upper": Field("float_list", [4.0, 4.0], length=2, doc="upper corner of the 2D box"),
        "n": Field("int", 128, minimum=8, resolution="inverse", doc="cells per axis"),
        "cfl": Field("float", 0.5, exclusive_minimum=0.0, maximum=1.4,
                     doc="finite-volume CFL number (SSP-RK3 is stable to about 1.4)"),
        "limiter": Field("str", "none", choices=("none", "van_albada", "minmod"),
                         doc="slope limiter (none keeps second order)"),
        "max_steps": Field("int", 20000, minimum=1,
                           doc="skip the finite-volume check (with a warning) when the CFL "
                               "condition needs more time steps than this"),
    }, doc="2D grid for phi, the particle density and the finite-volume cross-check"),
    "output": Section({
        "every": Field("int", 100, minimum=1,
                       doc="iterations between flushes of history and checkpoint"),
        "samples": Field("int", 4096, minimum=1, doc="flow samples written to /particles"),
    }),
})


class MongeAmpereFlowProblem(EvaluatedOnce, Problem):
    mpi_mode = "replicated"  # data-parallel training (Trainer's comm); evaluation on each rank

    def __init__(self, case):
        super().__init__(case)
        where = case.source
        # independent streams: initialization, data, batches, evaluation
        self._seeds = self.seed_streams("init", "data", "batches", "eval")
        self.target = build_target(case, np.random.default_rng(self._seeds["data"]))
        self.dim = self.target.dim
        self.objective = case.get("training.objective")
        checked_shards(case)  # 'ot-pde check' catches more shards than samples
        if self.objective == "reverse_kl" and self.target.mixture is None:
            raise InputError(f"reverse_kl needs a target with a known density (type = "
                             f"\"mixture\" or \"eight_gaussians\"), not {case.get('target.type')!r}",
                             source=where, key="training.objective")
        self.generators = check_model(case, self.dim)
        lower, upper = case.get("grid.lower"), case.get("grid.upper")
        if any(b <= a for a, b in zip(lower, upper)):
            raise InputError("expected upper > lower on both axes", source=where,
                             key="grid.upper")
        self.on_grid = self.dim == 2
        self.fv_check = self.on_grid and case.get("grid.check")
        self.composed = bool(case.get("model.compose"))
        if self.composed and self.fv_check:
            raise InputError("a symmetry-composed flow is random (a new group element per "
                             "step and sample), the finite-volume check solves one fixed "
                             "flow: set grid.check = false", source=where, key="model.compose")

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        c = self.case
        what = {"forward_kl": "density estimation", "reverse_kl": "variational fit",
                "none": "fixed potential"}[self.objective]
        return (f"Monge-Ampere flow, d = {self.dim}, {what} of {c.get('target.type')} with "
                f"{model_label(c)}, {c.get('time.n_steps')} "
                f"{c.get('time.scheme')} steps")

    def max_iterations(self) -> int:
        return 0 if self.objective == "none" else self.case.get("training.iterations")

    def build_potential(self, backend: Backend):
        """The case's potential at its seeded initialization."""
        return build_potential(self.case, self.dim, backend,
                               np.random.default_rng(self._seeds["init"]), self.generators)

    def _flow(self) -> dict:
        return flow_options(self.case)

    def make_solver(self, backend: Backend) -> TrainingRun:
        c = self.case
        potential = self.build_potential(backend)
        trainer = None
        if self.objective != "none":
            if self.objective == "forward_kl":
                # images: each batch dequantized afresh (the data are grey levels)
                pixels = self.target.pixels
                objective = ForwardKL(self.target.train if pixels is None else pixels.sampler)
            else:
                mix = self.target.mixture
                objective = ReverseKL(mix.log_prob, mix.grad_log_prob)
            trainer = Trainer(potential, objective, batch_size=c.get("training.batch_size"),
                              optimizer=Adam(potential.n_params, lr=c.get("training.lr")),
                              seed=np.random.default_rng(self._seeds["batches"]),
                              xp=backend.xp, shards=checked_shards(c, self.comm),
                              comm=self.comm, threads=c.get("training.threads"),
                              **self._flow())
        return TrainingRun(potential, trainer, c.get("training.iterations"),
                           c.get("training.lr"), c.get("training.lr_final"))

    # -- grid -------------------------------------------------------------------------------
    def _axes(self) -> tuple[np.ndarray, np.ndarray, float]:
        lower, upper, n = self.case.get("grid.lower"), self.case.get("grid.upper"), \
            self.case.get("grid.n")
        X, Y = cell_centers(lower, upper, n)
        cell = (upper[0] - lower[0]) * (upper[1] - lower[1]) / (n * n)
        return X, Y, cell

    def grid(self) -> list[GridAxis]:
        if not self.on_grid:
            return []
        X, Y, _ = self._axes()
        return [GridAxis("x", X[:, 0], "1", "cell centres along x", "space"),
                GridAxis("y", Y[0, :], "1", "cell centres along y", "space")]

    # -- evaluation -------------------------------------------------------------------------
    def _draws(self, potential, rng, n: int):
        """A composed flow's draws for ``n`` rows (None for a plain potential)."""
        c = self.case
        return draw_actions(potential, rng, n, c.get("time.n_steps"), c.get("time.scheme"))

    def _log_density(self, potential, x, rng=None, shared: bool = False,
                     refine: int = 1) -> np.ndarray:
        """:math:`\\ln p_T` at the rows of ``x`` (host array), in chunks. For a composed flow,
        :math:`\\ln q_r` of a realization :math:`r` of the draws: one per row (its mean over
        rows bounds the mean log-likelihood of the model, the mixture over :math:`r`), or with
        ``shared`` one for all rows (the density of one realization). ``rng`` draws them
        (unused for a plain potential). ``refine`` divides the time step (a plain potential's
        draws-free flow only)."""
        xp, flow = potential.xp, self._flow()
        flow["n_steps"] *= refine
        one = self._draws(potential, rng, 1) if shared else None
        out = []
        for s in range(0, x.shape[0], _CHUNK):
            rows = x[s:s + _CHUNK]
            draws = (self._draws(potential, rng, len(rows)) if one is None
                     else np.repeat(one, len(rows), axis=0))
            out.append(to_host(log_density(potential, xp.asarray(rows), **flow,
                                           actions=draws)[0]))
        return np.concatenate(out) if out else np.empty(0)

    def _particle_density_on_grid(self, potential, rng=None) -> np.ndarray:
        """:math:`p_T` at the cell centres; for a composed flow the mean of the densities of
        ``_GRID_DRAWS`` realizations of the draws, each a density on the whole grid: an
        unbiased estimate of the model density (their mixture) that integrates to 1 like
        each of them. ``rng`` draws them (unused for a plain potential)."""
        X, Y, _ = self._axes()
        points = np.stack([X.ravel(), Y.ravel()], axis=1)
        draws = _GRID_DRAWS if self.composed else 1
        rho = np.mean([np.exp(self._log_density(potential, points, rng, shared=True))
                       for _ in range(draws)], axis=0)
        return rho.reshape(X.shape)

    def _results(self, solver: TrainingRun) -> tuple:
        """Summary, fields and particles of the current potential (cached per iteration)."""
        pot, xp, flow, target = solver.potential, solver.potential.xp, self._flow(), self.target
        rng = np.random.default_rng(self._seeds["eval"])
        summary: dict = {}
        particles: list[ParticleData] = []
        fields: list[FieldData] = []

        z = xp.asarray(rng.standard_normal((self.case.get("output.samples"), self.dim)))
        x, log_q = sample(pot, z, **flow, actions=self._draws(pot, rng, z.shape[0]))
        particles += [ParticleData("samples", to_host(x), "1", "flow samples x_T"),
                      ParticleData("samples_log_density", to_host(log_q), "1",
                                   "ln p_T at the samples (forward integration)")]
        if target.train is not None and self.objective == "forward_kl":
            summary["nll_train"] = float(-self._log_density(pot, target.train, rng).mean())
        lp_test = self._log_density(pot, target.test, rng)
        summary["nll_test"] = float(-lp_test.mean())
        summary["nll_test_stderr"] = float(lp_test.std(ddof=1) / math.sqrt(lp_test.size))
        particles.append(ParticleData("test_log_density", lp_test, "1",
                                      "ln p_T at the held-out samples (backward integration)"))
        if target.pixels is not None:  # pixel-space NLL and bits/dim, with the baselines'
            summary.update(target.pixels.summary("test", lp_test))
            summary.update(target.pixels.summary(
                "validation", self._log_density(pot, target.pixels.validation, rng)))
            if not self.composed:
                # the time-step check of the trained model: the same potential, half the
                # step (converged when the change is below nll_test_stderr)
                half = self._log_density(pot, target.test, rng, refine=2)
                summary["nll_test_half_step"] = float(-half.mean())
                summary["nll_test_half_step_change"] = float(np.mean(lp_test - half))
        if target.entropy is not None:
            summary["entropy_exact"] = target.entropy
        if self.objective == "reverse_kl":
            # KL(q || p) with the normalized target, on fresh latent samples
            zk = xp.asarray(rng.standard_normal((target.test.shape[0], self.dim)))
            xk, lqk = sample(pot, zk, **flow, actions=self._draws(pot, rng, zk.shape[0]))
            gap = to_host(lqk) - target.mixture.log_prob(to_host(xk))
            summary["kl_estimate"] = float(gap.mean())
            summary["kl_stderr"] = float(gap.std(ddof=1) / math.sqrt(gap.size))
        elif target.mixture is not None:
            # KL(p || q) on the held-out samples, with the exact data log-density
            gap = target.mixture.log_prob(target.test) - lp_test
            summary["kl_estimate"] = float(gap.mean())
            summary["kl_stderr"] = float(gap.std(ddof=1) / math.sqrt(gap.size))
        elif target.entropy is not None:
            summary["kl_estimate"] = summary["nll_test"] - target.entropy
            summary["kl_stderr"] = summary["nll_test_stderr"]

        if self.on_grid:
            fields += self._grid_fields(pot, summary, rng)
        return summary, fields, particles

    def _grid_fields(self, pot, summary: dict, rng) -> list[FieldData]:
        c, xp = self.case, pot.xp
        X, Y, cell = self._axes()
        T = c.get("time.T")
        pts = xp.asarray(np.stack([X.ravel(), Y.ravel()], axis=1))
        # a composed flow's fields are those of phi in the frame of the identity draw
        phi = to_host(getattr(pot, "potential", pot).value(pts, T)).reshape(X.shape)
        rho_particle = self._particle_density_on_grid(pot, rng)
        summary["particle_mass_on_grid"] = float(rho_particle.sum() * cell)
        dims = ("x", "y")
        out = [FieldData("phi", phi, dims, "1", "potential phi(x, T) at the cell centres"),
               FieldData("rho_particle", rho_particle, dims, "1",
                         "exp(ln p_T) of the particle solver (backward RK) at the cell centres")]
        if not self.fv_check:
            return out

        def velocity(x, y, t):
            g = pot.grad(xp.stack([x.ravel(), y.ravel()], axis=1), t)
            return g[:, 0].reshape(x.shape), g[:, 1].reshape(x.shape)

        limiter = c.get("grid.limiter")
        try:
            result = solve_continuity_2d(
                lambda x, y: xp.exp(standard_normal_log_prob(xp.stack([x, y], axis=-1))),
                velocity, lower=c.get("grid.lower"), upper=c.get("grid.upper"), T=T,
                cfl=c.get("grid.cfl"), shape=c.get("grid.n"), xp=xp,
                limiter=None if limiter == "none" else limiter,
                max_steps=c.get("grid.max_steps"))
        except ValueError as exc:  # too many steps, or a non-finite velocity on the faces
            log.warning("finite-volume check skipped: %s (grid.max_steps)", exc)
            summary["fv_skipped"] = True
            return out
        rho = to_host(result.rho)
        diff = np.abs(rho - rho_particle)
        summary.update({"fv_mass": float(rho.sum() * cell),
                        "fv_particle_L1": float(diff.sum() * cell),
                        "fv_particle_max_abs": float(diff.max()),
                        "fv_edge_mass": float(result.edge_mass),
                        "fv_steps": int(result.n_steps)})
        out.append(FieldData("rho", rho, dims, "1",
                             "finite-volume solution rho(T) of the continuity equation"))
        return out

    # -- results ----------------------------------------------------------------------------

    def reference(self) -> Reference | None:
        """For a fixed potential in 2D: the particle density at the cell centres.

        The particle log-density (backward RK4 of the characteristics, exact Laplacian)
        converges as :math:`h_t^4` in the time step, independently of the grid; with enough
        steps it is the exact solution of the continuity equation that the finite-volume
        field ``rho`` approximates.
        """
        if self.objective != "none" or not self.fv_check:
            return None
        pot = self.build_potential(get_backend("numpy"))
        _, _, cell = self._axes()
        return Reference(fields={"rho": (self._particle_density_on_grid(pot), cell)})


def build(case) -> MongeAmpereFlowProblem:
    return MongeAmpereFlowProblem(case)
