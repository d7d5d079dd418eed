"""The ``entropic_potentials`` problem kind: case schema, set-up, closed forms, outputs."""
from __future__ import annotations

import logging

import numpy as np

from ...config import Field, Section, make_schema
from ...core.problem import FieldData, GridAxis, ParticleData, Problem, Reference
from ...densities import GridDensity, build_density, density_section, gaussian_pdf
from ...errors import InputError
from ...flows.data import DATASETS
from ...spacetime import SpaceTimeGrid, check_marginals, checked_box
from .solver import EntropicSolver, integrate_flow, interpolate

log = logging.getLogger("ot_pde")


def _density_section(doc: str) -> Section:
    """The common density section plus ``line`` (degenerate Gaussian) and ``checkerboard``."""
    base = density_section(doc)
    variants = dict(base.variants)
    variants["line"] = {
        "mean": Field("float_list", doc="centre; off the line's axis it must be a cell centre"),
        "std": Field("float", exclusive_minimum=0.0, doc="standard deviation along the line"),
        "axis": Field("int", 0, minimum=0, maximum=2, doc="axis the line runs along"),
    }
    variants["checkerboard"] = {
        "lower": Field("float_list", doc="lower corner of the board"),
        "upper": Field("float_list", doc="upper corner of the board"),
        "cells": Field("int", 4, minimum=1, doc="squares per side"),
        "edge": Field("float", 0.1, exclusive_minimum=0.0,
                      doc="width of the smoothed edges (logistic), in length units"),
    }
    variants["dataset"] = {
        "name": Field("str", choices=tuple(DATASETS),
                      doc="a 2D toy data set of ot_pde.flows.data (samples only: needs "
                          "potentials.representation = 'neural')"),
    }
    return Section(base.fields, variants=variants, doc=doc)


SCHEMA = make_schema({
    "grid": Section({
        "lower": Field("float_list", None,
                       doc="lower corner of the box (its length is the dimension); required "
                           "for the grid representation"),
        "upper": Field("float_list", None, doc="upper corner of the box"),
        "n": Field("int", None, minimum=3, resolution="inverse", doc="cells per space axis"),
    }, doc="the spatial box and its cells (1 to 3 dimensions); with neural potentials an "
           "optional 2D box where the model density and velocity are written"),
    "potentials": Section({}, variants={
        "grid": {},
        "neural": {
            "width": Field("int", 0, minimum=0,
                           doc="hidden units of each potential's network on top of its "
                               "quadratic part (0: quadratic potentials)"),
            "activation": Field("str", "softplus", choices=("logcosh", "softplus", "tanh"),
                                doc="the networks' activation"),
            "optimizer": Field("str", "newton", choices=("newton", "adam"),
                               doc="newton: stochastic Newton steps on the quadratic parts, "
                                   "Adam on the networks; adam: Adam on everything"),
            "iterations": Field("int", 1000, minimum=1, doc="stochastic ascent steps"),
            "batch": Field("int", 256, minimum=2,
                           doc="data samples and target samples per step"),
            "shards": Field("int", 1, minimum=1,
                            doc="parts the batch is summed in, the unit of data-parallel "
                                "training under MPI: the history is the same to the bit on "
                                "any number of ranks up to shards (each rank takes whole "
                                "shards), so set it to a multiple of the ranks you will use"),
            "draws": Field("int", 4, minimum=1,
                           doc="importance-sampling draws x ~ q(x|y) per target sample"),
            "lr": Field("float", 0.5, exclusive_minimum=0.0,
                        doc="first step size (Newton: fraction of the Newton step)"),
            "lr_final": Field("float", 0.02, exclusive_minimum=0.0,
                              doc="last step size (geometric decay)"),
            "adam_lr": Field("float", 1e-3, exclusive_minimum=0.0,
                             doc="newton optimizer: first Adam rate of the network weights"),
            "adam_lr_final": Field("float", 1e-4, exclusive_minimum=0.0,
                                   doc="newton optimizer: last Adam rate of the networks"),
            "n_train": Field("int", 20000, minimum=0,
                             doc="training samples of the source, drawn once (0: fresh "
                                 "samples at every step)"),
            "n_test": Field("int", 20000, minimum=2,
                            doc="held-out source samples (dual value, NLL)"),
            "n_eval": Field("int", 100000, minimum=2,
                            doc="target samples of the final dual-value estimate"),
            "nll_points": Field("int", 2000, minimum=0,
                                doc="held-out points integrated by the CNF for the NLL"),
            "heat_draws": Field("int", 32, minimum=1,
                                doc="Monte Carlo draws of the heat smoothing of the networks "
                                    "(quadratic parts: closed form)"),
        },
    }, discriminator="representation", default_variant="grid",
        doc="grid: Sinkhorn on the grid from two densities; neural: potentials learned from "
            "samples of the source (target: a Gaussian density)"),
    "time": Section({
        "nt": Field("int", 16, minimum=1, resolution="inverse",
                    doc="time levels of the written interpolation; RK4 steps of the flow"),
    }, doc="time discretization of [0, 1]"),
    "source": _density_section("the density at t = 0 (the data)"),
    "target": _density_section("the density at t = 1 (e.g. N(0, I))"),
    "solver": Section({
        "epsilon": Field("float", exclusive_minimum=0.0,
                         doc="entropic regularization eps (length^2): cost |x-y|^2/2 + eps KL"),
        "tol": Field("float", 1e-9, exclusive_minimum=0.0,
                     doc="stop when the L1 error of the second marginal is below tol"),
        "max_iterations": Field("int", 5000, minimum=1,
                                doc="iteration cap (the run completes with converged = false)"),
        "debias": Field("bool", True, doc="compute the Sinkhorn divergence (two symmetric "
                                          "solves) as the W2^2 estimate of non-Gaussian cases"),
    }, doc="log-domain Sinkhorn"),
    "flow": Section({
        "samples": Field("int", 2000, minimum=0,
                         doc="source samples pushed by the flow (0: no flow)"),
        "mass_check": Field("bool", True, doc="integrate the grid backwards to check that the "
                                              "flow's log-density integrates to 1"),
    }, doc="the continuous normalizing flow v_t = grad(psi_t - phi_t)/2"),
    "output": Section({
        "every": Field("int", 50, minimum=1,
                       doc="iterations between flushes of history and checkpoint"),
    }),
})


# ------------------------------------------------------------------------ Gaussian closed forms
def psd_sqrt(m):
    w, vecs = np.linalg.eigh(0.5 * (m + m.T))
    return (vecs * np.sqrt(np.clip(w, 0.0, None))) @ vecs.T


def entropic_gaussian(m0, a, m1, b, epsilon: float):
    r"""Closed form of :math:`2\,\mathrm{OT}_\varepsilon` between :math:`N(m_0, A)` and
    :math:`N(m_1, B)` and the plan's cross-covariance :math:`C = \mathrm{Cov}(X, Y)`.

    Janati, Muzellec, Peyré & Cuturi (2020), Thm 1, with :math:`\sigma^2 = \varepsilon`:
    :math:`D = (4 A^{1/2} B A^{1/2} + \varepsilon^2 I)^{1/2}`,

    .. math::

        2\mathrm{OT}_\varepsilon = |m_0 - m_1|^2 + \mathrm{tr} A + \mathrm{tr} B - \mathrm{tr} D
        + d\varepsilon(1 - \log 2\varepsilon) + \varepsilon \log\det(D + \varepsilon I),

    :math:`C = \frac12 A^{1/2} D A^{-1/2} - \frac\varepsilon2 I` (computed from the better
    conditioned side, so that one of A, B may be singular). ``epsilon = 0`` gives the Bures
    :math:`W_2^2` and the cross-covariance of the optimal (Brenier) plan.
    """
    m0, m1 = np.asarray(m0, float), np.asarray(m1, float)
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = len(m0)
    eye = np.eye(d)
    swap = np.linalg.eigvalsh(a).min() < np.linalg.eigvalsh(b).min()
    p, q = (b, a) if swap else (a, b)
    sp = psd_sqrt(p)
    dmat = psd_sqrt(4 * sp @ q @ sp + epsilon ** 2 * eye)
    cost = float(np.sum((m0 - m1) ** 2) + np.trace(a) + np.trace(b) - np.trace(dmat))
    if epsilon > 0:
        cost += d * epsilon * (1 - np.log(2 * epsilon)) \
            + epsilon * np.linalg.slogdet(dmat + epsilon * eye)[1]
    cross = 0.5 * sp @ dmat @ np.linalg.inv(sp) - 0.5 * epsilon * eye
    return cost, (cross.T if swap else cross)


def entropic_gaussian_interpolation(m0, a, m1, b, epsilon: float, t: float):
    r"""Mean and covariance of the Schrödinger-bridge marginal at ``t``:
    :math:`X_t = (1-t)X + tY + \sqrt{\varepsilon t(1-t)}\,\xi`, so
    :math:`\Sigma_t = (1-t)^2A + t^2B + t(1-t)(C + C^T + \varepsilon I)`. ``epsilon = 0``:
    McCann's interpolant (the W2 geodesic)."""
    _, cross = entropic_gaussian(m0, a, m1, b, epsilon)
    a, b = np.asarray(a, float), np.asarray(b, float)
    cov = (1 - t) ** 2 * a + t ** 2 * b + t * (1 - t) * (cross + cross.T + epsilon * np.eye(len(m0)))
    return (1 - t) * np.asarray(m0, float) + t * np.asarray(m1, float), cov


# ------------------------------------------------------------------------ densities
def _check_length(spec, name, d, where, key_prefix):
    if len(spec[name]) != d:
        raise InputError(f"expected {d} values (the grid's dimension), got {len(spec[name])}",
                         source=where, key=f"{key_prefix}.{name}")


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def checkerboard_log_pdf(points, spec):
    """Unnormalized log-density of the smoothed checkerboard (finite everywhere)."""
    lo, hi = np.asarray(spec["lower"], float), np.asarray(spec["upper"], float)
    w = spec["edge"]
    side = (hi - lo) / spec["cells"]
    out = np.zeros(points.shape[:-1])
    prod = np.ones(points.shape[:-1])
    for k in range(points.shape[-1]):
        x = points[..., k]
        out += _log_sigmoid((x - lo[k]) / w) + _log_sigmoid((hi[k] - x) / w)
        prod = prod * np.sin(np.pi * (x - lo[k]) / side[k])
    # squares whose index sum is even: the product of sines is positive there
    return out + _log_sigmoid(prod / (np.pi * w / side.min()))


def build_source_density(spec, grid, *, where, key_prefix):
    """A :class:`GridDensity` (plus ``log_values``) for any variant of the density section."""
    d = grid.ndim
    kind = spec["type"]
    if kind not in ("line", "checkerboard"):
        dens = build_density(spec, grid, where=where, key_prefix=key_prefix)
        with np.errstate(divide="ignore"):
            dens.log_values = np.log(dens.values)
        return dens
    if kind == "line":
        _check_length(spec, "mean", d, where, key_prefix)
        axis = spec["axis"]
        if axis >= d:
            raise InputError(f"expected an axis below the dimension {d}, got {axis}",
                             source=where, key=f"{key_prefix}.axis")
        mean = np.asarray(spec["mean"], float)
        log_values = np.zeros(grid.shape)
        for k in range(d):
            x = grid.centers(k)
            shape = [1] * d
            shape[k] = grid.shape[k]
            if k == axis:
                lv = -0.5 * ((x - mean[k]) / spec["std"]) ** 2
            else:
                hit = np.abs(x - mean[k]) < 1e-9 * grid.spacing[k]
                if not hit.any():
                    raise InputError(f"mean {mean[k]:g} along axis {k} is not a cell centre "
                                     "of the grid (a line needs one; e.g. an odd grid.n for a "
                                     "box symmetric about it)", source=where,
                                     key=f"{key_prefix}.mean")
                with np.errstate(divide="ignore"):
                    lv = np.log(hit.astype(float))
            log_values = log_values + lv.reshape(shape)
        cov = np.zeros((d, d))
        cov[axis, axis] = spec["std"] ** 2
        gaussian = (mean, cov)
        truncated = 0.0
    else:
        for name in ("lower", "upper"):
            _check_length(spec, name, d, where, key_prefix)
        if any(b <= a for a, b in zip(spec["lower"], spec["upper"])):
            raise InputError("expected upper > lower on every axis", source=where,
                             key=f"{key_prefix}.upper")
        points = np.stack(grid.mesh(), axis=-1)
        log_values = checkerboard_log_pdf(points, spec)
        gaussian, truncated = None, 0.0
    top = log_values.max()
    values = np.exp(log_values - top)
    raw = float(values.sum() * grid.cell_volume)
    log_values = log_values - top - np.log(raw)
    dens = GridDensity(values=np.exp(log_values), raw_mass=raw, gaussian=gaussian,
                       truncated_mass=truncated, spec=spec)
    dens.log_values = log_values
    #: log of the normalization on the grid: log_pdf = checkerboard_log_pdf + log_offset
    dens.log_offset = -top - np.log(raw)
    return dens


def density_log_pdf(dens, points, grid):
    """Log-density at arbitrary ``points`` (N, d) of the density the solver sees (normalized
    so that its grid sum times the cell volume is 1).

    Exact (closed form) for ``gaussian``, ``mixture`` and ``checkerboard``; otherwise the
    multilinear interpolation of the grid log-density. The interpolation of ``log mu`` is biased
    low by about ``(h^2/12) E_mu|grad log mu|^2`` (concavity on average: the Fisher information),
    which for the checkerboard's 0.1-wide edges is a mass defect of 2.7e-2 at 64^2 in the flow's
    model density; the closed form has no such bias.
    """
    kind = dens.spec["type"]
    if kind == "checkerboard":
        return checkerboard_log_pdf(points, dens.spec) + dens.log_offset
    if kind in ("gaussian", "mixture"):
        with np.errstate(divide="ignore"):
            logp = np.log(dens.pdf(points))
        return logp - np.log(dens.raw_mass) if dens.spec.get("normalize", True) else logp
    return interpolate(dens.log_values, points, grid)


def sample_density(dens, grid, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of a density and their log-densities.

    Exact for (non-degenerate) Gaussians; the smoothed checkerboard by rejection from its
    bounding box (log-density in closed form, :func:`density_log_pdf`); anything else from the
    grid histogram (uniform within cells, log-density by multilinear interpolation of the grid
    log-density).
    """
    d = grid.ndim
    kind = dens.spec["type"]
    if kind == "gaussian":
        mean, cov = dens.gaussian
        x = rng.multivariate_normal(mean, cov, size=n, method="cholesky")
        return x, np.log(gaussian_pdf(x, mean, cov))
    if kind == "checkerboard":
        spec = dens.spec
        lo = np.asarray(spec["lower"], float) - 6 * spec["edge"]
        hi = np.asarray(spec["upper"], float) + 6 * spec["edge"]
        lo, hi = np.maximum(lo, grid.lower), np.minimum(hi, grid.upper)
        out = []
        while sum(len(o) for o in out) < n:
            cand = lo + (hi - lo) * rng.random((2 * n, d))
            keep = np.log(rng.random(2 * n)) < checkerboard_log_pdf(cand, spec)
            out.append(cand[keep])
        x = np.concatenate(out)[:n]
        return x, density_log_pdf(dens, x, grid)
    else:
        p = (dens.values * grid.cell_volume).ravel()
        cells = rng.choice(p.size, size=n, p=p / p.sum())
        idx = np.unravel_index(cells, grid.shape)
        x = np.stack([grid.lower[k] + grid.spacing[k] * (idx[k] + rng.random(n))
                      for k in range(d)], axis=1)
    return x, interpolate(dens.log_values, x, grid)


# ------------------------------------------------------------------------ the problem
class EntropicProblem(Problem):
    def __init__(self, case):
        super().__init__(case)
        where = case.source
        for key in ("lower", "upper", "n"):
            if case.get(f"grid.{key}") is None:
                raise InputError("required key is missing (the grid representation needs "
                                 "the box and its cells)", source=where, key=f"grid.{key}")
        for side in ("source", "target"):
            if case.get(f"{side}.type") == "dataset":
                raise InputError("a data set is known by samples only: set "
                                 "potentials.representation = 'neural'", source=where,
                                 key=f"{side}.type")
        lower, upper = checked_box(case)
        n = case.get("grid.n")
        self.grid_ = SpaceTimeGrid(tuple(lower), tuple(upper), (n,) * len(lower),
                                   case.get("time.nt"))
        self.epsilon = case.get("solver.epsilon")
        self.source = build_source_density(case.section("source"), self.grid_, where=where,
                                           key_prefix="source")
        self.target = build_source_density(case.section("target"), self.grid_, where=where,
                                           key_prefix="target")
        if self.source.spec["type"] == "line" and case.get("flow.samples") > 0:
            raise InputError("no flow starts from a degenerate (line) source (its velocity is "
                             "singular at t = 0); set flow.samples = 0", source=where,
                             key="flow.samples")
        check_marginals(self.source, self.target, self.grid_.cell_volume, where)
        self._flow = None

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        g = self.grid_
        space = "x".join(str(n) for n in g.shape)
        return f"{g.ndim}D entropic OT (eps = {self.epsilon:g}) on {space} cells, {g.nt} levels"

    def max_iterations(self) -> int:
        return self.case.get("solver.max_iterations")

    def make_solver(self, backend) -> EntropicSolver:
        s = self.case.section("solver")
        return EntropicSolver(self.source.values, self.target.values, self.grid_, backend,
                              epsilon=s["epsilon"], tol=s["tol"],
                              max_iterations=s["max_iterations"])

    def _axis_names(self) -> list[str]:
        return ["x", "y", "z"][: self.grid_.ndim]

    def grid(self) -> list[GridAxis]:
        g = self.grid_
        axes = [GridAxis("t", g.time_faces(), "1", "time levels of the interpolation", "time")]
        axes += [GridAxis(name, g.centers(k), "length", f"cell centres along {name}", "space")
                 for k, name in enumerate(self._axis_names())]
        axes.append(GridAxis("component", np.arange(g.ndim, dtype=float), "1",
                             "velocity component (x, y, z)", "other"))
        return axes

    @property
    def gaussian(self) -> bool:
        return self.source.gaussian is not None and self.target.gaussian is not None

    # -- the flow ---------------------------------------------------------------------------
    def flow(self, solver):
        """Pushed samples, their log-densities, and the mass check (cached per iteration)."""
        if self._flow is not None and self._flow[0] == solver.iteration:
            return self._flow[1]
        g = self.grid_
        levels = solver.interpolation()
        out = {}
        n = self.case.get("flow.samples")
        if n > 0:
            rng = np.random.default_rng(self.case.get("run.seed"))
            x0, logp0 = sample_density(self.source, g, n, rng)
            x1, logp1 = integrate_flow(levels, x0, logp0, g)
            out.update(x0=x0, logp0=logp0, x1=x1, logp1=logp1)
            if self.case.get("flow.mass_check"):
                points = np.stack(g.mesh(), axis=-1).reshape(-1, g.ndim)
                back, div_int = integrate_flow(levels, points, np.zeros(len(points)), g,
                                               backward=True)
                # the source log-density at the back-traced points in closed form where
                # there is one (interpolating log mu biases the mass low, see density_log_pdf)
                log0 = density_log_pdf(self.source, back, g)
                out["model_log_density"] = (log0 - div_int).reshape(g.shape)
        self._flow = (solver.iteration, out)
        return out

    # -- results ----------------------------------------------------------------------------
    def fields(self, solver) -> list[FieldData]:
        names = tuple(self._axis_names())
        faces = solver.interpolation()[::2]
        eps = solver.epsilon
        la, lb = solver.log_potentials_at(0.0)[0], solver.log_potentials_at(1.0)[1]
        to_np = solver.backend.to_numpy
        out = [FieldData("rho", np.stack([lv[0] for lv in faces]), ("t",) + names,
                         "1/length^d", "entropic interpolation rho_t = exp((phi_t+psi_t)/eps)"),
               FieldData("v", np.stack([lv[1] for lv in faces]), ("t", "component") + names,
                         "length/time", "velocity v_t = grad(psi_t - phi_t)/2 (0 where rho_t "
                                        "underflows)"),
               FieldData("phi", eps * to_np(la), names, "length^2",
                         "source potential phi = f + eps log mu + c0 (Lebesgue)"),
               FieldData("psi", eps * to_np(lb), names, "length^2",
                         "target potential psi = g + eps log nu + c0 (Lebesgue)")]
        flow = self.flow(solver)
        if "model_log_density" in flow:
            out.append(FieldData("flow_log_density", flow["model_log_density"], names,
                                 "log(1/length^d)",
                                 "log-density at t = 1 of the flow (grid integrated backwards)"))
        return out

    def particles(self, solver) -> list[ParticleData]:
        flow = self.flow(solver)
        if "x0" not in flow:
            return []
        return [ParticleData("x0", flow["x0"], "length", "source samples (t = 0)"),
                ParticleData("x1", flow["x1"], "length", "samples pushed to t = 1 by the flow"),
                ParticleData("logp0", flow["logp0"], "1", "log-density of the source samples"),
                ParticleData("logp1", flow["logp1"], "1",
                             "log-density of the pushed samples (instantaneous change of "
                             "variables)")]

    def _gaussian_rho(self, t: float, epsilon: float):
        points = np.stack(self.grid_.mesh(), axis=-1)
        mean, cov = entropic_gaussian_interpolation(*self.source.gaussian,
                                                    *self.target.gaussian, epsilon, t)
        return gaussian_pdf(points, mean, cov)

    def summary(self, solver) -> dict:
        g = self.grid_
        dv = g.cell_volume
        cost = solver.entropic_cost()
        levels = solver.interpolation()
        masses = [float(lv[0].sum() * dv) for lv in levels]
        out = {"entropic_cost": cost, "epsilon": self.epsilon,
               "converged": bool(solver.converged), "marginal_error": solver.marginal_error,
               "transport_cost": solver.transport_cost(),
               "interpolation_mass_error": float(max(abs(m - 1) for m in masses)),
               "truncated_mass_source": self.source.truncated_mass,
               "truncated_mass_target": self.target.truncated_mass}
        if self.gaussian:
            exact, cross = entropic_gaussian(*self.source.gaussian, *self.target.gaussian,
                                             self.epsilon)
            w2, _ = entropic_gaussian(*self.source.gaussian, *self.target.gaussian, 0.0)
            m0, a = self.source.gaussian
            m1, b = self.target.gaussian
            out["entropic_cost_exact"] = exact
            out["relative_error"] = abs(cost - exact) / abs(exact)
            out["transport_cost_exact"] = float(np.sum((m0 - m1) ** 2) + np.trace(a)
                                                + np.trace(b) - 2 * np.trace(cross))
            out["W2_squared_limit"] = w2
            if g.nt % 2 == 0:
                mid = levels[g.nt][0]
                out["rho_half_L1_error"] = float(np.abs(mid - self._gaussian_rho(0.5, self.epsilon)).sum() * dv)
                out["rho_half_L1_to_geodesic"] = float(np.abs(mid - self._gaussian_rho(0.5, 0.0)).sum() * dv)
        elif self.case.get("solver.debias"):
            out["W2_squared_limit"] = solver.sinkhorn_divergence()
        flow = self.flow(solver)
        if "x1" in flow:
            x1 = flow["x1"]
            mean_t = np.array([(self.target.values * x).sum() * dv for x in g.mesh()])
            centred = [x - m for x, m in zip(g.mesh(), mean_t)]
            cov_t = np.array([[(self.target.values * u * w).sum() * dv for w in centred]
                              for u in centred])
            out["flow_mean_error"] = float(np.linalg.norm(x1.mean(axis=0) - mean_t))
            out["flow_cov_error"] = float(np.linalg.norm(np.cov(x1.T).reshape(g.ndim, g.ndim)
                                                         - cov_t))
            out["flow_ks_max"] = float(max(_ks_against_grid(x1[:, k], self.target.values, g, k)
                                           for k in range(g.ndim)))
            target_logp = interpolate(self.target.log_values, x1, g)
            out["flow_logp_error_mean"] = float(np.mean(np.abs(flow["logp1"] - target_logp)))
            if "model_log_density" in flow:
                out["flow_density_mass"] = float(np.exp(flow["model_log_density"]).sum() * dv)
        return out

    def reference(self) -> Reference | None:
        if not self.gaussian:
            return None
        ref = Reference(scalars={"entropic_cost": entropic_gaussian(
            *self.source.gaussian, *self.target.gaussian, self.epsilon)[0]})
        if self.source.spec["type"] == "gaussian" and self.target.spec["type"] == "gaussian":
            g = self.grid_
            rho = np.stack([self._gaussian_rho(float(t), self.epsilon) for t in g.time_faces()])
            ref.fields["rho"] = (rho, g.cell_volume / (g.nt + 1))
        return ref


def _ks_against_grid(samples, density, grid, axis) -> float:
    """Kolmogorov-Smirnov statistic of ``samples`` against the marginal CDF along ``axis`` of a
    grid density (piecewise linear CDF through the cell faces)."""
    other = tuple(k for k in range(grid.ndim) if k != axis)
    marginal = density.sum(axis=other) * grid.cell_volume / grid.spacing[axis] if other \
        else density
    faces = grid.lower[axis] + grid.spacing[axis] * np.arange(grid.shape[axis] + 1)
    cdf = np.concatenate([[0.0], np.cumsum(marginal * grid.spacing[axis])])
    cdf /= cdf[-1]
    s = np.sort(samples)
    f = np.interp(s, faces, cdf)
    n = len(s)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))
