r"""The ``ising_variational`` problem kind: a Monge-Ampère flow fitted to the relaxed 2D Ising model.

The flow's density :math:`q` is trained by reverse KL against the continuous relaxation
:math:`\tilde\pi(x) = \exp(-\frac12 x^\top K'^{-1}x + \sum_i\ln\cosh x_i)`
(:class:`~ot_pde.ising.exact.relaxation.IsingRelaxation`); then ``estimate.n_samples`` fresh samples
give, through :mod:`ot_pde.ising.estimators`, the variational (bound) and importance
estimates of :math:`\ln Z_{\rm Ising}/N = (\ln Z_{\rm relax} + c)/N` with standard errors,
the effective sample size, and the energy and magnetization (spins drawn from
:math:`p(s\mid x)`, the joint weights being those of :math:`x`), beside the exact values:
brute-force enumeration for :math:`L\le4`, Kaufman's finite-size formula otherwise.
"""
from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from ...backends import Backend
from ...config import Field, Section, make_schema
from ...core.problem import FieldData, GridAxis, ParticleData, Problem
from ...errors import InputError
from ...flows.model import (
    DTYPE_FIELD,
    SHARDS_FIELD,
    THREADS_FIELD,
    build_potential,
    check_model,
    checked_dtype,
    checked_shards,
    flow_options,
    model_label,
    model_section,
    time_section,
    training_fields,
)
from ...flows.training import Adam, ReverseKL, Trainer, TrainingRun, geometric_lr
from ..exact import (
    BETA_C,
    IsingRelaxation,
    WhitenedIsingRelaxation,
    brute_force,
    kaufman_energy_per_site,
    kaufman_lnZ,
)
from .base import CheckerboardMixtureBase, StandardNormalBase
from .estimate import estimate

log = logging.getLogger("ot_pde")

#: largest L whose exact values come from enumerating the 2^(L^2) states
BRUTE_FORCE_MAX_L = 4

#: ``lattice.variables`` -> the relaxation in those variables
RELAXATIONS = {"field": IsingRelaxation, "whitened": WhitenedIsingRelaxation}


def relaxation(case, beta: float) -> IsingRelaxation:
    """The relaxation of the case's lattice at ``beta``, in the case's variables."""
    return RELAXATIONS[case.get("lattice.variables")](case.get("lattice.L"), beta,
                                                      case.get("lattice.J"),
                                                      case.get("lattice.alpha"))


SCHEMA = make_schema({
    "lattice": Section({
        "L": Field("int", minimum=2, doc="periodic L x L lattice, N = L^2 spins"),
        "beta": Field("float", BETA_C, exclusive_minimum=0.0,
                      doc="inverse temperature; default the critical ln(1 + sqrt 2)/2"),
        "J": Field("float", 1.0, exclusive_minimum=0.0, doc="ferromagnetic coupling"),
        "alpha": Field("float", None, doc="diagonal shift of K = beta J A; default "
                                          "0.1 - lambda_min(K), so K + alpha I is positive "
                                          "definite"),
        "variables": Field("str", "field", choices=tuple(RELAXATIONS),
                           doc="the flow's variables: the Hubbard-Stratonovich field x "
                               "(target: mixture of N(K's, K')) or whitened y = K'^-1/2 x "
                               "(mixture of N(K'^1/2 s, I), whose Gaussian part is the "
                               "base's); ln Z is the same, the bound the flow reaches is not"),
    }, doc="the Ising model E(s) = -J sum_i s_i (s_{i+x} + s_{i+y})"),
    "base": Section({
        "family": Field("str", "gaussian", choices=("gaussian", "checkerboard_mixture"),
                        doc="the flow's start distribution: N(0, I), or the checkerboard "
                            "mean-field mixture of ot_pde.ising.variational.base (even L), "
                            "fitted before the flow trains"),
        "components": Field("int", 1, minimum=1, maximum=4,
                            doc="checkerboard_mixture: magnetizations the free sublattice "
                                "mixes"),
        "couplings": Field("int", 2, minimum=0,
                           doc="checkerboard_mixture: additive coupling layers after the "
                               "sublattices are drawn (each shifts one sublattice by a "
                               "function of its neighbours)"),
        "fit_samples": Field("int", 256, minimum=2,
                             doc="checkerboard_mixture: fixed draws per component the fit "
                                 "averages over"),
        "fit_iterations": Field("int", 200, minimum=0,
                                doc="checkerboard_mixture: L-BFGS iterations of the fit"),
    }, doc="the distribution the flow starts from"),
    "model": model_section(width=64, activation="logcosh", bias=False, time_dependent=False,
                           symmetry=("spin_flip", "lattice_translations",
                                     "lattice_reflections"), composable=True),
    "time": time_section(T=1.0, n_steps=10),
    "training": Section({**training_fields(iterations=1000, batch_size=64, lr=1e-2),
                         "shards": SHARDS_FIELD, "threads": THREADS_FIELD,
                         "dtype": DTYPE_FIELD,
                         "anneal_betas": Field(
                             "float_list", None, exclusive_minimum=0.0,
                             doc="warm-up: train first at each of these inverse temperatures "
                                 "in turn (anneal_iterations each, a fresh Adam state and "
                                 "learning-rate schedule each), then training.iterations at "
                                 "lattice.beta; the estimators run at lattice.beta only. "
                                 "N(0, I) base only; a scan warm-starts by itself"),
                         "clip_norm": Field(
                             "float", None, exclusive_minimum=0.0,
                             doc="rescale gradients whose norm exceeds this to this norm "
                                 "before the Adam step (default: no clipping); the history "
                                 "keeps the unclipped grad_norm"),
                         "anneal_lr_final": Field(
                             "float", None, exclusive_minimum=0.0,
                             doc="learning rate at the last step of each warm-up temperature "
                                 "(the rate decays geometrically from lr); default "
                                 "training.lr_final"),
                         "average_decay": Field(
                             "float", None, minimum=0.0, exclusive_maximum=1.0,
                             doc="the estimators use an exponential moving average of the "
                                 "parameters over the last stage's steps, the weight of a step "
                                 "d^(steps after it), bias-corrected as Adam's moments (about "
                                 "1/(1 - d) steps; a scan: over each temperature's steps); "
                                 "training never sees it. Default: the last step's parameters"),
                         "anneal_iterations": Field(
                             "int", None, minimum=1,
                             doc="Adam steps at each temperature of anneal_betas; default "
                                 "training.iterations")},
                        doc="reverse-KL training (Adam)"),
    "scan": Section({
        "betas": Field("float_list", None, exclusive_minimum=0.0,
                       doc="beta-scan mode: train at each of these inverse temperatures in "
                           "turn (warm-started from the previous one; lattice.beta is then "
                           "unused) and write F(beta), E(beta) beside the exact curves"),
    }, doc="beta-scan mode"),
    "estimate": Section({
        "n_samples": Field("int", 16384, minimum=2,
                           doc="flow samples for the final estimators"),
        "chunk": Field("int", 4096, minimum=1,
                       doc="samples (and annealing chains) per batch of the estimators"),
        "ais_chains": Field("int", 0, minimum=0,
                            doc="annealed importance sampling on top of the flow "
                                "(ot_pde.ising.variational.ais): this many chains, each "
                                "costing 2 ais_steps flow evaluations; 0 turns it off"),
        "logdet_samples": Field("int", 2, minimum=0,
                                doc="samples whose exact log-determinant of the discrete map "
                                    "(forward-mode Jacobian, ot_pde.flows.logdet) is compared "
                                    "with the log-density the scheme carries: summary key "
                                    "logdet_error_per_site; 0 turns it off"),
        "ais_steps": Field("int", 100, minimum=1,
                           doc="temperatures of each annealing chain (more: less spread "
                               "weights)"),
    }, doc="the estimators after training"),
    "output": Section({
        "every": Field("int", 100, minimum=1,
                       doc="iterations between flushes of history and checkpoint"),
        "samples": Field("int", 1024, minimum=1,
                         doc="samples (x, spins, log-weights) written to /particles"),
    }),
})


class FittedBase:
    r"""The flow's start distribution at one temperature (number ``index`` of a scan, else 0).

    ``base.family = "gaussian"``: :math:`\mathcal N(0, I)`. ``"checkerboard_mixture"``: a
    :class:`~ot_pde.ising.variational.base.CheckerboardMixtureBase`, fitted on first use, so
    that a restart which loads the fitted parameters from the checkpoint skips the fit (minutes
    at L = 16). The fit's random numbers come from the run's seed and ``index`` alone, so every
    MPI rank fits the same parameters.
    """

    def __init__(self, problem: "IsingVariationalProblem", relax: IsingRelaxation, index: int):
        self.problem, self.relax, self.index = problem, relax, index
        self.model = (None if problem.case.get("base.family") == "gaussian"
                      else CheckerboardMixtureBase(relax.L, relax.beta, relax.J,
                                                   problem.case.get("base.components"),
                                                   problem.case.get("base.couplings")))
        self.fitted = self.model is None

    def ensure_fitted(self) -> None:
        if self.fitted:
            return
        c, seed = self.problem.case, self.problem._seeds["base"]
        rng = np.random.default_rng(np.random.SeedSequence(
            seed.entropy, spawn_key=seed.spawn_key + (self.index,)))
        log.info("fitting the checkerboard base at beta = %.6g (%d samples, at most %d L-BFGS "
                 "iterations)", self.relax.beta, c.get("base.fit_samples"),
                 c.get("base.fit_iterations"))
        started = time.perf_counter()
        constant = self.relax.constant / self.relax.N

        def progress(iteration: int, bound: float) -> None:
            if iteration % 25 == 0:
                log.info("base fit: iteration %d, ln Z/N >= %.6f on its sample (%.0f s)",
                         iteration, bound + constant, time.perf_counter() - started)

        report = self.model.fit(self.relax, rng, c.get("base.fit_samples"),
                                c.get("base.fit_iterations"), progress)
        log.info("base fitted in %.0f s, %d iterations (%s): ln Z/N >= %.6f on its own sample",
                 time.perf_counter() - started, report["iterations"], report["message"],
                 report["bound_per_site"] + constant)
        self.fitted = True

    def _distribution(self):
        self.ensure_fitted()
        return StandardNormalBase() if self.model is None else self.model

    def draw(self, rng: np.random.Generator, batch_size: int, dim: int) -> np.ndarray:
        """(B, d + 1): start points and their log-density (the Gaussian's draws unchanged)."""
        return self._distribution().draw(rng, batch_size, dim)

    def log_prob(self, x0: np.ndarray) -> np.ndarray:
        """The base's ln q0 at any points (B, d)."""
        return self._distribution().log_prob(x0)

    def for_training(self):
        """The ``base`` of :class:`~ot_pde.flows.training.ReverseKL`: None for N(0, I)."""
        return None if self.model is None else self

    def state(self) -> dict:
        if self.model is None:
            return {}
        return {"base_params": self.model.params.copy(), "base_fitted": int(self.fitted)}

    def load_state(self, state) -> None:
        if self.model is None:
            return
        if "base_params" not in state:
            raise InputError("the checkpoint holds no base parameters (was it written with "
                             "base.family = \"gaussian\"?)", source="checkpoint",
                             key="base_params")
        params = np.array(state["base_params"], dtype=np.float64)
        if params.shape != self.model.params.shape:
            raise InputError(f"base parameters have shape {params.shape}, expected "
                             f"{self.model.params.shape}", source="checkpoint",
                             key="base_params")
        self.model.params, self.fitted = params, bool(state["base_fitted"])


class Stage(NamedTuple):
    """One temperature of a staged training: its relaxation, Adam steps and the flow's base,
    and the learning rate at its last step (None: the run's ``lr_final``)."""
    relax: IsingRelaxation
    iterations: int
    base: FittedBase
    lr_final: float | None = None


class IsingTrainingRun(TrainingRun):
    """Training through ``stages`` in turn, each warm-started from the previous one.

    At the first step of each stage the objective becomes that stage's relaxation, Adam
    starts afresh and the learning-rate schedule restarts. The stage follows from the
    iteration count alone, so a restart or an MPI run goes on bit-for-bit. Each history row
    gets the temperature and the batch estimate of ln Z_Ising / N (minus the loss, shifted);
    the checkpoint keeps the current stage's base (fitted before its first step). One stage
    is a plain run; ``training.anneal_betas`` puts warm-up stages before it; a scan
    (:class:`ScanRun`) also estimates at the end of each.
    """

    def __init__(self, potential, trainer: Trainer, stages: list[Stage], lr: float,
                 lr_final: float | None, average_decay: float | None = None):
        super().__init__(potential, trainer, sum(st.iterations for st in stages), lr,
                         lr_final, average_decay)
        self.stages = stages
        self.starts = np.cumsum([0] + [st.iterations for st in stages[:-1]])
        self._stage = None

    def stage_at(self, k: int) -> int:
        """The stage iteration ``k`` trains in (the last one once training is over)."""
        return int(np.searchsorted(self.starts, k, side="right")) - 1

    @property
    def base(self) -> FittedBase:
        return self.stages[self.stage_at(self.iteration)].base

    def step(self) -> dict:
        k = self.iteration
        s = self.stage_at(k)
        stage = self.stages[s]
        if s != self._stage:
            self.trainer.objective = ReverseKL(stage.relax.log_prob, stage.relax.grad_log_prob,
                                               base=stage.base.for_training())
            self._stage = s
        if k == self.starts[s] and k > 0:
            self.trainer.optimizer = Adam(self.potential.n_params, lr=self.lr)
        local = k - int(self.starts[s])
        lr_final = self.lr_final if stage.lr_final is None else stage.lr_final
        lr = geometric_lr(self.lr, lr_final, local, stage.iterations)
        self.trainer.optimizer.lr = lr
        diag = self.trainer.step()
        self._update_average(local + 1)  # each stage averages its own steps
        if local + 1 == stage.iterations:
            self.stage_done(s)
        return {"loss": diag["loss"], "grad_norm": diag["grad_norm"], "lr": lr,
                "beta": stage.relax.beta,
                "lnZ_per_site_batch": (stage.relax.constant - diag["loss"]) / stage.relax.N}

    def stage_done(self, s: int) -> None:
        """Called after the last step of stage ``s``."""

    def state(self) -> dict:
        return {**super().state(), **self.base.state()}

    def load_state(self, state) -> None:
        self.stages[self.stage_at(int(state["iteration"]))].base.load_state(state)
        super().load_state(state)


class IsingVariationalProblem(Problem):
    mpi_mode = "replicated"  # data-parallel training (Trainer's comm), estimators by chunks

    def __init__(self, case):
        super().__init__(case)
        where = case.source
        self.L, self.beta, self.J = case.get("lattice.L"), case.get("lattice.beta"), \
            case.get("lattice.J")
        try:
            self.relax = relaxation(case, self.beta)
        except ValueError as exc:
            raise InputError(str(exc), source=where, key="lattice.alpha") from None
        self.N = self.relax.N
        for b in case.get("scan.betas") or []:
            try:
                relaxation(case, b)
            except ValueError as exc:
                raise InputError(f"at scan beta {b:g}: {exc}", source=where,
                                 key="lattice.alpha") from None
        for b in case.get("training.anneal_betas") or []:
            try:
                relaxation(case, b)
            except ValueError as exc:
                raise InputError(f"at anneal beta {b:g}: {exc}", source=where,
                                 key="lattice.alpha") from None
        self._check_annealing()
        self.generators = check_model(case, self.N)
        checked_shards(case)  # 'ot-pde check' catches more shards than samples
        self.dtype = checked_dtype(case, self.N)
        if case.get("estimate.ais_chains") == 1:
            raise InputError("annealed importance sampling needs at least 2 chains (an error "
                             "bar), or 0 to turn it off; got 1", source=where,
                             key="estimate.ais_chains")
        if case.get("base.family") == "checkerboard_mixture" and self.L % 2:
            raise InputError(f"the checkerboard_mixture base needs an even lattice side, got "
                             f"L = {self.L}", source=where, key="base.family")
        self._seeds = self.seed_streams("init", "batches", "eval", "base")
        self._cache = None

    def _check_annealing(self) -> None:
        c, where = self.case, self.case.source
        if not c.get("training.anneal_betas"):
            for key in ("anneal_iterations", "anneal_lr_final"):
                if c.get(f"training.{key}") is not None:
                    raise InputError(f"{key} is set but anneal_betas is empty: list the "
                                     f"warm-up temperatures, or drop {key}",
                                     source=where, key=f"training.{key}")
            return
        if c.get("scan.betas"):
            raise InputError("a scan warm-starts through its own temperatures: put the "
                             "warm-up temperatures at the front of scan.betas instead",
                             source=where, key="training.anneal_betas")
        if c.get("base.family") != "gaussian":
            raise InputError(f"annealing needs the N(0, I) base (the {c.get('base.family')} "
                             "base is fitted at one temperature); got base.family = "
                             f"{c.get('base.family')!r}", source=where,
                             key="training.anneal_betas")

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        c = self.case
        betas = c.get("scan.betas")
        where = (f"beta scan over {len(betas)} temperatures ({min(betas):g}..{max(betas):g})"
                 if betas else f"beta = {self.beta:.6g}")
        return (f"Ising {self.L}x{self.L} at {where}, J = {self.J:g}: flow from the "
                f"{c.get('base.family')} base, {model_label(c)}, symmetry "
                f"{'+'.join(c.get('model.symmetry')) or 'none'}, {c.get('time.n_steps')} "
                f"{c.get('time.scheme')} steps")

    def max_iterations(self) -> int:
        return sum(stage.iterations for stage in self.training_stages())

    def build_potential(self, backend: Backend):
        return build_potential(self.case, self.N, backend,
                               np.random.default_rng(self._seeds["init"]), self.generators)

    def make_solver(self, backend: Backend):
        c = self.case
        potential = self.build_potential(backend)
        # the objective is set by IsingTrainingRun at each stage
        trainer = Trainer(potential, None, batch_size=c.get("training.batch_size"),
                          optimizer=Adam(potential.n_params, lr=c.get("training.lr")),
                          seed=np.random.default_rng(self._seeds["batches"]), xp=backend.xp,
                          shards=checked_shards(c, self.comm), comm=self.comm,
                          dtype=self.dtype, clip_norm=c.get("training.clip_norm"),
                          threads=c.get("training.threads"), **flow_options(c))
        run = ScanRun if c.get("scan.betas") else IsingTrainingRun
        return run(potential, trainer, self.training_stages(), c.get("training.lr"),
                   c.get("training.lr_final"), c.get("training.average_decay"))

    def training_stages(self) -> list[Stage]:
        """The scan's temperatures, or the warm-up temperatures and then the case's."""
        c = self.case
        if c.get("scan.betas"):
            return [Stage(relax, c.get("training.iterations"), FittedBase(self, relax, k))
                    for k, relax in enumerate(relaxation(c, b) for b in c.get("scan.betas"))]
        warm = c.get("training.anneal_iterations") or c.get("training.iterations")
        # warm-up stages need the N(0, I) base (_check_annealing): it has no state
        return ([Stage(relaxation(c, b), warm, FittedBase(self, self.relax, 0),
                       c.get("training.anneal_lr_final"))
                 for b in c.get("training.anneal_betas") or []]
                + [Stage(self.relax, c.get("training.iterations"),
                         FittedBase(self, self.relax, 0))])

    def grid(self) -> list[GridAxis]:
        betas = self.case.get("scan.betas")
        if not betas:
            return []
        return [GridAxis("beta", np.asarray(betas, dtype=np.float64), "1/J",
                         "inverse temperatures of the scan", "other")]

    # -- exact values -----------------------------------------------------------------------
    def exact(self, beta: float | None = None) -> dict:
        """ln Z_Ising / N and E / N (and the mean absolute magnetization for L <= 4), with the
        method used."""
        beta = self.beta if beta is None else beta
        if self.L <= BRUTE_FORCE_MAX_L:
            bf = brute_force(self.L, beta, self.J)
            return {"lnZ_per_site_exact": bf["lnZ"] / self.N,
                    "energy_per_site_exact": bf["energy_per_site"],
                    "abs_magnetization_per_site_exact": bf["abs_magnetization_per_site"],
                    "exact_method": "brute_force"}
        return {"lnZ_per_site_exact": kaufman_lnZ(self.L, beta, self.J) / self.N,
                "energy_per_site_exact": kaufman_energy_per_site(self.L, beta, self.J),
                "exact_method": "kaufman"}

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, solver) -> tuple[dict, list]:
        key = (id(solver), solver.iteration)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if isinstance(solver, ScanRun):
            summary = {"L": self.L, "J": self.J, "scan_points": len(solver.betas),
                       "scan_completed": int(solver.index)}
            done = solver.results["relative_error_variational"][:solver.index]
            if done.size:
                summary["max_relative_error_variational"] = float(np.max(done))
                summary["max_importance_error_in_stderr"] = float(np.max(
                    solver.results["importance_error_in_stderr"][:solver.index]))
            self._cache = (key, (summary, []))
            return self._cache[1]
        with solver.averaged() as potential:
            summary, keep = estimate(self, potential, self.relax,
                                     np.random.default_rng(self._seeds["eval"]), self.comm,
                                     solver.base)
        particles = [
            ParticleData("x", keep["x"], "1", "flow samples in the relaxed variables"),
            ParticleData("spins", keep["spins"], "1", "spins drawn from p(s | x)"),
            ParticleData("log_weights", keep["log_weights"], "1",
                         "ln pi~(x) - ln q(x) of these samples"),
        ]
        self._cache = (key, (summary, particles))
        return self._cache[1]

    def summary(self, solver) -> dict:
        return dict(self._evaluate(solver)[0])

    def fields(self, solver) -> list[FieldData]:
        if not isinstance(solver, ScanRun):
            return []
        what = scan_fields(self.case)
        return [FieldData(name, values, ("beta",), "1", what[name])
                for name, values in solver.results.items()]

    def particles(self, solver) -> list[ParticleData]:
        return self._evaluate(solver)[1]


#: per-beta results of a scan (fields over the ``beta`` axis) and what they hold
SCAN_FIELDS = {
    "lnZ_per_site_variational": "variational estimate of ln Z_Ising / N (lower bound)",
    "lnZ_per_site_variational_stderr": "its standard error",
    "lnZ_per_site_importance": "importance estimate of ln Z_Ising / N",
    "lnZ_per_site_importance_stderr": "its standard error (delta method)",
    "lnZ_per_site_exact": "exact ln Z_Ising / N (brute force for L <= 4, else Kaufman)",
    "energy_per_site_importance": "importance estimate of <E> / N",
    "energy_per_site_importance_stderr": "its standard error",
    "energy_per_site_exact": "exact <E> / N",
    "ess_fraction": "effective sample size / n",
    "relative_error_variational": "|variational - exact| / exact",
    "importance_error_in_stderr": "|importance - exact| / its standard error",
}
#: the scan's fields of annealed importance sampling (estimate.ais_chains > 0)
SCAN_AIS_FIELDS = {
    "lnZ_per_site_ais": "annealed importance estimate of ln Z_Ising / N",
    "lnZ_per_site_ais_stderr": "its standard error (delta method)",
    "ais_ess_fraction": "effective sample size / chains of the annealed weights",
}


def scan_fields(case) -> dict:
    """The per-beta fields a scan writes, and what they hold."""
    return {**SCAN_FIELDS, **(SCAN_AIS_FIELDS if case.get("estimate.ais_chains") else {})}


class ScanRun(IsingTrainingRun):
    """A staged training that runs the estimators after the last step at each temperature
    and fills one entry of :attr:`results`; :meth:`state` holds the results so far, so
    ``--restart`` continues bit-for-bit."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.problem = self.stages[0].base.problem
        self.betas = [stage.relax.beta for stage in self.stages]
        self.results = {name: np.full(len(self.stages), np.nan)
                        for name in scan_fields(self.problem.case)}

    @property
    def index(self) -> int:
        """Temperatures estimated so far."""
        return len(self.stages) if self.finished else self.stage_at(self.iteration)

    def stage_done(self, s: int) -> None:
        # the evaluation generator is seeded per temperature: a restart reproduces it
        p, relax = self.problem, self.stages[s].relax
        rng = np.random.default_rng([p._seeds["eval"].entropy, s])
        with self.averaged() as potential:
            summary, _ = estimate(p, potential, relax, rng, p.comm, self.stages[s].base)
        for name, values in self.results.items():
            values[s] = summary.get(name, np.nan)
        log.info("beta = %.6g: ln Z/N variational %.6f +- %.6f, importance %.6f +- %.6f, "
                 "exact %.6f", relax.beta, summary["lnZ_per_site_variational"],
                 summary["lnZ_per_site_variational_stderr"],
                 summary["lnZ_per_site_importance"],
                 summary["lnZ_per_site_importance_stderr"], summary["lnZ_per_site_exact"])

    def state(self) -> dict:
        state = super().state()
        for name, values in self.results.items():
            state[f"scan_{name}"] = values.copy()
        return state

    def load_state(self, state) -> None:
        super().load_state(state)
        for name in self.results:
            self.results[name] = np.array(state[f"scan_{name}"], dtype=np.float64)


def build(case) -> IsingVariationalProblem:
    return IsingVariationalProblem(case)
