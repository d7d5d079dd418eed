r"""The transport-regularized flow objective (OT-Flow) and its exact discrete adjoint.

The flow maps data at :math:`t = 0` to the latent Gaussian at :math:`t = T` along a potential
velocity (OT-Flow, Onken, Wu Fung, Li & Ruthotto 2021):

.. math::

    \frac{dx}{dt} = -\nabla_x\Phi(x, t),\quad
    \frac{dl}{dt} = -\Delta_x\Phi,\quad
    \frac{dv}{dt} = \tfrac12|\nabla_x\Phi|^2,\quad
    \frac{dr}{dt} = \bigl|\partial_t\Phi - \tfrac12|\nabla_x\Phi|^2\bigr|,

from :math:`(x, 0, 0, 0)`. The three cost terms are end values of the *same* fixed-step
Runge-Kutta run (the extra states ride along, as in OT-Flow), averaged over the batch:

* transport :math:`L = \mathbb E[v(T)] = \mathbb E\int_0^T\tfrac12|v|^2dt`;
* likelihood :math:`C = \mathbb E[\tfrac12|x(T)|^2 + \tfrac d2\ln 2\pi - l(T)]` (the negative
  log-likelihood, i.e. the forward KL up to the data entropy);
* HJB residual :math:`R = \mathbb E[r(T)] = \mathbb E\int_0^T|\partial_t\Phi - \tfrac12|\nabla\Phi|^2|dt`;

and the loss is :math:`\alpha_0 L + \alpha_1 C + \alpha_2 R`.

OT-Flow also divides the velocity by :math:`\alpha_0`; that is the reparametrization
:math:`\Phi\to\Phi/\alpha_0` of the potential, so here the dynamics are fixed and
:math:`\alpha_0` only weights the transport cost (which lets :math:`\alpha_0 = 0`, the plain
maximum-likelihood potential flow, sit at the start of a scan). For :math:`\alpha_0 = 1`, the
published setting, the two agree exactly.

Discrete adjoint
    :func:`ot_loss_and_grad` differentiates the discrete loss (discretize-then-optimize): the
    stage positions :math:`X_i` and their :math:`\nabla_x\Phi`, :math:`\partial_t\Phi` are kept
    from the forward run (``B d`` numbers per stage), and the stages are visited in reverse
    with :math:`\kappa_i = h b_i\lambda + \sum_{j>i} h a_{ji}\mu_j`. The cotangents of
    :math:`(\nabla_x\Phi, \partial_t\Phi, \Delta_x\Phi)` at a stage are

    .. math::

        a = -\kappa_x + \kappa_v\nabla\Phi - \kappa_r\,s\,\nabla\Phi,\qquad
        a_t = \kappa_r s,\qquad b = -\kappa_l,\qquad
        s = \operatorname{sign}(\partial_t\Phi - \tfrac12|\nabla\Phi|^2),

    and the potential's :meth:`~ot_pde.flows.potentials.base.Potential.vjp_time` returns
    :math:`\mu_i = \partial_x(\cdot)` and the parameter cotangent in one reverse sweep. The
    end cotangents are :math:`\lambda_x = \alpha_1 x(T)/B`, :math:`\lambda_l = -\alpha_1/B`,
    :math:`\lambda_v = \alpha_0/B`, :math:`\lambda_r = \alpha_2/B`, constant in time for the
    three scalars (the right-hand side does not depend on them). The gradient equals central
    differences of the discrete loss to round-off (tests), away from the measure-zero set
    where the HJB residual of a stage vanishes.

Nothing here reads files or prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..integrators import SCHEMES, check_steps, stage_input, to_host
from ..training import DataBatches

#: names of the three cost terms, in the order of the weights alpha
TERMS = ("transport", "nll", "hjb")


@dataclass
class OTRun:
    """End state of one run: latent ``z``, and the per-sample ``l``, ``v``, ``r``, ``layerwise``.

    ``layerwise`` is :math:`N\\sum_n|x_{n+1} - x_n|^2` over the :math:`N` steps (the discrete
    kinetic energy of the step map, :math:`\\ge |z - x|^2`). ``stages`` (with ``store``) holds,
    per step and stage, ``(X_i, t_i, grad, dt_phi)``.
    """

    z: object
    l: object
    v: object
    r: object
    layerwise: object
    h: float
    stages: list | None = None


def integrate_ot(potential, x0, *, T: float = 1.0, n_steps: int, scheme: str = "rk4",
                 store: bool = False) -> OTRun:
    r"""Fixed-step RK of :math:`(x, l, v, r)` from data ``x0`` at :math:`t = 0` to :math:`t = T`.

    The positions follow exactly the arithmetic of
    :func:`ot_pde.flows.integrators.integrate` with the velocity :math:`-\nabla_x\Phi` (the
    ``to_latent`` of :class:`ot_pde.flows.exported.models.OTFlow` with :math:`\alpha_0 = 1`).
    """
    xp = potential.xp
    x = xp.asarray(x0, dtype=np.float64)
    tab = check_steps(potential, x, T, n_steps, scheme)
    h = T / n_steps
    batch = x.shape[0]
    l, v, r, layer = (xp.zeros(batch) for _ in range(4))
    stages = [] if store else None
    for n in range(n_steps):
        t = T * n / n_steps
        vel, dx, dl, dv, dr, rec = [], 0.0, 0.0, 0.0, 0.0, []
        for i in range(tab.stages):
            xi = stage_input(tab, i, x, h, vel)
            ti = t + tab.c[i] * h
            g, dt_phi, lap = potential.grad_time_laplacian(xi, ti)
            k = -1.0 * g
            vel.append(k)
            half = 0.5 * (g * g).sum(axis=1)
            if tab.b[i] != 0.0:
                dx = dx + tab.b[i] * k
                dl = dl + tab.b[i] * lap
                dv = dv + tab.b[i] * half
                dr = dr + tab.b[i] * xp.abs(dt_phi - half)
            if store:
                rec.append((xi, ti, g, dt_phi))
        x_new = x + h * dx
        step = x_new - x
        layer = layer + n_steps * (step * step).sum(axis=1)
        x = x_new
        l = l - h * dl
        v = v + h * dv
        r = r + h * dr
        if store:
            stages.append(rec)
    return OTRun(x, l, v, r, layer, h, stages)


def term_values(run: OTRun) -> dict:
    """Batch means of the three cost terms (host floats)."""
    xp_z = run.z
    d = xp_z.shape[1]
    nll = 0.5 * (xp_z * xp_z).sum(axis=1) + 0.5 * d * math.log(2.0 * math.pi) - run.l
    return {"transport": float(run.v.mean()), "nll": float(nll.mean()),
            "hjb": float(run.r.mean())}


def _total(alpha, terms: dict) -> float:
    return sum(a * terms[name] for a, name in zip(alpha, TERMS))


def ot_loss(potential, x, alpha, *, T: float = 1.0, n_steps: int,
            scheme: str = "rk4") -> tuple[float, dict]:
    """The discrete loss :math:`\\alpha\\cdot(L, C, R)` on the batch ``x`` and its terms."""
    terms = term_values(integrate_ot(potential, x, T=T, n_steps=n_steps, scheme=scheme))
    return _total(alpha, terms), terms


def ot_loss_and_grad(potential, x, alpha, *, T: float = 1.0, n_steps: int,
                     scheme: str = "rk4") -> tuple[float, dict, np.ndarray]:
    r"""Discrete loss, its terms, and its exact gradient in :math:`\theta` (host array).

    Parameters
    ----------
    potential : Potential
        With ``grad_time_laplacian`` and ``vjp_time`` (:class:`OTFlowResNet`, or a
        time-dependent :class:`OneHiddenLayer`).
    x : array, shape (B, d)
        Data samples (the flow's start at :math:`t = 0`).
    alpha : sequence of 3 floats
        Weights of transport, likelihood and HJB residual.
    """
    xp = potential.xp
    a0, a1, a2 = (float(a) for a in alpha)
    run = integrate_ot(potential, x, T=T, n_steps=n_steps, scheme=scheme, store=True)
    terms = term_values(run)
    tab = SCHEMES[scheme]
    h = run.h
    batch = run.z.shape[0]
    lam_x = (a1 / batch) * run.z
    lam_l, lam_v, lam_r = -a1 / batch, a0 / batch, a2 / batch
    theta_bar = xp.zeros(potential.n_params)
    for rec in reversed(run.stages):
        mus = [None] * tab.stages
        x_bar = lam_x
        for i in range(tab.stages - 1, -1, -1):
            xi, ti, g, dt_phi = rec[i]
            kx = (h * tab.b[i]) * lam_x
            for j in range(i + 1, tab.stages):
                aji = tab.a[j][i]
                if aji != 0.0:
                    kx = kx + (h * aji) * mus[j]
            hb = h * tab.b[i]
            kv, kr, kl = hb * lam_v, hb * lam_r, hb * lam_l
            sign = xp.sign(dt_phi - 0.5 * (g * g).sum(axis=1))
            a = -kx + (kv - kr * sign)[:, None] * g
            mu, tb = potential.vjp_time(xi, ti, a, kr * sign, xp.full(batch, -kl))
            mus[i] = mu
            x_bar = x_bar + mu
            theta_bar = theta_bar + tb
        lam_x = x_bar
    return _total((a0, a1, a2), terms), terms, to_host(theta_bar)


class OTRegularized(DataBatches):
    r"""Objective :math:`\alpha_0 L + \alpha_1 C + \alpha_2 R` for :class:`~ot_pde.flows.training.Trainer`.

    Parameters
    ----------
    data : array of shape (N, d), or callable ``data(rng, n) -> (n, d)``
        Training samples (mini-batches drawn uniformly with replacement) or a sampler.
    alpha : sequence of 3 floats
        Weights of transport, NLL and HJB residual (all >= 0).

    Notes
    -----
    After each :meth:`loss_and_grad`, :attr:`last_terms` holds the batch values of the terms
    (``transport``, ``nll``, ``hjb``) and :attr:`last_layerwise` the discrete kinetic energy.
    The ``T``, ``n_steps``, ``scheme`` keywords of the trainer are passed through.
    """

    name = "ot_regularized"

    def __init__(self, data, alpha):
        alpha = tuple(float(a) for a in alpha)
        if len(alpha) != 3 or not all(math.isfinite(a) and a >= 0 for a in alpha):
            raise ValueError(f"alpha must be 3 finite numbers >= 0, got {alpha!r}")
        self.alpha = alpha
        super().__init__(data)
        self.last_terms: dict = {}

    # Overflow on a diverging run gives inf/nan, which the trainer reports as a numerical
    # failure (exit 1) instead of a floating-point warning from deep inside the network.
    def loss(self, potential, batch, *, T: float, n_steps: int, scheme: str) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            return self._loss(potential, batch, T=T, n_steps=n_steps, scheme=scheme)

    def loss_and_grad(self, potential, batch, *, T: float, n_steps: int, scheme: str):
        with np.errstate(over="ignore", invalid="ignore"):
            return self._loss_and_grad(potential, batch, T=T, n_steps=n_steps, scheme=scheme)

    def _loss(self, potential, batch, *, T: float, n_steps: int, scheme: str) -> float:
        value, self.last_terms = ot_loss(potential, batch, self.alpha, T=T, n_steps=n_steps,
                                         scheme=scheme)
        return value

    def _loss_and_grad(self, potential, batch, *, T: float, n_steps: int, scheme: str):
        value, self.last_terms, grad = ot_loss_and_grad(potential, batch, self.alpha, T=T,
                                                        n_steps=n_steps, scheme=scheme)
        return value, grad
