r"""Symmetry-composed Monge-Ampère flows: a random group element per Runge-Kutta step.

For a target invariant under a group :math:`G` of signed coordinate permutations (the Ising
model: spin flip, lattice translations and reflections), the flow of one potential
:math:`\varphi` may be conjugated by any :math:`g\in G` without leaving the family of valid
flows: :math:`\varphi_g(x) = \varphi(g x)` has

.. math::

    \nabla\varphi_g(x) = g^T\nabla\varphi(g x), \qquad \Delta\varphi_g(x) = \Delta\varphi(g x),
    \qquad \nabla^2\varphi_g(x)\,v = g^T\nabla^2\varphi(g x)\,g v

(:math:`g` is orthogonal). A *composed* flow draws, for every sample and every step
:math:`n` of the integrator, an element :math:`g_{b,n}` and integrates step :math:`n` with
:math:`\varphi_{g_{b,n}}`. For fixed draws the discrete map is a composition of
Runge-Kutta steps of gradient fields, so it is smooth and invertible for small steps, and the
log-density carried by the scheme is consistent with its Jacobian to the scheme's order. The
map is different for every draw: a time-inhomogeneous flow built from :math:`|G|` copies of
one potential, far more expressive than the flow of one symmetric potential (Zhang, E & Wang
2018 draw a translation and a transposition inside their ODE right-hand side). Because the
base :math:`\mathcal N(0, I)` and the target are invariant, every realization :math:`r` of the
draws gives a normalized density :math:`q_r`, hence a valid variational bound
:math:`\mathbb E_{x\sim q_r}[\ln\tilde\pi(x) - \ln q_r(x)]\le\ln Z` and unbiased importance
weights :math:`\tilde\pi/q_r`; the estimators average over draws and samples alike.

``per = "stage"`` draws a new element at every Runge-Kutta *stage* instead, as the 2018 code
does. The stages of one step then belong to different vector fields, so the scheme no longer
integrates any ODE consistently and the carried log-density differs from the log-determinant
of the discrete map (:mod:`ot_pde.flows.logdet` measures by how much). It is kept for that
comparison only.

The draws are indices into the group's element table, an integer array of shape
``(B, n_steps, k)`` with ``k = 1`` (per step) or the scheme's number of stages (per stage),
drawn by :meth:`Composition.draw` from the caller's generator and passed to
:func:`~ot_pde.flows.integrators.integrate`, which records them in its trajectory for the
discrete adjoint. Nothing here reads files or prints.
"""
from __future__ import annotations

import copy

import numpy as np

from .potentials import signed_permutation_group
from .potentials.base import WrapsParameters

PER = ("step", "stage")


class Composition(WrapsParameters):
    r"""A potential composed with per-step random elements of a group.

    Parameters
    ----------
    potential : Potential
        The potential :math:`\varphi` (possibly itself averaged over a subgroup); the
        composition shares its parameters.
    generators : iterable of (perm, signs)
        Generators of the group :math:`G` the draws come from (closed with
        :func:`~ot_pde.flows.potentials.groups.signed_permutation_group`).
    per : {"step", "stage"}
        One element per Runge-Kutta step (consistent) or per stage (the 2018 code's draws).
    max_size : int
        Largest group accepted.

    Attributes
    ----------
    order : int
        :math:`|G|`.
    """

    def __init__(self, potential, generators, per: str = "step", max_size: int = 1 << 16):
        if per not in PER:
            raise ValueError(f"unknown composition {per!r}; expected one of {', '.join(PER)}")
        self.potential = potential
        self.per = per
        elements = signed_permutation_group(generators, potential.dim, max_size=max_size)
        self.order = len(elements)
        xp = potential.xp
        perms = np.stack([e[0] for e in elements])
        signs = np.stack([e[1] for e in elements])
        inverse = np.argsort(perms, axis=1)
        self._perms = xp.asarray(perms)
        self._signs = xp.asarray(signs)
        # g^T y: (g^T y)_j = s_{inv_j} y_{inv_j}
        self._inverse = xp.asarray(inverse)
        self._inverse_signs = xp.asarray(np.take_along_axis(signs, inverse, axis=1))

    # -- the composed potential's parameters are the potential's --------------------------------
    @property
    def dim(self) -> int:
        return self.potential.dim

    @property
    def xp(self):
        return self.potential.xp

    @property
    def backend(self):
        return self.potential.backend

    @property
    def n_params(self) -> int:
        return self.potential.n_params

    @property
    def time_dependent(self) -> bool:
        return self.potential.time_dependent

    @property
    def inner(self):
        return self.potential

    def astype(self, dtype) -> "Composition":
        """A twin whose potential computes in ``dtype`` (see ``Potential.astype``)."""
        twin = copy.copy(self)
        twin.potential = self.potential.astype(dtype)
        twin._signs = self._signs.astype(twin.potential.dtype)
        twin._inverse_signs = self._inverse_signs.astype(twin.potential.dtype)
        return twin

    @property
    def dtype(self):
        return self.potential.dtype

    # -- draws --------------------------------------------------------------------------------
    def stages(self, n_stages: int) -> int:
        """Draws per step: 1, or the scheme's stages."""
        return 1 if self.per == "step" else int(n_stages)

    def cotangent_sink(self, rows: int | None = None):
        """The potential's sink: the acted potentials add their cotangents to it."""
        return self.potential.cotangent_sink(rows)

    def draw(self, rng: np.random.Generator, batch: int, n_steps: int, n_stages: int):
        """Element indices ``(batch, n_steps, k)`` (numpy int64), uniform over the group."""
        return rng.integers(0, self.order, size=(batch, n_steps, self.stages(n_stages)))

    def acting(self, indices) -> "Acted":
        """The potential :math:`\\varphi_{g_b}` of each sample ``b`` for indices ``(B,)``."""
        xp = self.potential.xp
        idx = xp.asarray(indices)
        return Acted(self.potential, self._perms[idx], self._signs[idx], self._inverse[idx],
                     self._inverse_signs[idx])


class Acted:
    r""":math:`\varphi_{g_b}(x) = \varphi(g_b x)` for one signed permutation per sample.

    Implements the part of the potential interface the integrators use: ``grad``,
    ``grad_and_laplacian``, ``hvp``, ``grad_laplacian``, the fused ``vjp`` and the adjoint's
    ``grad_and_laplacian_with_state`` and ``vjp_into``, each by
    gathering the inputs into the acted frame, evaluating :math:`\varphi` and pulling vectors
    back with :math:`g^T` (the parameter cotangent is :math:`\varphi`'s at the acted inputs).
    """

    def __init__(self, potential, perms, signs, inverse, inverse_signs):
        self.potential = potential
        self.dim = potential.dim
        self.xp = xp = potential.xp
        # flat gather indices into the C-ordered (B, d) rows: one take per action, with no
        # index arithmetic per call (take_along_axis rebuilds its indices every time)
        offsets = xp.arange(perms.shape[0])[:, None] * perms.shape[1]
        self._forward, self._signs = perms + offsets, signs
        self._back, self._inverse_signs = inverse + offsets, inverse_signs

    def forward(self, v):
        """:math:`g_b v_b` for rows ``v`` (B, d)."""
        return self.xp.take(self.xp.ascontiguousarray(v), self._forward) * self._signs

    def back(self, y):
        """:math:`g_b^T y_b` for rows ``y`` (B, d)."""
        return self.xp.take(self.xp.ascontiguousarray(y), self._back) * self._inverse_signs

    def grad(self, x, t):
        return self.back(self.potential.grad(self.forward(x), t))

    def grad_and_laplacian(self, x, t):
        g, lap = self.potential.grad_and_laplacian(self.forward(x), t)
        return self.back(g), lap

    def hvp(self, x, t, v):
        return self.back(self.potential.hvp(self.forward(x), t, self.forward(v)))

    def grad_laplacian(self, x, t):
        return self.back(self.potential.grad_laplacian(self.forward(x), t))

    def vjp(self, x, t, a, b):
        x_bar, theta_bar = self.potential.vjp(self.forward(x), t, self.forward(a), b)
        return self.back(x_bar), theta_bar

    def grad_and_laplacian_with_state(self, x, t):
        """The state keeps the acted inputs :math:`g_b x_b` beside the potential's own."""
        acted = self.forward(x)
        g, lap, state = self.potential.grad_and_laplacian_with_state(acted, t)
        return self.back(g), lap, (acted, state)

    def vjp_into(self, sink, x, t, a, b, state=None):
        acted, inner = (self.forward(x), None) if state is None else state
        return self.back(self.potential.vjp_into(sink, acted, t, self.forward(a), b, inner))
