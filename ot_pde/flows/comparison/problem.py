r"""The ``flow_comparison`` problem kind: an exported neural flow against OT references.

A case loads a flow :math:`T` from a checkpoint (:mod:`ot_pde.flows.exported`) that
pushes the latent :math:`\mathcal N(0, I)` to data, checks it against the reference pairs
stored by the framework that trained it, and measures how far it is from optimal transport:

``transport_cost``
    :math:`\mathbb E|T(z) - z|^2`, Monte Carlo over ``comparison.n_samples`` latent draws
    (with ``transport_cost_stderr``). Any map pushing :math:`\mathcal N(0,I)` to the flow's
    distribution :math:`\nu` costs at least :math:`W_2^2(\mathcal N(0,I), \nu)`.
``layerwise_cost``
    :math:`L\,\mathbb E\sum_{l}|F_{l+1}(z) - F_l(z)|^2` over the flow's :math:`L` layers
    (coupling layers, or integrator steps of an ODE flow: then it approximates the kinetic
    energy :math:`\int_0^1\mathbb E|v|^2dt`, which equals the transport cost only for
    straight, constant-speed paths). By Cauchy-Schwarz it is :math:`\ge` ``transport_cost``.
``ot_lower_bound`` (and ``ot_lower_bound_stderr``)
    :math:`W_2^2(\mathcal N(0,I), \nu)` by exact discrete OT on samples, extrapolated in the
    sample size (:mod:`.discrete_ot`).
``gelbrich_lower_bound``
    Gelbrich's moment bound :math:`\le W_2^2` (exact for Gaussians), from the flow samples: a
    certain lower bound in any dimension, where the discrete estimate is poor (d >~ 10);
    ``gap_upper_bound`` = ``transport_cost - gelbrich_lower_bound`` bounds the gap above.
``paired_gap``
    :math:`\frac1n\sum|T(z_i) - z_i|^2 - \min_\sigma\frac1n\sum|T(z_{\sigma(i)}) - z_i|^2` on the
    same :math:`n` points (the largest ``ot_sizes``): never negative, exactly 0 for an
    optimal map at every :math:`n`, increasing towards the true gap with :math:`n`; a low-noise,
    conservative estimate of the gap.
``optimality_gap``
    ``transport_cost - ot_lower_bound`` (``relative_gap``: divided by ``ot_lower_bound``).
``mean_log_likelihood``
    The mean of :math:`\ln p(x)` over held-out data (``[data]``), or over the flow's own samples
    with ``data.type = "model"`` (then minus the model's entropy).
In 2D (``grid.check``)
    The Benamou-Brenier solver of :mod:`ot_pde.spacetime` computes
    ``bb_W2_squared`` between :math:`\mathcal N(0, I)` and the flow's density :math:`e^{\ln p}`
    on a grid; its Douglas-Rachford iterations are the run's iterations (restartable).

The stored reference pairs are checked first: ``reference_max_abs_error`` (outputs) and
``reference_log_density_max_abs_error``; beyond ``model.reference_tolerance`` (default by the
checkpoint's dtype) the checkpoint is refused as mislabelled or corrupt (exit 2).
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
from ...io.arrays import load_samples
from .. import data as toy_data
from ..discrete_ot import ESTIMATORS, assignment_cost, estimate_w2, gelbrich_bound
from ..exported.checkpoint import load_checkpoint
from ..exported.models import CHUNK, apply_in_chunks, build_flow
from ..integrators import standard_normal_log_prob, to_host

log = logging.getLogger("ot_pde")

TOY_SETS = tuple(toy_data.DATASETS)
#: rows per model call (bounds memory for large d)
#: default tolerances of the stored-reference check, by checkpoint dtype: absolute on the
#: outputs, relative (to max(1, |ln p|)) on the log-densities
_REF_TOL = {"float64": 1e-8, "float32": 1e-3}

SCHEMA = make_schema({
    "model": Section({
        "path": Field("path", must_exist=True, doc="the flow checkpoint (.npz or .safetensors)"),
        "steps": Field("int", None, minimum=1, resolution="inverse",
                       doc="integrator steps of an ODE flow (default: the checkpoint's)"),
        "reference_tolerance": Field("float", None, exclusive_minimum=0.0,
                                     doc="allowed deviation from the stored reference pairs "
                                         "(default 1e-8 for float64, 1e-3 for float32 files)"),
    }, doc="the exported flow"),
    "data": Section({
        "n_test": Field("int", 20000, minimum=2, doc="held-out points for the log-likelihood"),
    }, variants={
        **{name: {} for name in TOY_SETS},
        "model": {},
        "file": {"path": Field("path", must_exist=True, doc=".npy file of samples (N, d)")},
    }, default_variant="model", doc="held-out data for mean_log_likelihood: a 2D toy set "
                                   "(ot_pde.flows.data), a .npy file, or the flow's own samples"),
    "comparison": Section({
        "n_samples": Field("int", 20000, minimum=2,
                           doc="latent draws for transport_cost and layerwise_cost"),
        "ot_sizes": Field("int_list", [256, 512, 1024, 2048], minimum=2, min_length=1,
                          doc="sample sizes of the discrete OT problems (extrapolated)"),
        "ot_repeats": Field("int", 4, minimum=2, doc="independent repeats per size"),
        "estimator": Field("str", "debiased", choices=ESTIMATORS,
                           doc="discrete OT estimator (see ot_pde.flows.discrete_ot)"),
        "extrapolate": Field("str", "auto", choices=("auto", "yes", "no"),
                             doc="extrapolate the estimator in the sample size (auto: d <= 4)"),
    }, doc="the transport-cost comparison"),
    "grid": Section({
        "check": Field("bool", True, doc="2D: Benamou-Brenier W2^2 between N(0, I) and the "
                                         "flow's density on the grid"),
        "lower": Field("float_list", [-5.0, -5.0], length=2, doc="lower corner of the box"),
        "upper": Field("float_list", [5.0, 5.0], length=2, doc="upper corner of the box"),
        "n": Field("int", 64, minimum=4, resolution="inverse", doc="cells per axis"),
        "nt": Field("int", 32, minimum=2, doc="time cells of the Benamou-Brenier grid"),
    }, doc="2D grid of the density check and the Benamou-Brenier reference"),
    "solver": Section({
        "gamma": Field("float", 0.3, exclusive_minimum=0.0, doc="Douglas-Rachford step"),
        "relaxation": Field("float", 1.8, exclusive_minimum=0.0, exclusive_maximum=2.0,
                            doc="Douglas-Rachford relaxation"),
        "tol": Field("float", 1e-4, exclusive_minimum=0.0, doc="relative residual tolerance"),
        "max_iterations": Field("int", 3000, minimum=1, doc="iteration cap"),
    }, doc="the Benamou-Brenier solver (2D only)"),
    "output": Section({
        "every": Field("int", 200, minimum=1, doc="Benamou-Brenier iterations between flushes"),
        "samples": Field("int", 2000, minimum=1,
                         doc="latent points (and their images) written to /particles"),
    }),
})


class ComparisonRun:
    """The run's iterative part: the Benamou-Brenier solver in 2D, nothing otherwise."""

    def __init__(self, flow, bb=None):
        self.flow, self.bb = flow, bb

    @property
    def iteration(self) -> int:
        return 0 if self.bb is None else self.bb.iteration

    @property
    def finished(self) -> bool:
        return self.bb is None or self.bb.finished

    def step(self):
        return self.bb.step()

    def state(self) -> dict:
        return {} if self.bb is None else self.bb.state()

    def load_state(self, state) -> None:
        if self.bb is not None:
            self.bb.load_state(state)


class FlowComparisonProblem(EvaluatedOnce, Problem):
    def __init__(self, case):
        super().__init__(case)
        self.where = case.source
        self.checkpoint = load_checkpoint(case.get("model.path"))
        self.meta = self.checkpoint.meta
        self.dim = self.meta["dim"]
        # validates the weights against the metadata now (check, before any run)
        build_flow(self.checkpoint, get_backend("numpy"), case.get("model.steps"))
        self._seeds = self.seed_streams("data", "cost", "ot", "plot")
        kind = case.get("data.type")
        if kind in TOY_SETS and self.dim != 2:
            raise InputError(f"the toy set {kind!r} is 2D but the flow has d = {self.dim}",
                             source=self.where, key="data.type")
        lower, upper = case.get("grid.lower"), case.get("grid.upper")
        if any(b <= a for a, b in zip(lower, upper)):
            raise InputError("expected upper > lower on both axes", source=self.where,
                             key="grid.upper")
        # a data file is read and checked now, so that `check` refuses it (not the summary)
        self._data = load_samples(case.get("data.path"), None, dim=self.dim,
                                  source=self.where, key="data.path") \
            if kind == "file" else None
        self.on_grid = self.dim == 2 and case.get("grid.check")
        self._ref_errors = None
        self._grid_logp = None

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        m = self.meta
        steps = self.case.get("model.steps") or m["steps"]
        how = f", {steps} {m['integrator']} steps" if m["integrator"] else ""
        return (f"{m['model_type']} flow, d = {self.dim}, layers {m['layer_sizes']}{how} "
                f"({Path(self.checkpoint.path).name}); OT on samples"
                + (f", Benamou-Brenier on {self.case.get('grid.n')}^2" if self.on_grid else ""))

    def max_iterations(self) -> int:
        return self.case.get("solver.max_iterations") if self.on_grid else 0

    def _axes(self):
        c = self.case
        lower, upper, n = c.get("grid.lower"), c.get("grid.upper"), c.get("grid.n")
        xs = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in zip(lower, upper)]
        return xs, (upper[0] - lower[0]) * (upper[1] - lower[1]) / (n * n)

    def grid(self) -> list[GridAxis]:
        axes = [GridAxis("n_ot", np.asarray(sorted(self.case.get("comparison.ot_sizes")),
                                            dtype=np.float64), "1",
                         "sample sizes of the discrete OT problems", "other")]
        if self.on_grid:
            xs, _ = self._axes()
            axes += [GridAxis("x", xs[0], "1", "cell centres along x", "space"),
                     GridAxis("y", xs[1], "1", "cell centres along y", "space")]
        return axes

    def make_solver(self, backend: Backend) -> ComparisonRun:
        flow = build_flow(self.checkpoint, backend, self.case.get("model.steps"))
        self._check_reference(flow)
        bb = None
        if self.on_grid:
            from ...spacetime import BenamouBrenierSolver, SpaceTimeGrid

            c = self.case
            n = c.get("grid.n")
            grid = SpaceTimeGrid(tuple(c.get("grid.lower")), tuple(c.get("grid.upper")), (n, n),
                                 c.get("grid.nt"))
            rho0, rho1 = self._grid_densities(flow)
            bb = BenamouBrenierSolver(rho0 / (rho0.sum() * grid.cell_volume),
                                      rho1 / (rho1.sum() * grid.cell_volume), grid, backend,
                                      gamma=c.get("solver.gamma"),
                                      relaxation=c.get("solver.relaxation"),
                                      tol=c.get("solver.tol"),
                                      max_iterations=c.get("solver.max_iterations"))
        return ComparisonRun(flow, bb)

    # -- checks -----------------------------------------------------------------------------
    def _check_reference(self, flow) -> None:
        ref = self.checkpoint.reference
        self._ref_errors = None
        if not ref:
            log.warning("%s holds no reference pairs: the model is not checked against its "
                        "framework", self.checkpoint.path)
            return
        out, lp = apply_in_chunks(flow.apply_stored_direction, ref["input"], flow.xp)
        err_out = float(np.abs(out - ref["output"]).max())
        scale = np.maximum(1.0, np.abs(ref["log_density"]))
        err_lp = float(np.max(np.abs(lp - ref["log_density"]) / scale))
        self._ref_errors = (err_out, err_lp)
        tol = self.case.get("model.reference_tolerance") or _REF_TOL[self.meta["dtype"]]
        log.info("stored reference pairs: max |output error| %.2e, max log-density error "
                 "%.2e (tolerance %.0e)", err_out, err_lp, tol)
        if not (err_out <= tol and err_lp <= tol):
            key = "reference/output" if not err_out <= tol else "reference/log_density"
            raise InputError(f"the model reproduces the stored reference pairs only to "
                             f"{max(err_out, err_lp):.2e} (tolerance {tol:.0e}): the file is "
                             f"mislabelled or corrupt", source=self.checkpoint.path, key=key)

    def _grid_densities(self, flow):
        xs, _ = self._axes()
        X, Y = np.meshgrid(xs[0], xs[1], indexing="ij")
        pts = np.stack([X.ravel(), Y.ravel()], axis=1)
        rho0 = np.exp(standard_normal_log_prob(pts)).reshape(X.shape)
        lp = apply_in_chunks(flow.to_latent, pts, flow.xp)[1]
        if not np.all(np.isfinite(lp)):
            raise NumericalError("the flow's log-density is not finite on the grid")
        self._grid_logp = lp.reshape(X.shape)
        return rho0, np.exp(self._grid_logp)

    # -- evaluation -------------------------------------------------------------------------
    def _test_data(self, flow) -> tuple[np.ndarray | None, str]:
        c = self.case
        kind, n = c.get("data.type"), c.get("data.n_test")
        rng = np.random.default_rng(self._seeds["data"])
        if kind in TOY_SETS:
            return toy_data.sample(kind, n, rng), kind
        if kind == "file":
            return self._data[:n], "file"
        return None, "model"

    def _sampler(self, flow):
        xp = flow.xp

        def latent(n, rng):
            return rng.standard_normal((n, self.dim))

        def pushed(n, rng):
            return apply_in_chunks(lambda z: (flow.sample(z),), latent(n, rng), xp)[0]
        return latent, pushed

    def _results(self, solver: ComparisonRun) -> tuple:
        c, flow, xp = self.case, solver.flow, solver.flow.xp
        summary: dict = {}
        fields: list[FieldData] = []
        particles: list[ParticleData] = []
        if self._ref_errors is not None:
            summary["reference_max_abs_error"] = self._ref_errors[0]
            summary["reference_log_density_max_abs_error"] = self._ref_errors[1]

        # transport cost and per-layer cost on the same latent draws
        rng = np.random.default_rng(self._seeds["cost"])
        n = c.get("comparison.n_samples")
        z = rng.standard_normal((n, self.dim))
        cost, layer, x_all = [], [], []
        for s in range(0, n, CHUNK):
            states = [to_host(f) for f in flow.trajectory(xp.asarray(z[s:s + CHUNK]))]
            L = len(states) - 1
            cost.append(np.sum((states[-1] - states[0]) ** 2, axis=1))
            layer.append(L * sum(np.sum((b - a) ** 2, axis=1)
                                 for a, b in zip(states[:-1], states[1:])))
            x_all.append(states[-1])
        cost, layer, x_all = np.concatenate(cost), np.concatenate(layer), np.concatenate(x_all)
        if not (np.all(np.isfinite(cost)) and np.all(np.isfinite(layer))):
            raise NumericalError("the flow produced non-finite samples")
        summary["n_layers"] = int(L)
        summary["transport_cost"] = float(cost.mean())
        summary["transport_cost_stderr"] = float(cost.std(ddof=1) / math.sqrt(n))
        summary["layerwise_cost"] = float(layer.mean())
        summary["layerwise_cost_stderr"] = float(layer.std(ddof=1) / math.sqrt(n))

        # OT reference on samples
        latent, pushed = self._sampler(flow)
        est = estimate_w2(latent, pushed, c.get("comparison.ot_sizes"),
                          c.get("comparison.ot_repeats"),
                          np.random.default_rng(self._seeds["ot"]), self.dim,
                          c.get("comparison.estimator"),
                          {"auto": None, "yes": True,
                           "no": False}[c.get("comparison.extrapolate")])
        summary["ot_lower_bound"] = est.value
        summary["ot_lower_bound_stderr"] = est.stderr
        summary["ot_extrapolation_slope"] = est.slope
        summary["gelbrich_lower_bound"] = gelbrich_bound(x_all)
        summary["gap_upper_bound"] = summary["transport_cost"] - summary["gelbrich_lower_bound"]
        # the flow's own coupling on n points vs the best matching of the same points: >= 0,
        # exactly 0 for an optimal map (its graph is cyclically monotone), and increasing
        # towards the true gap with n (a conservative estimate of optimality_gap)
        n_max = int(max(c.get("comparison.ot_sizes")))
        z_p = z[:n_max]
        x_p = x_all[:n_max]
        summary["paired_gap"] = float(np.mean(np.sum((x_p - z_p) ** 2, axis=1))
                                      - assignment_cost(z_p, x_p)[0])
        summary["ot_plain_largest_n"] = float(est.plain_mean[-1])
        summary["optimality_gap"] = summary["transport_cost"] - est.value
        summary["optimality_gap_stderr"] = math.hypot(summary["transport_cost_stderr"],
                                                      est.stderr)
        summary["relative_gap"] = (summary["optimality_gap"] / est.value
                                   if est.value > 0 else float("inf"))
        for name, arr, what in (
                ("ot_plain", est.plain_mean, "mean discrete W2^2 at each sample size"),
                ("ot_plain_stderr", est.plain_stderr, "its standard error"),
                ("ot_estimate", est.estimate_mean,
                 f"mean {est.estimator} estimator at each size (extrapolated: ot_lower_bound)"),
                ("ot_estimate_stderr", est.estimate_stderr, "its standard error")):
            fields.append(FieldData(name, arr, ("n_ot",), "1", what))

        # log-likelihood
        data, label = self._test_data(flow)
        if data is None:
            m = c.get("data.n_test")
            lp = apply_in_chunks(flow.to_data, rng.standard_normal((m, self.dim)), xp)[1]
        else:
            lp = apply_in_chunks(flow.to_latent, data, xp)[1]
        if not np.all(np.isfinite(lp)):
            raise NumericalError("non-finite log-densities on the held-out data")
        summary["mean_log_likelihood"] = float(lp.mean())
        summary["mean_log_likelihood_stderr"] = float(lp.std(ddof=1) / math.sqrt(lp.size))
        summary["log_likelihood_on_model_samples"] = data is None

        # figure material: latent points, their images, and the discrete OT matching
        k = min(c.get("output.samples"), n, est.matched[0].shape[0])
        particles += [
            ParticleData("latent", z[:k], "1", "latent points z ~ N(0, I)"),
            ParticleData("flow_image", x_all[:k], "1", "their images T(z) under the flow"),
            ParticleData("ot_latent", est.matched[0][:k], "1",
                         "latent points of the largest discrete OT problem"),
            ParticleData("ot_image", est.matched[1][:k], "1",
                         "the flow samples the exact assignment matches them to"),
        ]
        if self.on_grid and solver.bb is not None:
            _, cell = self._axes()
            rho = np.exp(self._grid_logp)
            summary["flow_mass_on_grid"] = float(rho.sum() * cell)
            summary["bb_W2_squared"] = float(solver.bb.w2_squared())
            summary["bb_converged"] = bool(solver.bb.converged)
            dims = ("x", "y")
            dens = solver.bb.density()
            fields += [FieldData("flow_density", rho, dims, "1",
                                 "exp(ln p) of the flow at the cell centres"),
                       FieldData("bb_density_mid", dens[dens.shape[0] // 2], dims, "1",
                                 "Benamou-Brenier geodesic density at t = 1/2")]
        return summary, fields, particles



def build(case) -> FlowComparisonProblem:
    return FlowComparisonProblem(case)
