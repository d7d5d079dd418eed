r"""Toy 2D data sets for density estimation, and Gaussian mixtures with exact densities.

The generators follow the toy data of FFJORD (Grathwohl et al. 2019, ``lib/toy_data.py``),
also used by OT-Flow, with two deliberate differences: every sample is drawn independently
(FFJORD's ``rings`` and scikit-learn's ``make_moons`` place points on a deterministic
``linspace`` of angles with fixed counts per component), so each data set has a well-defined
density; and FFJORD's ``/ 1.414`` is taken as :math:`\sqrt 2`. In final coordinates:

``eight_gaussians``
    Equal mixture of 8 isotropic Gaussians with std :math:`0.5/\sqrt2 \approx 0.354` centred
    at angles :math:`k\pi/4` on the circle of radius :math:`4/\sqrt2 = 2\sqrt2 \approx 2.83`;
    exact density from :func:`eight_gaussians_mixture`.
``moons``
    Two interleaved half circles of radius 2: :math:`(2\cos\theta - 1, 2\sin\theta - 0.2)`
    and :math:`(1 - 2\cos\theta, 0.8 - 2\sin\theta)`, :math:`\theta \sim U(0, \pi)`, each
    with probability 1/2, plus Gaussian noise of std 0.2 (scikit-learn's noise 0.1, then
    FFJORD's scaling by 2).
``checkerboard``
    Uniform on the 8 squares of side 2 of a checkerboard covering :math:`[-4, 4]^2`
    (density 1/32 there, so entropy :math:`\ln 32`).
``swiss_roll``
    :math:`t = \tfrac{3\pi}{2}(1 + 2u)`, :math:`u \sim U(0,1)`, point :math:`(t\cos t,
    t\sin t)` plus Gaussian noise of std 1, all scaled by 1/5 (scikit-learn's
    ``make_swiss_roll(noise=1.0)``, coordinates 0 and 2, then FFJORD's ``/ 5``).
``rings``
    Four concentric circles of radii 3, 2.25, 1.5, 0.75, chosen with equal probability,
    uniform angle, plus Gaussian noise of std 0.08.

Images (the ``digits`` target of :mod:`ot_pde.flows.targets`) are modelled in logit space:
:class:`LogitPixels` dequantizes grey levels and maps them to :math:`\mathbb R^d` and back,
with the log-Jacobian that converts a logit-space density into a pixel-space one.

Every generator takes ``(n, rng, **params)`` and returns an ``(n, 2)`` float64 array; ``rng``
is a :class:`numpy.random.Generator` or an integer seed (never ``None``: runs are
reproducible). Nothing here reads files or prints.
"""
from __future__ import annotations

import math

import numpy as np

from ..backends import get_array_module

SQRT2 = math.sqrt(2.0)


def _generator(rng) -> np.random.Generator:
    """The generator itself, or a new one seeded by an integer."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {rng!r}")


def _count(n) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"the number of samples must be a non-negative integer, got {n!r}")
    return int(n)


def _logsumexp(a, xp, axis):
    """:math:`\\ln\\sum_k e^{a_k}` without overflow (the largest term is factored out)."""
    top = xp.max(a, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, 0.0)  # all -inf: keep -inf, avoid inf - inf
    return xp.squeeze(top, axis=axis) + xp.log(xp.sum(xp.exp(a - top), axis=axis))


class GaussianMixture:
    r"""Mixture :math:`p(x) = \sum_k w_k\,\mathcal N(x; \mu_k, \Sigma_k)` in :math:`d`
    dimensions, with exact log-density and score.

    Parameters
    ----------
    means : array_like, shape (K, d)
        Component means.
    covs : array_like, shape (K, d, d), optional
        Component covariances (symmetric positive definite).
    stds : float or array_like, shape (K,), optional
        Instead of ``covs``: isotropic standard deviations, :math:`\Sigma_k = s_k^2 I`.
    weights : array_like, shape (K,), optional
        Non-negative component weights, normalised to sum 1 (default: equal).

    Raises
    ------
    ValueError
        Shapes disagree, both or neither of ``covs``/``stds`` given, a covariance is not
        symmetric positive definite, or the weights are negative or all zero.
    """

    def __init__(self, means, covs=None, stds=None, weights=None):
        means = np.array(means, dtype=np.float64, ndmin=2)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {means.shape}")
        k, d = means.shape
        if (covs is None) == (stds is None):
            raise ValueError("give exactly one of covs and stds")
        if covs is None:
            stds = np.broadcast_to(np.asarray(stds, dtype=np.float64), (k,))
            if not np.all(stds > 0):
                raise ValueError("stds must be positive")
            covs = stds[:, None, None] ** 2 * np.eye(d)
        covs = np.array(covs, dtype=np.float64)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape {(k, d, d)}, got {covs.shape}")
        if not np.allclose(covs, np.swapaxes(covs, 1, 2), rtol=1e-12, atol=0.0):
            raise ValueError("covariances must be symmetric")
        try:
            chol = np.linalg.cholesky(covs)
        except np.linalg.LinAlgError:
            raise ValueError("covariances must be positive definite") from None
        weights = np.full(k, 1.0 / k) if weights is None else np.array(weights, dtype=np.float64)
        if weights.shape != (k,) or np.any(weights < 0) or not weights.sum() > 0:
            raise ValueError(f"weights must be {k} non-negative numbers, not all zero")
        self.means = means
        self.covs = covs
        self.weights = weights / weights.sum()
        self._chol = chol
        self._precisions = np.linalg.inv(covs)
        # ln w_k - ln sqrt(det(2 pi Sigma_k)), from the Cholesky diagonal
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        with np.errstate(divide="ignore"):  # zero weights give -inf: components that never fire
            self._log_norm = np.log(self.weights) - 0.5 * (d * math.log(2 * math.pi) + log_det)

    @property
    def dim(self) -> int:
        """Dimension :math:`d`."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components :math:`K`."""
        return self.means.shape[0]

    def sample(self, n: int, rng) -> np.ndarray:
        """``n`` independent samples, shape ``(n, d)``: a component by weight, then
        :math:`\\mu_k + L_k z` with :math:`L_k L_k^T = \\Sigma_k`, :math:`z \\sim N(0, I)`."""
        n, rng = _count(n), _generator(rng)
        idx = rng.choice(self.n_components, size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        return self.means[idx] + np.einsum("nij,nj->ni", self._chol[idx], z)

    def _component_terms(self, x):
        """:math:`\\ln w_k + \\ln\\mathcal N(x_n;\\mu_k,\\Sigma_k)`, shape (n, K), and
        :math:`x_n - \\mu_k`, shape (n, K, d), on the array module of ``x``."""
        xp = get_array_module(x)
        x = xp.asarray(x, dtype=xp.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"points must have shape (n, {self.dim}), got {x.shape}")
        diff = x[:, None, :] - xp.asarray(self.means)[None]
        prec = xp.asarray(self._precisions)
        quad = xp.einsum("nki,kij,nkj->nk", diff, prec, diff)
        return xp.asarray(self._log_norm)[None] - 0.5 * quad, diff, prec, xp

    def log_prob(self, x):
        """Exact :math:`\\ln p(x)` at points ``x`` of shape ``(n, d)``; returns shape ``(n,)``.

        Evaluated as a log-sum-exp over components, so far tails stay finite.
        """
        terms, _, _, xp = self._component_terms(x)
        return _logsumexp(terms, xp, axis=1)

    def grad_log_prob(self, x):
        r"""Exact score :math:`\nabla\ln p(x) = -\sum_k r_k(x)\,\Sigma_k^{-1}(x - \mu_k)`,
        :math:`r_k` the posterior component probabilities; shape ``(n, d)``."""
        terms, diff, prec, xp = self._component_terms(x)
        resp = xp.exp(terms - _logsumexp(terms, xp, axis=1)[:, None])
        return -xp.einsum("nk,kij,nkj->ni", resp, prec, diff)

    def entropy(self, *, n_std: float = 12.0, points_per_std: float = 3.0,
                max_points: int = 50_000_000) -> float:
        r"""Differential entropy :math:`H = -\int p \ln p\,dx` by quadrature (d = 1 or 2).

        The midpoint rule on a uniform tensor grid covering every component to ``n_std``
        marginal standard deviations (neglected mass :math:`< e^{-n_{std}^2/2}`), with
        spacing ``sqrt(smallest covariance eigenvalue) / points_per_std``. For smooth, rapidly
        decaying integrands this rule converges exponentially in the spacing (the error of a
        Gaussian is about :math:`e^{-2\pi^2 \lambda_{min}/h^2}`); with the defaults the
        measured error on single Gaussians and well-separated mixtures is ~1e-15 (already
        ~3e-13 with one point per standard deviation).

        Raises
        ------
        ValueError
            ``d > 2``, or the grid would exceed ``max_points`` (components of very different
            scales); use :meth:`entropy_mc` then.
        """
        if self.dim > 2:
            raise ValueError(f"quadrature entropy is for d <= 2 (d = {self.dim}); "
                             "use entropy_mc")
        live = self.weights > 0
        marg = np.sqrt(np.diagonal(self.covs, axis1=1, axis2=2))[live]
        lo = (self.means[live] - n_std * marg).min(axis=0)
        hi = (self.means[live] + n_std * marg).max(axis=0)
        h = math.sqrt(np.linalg.eigvalsh(self.covs[live]).min()) / points_per_std
        counts = np.ceil((hi - lo) / h).astype(int)
        if np.prod(counts.astype(float)) > max_points:
            raise ValueError(f"quadrature grid of {counts.tolist()} points exceeds max_points="
                             f"{max_points}; use entropy_mc")
        axes = [a + (np.arange(m) + 0.5) * ((b - a) / m) for a, b, m in zip(lo, hi, counts)]
        cell = float(np.prod((hi - lo) / counts))
        grid = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        total = 0.0
        for start in range(0, grid.shape[0], 1 << 16):  # bounded memory: (chunk, K, d) terms
            logp = self.log_prob(grid[start:start + (1 << 16)])
            total -= float(np.sum(np.exp(logp) * logp))
        return total * cell

    def entropy_mc(self, n: int, rng) -> tuple[float, float]:
        r"""Monte Carlo entropy :math:`-\frac1n\sum_i \ln p(x_i)`, :math:`x_i \sim p`.

        Returns
        -------
        estimate, standard_error : float
            The mean and its standard error :math:`\mathrm{sd}(\ln p)/\sqrt n`.
        """
        n = _count(n)
        if n < 2:
            raise ValueError("entropy_mc needs at least 2 samples")
        logp = self.log_prob(self.sample(n, rng))
        return float(-logp.mean()), float(logp.std(ddof=1) / math.sqrt(n))


def eight_gaussians_mixture(radius: float = 2.0 * SQRT2, std: float = 0.5 / SQRT2
                            ) -> GaussianMixture:
    """The :func:`eight_gaussians` distribution as a :class:`GaussianMixture`."""
    angles = np.arange(8) * (np.pi / 4)
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(means, stds=std)


def eight_gaussians(n: int, rng, *, radius: float = 2.0 * SQRT2,
                    std: float = 0.5 / SQRT2) -> np.ndarray:
    """Equal mixture of 8 isotropic Gaussians on a circle (see the module notes)."""
    return eight_gaussians_mixture(radius, std).sample(n, rng)


def moons(n: int, rng, *, noise: float = 0.2) -> np.ndarray:
    """Two interleaved noisy half circles (see the module notes)."""
    n, rng = _count(n), _generator(rng)
    theta = rng.uniform(0.0, np.pi, n)
    lower = rng.integers(0, 2, n).astype(bool)
    sign = np.where(lower, -1.0, 1.0)
    x = sign * 2.0 * np.cos(theta) - sign            # 2cos - 1  |  1 - 2cos
    y = sign * 2.0 * np.sin(theta) + np.where(lower, 0.8, -0.2)
    return np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))


def checkerboard(n: int, rng) -> np.ndarray:
    """Uniform on the dark squares of a checkerboard on [-4, 4]^2 (FFJORD's construction)."""
    n, rng = _count(n), _generator(rng)
    x1 = rng.uniform(-2.0, 2.0, n)
    # [0, 1) or [-2, -1), shifted up by one where floor(x1) is odd: alternating squares
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return 2.0 * np.stack([x1, x2], axis=1)


def swiss_roll(n: int, rng, *, noise: float = 1.0, scale: float = 0.2) -> np.ndarray:
    """Noisy 2D Swiss roll (see the module notes); ``noise`` is before scaling."""
    n, rng = _count(n), _generator(rng)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    return scale * (pts + noise * rng.standard_normal((n, 2)))


def rings(n: int, rng, *, radii=(3.0, 2.25, 1.5, 0.75), noise: float = 0.08) -> np.ndarray:
    """Concentric noisy circles, one chosen uniformly per sample (see the module notes)."""
    n, rng = _count(n), _generator(rng)
    radii = np.asarray(radii, dtype=np.float64)
    r = radii[rng.integers(0, radii.size, n)]
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    pts = r[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return pts + noise * rng.standard_normal((n, 2))


DATASETS = {
    "eight_gaussians": eight_gaussians,
    "moons": moons,
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
    "rings": rings,
}


def sample(name: str, n: int, rng, **params) -> np.ndarray:
    """``n`` samples of the data set ``name`` (a key of :data:`DATASETS`), shape ``(n, 2)``.

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the known ones).
    """
    try:
        generator = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
    return generator(n, rng, **params)


class LogitPixels:
    r"""Grey levels :math:`k \in \{0, \dots, L-1\}` to logit space and back (RealNVP's
    transform, used by the Monge-Ampère flow paper on MNIST).

    Uniform dequantization :math:`s = k + u`, :math:`u \sim U[0, 1)^d` (so :math:`s` has a
    density on :math:`[0, L)^d`), then

    .. math:: w = \alpha + (1 - 2\alpha)\,s / L, \qquad y = \ln\frac{w}{1 - w},

    which keeps :math:`w` in :math:`[\alpha, 1 - \alpha]` away from the logit's poles. A model
    density :math:`p_Y` in logit space is one in pixel space by the change of variables

    .. math:: \ln p_S(s) = \ln p_Y(y) + \sum_i \ln\frac{1 - 2\alpha}{L\,w_i(1 - w_i)},

    and :math:`-\mathbb E\,\ln p_S(k + u)` bounds the discrete negative log-likelihood of the
    grey levels from above (the dequantization bound of Theis et al. 2016); in bits per
    dimension, :math:`-\ln p_S / (d \ln 2)`, which is :math:`\log_2 L` for the uniform
    distribution.
    """

    def __init__(self, levels: int, alpha: float):
        if not levels >= 2:
            raise ValueError(f"levels must be >= 2, got {levels!r}")
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"alpha must lie in (0, 1/2), got {alpha!r}")
        self.levels, self.alpha = int(levels), float(alpha)

    def dequantize(self, pixels, rng) -> np.ndarray:
        """:math:`s = k + u`, ``u`` uniform on [0, 1) from ``rng``; float64, same shape."""
        pixels = np.asarray(pixels, dtype=np.float64)
        return pixels + _generator(rng).uniform(0.0, 1.0, pixels.shape)

    def _w(self, s):
        return self.alpha + (1.0 - 2.0 * self.alpha) * np.asarray(s, dtype=np.float64) / self.levels

    def to_logit(self, s) -> np.ndarray:
        r""":math:`y = \ln(w / (1 - w))` of dequantized pixels ``s``."""
        w = self._w(s)
        return np.log(w) - np.log1p(-w)

    def to_pixels(self, y) -> np.ndarray:
        r"""The inverse of :meth:`to_logit`: :math:`s = L(\sigma(y) - \alpha)/(1 - 2\alpha)`."""
        w = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(y, dtype=np.float64)))  # sigmoid, no overflow
        return self.levels * (w - self.alpha) / (1.0 - 2.0 * self.alpha)

    def log_jacobian(self, s) -> np.ndarray:
        r""":math:`\sum_i \ln |\partial y_i / \partial s_i|` per row of ``s`` (shape (n, d))."""
        w = self._w(s)
        scale = math.log((1.0 - 2.0 * self.alpha) / self.levels)
        return (scale - np.log(w) - np.log1p(-w)).sum(axis=1)


def fit_gaussian(samples, *, diagonal: bool) -> GaussianMixture:
    """The maximum-likelihood Gaussian of ``samples`` (N, d): their mean and their (biased,
    1/N) covariance, or only its diagonal; a one-component :class:`GaussianMixture`."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"samples must have shape (N, d) with N >= 2, got {samples.shape}")
    mean = samples.mean(axis=0)
    centred = samples - mean
    cov = centred.T @ centred / samples.shape[0]
    if diagonal:
        cov = np.diag(np.diag(cov))
    return GaussianMixture(mean[None], covs=cov[None])
