r"""Proximal map of the kinetic energy :math:`J(f, m) = |m|^2 / (2 f)`, one cell at a time.

For a step :math:`\gamma` and a point :math:`(\tilde f, \tilde m)` the minimiser of
:math:`J(f, m) + (|m - \tilde m|^2 + (f - \tilde f)^2) / (2\gamma)` is (Papadakis et al. 2014,
Prop. 1) :math:`m = f \tilde m / (f + \gamma)` with :math:`f` the largest real root of

.. math:: P(f) = (f - \tilde f)(f + \gamma)^2 - \tfrac{\gamma}{2} |\tilde m|^2,

or :math:`(0, 0)` when that root is not positive.

Root finding (the same in every backend): let :math:`f_0 = \max(\tilde f, 0)` and
:math:`c = \gamma|\tilde m|^2/2`. On :math:`[f_0, \infty)` the cubic is convex and increasing
past its root. If :math:`\tilde f < 0` and :math:`P(0) \ge 0` there is no positive root. Otherwise
:math:`s = f_0 + \min(c/(f_0+\gamma)^2, c^{1/3})` satisfies :math:`P(s) \ge 0`, so Newton's method
started at :math:`s` decreases monotonically onto the root; it stops when a step no longer
decreases the iterate (machine precision) or after ``MAX_NEWTON`` steps.
"""
from __future__ import annotations

import numpy as np

MAX_NEWTON = 60


def cubic_root_numpy(ft, msq, gamma):
    """Largest root (clipped at 0) for arrays ``ft`` (density) and ``msq`` (squared momentum)."""
    shape = ft.shape
    ft = ft.reshape(-1)
    c = 0.5 * gamma * msq.reshape(-1)
    f0 = np.maximum(ft, 0.0)
    no_root = (ft < 0.0) & (-ft * gamma * gamma - c >= 0.0)
    x = f0 + np.minimum(c / ((f0 + gamma) * (f0 + gamma)), np.cbrt(c))
    active = ~no_root & (c > 0.0)
    for _ in range(MAX_NEWTON):
        if not active.any():
            break
        xa, fa, ca = x[active], ft[active], c[active]
        xg = xa + gamma
        p = (xa - fa) * xg * xg - ca
        dp = xg * (3.0 * xa + gamma - 2.0 * fa)
        xn = xa - p / dp
        moving = xn < xa
        xa = np.where(moving, xn, xa)
        x[active] = xa
        idx = np.flatnonzero(active)
        active[idx[~moving]] = False
    return np.where(no_root, 0.0, x).reshape(shape)


def kinetic_prox_numpy(ft, mt, gamma):
    """Vectorised proximal map; ``mt`` is a list of momentum components."""
    msq = sum(m * m for m in mt)
    f = cubic_root_numpy(ft, msq, gamma)
    scale = f / (f + gamma)
    return f, [scale * m for m in mt]
