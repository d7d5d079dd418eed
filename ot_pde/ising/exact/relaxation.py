"""The continuous (Gaussian) relaxation of the Ising model: exact density and spins given x."""
from __future__ import annotations

import numpy as np
from scipy import linalg, special

from ._common import (
    _BRUTE_MAX_L,
    _CHUNK,
    _LOG2,
    _LOG_2PI,
    _check_beta_J,
    _check_L,
    _check_real,
    _log2cosh,
    _spin_states,
    adjacency,
)


# -- continuous relaxation ---------------------------------------------------------------------
class IsingRelaxation:
    r"""Hubbard-Stratonovich relaxation of the :math:`L\times L` Ising model.

    Target :math:`\ln\tilde\pi(x) = -\frac12 x^\top\mathbf K'^{-1}x + \sum_i\ln\cosh x_i` with
    :math:`\mathbf K' = \beta J A + \alpha I`, and
    :math:`\ln Z_{\rm Ising} = \ln Z_{\rm relax} + {\rm constant}` (derivation in the module
    docstring).

    Parameters
    ----------
    L : int
        Linear size, :math:`L \ge 2`.
    beta : float
        Inverse temperature, > 0.
    J : float, default 1.0
        Coupling (any real).
    alpha : float, optional
        Diagonal shift. Default :math:`0.1 - \lambda_{\min}(\mathbf K)`, so that
        :math:`\lambda_{\min}(\mathbf K') = 0.1`. A given value must make :math:`\mathbf K'`
        positive definite.

    Attributes
    ----------
    L, N : int
    beta, J, alpha : float
    K : ndarray (N, N)
        :math:`\beta J A`.
    Kp, Kp_inv : ndarray (N, N)
        :math:`\mathbf K'` and its inverse (symmetric).
    chol_Kp : ndarray (N, N)
        The lower Cholesky factor of :math:`\mathbf K'` (draws of :math:`\mathcal N(\cdot,
        \mathbf K')`).
    logdet_Kp : float
    constant : float
        :math:`N\ln2 - \frac N2\ln 2\pi - \frac12\ln\det\mathbf K' - \frac{\alpha N}2`.
    """

    def __init__(self, L, beta, J=1.0, alpha=None):
        self.L = _check_L(L)
        self.beta, self.J = _check_beta_J(beta, J)
        self.N = self.L * self.L
        self.K = self.beta * self.J * adjacency(self.L)
        lam_min = float(linalg.eigvalsh(self.K)[0])
        if alpha is None:
            self.alpha = 0.1 - lam_min
        else:
            self.alpha = _check_real("alpha", alpha)
            if lam_min + self.alpha <= 0.0:
                raise ValueError(f"K + alpha I must be positive definite: alpha = {self.alpha:g}"
                                 f" <= -lambda_min(K) = {-lam_min:g}")
        self.Kp = self.K + self.alpha * np.eye(self.N)
        chol = linalg.cholesky(self.Kp, lower=True)
        self.chol_Kp = chol
        self.logdet_Kp = float(2.0 * np.log(np.diag(chol)).sum())
        inv = linalg.cho_solve((chol, True), np.eye(self.N))
        self.Kp_inv = 0.5 * (inv + inv.T)  # exactly symmetric, so x K'^-1 x is a true quadratic
        self.constant = (self.N * _LOG2 - 0.5 * self.N * _LOG_2PI - 0.5 * self.logdet_Kp
                         - 0.5 * self.alpha * self.N)

    def _as_x(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 1 or x.shape[-1] != self.N:
            raise ValueError(f"x must have shape (..., {self.N}), got {x.shape}")
        return x

    def log_prob(self, x):
        r"""Unnormalized :math:`\ln\tilde\pi(x)`, shape ``x.shape[:-1]``.

        :math:`\ln\cosh x = |x| + \log(1 + e^{-2|x|}) - \ln 2`, finite for any finite x.
        """
        x = self._as_x(x)
        quad = np.einsum("...i,...i->...", x @ self.Kp_inv, x)
        return -0.5 * quad + (_log2cosh(x) - _LOG2).sum(axis=-1)

    def grad_log_prob(self, x):
        r""":math:`\nabla\ln\tilde\pi(x) = -\mathbf K'^{-1}x + \tanh x`, shape of ``x``."""
        x = self._as_x(x)
        return -(x @ self.Kp_inv) + np.tanh(x)

    def sample_spins_given_x(self, x, rng=None):
        r"""Draw :math:`s \sim p(s\mid x) \propto e^{s^\top x}`: independent, :math:`P(s_i = +1)
        = \sigma(2x_i) = (1 + \tanh x_i)/2`.

        Parameters
        ----------
        x : array_like, shape (..., N)
        rng : numpy.random.Generator, optional

        Returns
        -------
        ndarray of float64 :math:`\pm1`, shape of ``x``.
        """
        x = self._as_x(x)
        rng = np.random.default_rng() if rng is None else rng
        return self.spins_from_uniforms(x, rng.random(x.shape))

    def spins_from_uniforms(self, x, u):
        r""":meth:`sample_spins_given_x` with its uniform numbers ``u`` (shape of ``x``) given:
        :math:`s_i = +1` where :math:`u_i < \sigma(2x_i)`."""
        # u < sigma(2x) <=> (2u - 1) < tanh x: no exp, so no overflow for large |x|.
        return np.where(2.0 * np.asarray(u) - 1.0 < np.tanh(self._as_x(x)), 1.0, -1.0)

    def lnZ_relax_exact(self):
        r""":math:`\ln Z_{\rm relax}` by a route independent of :attr:`constant` (:math:`L \le 4`).

        With :math:`M = \mathbf K'^{-1}` (``Kp_inv``),
        :math:`\prod_i\cosh x_i = 2^{-N}\sum_s e^{s^\top x}` and the Gaussian integral give
        :math:`Z_{\rm relax} = 2^{-N}\sum_s \sqrt{(2\pi)^N/\det M}\,
        \exp(\frac12 s^\top M^{-1}s)`; :math:`\det M` and :math:`M^{-1}` are computed from
        ``Kp_inv`` (not from ``Kp``), and the sum is over all :math:`2^N` states.
        """
        _check_L(self.L, max_L=_BRUTE_MAX_L)
        sign, logdet_M = np.linalg.slogdet(self.Kp_inv)
        if sign <= 0:
            raise ArithmeticError("Kp_inv is not positive definite")
        M_inv = np.linalg.inv(self.Kp_inv)
        M_inv = 0.5 * (M_inv + M_inv.T)
        N = self.N
        q = np.empty(1 << N)
        for start in range(0, 1 << N, _CHUNK):
            s = _spin_states(N, start, min(start + _CHUNK, 1 << N))
            q[start:start + len(s)] = 0.5 * np.einsum("bi,bi->b", s @ M_inv, s)
        return float(-N * _LOG2 + 0.5 * N * _LOG_2PI - 0.5 * logdet_M + special.logsumexp(q))

    def draw_given_spins(self, spins, normals):
        r"""A draw of :math:`x \mid s \sim \mathcal N(\mathbf K's, \mathbf K')` from standard
        normals ``normals`` (shape of ``spins``, (B, N))."""
        return spins @ self.Kp + normals @ self.chol_Kp.T


class WhitenedIsingRelaxation(IsingRelaxation):
    r"""The relaxation in whitened variables :math:`y = \mathbf K'^{-1/2}x`.

    With :math:`\mathbf S = \mathbf K'^{1/2}` (symmetric), the same Hubbard-Stratonovich
    identity written for :math:`y` gives

    .. math::

        \ln\tilde\pi(y) = -\tfrac12|y|^2 + \sum_i\ln\cosh(\mathbf S y)_i, \qquad
        y \mid s \sim \mathcal N(\mathbf S s, I),

    and :math:`\ln Z_{\rm relax}(x) = \ln Z_{\rm relax}(y) + \frac12\ln\det\mathbf K'`, so
    :attr:`constant` gains :math:`\frac12\ln\det\mathbf K'` and :math:`\ln Z_{\rm Ising}`
    is unchanged. Every mixture component is now an isotropic unit Gaussian: the quadratic part
    of the target is exactly that of the base :math:`\mathcal N(0, I)`, and a flow started
    from it only has to build the :math:`\cosh` part. The change of variables is not neutral
    for a Monge-Ampère flow (a gradient field stays one only under orthogonal maps), so the two
    parametrizations give different variational bounds. :math:`\mathbf S` commutes with the
    lattice's translations, reflections and the spin flip, so the target keeps every symmetry.

    Methods take and return :math:`y` where :class:`IsingRelaxation`'s take :math:`x`.
    """

    def __init__(self, L, beta, J=1.0, alpha=None):
        super().__init__(L, beta, J, alpha)
        w, V = linalg.eigh(self.Kp)
        S = (V * np.sqrt(w)) @ V.T
        self.sqrt_Kp = 0.5 * (S + S.T)
        self.constant += 0.5 * self.logdet_Kp

    def field(self, y):
        r"""The Hubbard-Stratonovich field :math:`x = \mathbf S y` of rows ``y``."""
        return self._as_x(y) @ self.sqrt_Kp

    def log_prob(self, y):
        y = self._as_x(y)
        return -0.5 * np.einsum("...i,...i->...", y, y) + (_log2cosh(self.field(y))
                                                          - _LOG2).sum(axis=-1)

    def grad_log_prob(self, y):
        r""":math:`-y + \mathbf S\tanh(\mathbf S y)`."""
        y = self._as_x(y)
        return -y + np.tanh(self.field(y)) @ self.sqrt_Kp

    def spins_from_uniforms(self, y, u):
        return super().spins_from_uniforms(self.field(y), u)

    def lnZ_relax_exact(self):
        return super().lnZ_relax_exact() - 0.5 * self.logdet_Kp

    def draw_given_spins(self, spins, normals):
        return spins @ self.sqrt_Kp + normals
