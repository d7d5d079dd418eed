"""The ``generalized_geodesic`` problem kind: case schema, set-up, exact references, outputs."""
from __future__ import annotations

import math

import numpy as np

from ...config import Field, Section, make_schema
from ...core.problem import FieldData, GridAxis, Problem, Reference
from ...errors import InputError
from .solver import GeneralizedGeodesicSolver, epsilon_schedule

SCHEMA = make_schema({
    "grid": Section({
        "dim": Field("int", 1, choices=(1, 2), doc="space dimension: [0, 1] or [0, 1]^2"),
        "n": Field("int", minimum=2, resolution="inverse",
                   doc="grid points per axis (cell centres of n equal cells, equal masses)"),
    }, doc="the domain [0, 1]^dim and its points"),
    "time": Section({
        "steps": Field("int", 8, minimum=2, resolution="inverse",
                       doc="time steps K on [0, 1] (K + 1 marginals)"),
    }, doc="time discretization"),
    "sigma": Section({}, variants={
        "inversion": {},
        "reflection_x": {},
        "permutation": {
            "indices": Field("int_list", minimum=0,
                             doc="sigma as the image index of every grid point (row-major)"),
        },
    }, discriminator="type", default_variant="inversion",
        doc="the measure-preserving map: inversion x -> 1 - x on every axis (in 2D the "
            "rotation by pi about the centre), reflection_x (x, y) -> (1 - x, y), or an "
            "explicit permutation of the grid points"),
    "solver": Section({
        "epsilon": Field("float", 1e-3, exclusive_minimum=0.0,
                         doc="final entropic blur (units of action)"),
        "epsilon_start": Field("float", 0.1, exclusive_minimum=0.0,
                               doc="first blur of the epsilon-scaling schedule"),
        "epsilon_factor": Field("float", 0.5, exclusive_minimum=0.0, exclusive_maximum=1.0,
                                doc="ratio of consecutive blurs"),
        "stage_tol": Field("float", 1e-4, exclusive_minimum=0.0,
                           doc="marginal error (L1) at which the next blur starts"),
        "stage_max_iterations": Field("int", 2000, minimum=1,
                                      doc="sweeps at most per intermediate blur"),
        "tol": Field("float", 1e-5, exclusive_minimum=0.0,
                     doc="marginal error (L1) at which the final blur has converged"),
        "max_iterations": Field("int", 20000, minimum=1,
                                doc="sweep cap (the run completes with converged = false)"),
    }, doc="multi-marginal Sinkhorn with epsilon-scaling"),
    "output": Section({
        "every": Field("int", 50, minimum=1, doc="sweeps between flushes and checkpoints"),
    }),
})

ACTION_1D = math.pi ** 2 / 24


def discrete_factor(steps: int) -> float:
    """Ratio of the K-step action of the exact solution to the continuous one: sinc^2(pi/2K).

    The exact paths are uniform rotations :math:`x(t) - 1/2 = \\mathrm{Re}(z e^{-i\\pi t})`
    projected on one axis, and their chords over a step are shorter than the arcs by
    :math:`\\sin(\\pi/2K)/(\\pi/2K)`. The sampled exact solution is also the minimizer of the
    time-discrete problem (its pressure :math:`\\lambda_K (x-1/2)^2/2`,
    :math:`\\lambda_K = \\pi^2 \\cdot` this factor, is a dual certificate: the discrete
    Dirichlet Laplacian's lowest eigenvalue), so this is the exact K-step optimum.
    """
    return float(np.sinc(1.0 / (2 * steps)) ** 2)


def exact_conditional_cdf(a, y, t):
    """CDF at ``y`` of x(t) given x(0) = a for the 1D inversion (an arcsine law).

    x(t) = 1/2 + c cos(pi t) + R cos(theta) sin(pi t), c = a - 1/2, R = sqrt(1/4 - c^2),
    theta uniform on [0, pi].
    """
    a = np.asarray(a, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    c = a - 0.5
    centre = 0.5 + c * np.cos(np.pi * t)
    half = np.sqrt(np.maximum(0.25 - c * c, 0.0)) * np.sin(np.pi * t)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(half > 0, (y - centre) / np.where(half > 0, half, 1.0),
                     np.sign(y - centre) * np.inf)
    return np.where(z >= 1, 1.0, np.where(z <= -1, 0.0,
                                          1.0 - np.arccos(np.clip(z, -1, 1)) / np.pi))


def exact_cell_cdf(n: int, t: float, nodes: int = 24) -> np.ndarray:
    """Exact CDF of x(t) given x(0) averaged over each start cell, at the ``n + 1`` faces.

    Shape ``(n, n + 1)``; Gauss-Legendre quadrature over the start cell (the arcsine CDF is
    smooth in ``a`` away from the cell containing ``y``; 24 nodes give ~1e-6)."""
    g, w = np.polynomial.legendre.leggauss(nodes)
    faces = np.arange(n + 1) / n
    centres = (np.arange(n) + 0.5) / n
    a = centres[:, None] + g[None, :] / (2 * n)
    cdf = exact_conditional_cdf(a[:, :, None], faces[None, None, :], t)
    return np.einsum("q,iqf->if", w / 2, cdf)


class GeneralizedGeodesicProblem(Problem):
    def __init__(self, case):
        super().__init__(case)
        where = case.source
        self.dim = case.get("grid.dim")
        self.n = case.get("grid.n")
        self.steps = case.get("time.steps")
        self.shape = (self.n,) * self.dim
        self.n_points = self.n ** self.dim
        self.coords = (np.arange(self.n) + 0.5) / self.n
        s = case.section("solver")
        if s["epsilon_start"] < s["epsilon"]:
            raise InputError(f"expected epsilon_start >= epsilon = {s['epsilon']:g}, got "
                             f"{s['epsilon_start']:g}", source=where, key="solver.epsilon_start")
        if self.n_points > 4096:
            raise InputError(f"{self.n_points} grid points: the solver stores K arrays of N x N "
                             "values; use at most 4096 points (n <= 64 in 2D)", source=where,
                             key="grid.n")
        kind = case.get("sigma.type")
        self.sigma_type = kind
        index = np.arange(self.n_points).reshape(self.shape)
        if kind == "inversion":
            self.sigma = np.flip(index).ravel()
            self.inverted_axes = tuple(range(self.dim))
        elif kind == "reflection_x":
            self.sigma = np.flip(index, axis=0).ravel()
            self.inverted_axes = (0,)
        else:
            self.sigma = self._permutation(case.get("sigma.indices"), where)
            self.inverted_axes = None

    def _permutation(self, indices, where) -> np.ndarray:
        key = "sigma.indices"
        if len(indices) != self.n_points:
            raise InputError(f"expected {self.n_points} indices (one per grid point, row-major), "
                             f"got {len(indices)}", source=where, key=key)
        sigma = np.asarray(indices, dtype=np.int64)
        if sigma.max() >= self.n_points:
            bad = int(np.argmax(sigma >= self.n_points))
            raise InputError(f"index {sigma[bad]} at position {bad} is not a grid point (expected "
                             f"0 to {self.n_points - 1})", source=where, key=key)
        counts = np.bincount(sigma, minlength=self.n_points)
        if np.any(counts != 1):
            twice = int(np.argmax(counts > 1))
            never = int(np.argmax(counts == 0))
            raise InputError(f"sigma is not measure-preserving: it must be a permutation of the "
                             f"grid points, but point {twice} is hit {counts[twice]} times and "
                             f"point {never} never", source=where, key=key)
        return sigma

    # -- set-up -------------------------------------------------------------------------------
    def describe(self) -> str:
        space = "x".join(str(n) for n in self.shape)
        return (f"{self.dim}D generalized geodesic ({self.sigma_type}) on {space} points x "
                f"{self.steps} time steps")

    def max_iterations(self) -> int:
        return self.case.get("solver.max_iterations")

    def make_solver(self, backend) -> GeneralizedGeodesicSolver:
        s = self.case.section("solver")
        return GeneralizedGeodesicSolver(
            [self.coords] * self.dim, self.sigma, self.steps, backend, epsilon=s["epsilon"],
            epsilon_start=s["epsilon_start"], epsilon_factor=s["epsilon_factor"],
            stage_tol=s["stage_tol"], stage_max_iterations=s["stage_max_iterations"],
            tol=s["tol"], max_iterations=s["max_iterations"])

    def _space_names(self) -> tuple[str, ...]:
        return ("x", "y")[: self.dim]

    def _epsilons(self) -> list[float]:
        s = self.case.section("solver")
        return epsilon_schedule(s["epsilon_start"], s["epsilon"], s["epsilon_factor"])

    def grid(self) -> list[GridAxis]:
        K = self.steps
        axes = [GridAxis("t", np.arange(K + 1) / K, "1", "time levels t_k = k/K", "time"),
                GridAxis("t_interior", np.arange(1, K) / K, "1",
                         "interior time levels (pressure)", "time"),
                GridAxis("epsilon", np.array(self._epsilons()), "action",
                         "entropic blur of each epsilon-scaling stage", "other")]
        for name in self._space_names():
            axes.append(GridAxis(name, self.coords, "length", f"grid points along {name}",
                                 "space"))
            axes.append(GridAxis(f"{name}0", self.coords, "length",
                                 f"start point x(0) along {name} (coupling rows)", "space"))
        return axes

    # -- exact references ---------------------------------------------------------------------
    def exact_action(self) -> float | None:
        """Continuous action of the exact generalized flow (None: no closed form)."""
        if self.inverted_axes is None:
            return None
        return len(self.inverted_axes) * ACTION_1D

    def exact_pressure(self, factor: float = 1.0) -> np.ndarray | None:
        """``pi^2 |x - c|^2 / 2`` over the inverted axes (times ``factor``), zero mean, at every
        interior time ``(K-1, *shape)``."""
        if self.inverted_axes is None:
            return None
        mesh = np.meshgrid(*[self.coords] * self.dim, indexing="ij")
        p = sum(0.5 * math.pi ** 2 * factor * (mesh[a] - 0.5) ** 2 for a in self.inverted_axes)
        p = p - p.mean()
        return np.broadcast_to(p, (self.steps - 1,) + self.shape).copy()

    def _ks_half(self, coupling) -> dict[str, float]:
        """KS distances of the law of x(1/2) given x(0) (and of the joint law) to the exact."""
        if self.dim != 1 or self.inverted_axes is None or self.steps % 2:
            return {}
        n = self.n
        gamma = coupling[self.steps // 2]  # (start i, position j), masses, rows sum to 1/n
        computed = np.concatenate([np.zeros((n, 1)), np.cumsum(gamma, axis=1) * n], axis=1)
        exact = exact_cell_cdf(n, 0.5)
        per_start = np.abs(computed - exact).max(axis=1)
        joint = np.abs(np.cumsum(computed, axis=0) - np.cumsum(exact, axis=0)).max() / n
        return {"ks_half_conditional_mean": float(per_start.mean()),
                "ks_half_conditional_max": float(per_start.max()),
                "ks_half_joint": float(joint)}

    # -- results ------------------------------------------------------------------------------
    def fields(self, solver) -> list[FieldData]:
        names = self._space_names()
        starts = tuple(f"{nm}0" for nm in names)
        cell = 1.0 / self.n_points
        gamma = solver.coupling()  # (K+1, N, *shape)
        density = gamma.sum(axis=1) / cell
        out = [
            FieldData("coupling", gamma.reshape((self.steps + 1,) + self.shape * 2) / cell ** 2,
                      ("t",) + starts + names, "1/length^(2d)",
                      "density of the coupling of x(0) and x(t_k) (rows: the start point)"),
            FieldData("density", density, ("t",) + names, "1/length^d",
                      "density of x(t_k) (the incompressibility constraint: 1)"),
            FieldData("pressure", solver.pressure(), ("t_interior",) + names, "length^2/time^2",
                      "pressure u_k / dt from the dual potentials, zero mean at each time"),
            FieldData("stage_action", solver.stage_action.copy(), ("epsilon",), "length^2/time",
                      "action at the end of each epsilon stage (NaN: stage not reached)"),
        ]
        exact = self.exact_pressure()
        if exact is not None:
            out.append(FieldData("pressure_exact", exact, ("t_interior",) + names,
                                 "length^2/time^2", "pi^2 |x - c|^2 / 2 over the inverted axes, "
                                 "zero mean"))
        return out

    def summary(self, solver) -> dict:
        action = solver.action()
        out = {"action": action, "converged": bool(solver.converged),
               "marginal_error": float(solver.error), "epsilon": float(solver.epsilon),
               "stage": int(solver.stage), "grid_points": int(self.n_points),
               "time_steps": int(self.steps)}
        density = solver.coupling().sum(axis=1) * self.n_points
        out["density_max_deviation"] = float(np.abs(density - 1.0).max())
        # Richardson in epsilon: the entropic bias of the action is linear in epsilon
        stages = solver.stage_action
        if solver.stage >= 1 and np.isfinite(stages[solver.stage - 1]):
            e1, e0 = solver.epsilons[solver.stage], solver.epsilons[solver.stage - 1]
            extrapolated = action - (stages[solver.stage - 1] - action) * e1 / (e0 - e1)
            out["action_extrapolated"] = float(extrapolated)
            out["entropic_bias_estimate"] = float(action - extrapolated)
        exact = self.exact_action()
        if exact is not None:
            factor = discrete_factor(self.steps)
            discrete = exact * factor
            out.update({"action_exact": exact, "action_exact_discrete": discrete,
                        "action_relative_error": abs(action - discrete) / discrete,
                        "action_relative_error_continuous": abs(action - exact) / exact})
            if "action_extrapolated" in out:
                out["action_extrapolated_relative_error"] = (
                    abs(out["action_extrapolated"] - discrete) / discrete)
            p = solver.pressure()
            for suffix, ref in (("", self.exact_pressure()),
                                ("_discrete", self.exact_pressure(factor))):
                out["pressure_relative_l2_error" + suffix] = float(
                    np.sqrt(((p - ref) ** 2).sum() / (ref ** 2).sum()))
            out.update(self._ks_half(solver.coupling()))
        return out

    def reference(self) -> Reference | None:
        exact = self.exact_action()
        if exact is None:
            return None
        weight = (1.0 / self.steps) / self.n_points
        return Reference(scalars={"action": exact},
                         fields={"pressure": (self.exact_pressure(), weight)})


def build(case) -> GeneralizedGeodesicProblem:
    return GeneralizedGeodesicProblem(case)
