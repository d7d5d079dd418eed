r"""The exact log-determinant of a flow's *discrete* map, by forward-mode tangent columns.

A Runge-Kutta scheme carries the log-density along with the particles,
:math:`l_N = l_0 - h\sum_n\sum_i b_i\,\Delta\varphi(X_{n,i})`, which approximates
:math:`l_0 - \ln|\det\partial x_N/\partial x_0|` of the discrete map
:math:`x_0\mapsto x_N` to the scheme's order when every stage of a step integrates the same
vector field. Estimates of :math:`\ln Z` take :math:`l_N` as the sample's log-density, so the
difference is a bias; it stays at round-off level for a consistent scheme and becomes
visible when the stages of one step see different fields (the per-stage draws of
:mod:`ot_pde.flows.composition`).

:func:`carried_and_exact_logdet` integrates a few samples forward and, beside them, the
:math:`d` tangent vectors :math:`\partial x/\partial x_{0,k}` through the same stages. With
:math:`V` the tangents of the step start, the stage tangents and the update are

.. math::

    \dot X_i = V + h\sum_{j<i} a_{ij}\,\nabla^2\varphi(X_j)\,\dot X_j, \qquad
    V_{n+1} = V + h\sum_i b_i\,\nabla^2\varphi(X_i)\,\dot X_i,

each Hessian product one ``hvp`` of the stage's potential on the sample's position repeated
:math:`d` times (no automatic differentiation). The Jacobian of the discrete map is then
:math:`V_N`, and its log-determinant comes from an LU factorization. Cost: the :math:`d`
columns of a sample are a batch of :math:`d` rows, so a few samples cost about as much as
integrating :math:`d` of them. Nothing here reads files or prints.
"""
from __future__ import annotations

import numpy as np

from .integrators import _check_run, _fields, _step_times, stage_input, to_host


def carried_and_exact_logdet(potential, x0, *, T: float, n_steps: int, scheme: str = "rk4",
                             actions=None):
    r"""For each sample: the carried log-density change and the exact log-determinant.

    Parameters
    ----------
    potential : Potential or Composition
    x0 : array, shape (S, d)
        Start points (a handful: the work grows like :math:`S d`).
    T, n_steps, scheme
        As in :func:`~ot_pde.flows.integrators.integrate` (forward direction).
    actions : array, shape (S, n_steps, k), optional
        The draws of a composed flow.

    Returns
    -------
    carried : numpy.ndarray, shape (S,)
        :math:`l_N - l_0` of the scheme, i.e. :math:`-h\sum b_i\Delta\varphi`.
    exact : numpy.ndarray, shape (S,)
        :math:`-\ln|\det\partial x_N/\partial x_0|` of the discrete map.
    """
    xp = potential.xp
    x = xp.asarray(x0, dtype=np.float64)
    samples, d = x.shape
    tab = _check_run(potential, x, xp.zeros(samples), T, n_steps, scheme, "forward", actions)
    h, times = _step_times(float(T), int(n_steps), "forward")
    # the tangents of sample s are rows s*d .. s*d + d - 1; each row's potential is its
    # sample's (the draws repeated d times)
    repeated = None if actions is None else np.repeat(np.asarray(actions), d, axis=0)
    tangents = xp.tile(xp.eye(d), (samples, 1))
    carried = xp.zeros(samples)
    for n, t in enumerate(times):
        fields = _fields(potential, actions, n, tab.stages)
        row_fields = _fields(potential, repeated, n, tab.stages)
        grads, products = [], []
        dx, dl, dv = 0.0, 0.0, 0.0
        for i in range(tab.stages):
            xi = stage_input(tab, i, x, h, grads)
            vi = stage_input(tab, i, tangents, h, products)
            ti = t + tab.c[i] * h
            g, lap = fields[i].grad_and_laplacian(xi, ti)
            hv = row_fields[i].hvp(xp.repeat(xi, d, axis=0), ti, vi)
            grads.append(g)
            products.append(hv)
            if tab.b[i] != 0.0:
                dx, dl, dv = dx + tab.b[i] * g, dl + tab.b[i] * lap, dv + tab.b[i] * hv
        x, carried, tangents = x + h * dx, carried - h * dl, tangents + h * dv
    jac = to_host(tangents).reshape(samples, d, d)
    sign, logabs = np.linalg.slogdet(jac)
    exact = np.where(sign != 0, -logabs, np.inf)
    return to_host(carried), exact


def logdet_error_per_site(potential, x0, **flow) -> float:
    r""":math:`\max_s |(l_N - l_0) + \ln|\det J_s||\,/\,d` over the samples ``x0``."""
    carried, exact = carried_and_exact_logdet(potential, x0, **flow)
    return float(np.max(np.abs(carried - exact)) / np.asarray(x0).shape[1])
