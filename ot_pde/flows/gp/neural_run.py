r"""The neural antisymmetric field in the ``gp_flow`` kind (``basis.field = "neural"``): the
training objective pulled back to the latent side, and the summary of a run.

**Pulled-back objective.** Let :math:`H` be the time-1 map of the neural field
(:class:`~ot_pde.flows.gp.neural_field.NeuralAntisymmetricGP`) and :math:`G = H^{-1}` the
rearrangement (the same path run backwards: still exactly :math:`\gamma`-preserving). Since
:math:`H` preserves :math:`\gamma`, with :math:`w = G(z)\sim\gamma`,

.. math:: \mathbb E_z|T(G(z)) - z|^2 = \mathbb E_w|T(w) - H(w)|^2 ,

so on fixed draws :math:`w_i` the flow is evaluated *once*, :math:`y_i = T(w_i)`, before the
optimization, and the objective :math:`\frac1n\sum_i|y_i - H(w_i)|^2 + \mu\,\mathrm{action}`
needs neither the flow nor its Jacobian again (in 43 dimensions a central-difference Jacobian
would cost 87 flow evaluations per point and iteration). Its gradient is the discrete adjoint
of the field's RK4. The transport costs of the summary use the definition itself, on fresh
draws, with :math:`G` by RK4 backwards.
"""
from __future__ import annotations

import math

import numpy as np

from ...core.problem import FieldData, ParticleData
from ...errors import NumericalError
from ..discrete_ot import estimate_w2
from ..exported.models import apply_in_chunks
from .neural_field import NeuralAntisymmetricGP
from .summary import gap_to_bound, gelbrich_with_error, likelihood_change, transport_costs

#: objective value of a rejected (non-finite) trial point
_REJECT = 1e10


class PulledBackShooting:
    r""":math:`J(\theta) = \frac1n\sum_i|y_i - H_\theta(w_i)|^2 + \mu\int_0^1
    \mathrm{mean}_i|v(X_i(t), t)|^2dt`, :math:`y_i = T(w_i)` fixed, and its exact gradient."""

    def __init__(self, field: NeuralAntisymmetricGP, draws, action_weight: float,
                 resample: bool, control_variate: bool = False):
        self.field, self.draws, self.resample = field, draws, bool(resample)
        self.weight = float(action_weight)
        self.evaluations = 0
        self.start_chunk(0)
        self.sym, self.shift = None, None
        if control_variate:
            self.sym, self.shift = affine_control_variate(self.w, self.y)

    def start_chunk(self, chunk: int) -> None:
        """The training pairs ``(w, y = T(w))`` of a chunk: the same draws throughout, or
        fresh ones per chunk with ``resample`` (L-BFGS restarts between chunks anyway; in high
        d a fixed sample is overfitted: the empirical OT cost between n draws lies far below
        W2^2)."""
        self.w, self.y = self.draws(chunk if self.resample else 0)

    def energy(self, theta) -> float:
        """Kinetic energy ``1/2 mean |v(w, 0)|^2`` on the training draws."""
        v = self.field.velocity(theta, self.w, 0.0)
        return 0.5 * float(np.mean(np.sum(v * v, axis=1)))

    def transport_cost(self, theta) -> float:
        with np.errstate(all="ignore"):
            hw = self.field.integrate(theta, self.w)[0]
        return float(np.mean(np.sum((self.y - hw) ** 2, axis=1)))

    def __call__(self, theta):
        self.evaluations += 1
        theta = np.asarray(theta, dtype=np.float64)
        reject = (_REJECT * (1.0 + float(theta @ theta)), theta.copy())
        with np.errstate(all="ignore"):
            hw, _, action, stages = self.field.integrate(theta, self.w, store=True)
            if not np.all(np.isfinite(hw)):
                return reject
            if self.sym is None:
                diff = hw - self.y
                f = float(np.mean(np.sum(diff * diff, axis=1)))
            else:
                # |y - H|^2 = |y|^2 - 2 y.H + |H|^2 with |H|^2 replaced by H.M H + c.H,
                # whose expectation is tr M whatever theta (H(w) ~ gamma)
                mh = hw @ self.sym
                diff = mh + 0.5 * self.shift - self.y
                f = float(np.mean(np.sum(self.y * self.y - 2.0 * self.y * hw + mh * hw
                                         + self.shift * hw, axis=1))) \
                    + hw.shape[1] - float(np.trace(self.sym))
            f += self.weight * action
            g, _ = self.field.adjoint(theta, stages, (2.0 / diff.shape[0]) * diff,
                                      self.weight)
        if not (math.isfinite(f) and np.all(np.isfinite(g))):
            return reject
        return f, g


def affine_control_variate(w: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(M, c)``: the symmetric part of the least-squares affine fit :math:`y\approx Aw + b`
    and :math:`c = 2b`.

    For any fixed symmetric M and vector c, :math:`\mathbb E[H(w)^\top MH(w) + c\cdot H(w)]
    = \operatorname{tr}M` for every :math:`\gamma`-preserving H, so replacing :math:`|H|^2` by
    it in :math:`|y - H|^2` leaves the expected objective and its gradient unchanged. With this
    choice the per-sample gradient at the identity is :math:`-2(y - Mw - b)\cdot\partial H`:
    the part of the targets that is the gradient of a quadratic (which no rearrangement can
    improve on to first order) no longer adds sampling noise.
    """
    n, d = w.shape
    design = np.concatenate([w, np.ones((n, 1))], axis=1)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]          # (d + 1, d): y = w A^T + b
    a = coef[:d].T
    return 0.5 * (a + a.T), 2.0 * coef[d]


def results_neural(problem, solver) -> tuple:
    """The summary, fields and particles of a neural-field run (``problem`` a
    :class:`~ot_pde.flows.gp.problem.GPFlowProblem`)."""
    c, flow, fld, d = problem.case, solver.flow, problem.field, problem.dim
    xp = flow.xp
    theta = solver.theta
    sample = lambda a: apply_in_chunks(lambda b: (flow.sample(b),), a, xp)[0]  # noqa: E731
    obj = solver.objective
    s: dict = {"dim": d, "neural_field": True, "width": fld.width, "n_coefficients": fld.size,
               "time_steps": fld.steps, "lbfgs_iterations": solver.lbfgs_iterations,
               "objective_evaluations": obj.evaluations, "action_weight": obj.weight}
    s["training_cost_before"] = obj.transport_cost(problem.theta0())
    s["training_cost_after"] = obj.transport_cost(theta)
    with np.errstate(all="ignore"):
        s["action"] = float(fld.integrate(theta, obj.w)[2])

    n = c.get("comparison.n_eval")
    seeds = problem.seeds
    z = np.random.default_rng(seeds["eval"]).standard_normal((n, d))
    with np.errstate(all="ignore"):
        gz, ld_fwd, _, _ = fld.integrate(theta, z, backward=True, logdet=True)
    if not np.all(np.isfinite(gz)):
        raise NumericalError("the rearrangement G is non-finite on the evaluation samples")
    x0, x1 = transport_costs(s, sample, z, gz, ld_fwd)

    est = estimate_w2(lambda m, rng: rng.standard_normal((m, d)),
                      lambda m, rng: sample(rng.standard_normal((m, d))),
                      c.get("comparison.ot_sizes"), c.get("comparison.ot_repeats"),
                      np.random.default_rng(seeds["ot"]), d)
    gap_to_bound(s, est)
    gelbrich_with_error(s, x0, np.random.default_rng(seeds["ot"]))

    # held-out model samples x = T(z'): ln p_new(x) - ln p(x) with G^{-1} = H (forward)
    m = c.get("data.n_test")
    rng = np.random.default_rng(seeds["data"])
    zd, lp = apply_in_chunks(flow.to_data, rng.standard_normal((m, d)), xp)
    zd = apply_in_chunks(flow.to_latent, zd, xp)[0]
    with np.errstate(all="ignore"):
        w, ld_h, _, _ = fld.integrate(theta, zd, logdet=True)
    likelihood_change(s, lp, zd, w, ld_h)

    # Euler residual on fixed draws of gamma (pressure over the quadratics: an upper bound)
    xr = np.random.default_rng(seeds["field"]).standard_normal((min(n, 4096), d))
    times = np.linspace(0.0, 1.0, fld.steps + 1)
    res = np.array([fld.residual(theta, t, xr) for t in times])
    s["euler_residual"] = float(res[:, 0].max())
    s["euler_residual_abs"] = float(res[:, 1].max())
    s["energy"] = float(res[0, 2])
    s["energy_drift"] = float(abs(res[-1, 2] - res[0, 2]) / max(res[0, 2], 1e-300))

    fields = [FieldData("theta0", theta.copy(), ("mode",), "1",
                        "optimized parameters of the neural antisymmetric field"),
              FieldData("euler_residual", res[:, 0], ("t",), "1",
                        "relative Euler residual min_p |a + grad p| / |a| (p quadratic)"),
              FieldData("energy", res[:, 2], ("t",), "1", "kinetic energy along the path")]
    k = min(c.get("output.samples"), n)
    lat = np.linspace(-3.0, 3.0, 13)
    fine = np.linspace(-3.0, 3.0, 121)
    along, across = np.meshgrid(lat, fine, indexing="ij")
    planar = np.concatenate([np.stack([across, along], -1).reshape(-1, 2),
                             np.stack([along, across], -1).reshape(-1, 2)])
    lines = np.zeros((planar.shape[0], d))
    lines[:, :2] = planar
    with np.errstate(all="ignore"):
        lines_img = fld.integrate(theta, lines, backward=True)[0]
    particles = [
        ParticleData("latent", z[:k], "1", "latent points z ~ N(0, I)"),
        ParticleData("flow_image", x0[:k], "1", "T(z), the flow before"),
        ParticleData("rearranged", gz[:k], "1", "G(z), the Gaussian-preserving map"),
        ParticleData("gp_image", x1[:k], "1", "T(G(z)), the flow after"),
        ParticleData("lattice", lines, "1", "points on the lines of a lattice in [-3, 3]^2 x {0}"),
        ParticleData("lattice_image", lines_img, "1", "their images under G"),
    ]
    return s, fields, particles
