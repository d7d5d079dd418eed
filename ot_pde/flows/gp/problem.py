r"""The ``gp_flow`` problem kind: a trained flow rearranged along a Gaussian Euler geodesic.

After Morel, Drumetz, Benaïchouche, Courty & Rousseau, "Turning normalizing flows into Monge
maps with geodesic Gaussian preserving flows" (TMLR 2023). A flow :math:`T` (latent
:math:`\mathcal N(0, I)` to data, loaded as in :mod:`ot_pde.flows.comparison`) is composed with
a map :math:`G` that preserves the standard Gaussian :math:`\gamma`: :math:`T\circ G` has the
same density as :math:`T`, and :math:`G` is chosen to lower the transport cost

.. math:: J(\theta_0) = \frac1n\sum_i |T(G(z_i)) - z_i|^2

over fixed latent draws. :math:`G` is the time-1 map of the velocity of the 2D Gaussian Euler
(lake) equations started from coefficients :math:`\theta_0`
(:class:`~ot_pde.flows.gp.hermite.HermiteEuler`): only the initial velocity is optimized
(shooting), by scipy's L-BFGS-B with gradients from the discrete adjoint of the RK4 steps and
the flow's Jacobian by central differences (``solver.fd_step``).

For d > 2 the map is the time-1 flow of an exactly Gaussian-preserving antisymmetric-matrix
field (:class:`~ot_pde.flows.gp.antisymmetric.AntisymmetricGP`) whose time-dependent
coefficients are all optimized, the Euler condition added to the objective as a penalty
weighted by ``solver.euler_penalty`` (:class:`PenalizedShooting`); with ``basis.field =
"neural"`` the field is an MLP (:mod:`.neural_field`, objective in :mod:`.neural_run`).

Each iteration of the run is a *chunk* of ``solver.chunk`` L-BFGS iterations started from the
current coefficients (the L-BFGS memory is reset between chunks, so a ``--restart`` continues
bit-for-bit). A trial point whose coefficient path is not resolved by the time steps (relative
energy drift above ``solver.max_energy_drift``) or is non-finite is rejected by the line
search (a large objective value); a non-finite *accepted* state is a numerical failure.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ...backends import Backend, get_backend
from ...config import Field, Section, make_schema
from ...core.problem import EvaluatedOnce, FieldData, GridAxis, ParticleData, Problem
from ...errors import InputError, NumericalError
from .. import data as toy_data
from ..discrete_ot import estimate_w2, gelbrich_bound
from ..exported.checkpoint import load_checkpoint
from ..exported.models import apply_in_chunks, build_flow
from .antisymmetric import AntisymmetricGP, taper_mass
from .hermite import HermiteEuler
from .neural_field import NeuralAntisymmetricGP
from .neural_run import PulledBackShooting, results_neural
from .pullback import PulledBackGeodesic
from .summary import gap_to_bound, likelihood_change, transport_costs

log = logging.getLogger("ot_pde")

TOY_SETS = tuple(toy_data.DATASETS)
#: objective value returned for a rejected trial point (unresolved or non-finite path)
_REJECT = 1e10
#: d > 2: largest parameter count and penalty least-squares matrix (nodes x d x pressures)
_MAX_PARAMS = 20000
_MAX_PENALTY_MATRIX = 20_000_000

SCHEMA = make_schema({
    "model": Section({
        "path": Field("path", must_exist=True, doc="the flow checkpoint (.npz or .safetensors)"),
        "steps": Field("int", None, minimum=1,
                       doc="integrator steps of an ODE flow (default: the checkpoint's)"),
    }, doc="the trained flow T (latent -> data), d >= 2"),
    "data": Section({
        "n_test": Field("int", 10000, minimum=2, doc="held-out points for the log-likelihood"),
    }, variants={**{name: {} for name in TOY_SETS}, "model": {}}, default_variant="model",
        doc="held-out data for the log-likelihood before/after: a 2D toy set or the flow's "
            "own samples"),
    "basis": Section({
        "degree": Field("int", None, minimum=0, maximum=16,
                        doc="total degree K of the Hermite stream function chi in 2D "
                            "((K+1)(K+2)/2 coefficients; default 6), of the entries of the "
                            "antisymmetric matrix field A for d > 2 (default 1)"),
        "field": Field("str", "hermite", choices=("hermite", "neural"),
                       doc="d > 2: the antisymmetric matrix field A: Hermite polynomials "
                           "(exact Euler penalty; small d) or a one-hidden-layer MLP "
                           "(any d, action penalty, the Morel et al. parametrization)"),
        "width": Field("int", 32, minimum=1, doc="hidden units of the neural field"),
        "time_degree": Field("int", 1, minimum=0, maximum=8,
                             doc="d > 2 only: Legendre degree in time of A's coefficients "
                                 "(0: a stationary field)"),
        "taper_inner": Field("float", 3.0, exclusive_minimum=0.0,
                             doc="radius where the particle velocity starts to be cut off"),
        "taper_outer": Field("float", 4.0, exclusive_minimum=0.0,
                             doc="radius beyond which the particle velocity is zero"),
    }, doc="the Gaussian Euler discretization (2D: Hermite-Galerkin; d > 2: antisymmetric "
           "Hermite matrix field, penalized Euler)"),
    "time": Section({
        "steps": Field("int", 48, minimum=1, resolution="inverse",
                       doc="RK4 steps on t in [0, 1]"),
        "coefficient_substeps": Field(
            "int", 0, minimum=0, maximum=64,
            doc="2D only: 0 integrates the Galerkin coefficients with the particles (shared "
                "RK4 stages); m >= 1 integrates them alone with 2m RK4 steps per particle "
                "step (their ODE is stiff at higher energy and degree; nearly free)"),
    }, doc="time stepping of the geodesic (RK4 of the particles)"),
    "initial": Section({
        "amplitude": Field("float", 0.0, minimum=0.0,
                           doc="|theta_0| of the starting velocity (random direction from "
                               "run.seed); 0: start from the identity"),
    }, doc="the optimizer's starting point"),
    "solver": Section({
        "n_samples": Field("int", 2048, minimum=2, doc="latent draws of the objective"),
        "max_iterations": Field("int", 40, minimum=1, doc="L-BFGS iterations in all"),
        "chunk": Field("int", 10, minimum=1,
                       doc="L-BFGS iterations per run iteration (memory reset between)"),
        "gtol": Field("float", 1e-7, exclusive_minimum=0.0, doc="L-BFGS-B gradient tolerance"),
        "fd_step": Field("float", 1e-5, exclusive_minimum=0.0,
                         doc="central-difference step of the flow's Jacobian"),
        "max_energy_drift": Field("float", 1e-3, exclusive_minimum=0.0,
                                  doc="2D only: relative energy drift above which a trial "
                                      "path is rejected as unresolved"),
        "euler_penalty": Field("float", 10.0, minimum=0.0,
                               doc="d > 2 only: weight of the Euler penalty "
                                   "int_0^1 |Q(dv/dt + (v.grad)v)|^2 dt added to the "
                                   "transport objective"),
        "action_weight": Field("float", 0.01, minimum=0.0,
                               doc="neural field: weight of the action int_0^1 |v|^2 dt "
                                   "(Monte Carlo along the particles) in the objective"),
        "resample": Field("bool", False, doc="neural field or pulled_back: fresh latent "
                                             "draws for every chunk (against overfitting)"),
        "control_variate": Field("bool", False,
                                 doc="neural field: subtract the affine control variate "
                                     "(flows.gp.neural_run.affine_control_variate)"),
        "pulled_back": Field("bool", False,
                             doc="2D only: fit T(w) ~ H(w) with H = G^-1 the geodesic's map "
                                 "(the flow evaluated once, smooth in the coefficients; "
                                 "see flows.gp.pullback)"),
    }, doc="shooting optimization of the initial velocity"),
    "comparison": Section({
        "n_eval": Field("int", 10000, minimum=2,
                        doc="fresh latent draws for the transport costs before/after"),
        "ot_sizes": Field("int_list", [256, 512, 1024], minimum=2, min_length=1,
                          doc="sample sizes of the discrete OT problems (extrapolated)"),
        "ot_repeats": Field("int", 4, minimum=2, doc="independent repeats per size"),
    }, doc="evaluation: transport cost, discrete-OT lower bound"),
    "output": Section({
        "every": Field("int", 1, minimum=1, doc="chunks between flushes and checkpoints"),
        "samples": Field("int", 1000, minimum=1, doc="latent points written to /particles"),
    }),
})


def flow_and_jacobian(flow, x, h: float):
    """:math:`T(x)` ``(n, d)`` of the trained flow and :math:`DT(x)` ``(n, d, d)`` by central
    differences of step ``h``."""
    n, d = x.shape
    e = np.eye(d) * h
    pts = np.concatenate([x] + [x + s * e[j] for j in range(d) for s in (1.0, -1.0)])
    y = apply_in_chunks(lambda a: (flow.sample(a),), pts, flow.xp)[0]
    jac = np.stack([(y[(2 * j + 1) * n:(2 * j + 2) * n] - y[(2 * j + 2) * n:(2 * j + 3) * n])
                    / (2.0 * h) for j in range(d)], axis=2)
    return y[:n], jac


class Shooting:
    r"""Objective :math:`J(\theta_0) = \frac1n\sum|T(G(z_i)) - z_i|^2` and its gradient."""

    def __init__(self, euler: HermiteEuler, flow, z: np.ndarray, fd_step: float,
                 max_drift: float):
        self.euler, self.flow, self.z = euler, flow, z
        self.h, self.max_drift = float(fd_step), float(max_drift)
        self.evaluations = 0

    def path(self, theta):
        """Forward shooting: ``(theta_end, G(z), stages)``; None if rejected."""
        with np.errstate(all="ignore"):
            te, xe, _, (_, stages) = self.euler.integrate(theta, self.z, store=True)
        e0 = self.euler.energy(theta)
        drift = abs(self.euler.energy(te) - e0) / max(e0, 1e-300)
        if not (np.all(np.isfinite(xe)) and np.all(np.isfinite(te))) or drift > self.max_drift:
            return None
        return te, xe, stages

    def __call__(self, theta):
        self.evaluations += 1
        theta = np.asarray(theta, dtype=np.float64)
        out = self.path(theta)
        if out is None:
            return _REJECT * (1.0 + float(theta @ theta)), theta.copy()
        _, xe, stages = out
        tx, jac = flow_and_jacobian(self.flow, xe, self.h)
        diff = tx - self.z
        f = float(np.mean(np.sum(diff * diff, axis=1)))
        g_x = (2.0 / diff.shape[0]) * np.einsum("mi,mij->mj", diff, jac)
        with np.errstate(all="ignore"):
            g, _ = self.euler.adjoint(stages, g_x)
        if not (math.isfinite(f) and np.all(np.isfinite(g))):
            return _REJECT * (1.0 + float(theta @ theta)), theta.copy()
        return f, g


class PenalizedShooting:
    r"""d > 2: :math:`J(\theta) = \frac1n\sum|T(G(z_i)) - z_i|^2 + \lambda\int_0^1
    \|Q(\partial_t v + (v\cdot\nabla)v)\|^2_{L^2(\gamma)}dt` and its exact gradient (RK4
    adjoint of the particles; the penalty in closed form), G the time-1 map of the
    antisymmetric-matrix field :class:`~ot_pde.flows.gp.antisymmetric.AntisymmetricGP`."""

    def __init__(self, field: AntisymmetricGP, flow, z: np.ndarray, fd_step: float,
                 penalty: float):
        self.field, self.flow, self.z = field, flow, z
        self.h, self.weight = float(fd_step), float(penalty)
        self.evaluations = 0

    def energy(self, theta) -> float:
        """Kinetic energy ``1/2 |v(., 0)|^2`` in L^2(gamma) of the polynomial field at t = 0."""
        return self.field.energy(theta, 0.0)

    def transport_cost(self, theta) -> float:
        with np.errstate(all="ignore"):
            xe = self.field.integrate(theta, self.z)[0]
        if not np.all(np.isfinite(xe)):
            return math.inf
        diff = flow_and_jacobian(self.flow, xe, self.h)[0] - self.z
        return float(np.mean(np.sum(diff * diff, axis=1)))

    def __call__(self, theta):
        self.evaluations += 1
        theta = np.asarray(theta, dtype=np.float64)
        reject = (_REJECT * (1.0 + float(theta @ theta)), theta.copy())
        with np.errstate(all="ignore"):
            xe, _, stages = self.field.integrate(theta, self.z, store=True)
        if not np.all(np.isfinite(xe)):
            return reject
        tx, jac = flow_and_jacobian(self.flow, xe, self.h)
        diff = tx - self.z
        f = float(np.mean(np.sum(diff * diff, axis=1)))
        g_x = (2.0 / diff.shape[0]) * np.einsum("mi,mij->mj", diff, jac)
        with np.errstate(all="ignore"):
            g, _ = self.field.adjoint(theta, stages, g_x)
            if self.weight > 0.0:
                pen, gp = self.field.penalty(theta, gradient=True)
                f, g = f + self.weight * pen, g + self.weight * gp
        if not (math.isfinite(f) and np.all(np.isfinite(g))):
            return reject
        return f, g


class ShootingRun:
    """Chunks of L-BFGS-B on the initial coefficients (the runner's iterations)."""

    def __init__(self, objective: Shooting, theta0, max_iterations: int, chunk: int,
                 gtol: float):
        self.objective = objective
        self.theta = np.array(theta0, dtype=np.float64)
        self.max_iterations, self.chunk, self.gtol = int(max_iterations), int(chunk), gtol
        self.iteration = 0          # chunks done (= rows of /history)
        self.lbfgs_iterations = 0
        self.converged = False

    @property
    def finished(self) -> bool:
        return self.converged or self.lbfgs_iterations >= self.max_iterations

    def step(self):
        from scipy.optimize import minimize

        n_iter = min(self.chunk, self.max_iterations - self.lbfgs_iterations)
        if hasattr(self.objective, "start_chunk"):
            self.objective.start_chunk(self.iteration)
        f0 = self.objective(self.theta)[0]
        if f0 >= _REJECT:
            raise NumericalError("the shooting path is non-finite or unresolved at the "
                                 "current initial velocity (energy drift; more time.steps or "
                                 "a smaller initial.amplitude)")
        res = minimize(self.objective, self.theta, jac=True, method="L-BFGS-B",
                       options={"maxiter": n_iter, "gtol": self.gtol, "ftol": 1e-13})
        theta = np.asarray(res.x, dtype=np.float64)
        if not np.all(np.isfinite(theta)) or not math.isfinite(res.fun):
            raise NumericalError("L-BFGS produced non-finite coefficients")
        self.theta = theta if res.fun <= f0 else self.theta
        done = int(res.nit)
        self.iteration += 1
        self.lbfgs_iterations += max(done, 1)
        if done < n_iter or res.fun >= f0:
            self.converged = True
        f, g = self.objective(self.theta)
        return {"lbfgs_iterations": float(self.lbfgs_iterations), "cost": f,
                "grad_norm": float(np.linalg.norm(g)),
                "energy": (self.objective.energy(self.theta)
                           if hasattr(self.objective, "energy")
                           else 0.5 * float(self.theta @ self.theta)),
                "evaluations": float(self.objective.evaluations)}

    def state(self) -> dict:
        return {"theta": self.theta.copy(), "iteration": np.int64(self.iteration),
                "lbfgs_iterations": np.int64(self.lbfgs_iterations),
                "converged": np.int64(self.converged),
                "evaluations": np.int64(self.objective.evaluations)}

    def load_state(self, state) -> None:
        self.theta = np.array(state["theta"], dtype=np.float64)
        self.iteration = int(state["iteration"])
        self.lbfgs_iterations = int(state["lbfgs_iterations"])
        self.converged = bool(int(state["converged"]))
        self.objective.evaluations = int(state["evaluations"])


def _pairs(flow, z, seeds, chunk):
    """Training pairs (w, T(w)) of a chunk: ``z`` for chunk 0, then seeded fresh draws."""
    if chunk:
        seq = seeds["train"]
        z = np.random.default_rng(np.random.SeedSequence(
            seq.entropy, spawn_key=seq.spawn_key + (chunk,))).standard_normal(z.shape)
    return z, apply_in_chunks(lambda b: (flow.sample(b),), z, flow.xp)[0]


class GPFlowProblem(EvaluatedOnce, Problem):
    def __init__(self, case):
        super().__init__(case)
        where = case.source
        self.checkpoint = load_checkpoint(case.get("model.path"))
        self.meta = self.checkpoint.meta
        self.dim = self.meta["dim"]
        if self.dim < 2:
            raise InputError(f"a Gaussian-preserving rearrangement needs d >= 2; this flow has "
                             f"d = {self.dim}", source=where, key="model.path")
        build_flow(self.checkpoint, get_backend("numpy"), case.get("model.steps"))
        r1, r2 = case.get("basis.taper_inner"), case.get("basis.taper_outer")
        if not r2 > r1:
            raise InputError(f"expected taper_outer > taper_inner, got {r2:g} <= {r1:g}",
                             source=where, key="basis.taper_outer")
        # "field" (the d > 2 field's random nodes) comes last: it was added after the others
        self.seeds = self.seed_streams("train", "eval", "data", "ot", "init", "field")
        degree = case.get("basis.degree")
        if self.dim == 2:
            if case.get("basis.field") == "neural":
                raise InputError("the neural field is for d > 2 (2D flows use the Hermite "
                                 "Euler geodesic)", source=where, key="basis.field")
            self.field = None
            self.euler = HermiteEuler(6 if degree is None else degree, case.get("time.steps"),
                                      taper=(r1, r2),
                                      substeps=case.get("time.coefficient_substeps"))
            return
        # d > 2: antisymmetric Hermite matrix field, Euler condition as a penalty
        degree = 1 if degree is None else degree
        if case.get("data.type") in TOY_SETS:
            raise InputError(f"the toy data sets are 2D; this flow has d = {self.dim} (use "
                             f"type = \"model\")", source=where, key="data.type")
        self.euler = None
        if case.get("basis.field") == "neural":
            self.field = NeuralAntisymmetricGP(self.dim, case.get("basis.width"),
                                               case.get("time.steps"))
            return
        n_params, n_pressure, n_nodes = AntisymmetricGP.sizes(
            self.dim, degree, case.get("basis.time_degree"))
        if n_params > _MAX_PARAMS or n_nodes * self.dim * n_pressure > _MAX_PENALTY_MATRIX:
            raise InputError(f"too large for this construction: d = {self.dim} with degree "
                             f"{degree} has {n_params} coefficients (limit {_MAX_PARAMS}) and "
                             f"an Euler penalty on {n_pressure} pressure functions x "
                             f"{n_nodes} nodes ({n_nodes * self.dim * n_pressure:.3g} matrix "
                             f"entries, limit {_MAX_PENALTY_MATRIX:.3g}); lower basis.degree "
                             f"(degree 0 = rotations) if d allows", source=where,
                             key="basis.degree")
        self.field = AntisymmetricGP(self.dim, degree, case.get("basis.time_degree"),
                                     case.get("time.steps"), taper=(r1, r2),
                                     seed=self.seeds["field"])

    def describe(self) -> str:
        c = self.case
        if isinstance(self.field, NeuralAntisymmetricGP):
            return (f"{self.meta['model_type']} flow ({Path(self.checkpoint.path).name}, d = "
                    f"{self.dim}) rearranged by a neural antisymmetric-matrix field (width "
                    f"{self.field.width}, {self.field.size} parameters), action weight "
                    f"{c.get('solver.action_weight'):g}, RK4 {self.field.steps} steps, "
                    f"{c.get('solver.n_samples')} latent samples")
        if self.field is not None:
            f = self.field
            return (f"{self.meta['model_type']} flow ({Path(self.checkpoint.path).name}, "
                    f"d = {self.dim}) rearranged by a Gaussian-preserving antisymmetric-matrix "
                    f"field: Hermite degree {f.degree}, time degree {f.time_degree} "
                    f"({f.size} coefficients), Euler penalty {c.get('solver.euler_penalty'):g} "
                    f"({f.quadrature} nodes {f.nodes.shape[0]}), RK4 {f.steps} steps, "
                    f"{c.get('solver.n_samples')} latent samples, L-BFGS "
                    f"{c.get('solver.max_iterations')} iterations")
        return (f"{self.meta['model_type']} flow ({Path(self.checkpoint.path).name}) rearranged "
                f"by the Gaussian Euler geodesic: Hermite degree {self.euler.degree} "
                f"({self.euler.size} coefficients), RK4 {self.euler.steps} steps, "
                f"{c.get('solver.n_samples')} latent samples, L-BFGS "
                f"{c.get('solver.max_iterations')} iterations")

    def max_iterations(self) -> int:
        """Chunks (run iterations) at most."""
        return -(-self.case.get("solver.max_iterations") // self.case.get("solver.chunk"))

    def grid(self) -> list[GridAxis]:
        if self.field is not None:
            return [GridAxis("t", np.linspace(0.0, 1.0, self.field.steps + 1), "1",
                             "time of the path", "time"),
                    GridAxis("mode", np.arange(self.field.size, dtype=np.float64), "1",
                             "coefficient index (time degree, pair i < j, Hermite "
                             "multi-index)", "other")]
        return [GridAxis("t", np.linspace(0.0, 1.0, self.euler.steps + 1), "1",
                         "time of the geodesic", "time"),
                GridAxis("mode", np.arange(self.euler.size, dtype=np.float64), "1",
                         "Hermite mode index (m, n by total degree)", "other")]

    def theta0(self) -> np.ndarray:
        amp = self.case.get("initial.amplitude")
        rng = np.random.default_rng(self.seeds["init"])
        if isinstance(self.field, NeuralAntisymmetricGP):
            return self.field.initial(rng)
        d = rng.standard_normal((self.field or self.euler).size)
        return amp * d / np.linalg.norm(d)

    def make_solver(self, backend: Backend) -> ShootingRun:
        c = self.case
        flow = build_flow(self.checkpoint, backend, c.get("model.steps"))
        z = np.random.default_rng(self.seeds["train"]).standard_normal(
            (c.get("solver.n_samples"), self.dim))
        if isinstance(self.field, NeuralAntisymmetricGP):
            obj = PulledBackShooting(self.field, lambda k: _pairs(flow, z, self.seeds, k),
                                     c.get("solver.action_weight"), c.get("solver.resample"),
                                     c.get("solver.control_variate"))
        elif self.field is not None:
            obj = PenalizedShooting(self.field, flow, z, c.get("solver.fd_step"),
                                    c.get("solver.euler_penalty"))
        elif c.get("solver.pulled_back"):
            obj = PulledBackGeodesic(self.euler, lambda k: _pairs(flow, z, self.seeds, k),
                                     c.get("solver.max_energy_drift"), c.get("solver.resample"))
        else:
            obj = Shooting(self.euler, flow, z, c.get("solver.fd_step"),
                           c.get("solver.max_energy_drift"))
        run = ShootingRun(obj, self.theta0(), c.get("solver.max_iterations"),
                          c.get("solver.chunk"), c.get("solver.gtol"))
        run.flow = flow
        return run

    # -- evaluation -------------------------------------------------------------------------
    def _results_key(self, solver) -> tuple:
        return (id(solver), solver.iteration, solver.theta.tobytes())

    def _results(self, solver: ShootingRun) -> tuple:
        if isinstance(self.field, NeuralAntisymmetricGP):
            return results_neural(self, solver)
        if self.field is not None:
            return self._results_nd(solver)
        c, flow, eu = self.case, solver.flow, self.euler
        xp = flow.xp
        obj = solver.objective
        theta = (obj.rearrangement(solver.theta) if isinstance(obj, PulledBackGeodesic)
                 else solver.theta)
        sample = lambda a: apply_in_chunks(lambda b: (flow.sample(b),), a, xp)[0]  # noqa: E731
        s: dict = {"degree": eu.degree, "n_coefficients": eu.size, "time_steps": eu.steps,
                   "lbfgs_iterations": solver.lbfgs_iterations,
                   "objective_evaluations": solver.objective.evaluations}

        # training objective before/after
        s["training_cost_before"] = float(obj(self.theta0())[0])
        s["training_cost_after"] = float(obj(solver.theta)[0])

        # transport costs on fresh draws
        n = c.get("comparison.n_eval")
        z = np.random.default_rng(self.seeds["eval"]).standard_normal((n, 2))
        with np.errstate(all="ignore"):
            theta_end, gz, ld_fwd, path = eu.integrate(theta, z, logdet=True)
        if not (np.all(np.isfinite(gz)) and np.all(np.isfinite(theta_end))):
            raise NumericalError("the rearrangement G is non-finite on the evaluation samples")
        x0, x1 = transport_costs(s, sample, z, gz, ld_fwd)

        # the discrete-OT lower bound of the (unchanged) model distribution
        est = estimate_w2(lambda m, rng: rng.standard_normal((m, 2)),
                          lambda m, rng: sample(rng.standard_normal((m, 2))),
                          c.get("comparison.ot_sizes"), c.get("comparison.ot_repeats"),
                          np.random.default_rng(self.seeds["ot"]), 2)
        gap_to_bound(s, est)

        # log-likelihood of held-out data before/after: ln p_new(x) = ln p(x) - ln gamma(z)
        # + ln gamma(G^{-1} z) - int div v  (z = T^{-1} x, G^{-1} by RK4 backwards in time)
        kind, m = c.get("data.type"), c.get("data.n_test")
        rng = np.random.default_rng(self.seeds["data"])
        if kind in TOY_SETS:
            data = toy_data.sample(kind, m, rng)
            zd, lp = apply_in_chunks(flow.to_latent, data, xp)
        else:
            zd, lp = apply_in_chunks(flow.to_data, rng.standard_normal((m, 2)), xp)
            zd = apply_in_chunks(flow.to_latent, zd, xp)[0]
        with np.errstate(all="ignore"):
            _, w, ld_back, _ = eu.integrate(theta_end, zd, backward=True, logdet=True)
        likelihood_change(s, lp, zd, w, ld_back)

        # how geodesic: the Galerkin-dropped part of the Euler tendency along the path
        res = np.array([eu.euler_residual(p) for p in path])
        energy = np.array([eu.energy(p) for p in path])
        s["euler_residual"] = float(res[:, 0].max())
        s["euler_residual_abs"] = float(res[:, 1].max())
        s["energy"] = float(energy[0])
        s["energy_drift"] = float(abs(energy[-1] - energy[0]) / max(energy[0], 1e-300))
        s["taper_mass"] = math.exp(-0.5 * eu.taper[0] ** 2)

        fields = [FieldData("theta0", theta.copy(), ("mode",), "1",
                            "optimized initial coefficients (energy-orthonormal)"),
                  FieldData("theta_path", path, ("t", "mode"), "1",
                            "coefficients along the geodesic"),
                  FieldData("euler_residual", res[:, 0], ("t",), "1",
                            "relative Euler residual along the path"),
                  FieldData("energy", energy, ("t",), "1", "kinetic energy along the path")]
        k = min(c.get("output.samples"), n)
        lat = np.linspace(-3.0, 3.0, 13)
        fine = np.linspace(-3.0, 3.0, 121)
        along, across = np.meshgrid(lat, fine, indexing="ij")
        lines = np.concatenate([np.stack([across, along], -1).reshape(-1, 2),    # y = const
                                np.stack([along, across], -1).reshape(-1, 2)])   # x = const
        with np.errstate(all="ignore"):
            lines_img = eu.integrate(theta, lines)[1]
        particles = [
            ParticleData("latent", z[:k], "1", "latent points z ~ N(0, I)"),
            ParticleData("flow_image", x0[:k], "1", "T(z), the flow before"),
            ParticleData("rearranged", gz[:k], "1", "G(z), the Gaussian-preserving map"),
            ParticleData("gp_image", x1[:k], "1", "T(G(z)), the flow after"),
            ParticleData("lattice", lines, "1", "points on the lines of a lattice in [-3, 3]^2"),
            ParticleData("lattice_image", lines_img, "1", "their images under G"),
        ]
        return s, fields, particles


    def _results_nd(self, solver: ShootingRun) -> tuple:
        """d > 2: the same summary from the penalized antisymmetric-matrix path."""
        c, flow, fld, d = self.case, solver.flow, self.field, self.dim
        xp = flow.xp
        theta = solver.theta
        sample = lambda a: apply_in_chunks(lambda b: (flow.sample(b),), a, xp)[0]  # noqa: E731
        obj = solver.objective
        s: dict = {"dim": d, "degree": fld.degree, "time_degree": fld.time_degree,
                   "n_coefficients": fld.size, "time_steps": fld.steps,
                   "lbfgs_iterations": solver.lbfgs_iterations,
                   "objective_evaluations": obj.evaluations,
                   "euler_penalty_weight": obj.weight,
                   "penalty_nodes": int(fld.nodes.shape[0]),
                   "penalty_quadrature_exact": fld.quadrature == "gauss_hermite"}
        s["training_cost_before"] = obj.transport_cost(self.theta0())
        s["training_cost_after"] = obj.transport_cost(theta)
        s["euler_penalty"] = float(fld.penalty(theta))

        n = c.get("comparison.n_eval")
        z = np.random.default_rng(self.seeds["eval"]).standard_normal((n, d))
        with np.errstate(all="ignore"):
            gz, ld_fwd, _ = fld.integrate(theta, z, logdet=True)
        if not np.all(np.isfinite(gz)):
            raise NumericalError("the rearrangement G is non-finite on the evaluation samples")
        x0, x1 = transport_costs(s, sample, z, gz, ld_fwd)

        est = estimate_w2(lambda m, rng: rng.standard_normal((m, d)),
                          lambda m, rng: sample(rng.standard_normal((m, d))),
                          c.get("comparison.ot_sizes"), c.get("comparison.ot_repeats"),
                          np.random.default_rng(self.seeds["ot"]), d)
        gap_to_bound(s, est)
        s["gelbrich_bound"] = gelbrich_bound(x0)

        m = c.get("data.n_test")
        rng = np.random.default_rng(self.seeds["data"])
        zd, lp = apply_in_chunks(flow.to_data, rng.standard_normal((m, d)), xp)
        zd = apply_in_chunks(flow.to_latent, zd, xp)[0]
        with np.errstate(all="ignore"):
            w, ld_back, _ = fld.integrate(theta, zd, backward=True, logdet=True)
        likelihood_change(s, lp, zd, w, ld_back)

        times = np.linspace(0.0, 1.0, fld.steps + 1)
        res = np.array([fld.residual(theta, t) for t in times])
        s["euler_residual"] = float(res[:, 0].max())
        s["euler_residual_abs"] = float(res[:, 1].max())
        s["energy"] = float(res[0, 2])
        s["energy_drift"] = float(abs(res[-1, 2] - res[0, 2]) / max(res[0, 2], 1e-300))
        s["taper_mass"] = taper_mass(d, fld.taper[0])

        fields = [FieldData("theta0", theta.copy(), ("mode",), "1",
                            "optimized coefficients of the antisymmetric matrix field"),
                  FieldData("euler_residual", res[:, 0], ("t",), "1",
                            "relative Euler residual |Q a| / |a| along the path"),
                  FieldData("energy", res[:, 2], ("t",), "1",
                            "kinetic energy along the path")]
        k = min(c.get("output.samples"), n)
        lat = np.linspace(-3.0, 3.0, 13)
        fine = np.linspace(-3.0, 3.0, 121)
        along, across = np.meshgrid(lat, fine, indexing="ij")
        planar = np.concatenate([np.stack([across, along], -1).reshape(-1, 2),
                                 np.stack([along, across], -1).reshape(-1, 2)])
        lines = np.zeros((planar.shape[0], d))
        lines[:, :2] = planar          # a lattice in the (x0, x1) plane
        with np.errstate(all="ignore"):
            lines_img = fld.integrate(theta, lines)[0]
        particles = [
            ParticleData("latent", z[:k], "1", "latent points z ~ N(0, I)"),
            ParticleData("flow_image", x0[:k], "1", "T(z), the flow before"),
            ParticleData("rearranged", gz[:k], "1", "G(z), the Gaussian-preserving map"),
            ParticleData("gp_image", x1[:k], "1", "T(G(z)), the flow after"),
            ParticleData("lattice", lines, "1",
                         "points on the lines of a lattice in [-3, 3]^2 x {0}"),
            ParticleData("lattice_image", lines_img, "1", "their images under G"),
        ]
        return s, fields, particles


def build(case) -> GPFlowProblem:
    return GPFlowProblem(case)
