"""Grid fields of a learned pair (2D): the CNF's model log-density, the true one where known, the
velocity at :data:`COMPARE_TIMES`, and, for the smoothed checkerboard, the
grid (Sinkhorn) solution of this kind at the same epsilon as the velocity's reference."""
from __future__ import annotations

import math

import numpy as np

from ...backends import get_backend
from ...core.problem import FieldData
from .problem import build_source_density
from .solver import EntropicSolver, SpaceTimeGrid

#: the learned and grid velocities are compared at these times
COMPARE_TIMES = (0.25, 0.5, 0.75)
#: Sinkhorn settings of the reference (those of cases/ek_checkerboard_2d.toml)
REFERENCE_TOL = 1e-8
REFERENCE_MAX_ITERATIONS = 3000


def velocity_l2_error(v_learned, v_ref, rho) -> float:
    r"""Relative :math:`L^2(\rho_t)` error :math:`\|v - v_\mathrm{ref}\|/\|v_\mathrm{ref}\|`,
    both weighted by the reference density ``rho``; ``v`` arrays of shape ``(2, n, n)``."""
    num = float((rho * ((v_learned - v_ref) ** 2).sum(0)).sum())
    den = float((rho * (v_ref ** 2).sum(0)).sum())
    return math.sqrt(num / den)


def grid_fields(problem, flow, nt: int):
    """``(fields, summary)`` on the problem's 2D box."""
    lo, hi, n = problem.box
    axes = [lo[k] + (hi[k] - lo[k]) * (np.arange(n) + 0.5) / n for k in (0, 1)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    names = ("x", "y")
    fields, summary = [], {}
    logp = flow.log_density_at_0(pts, problem.target, nt).reshape(n, n)
    fields.append(FieldData("model_log_density", logp, names, "log(1/length^2)",
                            "log-density at t = 0 of the CNF from the target (RK4, time.nt "
                            "steps)"))
    cell = float(np.prod((hi - lo) / n))
    summary["model_density_mass"] = float(np.exp(logp).sum() * cell)
    if problem.source.log_prob is not None:
        true = problem.source.log_prob(pts).reshape(n, n)
        fields.append(FieldData("true_log_density", true, names, "log(1/length^2)",
                                "log-density of the source"))
    vel = np.stack([flow.velocity(pts, t)[0].T.reshape(2, n, n) for t in _times()])
    fields.append(FieldData("v", vel, ("t_compare", "component") + names, "length/time",
                            "velocity v_t = grad(psi_t - phi_t)/2 of the learned potentials"))
    if problem.source.kind == "checkerboard":
        ref, rho = _grid_reference(problem, lo, hi, n)
        fields.append(FieldData("v_grid", ref, ("t_compare", "component") + names,
                                "length/time", "velocity of the grid (Sinkhorn) solution at "
                                "the same epsilon"))
        for j, t in enumerate(_times()):
            key = f"velocity_l2_rel_error_t{int(round(100 * t)):03d}"
            summary[key] = velocity_l2_error(vel[j], ref[j], rho[j])
    return fields, summary


def _times():
    return COMPARE_TIMES


def _grid_reference(problem, lo, hi, n):
    """Velocities and densities of the grid solver at the comparison times."""
    case = problem.case
    grid = SpaceTimeGrid(tuple(lo), tuple(hi), (n, n), 4)
    src = build_source_density(case.section("source"), grid, where=case.source,
                               key_prefix="source")
    tgt = build_source_density(case.section("target"), grid, where=case.source,
                               key_prefix="target")
    solver = EntropicSolver(src.values, tgt.values, grid, get_backend("numpy"),
                            epsilon=problem.epsilon, tol=REFERENCE_TOL,
                            max_iterations=REFERENCE_MAX_ITERATIONS)
    while not solver.finished:
        solver.step()
    out = [solver.fields_at(t) for t in _times()]
    return np.stack([o[1] for o in out]), np.stack([o[0] for o in out])
