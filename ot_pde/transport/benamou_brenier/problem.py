"""The ``benamou_brenier`` problem kind: case schema, set-up, exact references, outputs."""
from __future__ import annotations

import logging

import numpy as np

from ...config import Field, Section, make_schema
from ...core.problem import FieldData, GridAxis, Problem, Reference
from ...densities import build_density, density_section, gaussian_pdf, product_factors
from ...errors import NumericalError
from ...spacetime import (
    BenamouBrenierSolver,
    MultilevelSolver,
    SpaceTimeGrid,
    affine_start,
    check_marginals,
    checked_box,
    monge_ampere_start,
)
from ...spacetime.start import sym_sqrt
from .reference import ProductReference

log = logging.getLogger("ot_pde")

SCHEMA = make_schema({
    "grid": Section({
        "lower": Field("float_list", doc="lower corner of the box (its length is the dimension)"),
        "upper": Field("float_list", doc="upper corner of the box"),
        "n": Field("int", minimum=2, resolution="inverse", doc="cells per space axis"),
    }, doc="the spatial box and its cells (1 to 3 dimensions)"),
    "time": Section({
        "nt": Field("int", None, minimum=2, resolution="inverse",
                    doc="time cells on [0, 1]; default round(nt_ratio * n)"),
        "nt_ratio": Field("float", 0.5, exclusive_minimum=0.0,
                          doc="time cells per space cell when nt is not given (keeps the "
                              "space-time aspect fixed in convergence studies)"),
    }, doc="time discretization of [0, 1]"),
    "source": density_section("the density at t = 0"),
    "target": density_section("the density at t = 1"),
    "solver": Section({
        "method": Field("str", "douglas_rachford", choices=("douglas_rachford", "multilevel"),
                        doc="douglas_rachford: the splitting of Papadakis et al. 2014 on the "
                            "case's grid; multilevel: the same on coarse-to-fine grids, each "
                            "level warm-started from the previous one (fewer finest-grid "
                            "iterations; its W2^2 estimate can be too small, see the docs)"),
        "start": Field("str", "linear", choices=("linear", "affine", "monge_ampere"),
                       doc="linear: the densities interpolated linearly in time, zero momentum "
                           "and multipliers; affine: the affine transport between the Gaussians "
                           "of matched moments, with its multipliers (the continuous solution "
                           "for two Gaussians; slower than linear on multimodal data, see the "
                           "docs); monge_ampere: the displacement interpolation of the grid "
                           "Monge-Ampere (Brenier) map, with its multipliers (the affine start "
                           "if its Newton solve fails, with a warning)"),
        "coarsest": Field("int", 16, minimum=2,
                          doc="multilevel: cells per axis of the coarsest grid (grids are "
                              "halved while every axis stays even and >= coarsest)"),
        "gamma": Field("float", 0.3, exclusive_minimum=0.0,
                       doc="proximal step, relative to the larger peak density"),
        "relaxation": Field("float", 1.8, exclusive_minimum=0.0, exclusive_maximum=2.0,
                            doc="Douglas-Rachford relaxation in (0, 2)"),
        "rtol": Field("float", 1e-3, exclusive_minimum=0.0,
                      doc="requested relative accuracy of W2^2 on this grid: stop when the "
                          "accuracy estimate (larger of the W2^2 spread over the last three "
                          "quarters of the history and the relative primal residual) is below "
                          "rtol, on every level"),
        "tol": Field("float", None, exclusive_minimum=0.0,
                     doc="optional residual criterion: also require both relative residuals "
                         "below tol"),
        "max_iterations": Field("int", 5000, minimum=1,
                                doc="iteration cap over all levels (the run then completes "
                                    "with converged = false and a warning)"),
    }, doc="proximal splitting and its stopping rule"),
    "output": Section({
        "every": Field("int", 200, minimum=1,
                       doc="iterations between flushes of history and checkpoint"),
    }),
})


def bures_w2_squared(m0, c0, m1, c1) -> float:
    r"""Exact :math:`W_2^2` between two Gaussians (the Bures-Wasserstein formula)."""
    # square roots of symmetric positive matrices by eigh: importing scipy.linalg for sqrtm
    # cost 0.3-0.5 s of every Gaussian case's run and figure
    r0 = sym_sqrt(c0)
    cross = sym_sqrt(r0 @ c1 @ r0)
    return float(np.sum((m0 - m1) ** 2) + np.trace(c0 + c1 - 2 * cross))


def gaussian_geodesic(m0, c0, m1, c1, t: float):
    """Mean and covariance of McCann's interpolant at time ``t`` between two Gaussians."""
    r0 = sym_sqrt(c0)
    r0_inv = np.linalg.inv(r0)
    monge = r0_inv @ sym_sqrt(r0 @ c1 @ r0) @ r0_inv  # the Brenier map's matrix
    a = (1 - t) * np.eye(len(m0)) + t * monge
    return (1 - t) * m0 + t * m1, a @ c0 @ a.T


class QuantileReference:
    """Exact 1D transport between two continuous densities on an interval, by quantiles.

    :math:`W_2^2 = \\int_0^1 |F_0^{-1}(s) - F_1^{-1}(s)|^2 ds` and the interpolant's quantile
    function is :math:`(1-t)F_0^{-1} + tF_1^{-1}`. The densities are the continuous ones
    truncated to the interval and renormalized, so truncation is accounted for exactly; the
    CDFs are built on ``resolution`` points (error ~ resolution^-2, far below any grid here).
    """

    def __init__(self, pdf0, pdf1, lower: float, upper: float, resolution: int = 1 << 17):
        x = np.linspace(lower, upper, resolution + 1)
        self.s = (np.arange(resolution) + 0.5) / resolution
        self.q0 = self._quantile(x, pdf0(x[:, None]))
        self.q1 = self._quantile(x, pdf1(x[:, None]))

    def _quantile(self, x, p):
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(x))])
        cdf /= cdf[-1]
        # strictly increasing abscissae for interpolation (flat tails carry no mass)
        keep = np.concatenate([[True], np.diff(cdf) > 0])
        return np.interp(self.s, cdf[keep], x[keep])

    def w2_squared(self) -> float:
        return float(np.mean((self.q0 - self.q1) ** 2))

    def cell_averages(self, t: float, faces: np.ndarray) -> np.ndarray:
        """Average of the interpolant's density over each cell between ``faces``."""
        qt = (1 - t) * self.q0 + t * self.q1
        cdf = np.interp(faces, qt, self.s, left=0.0, right=1.0)
        return np.diff(cdf) / np.diff(faces)


def _monge_ampere_or_affine(rho0, rho1, grid, gamma):
    """The Monge-Ampere start, or the affine one (with a warning) where its Newton fails."""
    try:
        return monge_ampere_start(rho0, rho1, grid, gamma)
    except NumericalError as exc:
        log.warning("benamou_brenier: the Monge-Ampere start failed (%s); starting from the "
                    "affine transport instead", exc)
        return affine_start(rho0, rho1, grid, gamma)


_STARTS = {"linear": None, "affine": affine_start, "monge_ampere": _monge_ampere_or_affine}


class BenamouBrenierProblem(Problem):
    def __init__(self, case):
        super().__init__(case)
        where = case.source
        lower, upper = checked_box(case)
        n = case.get("grid.n")
        nt = case.get("time.nt") or max(2, int(round(case.get("time.nt_ratio") * n)))
        self.grid_ = SpaceTimeGrid(tuple(lower), tuple(upper), (n,) * len(lower), nt)
        self.source = build_density(case.section("source"), self.grid_, where=where,
                                    key_prefix="source")
        self.target = build_density(case.section("target"), self.grid_, where=where,
                                    key_prefix="target")
        products = self.source.spec["type"] == "product" == self.target.spec["type"]
        check_marginals(self.source, self.target, self.grid_.cell_volume, where,
                        exact_truncation=products)

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        g = self.grid_
        space = "x".join(str(n) for n in g.shape)
        return f"{g.ndim}D dynamic OT on {space} cells x {g.nt} time steps"

    def max_iterations(self) -> int:
        return self.case.get("solver.max_iterations")

    def make_solver(self, backend) -> BenamouBrenierSolver | MultilevelSolver:
        s = self.case.section("solver")
        options = dict(gamma=s["gamma"], relaxation=s["relaxation"], tol=s["tol"],
                       rtol=s["rtol"], max_iterations=s["max_iterations"],
                       start=_STARTS[s["start"]])
        if s["method"] == "multilevel":
            return MultilevelSolver(self.source.values, self.target.values, self.grid_, backend,
                                    coarsest=s["coarsest"], **options)
        return BenamouBrenierSolver(self.source.values, self.target.values, self.grid_, backend,
                                    **options)

    def _axis_names(self) -> list[str]:
        return ["x", "y", "z"][: self.grid_.ndim]

    def grid(self) -> list[GridAxis]:
        g = self.grid_
        axes = [GridAxis("t", g.time_faces(), "1", "time faces (densities)", "time"),
                GridAxis("t_mid", g.time_centers(), "1", "time cell centres (momentum)", "time")]
        axes += [GridAxis(name, g.centers(k), "length", f"cell centres along {name}", "space")
                 for k, name in enumerate(self._axis_names())]
        return axes

    # -- results ----------------------------------------------------------------------------
    def fields(self, solver) -> list[FieldData]:
        names = tuple(self._axis_names())
        out = [FieldData("rho", solver.density(), ("t",) + names, "1/length^d",
                         "density on the time faces (continuity-feasible iterate)")]
        for name, m in zip(names, solver.momentum()):
            out.append(FieldData(f"m_{name}", m, ("t_mid",) + names, "1/(length^(d-1) time)",
                                 f"momentum component {name} at space-time cell centres"))
        return out

    def _product(self) -> ProductReference | None:
        """The exact reference between two product densities (None for other pairs)."""
        if not hasattr(self, "_product_ref"):
            self._product_ref = None
            if self.source.spec["type"] == "product" == self.target.spec["type"]:
                g = self.grid_
                self._product_ref = ProductReference(product_factors(self.source.spec),
                                                     product_factors(self.target.spec),
                                                     g.lower, g.upper)
        return self._product_ref

    def _exact_w2(self) -> float | None:
        if self._product() is not None:
            if not hasattr(self, "_product_w2"):
                self._product_w2 = self._product().w2_squared()
            return self._product_w2
        if self.grid_.ndim == 1 and self._quantiles() is not None:
            return self._quantiles().w2_squared()
        if self.source.gaussian and self.target.gaussian:
            return bures_w2_squared(*self.source.gaussian, *self.target.gaussian)
        return None

    def _quantiles(self) -> QuantileReference | None:
        if not hasattr(self, "_quantile_ref"):
            self._quantile_ref = None
            if self.grid_.ndim == 1 and "file" not in (self.source.spec["type"],
                                                       self.target.spec["type"]):
                self._quantile_ref = QuantileReference(
                    self.source.pdf, self.target.pdf, self.grid_.lower[0], self.grid_.upper[0])
        return self._quantile_ref

    def summary(self, solver) -> dict:
        w2 = solver.w2_squared()
        estimate = float(solver.accuracy_estimate)
        rtol = self.case.get("solver.rtol")
        if not solver.converged:
            known = (f"W2^2 known to ~{estimate:.2g} relative" if np.isfinite(estimate)
                     else "no accuracy estimate yet")
            log.warning("benamou_brenier: NOT CONVERGED: stopped after %d iterations (cap "
                        "solver.max_iterations = %d, or a wall-time/interrupt stop) with %s, "
                        "requested solver.rtol = %.2g; raise solver.max_iterations or "
                        "solver.rtol", solver.iteration, self.case.get("solver.max_iterations"),
                        known, rtol)
        out = {"W2_squared": w2, "converged": bool(solver.converged),
               "accuracy_estimate": estimate if np.isfinite(estimate) else -1.0,
               "rtol": rtol,
               "iterations_finest": int(solver.level_iterations[-1]),
               "work_finest_iterations": float(solver.work),
               "gamma_absolute": solver.gamma,
               "truncated_mass_source": self.source.truncated_mass,
               "truncated_mass_target": self.target.truncated_mass,
               "mass_source_raw": self.source.raw_mass, "mass_target_raw": self.target.raw_mass}
        exact = self._exact_w2()
        if exact is not None:
            out["W2_squared_exact"] = exact
            out["relative_error"] = abs(w2 - exact) / exact if exact else abs(w2)
        return out

    def reference(self) -> Reference | None:
        exact = self._exact_w2()
        if exact is None:
            return None
        ref = Reference(scalars={"W2_squared": exact})
        g = self.grid_
        weight = g.tau * g.cell_volume
        quantiles = self._quantiles()
        if self._product() is not None:
            faces = [g.lower[k] + g.spacing[k] * np.arange(g.shape[k] + 1)
                     for k in range(g.ndim)]
            rho = np.stack([self._product().cell_averages(t, faces) for t in g.time_faces()])
            ref.fields["rho"] = (rho, weight)
        elif quantiles is not None:
            h = g.spacing[0]
            faces = g.lower[0] + h * np.arange(g.shape[0] + 1)
            rho = np.stack([quantiles.cell_averages(t, faces) for t in g.time_faces()])
            ref.fields["rho"] = (rho, weight)
        elif self.source.gaussian and self.target.gaussian:
            points = np.stack(g.mesh(), axis=-1)
            rho = np.stack([gaussian_pdf(points, *gaussian_geodesic(
                *self.source.gaussian, *self.target.gaussian, t)) for t in g.time_faces()])
            ref.fields["rho"] = (rho, weight)
        return ref


def build(case) -> BenamouBrenierProblem:
    return BenamouBrenierProblem(case)
