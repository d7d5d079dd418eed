"""The ``monge_ampere_grid`` problem kind: case schema, set-up, exact references, outputs."""
from __future__ import annotations

import logging
import math

import numpy as np

from ...config import Field, Section, make_schema
from ...core.problem import FieldData, GridAxis, Problem, Reference
from ...densities import build_density, density_section
from ...errors import InputError, NumericalError
from ...spacetime.cellgrid import CellGrid, CubicSpline, invert_gradient_map
from ...spacetime.monge_ampere import FlowSolver, MongeAmpereEquation, NewtonSolver, decay_rate
from .reference import ConstructedPotential, Transport1D

log = logging.getLogger("ot_pde")

_BASE = density_section("")
_COSINE = {
    "amplitudes": Field("float_list", exclusive_minimum=-1.0, exclusive_maximum=1.0,
                        doc="a_k in rho = prod_k (1 + a_k cos(pi m_k (x_k - lower_k) / L_k))"),
    "modes": Field("int_list", minimum=1, doc="m_k (even on the torus: periodic)"),
}


def _section(doc: str, constructed: bool) -> Section:
    variants = dict(_BASE.variants, cosine=_COSINE)
    if constructed:
        variants["constructed"] = {
            "amplitude": Field("float", 0.2, exclusive_minimum=0.0,
                               doc="size of the constructed periodic potential psi* (torus)"),
        }
    return Section(_BASE.fields, variants=variants, doc=doc)


SCHEMA = make_schema({
    "grid": Section({
        "domain": Field("str", "torus", choices=("torus", "box"),
                        doc="torus: periodic (FFT); box: second boundary condition, the map "
                            "sends the box onto itself (even reflection, DCT)"),
        "lower": Field("float_list", doc="lower corner (its length is the dimension, 1 to 3)"),
        "upper": Field("float_list", doc="upper corner (the period on the torus)"),
        "n": Field("int", minimum=4, resolution="inverse", doc="cells per axis"),
    }, doc="the domain and its cells"),
    "source": _section("rho0; 'constructed': built from psi* and the target (torus)", True),
    "target": _section("rho1, the image of rho0 under the map x + grad psi", False),
    "solver": Section({
        "method": Field("str", "newton", choices=("newton", "flow_explicit",
                                                  "flow_semi_implicit"),
                        doc="damped Newton, or the parabolic Monge-Ampere flow in time"),
        "tol": Field("float", 1e-10, exclusive_minimum=0.0,
                     doc="stop when max |F(psi) + c| <= tol (the log-form residual)"),
        "max_iterations": Field("int", 50, minimum=1,
                                doc="Newton iterations or flow steps (cap; the run completes "
                                    "with converged = false)"),
        "linear": Field("str", "gmres", choices=("gmres", "direct"),
                        doc="Newton's linear solves: GMRES with the FFT/DCT preconditioner, "
                            "or a sparse direct solve (small grids)"),
        "dt": Field("float", None, exclusive_minimum=0.0,
                    doc="flow time step (semi-implicit: required; explicit: an upper bound)"),
        "cfl": Field("float", 0.9, exclusive_minimum=0.0, maximum=1.0,
                     doc="explicit flow: fraction of the stability limit"),
        "t_final": Field("float", None, exclusive_minimum=0.0,
                         doc="flow: stop at this time (none: at the tolerance)"),
    }, doc="how the equation is solved"),
    "output": Section({
        "every": Field("int", 10, minimum=1,
                       doc="iterations between flushes of history and checkpoint"),
        "frames": Field("int", 9, minimum=2,
                        doc="times of McCann's interpolation written, evenly in [0, 1]"),
    }),
})


class _Density:
    """A density on the grid: values, analytic pdf (or None) and its 1D factors (or None)."""

    def __init__(self, values, pdf, factors, truncated=0.0, gaussian=None):
        self.values = values
        self.pdf = pdf
        self.factors = factors
        self.truncated_mass = truncated
        self.gaussian = gaussian


class MongeAmpereGridProblem(Problem):
    def __init__(self, case):
        super().__init__(case)
        where = case.source
        lower, upper = case.get("grid.lower"), case.get("grid.upper")
        if not 1 <= len(lower) <= 3:
            raise InputError(f"expected 1 to 3 values, got {len(lower)}", source=where,
                             key="grid.lower")
        if len(upper) != len(lower) or any(b <= a for a, b in zip(lower, upper)):
            raise InputError(f"expected {len(lower)} values, each above grid.lower's",
                             source=where, key="grid.upper")
        self.domain = case.get("grid.domain")
        boundary = "periodic" if self.domain == "torus" else "reflect"
        n = case.get("grid.n")
        self.grid_ = CellGrid(tuple(lower), tuple(upper), (n,) * len(lower), boundary)
        self.potential = None
        self.target = self._density("target")
        if case.get("source.type") == "constructed":
            self.source = self._constructed()
        else:
            self.source = self._density("source")
        m0 = self.source.values.sum() * self.grid_.cell_volume
        m1 = self.target.values.sum() * self.grid_.cell_volume
        if abs(m0 - m1) > 1e-6 * max(m0, m1):
            raise InputError(f"source and target masses differ ({m0:.12g} vs {m1:.12g}); set "
                             "normalize = true or give equal masses", source=where,
                             key="target.normalize")
        self.equation = MongeAmpereEquation(self.grid_, self.source.values,
                                            self.target.values)
        self._newton_psi = None

    # -- densities --------------------------------------------------------------------------
    def _density(self, name: str) -> _Density:
        spec = self.case.section(name)
        g, where = self.grid_, self.case.source
        d = g.ndim
        kind = spec["type"]
        if kind == "cosine":
            amps, modes = spec["amplitudes"], spec["modes"]
            for key, vals in (("amplitudes", amps), ("modes", modes)):
                if len(vals) != d:
                    raise InputError(f"expected {d} values (the grid's dimension), got "
                                     f"{len(vals)}", source=where, key=f"{name}.{key}")
            if self.domain == "torus" and any(m % 2 for m in modes):
                raise InputError("on the torus the modes must be even (periodic profiles)",
                                 source=where, key=f"{name}.modes")
            lo, hi = g.lower, g.upper
            factors = [(lambda x, a=a, m=m, k=k: (1 + a * np.cos(
                np.pi * m * (x - lo[k]) / (hi[k] - lo[k]))) / (hi[k] - lo[k]))
                for k, (a, m) in enumerate(zip(amps, modes))]

            def pdf(x, factors=factors):
                out = 1.0
                for k, f in enumerate(factors):
                    out = out * f(x[k])
                return out
            values = pdf(g.mesh())
            if spec["normalize"]:
                values = values / (values.sum() * g.cell_volume)
            density = _Density(values, pdf, factors)
        else:
            dens = build_density(spec, g, where=where, key_prefix=name)
            density = _Density(dens.values, None, None, dens.truncated_mass, dens.gaussian)
            if kind == "uniform" and np.allclose(spec["lower"], g.lower) and \
                    np.allclose(spec["upper"], g.upper):
                vol = np.prod(np.subtract(g.upper, g.lower))
                density.pdf = lambda x: np.ones(np.shape(x[0])) / vol
                density.factors = [(lambda x, k=k: np.ones(np.shape(x)) /
                                    (g.upper[k] - g.lower[k])) for k in range(d)]
            if dens.gaussian is not None:
                mean, cov = dens.gaussian
                if np.allclose(cov, np.diag(np.diag(cov))):
                    density.factors = [
                        (lambda x, m=mean[k], s=math.sqrt(cov[k, k]):
                         np.exp(-0.5 * ((x - m) / s) ** 2)) for k in range(d)]
        if np.any(density.values <= 0):
            raise InputError(f"the Monge-Ampere equation in log form needs a density positive "
                             f"on every cell; {int((density.values <= 0).sum())} cells are "
                             f"not (min {density.values.min():.3g})", source=where,
                             key=f"{name}.type")
        return density

    def _constructed(self) -> _Density:
        where = self.case.source
        g = self.grid_
        if self.domain != "torus":
            raise InputError("a constructed source needs grid.domain = 'torus'", source=where,
                             key="source.type")
        if self.target.pdf is None or self.case.get("target.type") not in ("uniform", "cosine"):
            raise InputError("a constructed source needs a periodic target: 'cosine' or "
                             "'uniform' over the whole box", source=where, key="target.type")
        potential = ConstructedPotential(self.case.get("source.amplitude"), g.lower, g.upper)
        low = potential.min_eigenvalue()
        if low <= 0.05:
            raise InputError(f"I + D^2 psi* must stay positive definite (its smallest "
                             f"eigenvalue is {low:.3g}); lower the amplitude", source=where,
                             key="source.amplitude")
        self.potential = potential
        values = potential.source_density(g.mesh(), self.target.pdf)
        if self.case.get("source.normalize"):
            values = values / (values.sum() * g.cell_volume)
        return _Density(values, None, None)

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        g = self.grid_
        cells = "x".join(str(n) for n in g.shape)
        return (f"{g.ndim}D Monge-Ampere on the {self.domain}, {cells} cells, "
                f"{self.case.get('solver.method')}")

    def max_iterations(self) -> int:
        return self.case.get("solver.max_iterations")

    def make_solver(self, backend):
        # CPU only: the kind declares numpy and numba (the default of ProblemKind.backends),
        # and the runner refuses cupy before anything is built
        s = self.case.section("solver")
        if s["method"] == "newton":
            return NewtonSolver(self.equation, tol=s["tol"], max_iterations=s["max_iterations"],
                                linear=s["linear"])
        method = "explicit" if s["method"] == "flow_explicit" else "semi_implicit"
        if method == "semi_implicit" and s["dt"] is None:
            raise InputError("the semi-implicit flow needs a time step", source=self.case.source,
                             key="solver.dt")
        return FlowSolver(self.equation, method=method, dt=s["dt"], cfl=s["cfl"], tol=s["tol"],
                          t_final=s["t_final"] or math.inf, max_iterations=s["max_iterations"])

    def _axis_names(self) -> list[str]:
        return ["x", "y", "z"][: self.grid_.ndim]

    def _times(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.case.get("output.frames"))

    def grid(self) -> list[GridAxis]:
        g = self.grid_
        axes = [GridAxis(name, g.centers(k), "length", f"cell centres along {name}", "space")
                for k, name in enumerate(self._axis_names())]
        axes.append(GridAxis("t", self._times(), "1", "times of McCann's interpolation",
                             "time"))
        return axes

    # -- results ----------------------------------------------------------------------------
    def mccann(self, solver) -> np.ndarray:
        """McCann's interpolation :math:`((1-t)x + t\\nabla u(x))_\\#\\rho_0` at the cell
        centres: with :math:`\\psi` and :math:`\\rho_0` interpolated by cubic splines,
        :math:`\\rho_t(y) = \\rho_0(x) / \\det(I + tD^2\\psi(x))` where
        :math:`x + t\\nabla\\psi(x) = y` (solved by Newton at each centre)."""
        g = self.grid_
        psi = CubicSpline(g, solver.psi.reshape(g.shape))
        rho0 = CubicSpline(g, self.source.values)
        return self._interpolation(lambda x: psi(x, hessian=True)[1:],
                                   lambda x: rho0(x)[0])

    def _interpolation(self, grad_hess, rho0) -> np.ndarray:
        g = self.grid_
        y = g.mesh()
        frames = []
        x, grad, t_prev = y, None, 0.0
        for t in self._times():
            if grad is not None:  # the previous frame's preimage, moved on along the map
                x = [x[k] - (t - t_prev) * grad[k] for k in range(g.ndim)]
            try:
                x, (grad, hess) = invert_gradient_map(grad_hess, y, t, x0=x)
            except ArithmeticError as exc:
                raise NumericalError(f"McCann's interpolation at t = {t:.3g}: {exc}") from None
            t_prev = t
            m = np.array([[t * hess[i][j] + (i == j) for j in range(g.ndim)]
                          for i in range(g.ndim)])
            det = np.linalg.det(np.moveaxis(m, (0, 1), (-2, -1)))
            frames.append(rho0(x) / det)
        return np.stack(frames)

    def fields(self, solver) -> list[FieldData]:
        names = tuple(self._axis_names())
        f = solver.fields()
        out = [FieldData("psi", f["psi"], names, "length^2",
                         "psi = u - |x|^2/2 (mean zero), the Brenier potential's perturbation"),
               FieldData("det_D2u", f["det"], names, "1", "det(I + D^2 psi) (discrete)"),
               FieldData("residual", f["residual"], names, "1",
                         "log det(I + D^2 psi) + log rho1(grad u) - log rho0 + c"),
               FieldData("rho0", self.source.values, names, "1/length^d", "source density"),
               FieldData("rho1", self.target.values, names, "1/length^d", "target density")]
        for k, name in enumerate(names):
            out.append(FieldData(f"map_{name}", f[f"map_{k}"], names, "length",
                                 f"component {name} of the map grad u = x + grad psi"))
        out.append(FieldData("rho", self.mccann(solver), ("t",) + names, "1/length^d",
                             "McCann's interpolation ((1-t) id + t grad u)#rho0 (inverse map)"))
        return out

    def _newton_solution(self, solver) -> np.ndarray:
        if self._newton_psi is None:
            newton = NewtonSolver(self.equation, tol=min(1e-11, self.case.get("solver.tol")),
                                  max_iterations=100, linear=self.case.get("solver.linear"),
                                  psi0=solver.psi)
            while not newton.finished:
                newton.step()
            self._newton_psi = newton.psi
        return self._newton_psi

    def summary(self, solver) -> dict:
        out = {"W2_squared": solver.w2_squared(), "converged": bool(solver.converged),
               "residual": solver.residual, "mass_constant": solver.c,
               "det_D2u_min": float(solver.ev["det"].min()),
               "det_D2u_max": float(solver.ev["det"].max()),
               "truncated_mass_source": self.source.truncated_mass,
               "truncated_mass_target": self.target.truncated_mass}
        if isinstance(solver, NewtonSolver):
            out["linear_iterations"] = solver.linear_iterations_total
        else:
            out["time"] = solver.time
            hist = solver.history_arrays()
            out["decay_rate"] = decay_rate(hist[0], hist[1])
            try:
                out["psi_distance_to_newton"] = float(np.max(np.abs(
                    solver.psi - self._newton_solution(solver))))
            except NumericalError as exc:  # the flow's summary stands without it
                log.warning("psi_distance_to_newton not computed: Newton from the flow's "
                            "end state failed (%s)", exc)
                out["psi_distance_to_newton"] = float("nan")
        ref = self._reference()
        if ref is not None:
            exact, psi_exact = ref
            out["W2_squared_exact"] = exact
            out["relative_error"] = abs(out["W2_squared"] - exact) / exact
            out["psi_error_max"] = float(np.max(np.abs(solver.psi.reshape(self.grid_.shape)
                                                       - psi_exact)))
        if self.source.gaussian is not None and self.target.gaussian is not None:
            out["W2_squared_bures"] = _bures(*self.source.gaussian, *self.target.gaussian)
        return out

    def _reference(self):
        """(exact W2^2, exact psi at the cell centres, mean zero) or None."""
        if hasattr(self, "_ref"):
            return self._ref
        g = self.grid_
        self._ref = None
        if self.potential is not None:
            psi = self.potential(g.mesh())[0]
            w2 = self.potential.w2_squared(self.target.pdf)
            self._ref = (w2, psi - psi.mean())
        elif self.domain == "box" and self.source.factors and self.target.factors:
            w2, psi = 0.0, np.zeros(g.shape)
            for k in range(g.ndim):
                t1d = Transport1D(self.source.factors[k], self.target.factors[k], g.lower[k],
                                  g.upper[k])
                w2 += t1d.w2_squared()
                psi = psi + g.broadcast(k, t1d.displacement_potential(g.centers(k)))
            self._ref = (w2, psi - psi.mean())
        return self._ref

    def reference(self) -> Reference | None:
        ref = self._reference()
        if ref is None:
            return None
        g = self.grid_
        fields = {"psi": (ref[1], g.cell_volume)}
        rho = self._exact_interpolation()
        if rho is not None:
            fields["rho"] = (rho, g.cell_volume / len(rho))
        return Reference(scalars={"W2_squared": ref[0]}, fields=fields)

    def _exact_interpolation(self) -> np.ndarray | None:
        """McCann's interpolation of the exact map at the cell centres (frames first)."""
        g = self.grid_
        if self.potential is not None:
            pot = self.potential
            return self._interpolation(lambda x: pot(x)[1:],
                                       lambda x: pot.source_density(x, self.target.pdf))
        frames = []
        maps = [Transport1D(self.source.factors[k], self.target.factors[k], g.lower[k],
                            g.upper[k]) for k in range(g.ndim)]
        for t in self._times():
            out = np.ones(g.shape)
            for k, t1d in enumerate(maps):
                out = out * g.broadcast(k, t1d.interpolant(t, g.centers(k)))
            frames.append(out)
        return np.stack(frames)


def _bures(m0, c0, m1, c1) -> float:
    """Bures-Wasserstein :math:`W_2^2` of the untruncated Gaussians."""
    from scipy.linalg import sqrtm

    r0 = np.real(sqrtm(c0))
    return float(np.sum((m0 - m1) ** 2)
                 + np.trace(c0 + c1 - 2 * np.real(sqrtm(r0 @ c1 @ r0))))


def build(case) -> MongeAmpereGridProblem:
    return MongeAmpereGridProblem(case)
