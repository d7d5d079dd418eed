r"""Entropy-Kantorovich potentials learned from samples (Finlay, Gerolin, Oberman & Pooladian 2020).

The grid solver of this kind needs both densities on a grid. Here the source :math:`\mu` is known
only by samples (any dimension) and the target :math:`\nu = N(m_1, B)` by its density (the
standard normal of a normalizing flow). Both potentials are parametric functions with exact
input gradients and Laplacians, trained by stochastic ascent of the entropic dual and semi-dual
(:mod:`.dual_training`).

Lebesgue form of the dual
-------------------------
With the convention of :mod:`~ot_pde.transport.entropic.solver` (cost :math:`|x-y|^2/2`, :math:`\varepsilon\,\mathrm{KL}(\pi|\mu\otimes\nu)`)
and the *plan potentials* :math:`\varphi = f + \varepsilon\log\mu`, :math:`\psi = g + \varepsilon\log\nu`,
so that the plan's Lebesgue density is :math:`\pi(x, y) = e^{(\varphi(x) + \psi(y) - |x-y|^2/2)/\varepsilon}`,

.. math::

    \mathrm{OT}_\varepsilon(\mu, \nu) = \max_{\varphi, \psi} J(\varphi, \psi)
        + \varepsilon + \varepsilon H(\mu) + \varepsilon H(\nu), \qquad
    J = \mathbb E_\mu \varphi + \mathbb E_\nu \psi - \varepsilon I, \quad
    I = \iint \pi(x, y)\,dx\,dy,

(:math:`H` the differential entropy). :math:`J` is concave in :math:`(\varphi, \psi)`; its two
expectations are sample means. The mass :math:`I` is estimated by importance sampling with
:math:`y \sim \nu` and :math:`x` from the Gaussian conditional :math:`q(x|y)` of the *quadratic part*
of :math:`\varphi` (exactly :math:`\pi(x|y)` when :math:`\varphi` is quadratic):
:math:`q(x|y) \propto e^{(\varphi_2(x) - |x - y|^2/2)/\varepsilon} = N(P^{-1}(b + y), \varepsilon P^{-1})`,
:math:`P = I - S` for :math:`\varphi_2 = \tfrac12 x^TSx + b^Tx + c`. Its weights
:math:`\pi(x, y) / (\nu(y) q(x|y))` are 1 at the optimum of a quadratic pair, so the estimator's
variance does not grow like :math:`e^{d/\varepsilon}` the way the product-measure estimator
:math:`\mathbb E_{\mu\otimes\nu} e^{(f+g-c)/\varepsilon}` of Genevay et al. (2016) does (its
relative variance at :math:`\mu = \nu = N(0, I_{16})`, :math:`\varepsilon = 0.1` is about
:math:`10^{16}`). The estimator of :math:`J` and of its gradient are unbiased (the proposal is
held fixed while differentiating). Nothing here reads files or prints.
"""
from __future__ import annotations

import math

import numpy as np

from ...backends import NUMBA, Backend
from ...flows.potentials import ACTIVATIONS, OneHiddenLayer
from .problem import entropic_gaussian

LOG_2PI = math.log(2.0 * math.pi)
#: a step is shrunk while the batch estimate of the plan mass (1 at the optimum) exceeds this
MASS_LIMIT = 1e3
SAFEGUARD_TRIES = 12


def _numba_net():
    from ._kernels_numba_net import net_value_grad_trace

    return net_value_grad_trace


class QuadraticNetwork:
    r""":math:`\varphi(x) = \tfrac12 x^T S x + b^T x + c + h(x)`, :math:`S = (M + M^T)/2`,
    :math:`h` a :class:`~ot_pde.flows.potentials.one_hidden_layer.OneHiddenLayer` (none when ``width = 0``).

    The quadratic part carries the Gaussian tails (the plan must be integrable:
    :math:`S \prec I`); the network, of linear growth, the rest. Its output weights start at 0,
    so the initial potential is the quadratic given.

    Parameters
    ----------
    dim, width : int
    activation : str
        One of the activations of :class:`OneHiddenLayer`.
    seed : int
        Initialization of the network's hidden weights.
    backend : Backend, optional
        ``numba`` fuses the network's value, gradient and Laplacian in one kernel; numpy
        otherwise (the default).
    """

    def __init__(self, dim: int, width: int = 0, activation: str = "softplus", seed: int = 0,
                 backend: Backend | None = None):
        self.dim = d = int(dim)
        self._kernel = None
        if width > 0 and backend is not None:
            self._kernel = backend.bind({NUMBA: _numba_net}, default=lambda: None)
        self.net = None
        n_net = 0
        if width > 0:
            self.net = OneHiddenLayer(d, width, activation=activation, bias=True, rng=seed)
            self.net.param_blocks()["w2"][...] = 0.0
            theta = np.array(self.net.params)
            n_net = theta.size
        self.n_quad = d * d + d + 1
        self.n_params = self.n_quad + n_net
        self.params = np.zeros(self.n_params)
        if self.net is not None:
            self.params[self.n_quad:] = theta

    # -- parameters ---------------------------------------------------------------------------
    def set_params(self, theta) -> None:
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        if theta.shape[0] != self.n_params:
            raise ValueError(f"expected {self.n_params} parameters, got {theta.shape[0]}")
        self.params[...] = theta
        if self.net is not None:
            self.net.set_params(theta[self.n_quad:])

    def set_quadratic(self, s, b, c) -> None:
        d = self.dim
        self.params[:d * d] = np.asarray(s, dtype=np.float64).reshape(-1)
        self.params[d * d:d * d + d] = b
        self.params[d * d + d] = c

    def quadratic(self):
        """(S, b, c) of the quadratic part."""
        d = self.dim
        m = self.params[:d * d].reshape(d, d)
        return 0.5 * (m + m.T), self.params[d * d:d * d + d].copy(), float(self.params[d * d + d])

    # -- values ---------------------------------------------------------------------------------
    def value(self, x):
        s, b, c = self.quadratic()
        out = 0.5 * np.einsum("bi,ij,bj->b", x, s, x) + x @ b + c
        if self.net is not None:
            out = out + self.net.value(x, 0.0)
        return out

    def value_grad_laplacian(self, x):
        s, b, c = self.quadratic()
        xs = x @ s
        val = 0.5 * np.einsum("bi,bi->b", xs, x) + x @ b + c
        grad = xs + b
        lap = np.full(len(x), float(np.trace(s)))
        if self.net is not None:
            v, g, lp = self.net.value_grad_and_laplacian(x, 0.0)
            val, grad, lap = val + v, grad + g, lap + lp
        return val, grad, lap

    def net_hvp(self, x, v):
        """Hessian of the network part times ``v`` (rows), or zeros."""
        if self.net is None:
            return np.zeros_like(v)
        return self.net.hvp(x, 0.0, v)

    def net_value_grad_trace(self, x, a):
        r"""Network part: value, gradient and :math:`\mathrm{tr}(A\nabla^2 h A)` for a
        symmetric matrix ``a``, from :math:`\nabla^2 h = W^T\mathrm{diag}(w\odot\sigma'')W`:
        :math:`\sum_j w_j\sigma''(z_j)|AW_j|^2` (one pass, no Hessian-vector products)."""
        n = len(x)
        if self.net is None:
            return np.zeros(n), np.zeros_like(x), np.zeros(n)
        p = self.net.param_blocks()
        w1, w2 = p["W1"], p["w2"]
        code, sigma, derivs = ACTIVATIONS[self.net.activation]
        aw = w1 @ a
        if self._kernel is not None:
            return self._kernel(np.ascontiguousarray(x), np.ascontiguousarray(w1),
                                np.ascontiguousarray(p["b"]), np.ascontiguousarray(w2),
                                (aw * aw).sum(1), code)
        z = x @ w1.T + p["b"]
        d1, d2, _ = derivs(np, z, False)
        return sigma(np, z) @ w2, (d1 * w2) @ w1, d2 @ (w2 * (aw * aw).sum(1))

    def net_value_grad(self, x):
        if self.net is None:
            return np.zeros(len(x)), np.zeros_like(x)
        v, g, _ = self.net.value_grad_and_laplacian(x, 0.0)
        return v, g

    def linear_index(self):
        r"""Indices of the quadratic part's parameters, in which :math:`\varphi` is linear and
        which take Newton steps. (The network's output weights enter linearly too, but the
        semi-dual's curvature in them, the conditional variance of smooth hidden units over
        :math:`\pi(x|y)`, is :math:`O(\varepsilon)` small against the noise of their
        gradient: Newton steps there blew up on the 2D data sets; they take Adam steps.)"""
        return np.arange(self.n_quad)

    def linear_features(self, x):
        r"""Per-row derivatives of :math:`\varphi(x_i)` in the parameters of
        :meth:`linear_index`, shape ``(B, d*d + d + 1)``: :math:`\tfrac12 x x^T`, :math:`x`, 1."""
        n = len(x)
        return np.concatenate([0.5 * (x[:, :, None] * x[:, None, :]).reshape(n, -1), x,
                               np.ones((n, 1))], axis=1)

    def param_grad(self, x, w):
        r""":math:`\partial_\theta \sum_i w_i\varphi(x_i)`, shape ``(n_params,)``."""
        d = self.dim
        out = np.empty(self.n_params)
        out[:d * d] = 0.5 * ((x * w[:, None]).T @ x).reshape(-1)
        out[d * d:d * d + d] = w @ x
        out[d * d + d] = w.sum()
        if self.net is not None:
            out[self.n_quad:] = self.net.param_vjp_value(x, 0.0, w)
        return out


def gaussian_quadratic(mean, cov, epsilon: float):
    r"""(S, b, c) of :math:`\varepsilon\log N(x; m, \Sigma)`."""
    mean = np.asarray(mean, float)
    prec = np.linalg.inv(cov)
    d = len(mean)
    logdet = np.linalg.slogdet(cov)[1]
    return (-epsilon * prec, epsilon * prec @ mean,
            epsilon * (-0.5 * mean @ prec @ mean - 0.5 * (d * LOG_2PI + logdet)))


def gaussian_entropy(cov) -> float:
    d = len(cov)
    return 0.5 * (d * (1.0 + LOG_2PI) + np.linalg.slogdet(cov)[1])


class GaussianTarget:
    """The target N(m1, B): sampler, log-density and score."""

    def __init__(self, mean, cov):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.cov = np.asarray(cov, dtype=np.float64)
        self.dim = len(self.mean)
        self.chol = np.linalg.cholesky(self.cov)
        self.prec = np.linalg.inv(self.cov)
        self._lognorm = -0.5 * (self.dim * LOG_2PI + np.linalg.slogdet(self.cov)[1])

    def sample(self, n, rng):
        return self.mean + rng.standard_normal((n, self.dim)) @ self.chol.T

    def log_prob(self, y):
        r = y - self.mean
        return self._lognorm - 0.5 * np.einsum("bi,ij,bj->b", r, self.prec, r)

    def score(self, y):
        return -(y - self.mean) @ self.prec

    def entropy(self) -> float:
        return gaussian_entropy(self.cov)


def conditional_proposal(phi: QuadraticNetwork, floor: float = 1e-3):
    r"""(P^{-1}, P^{-1/2}, ½ log det P, b) of the Gaussian :math:`q(x|y) \propto
    e^{(\varphi_2(x) - |x-y|^2/2)/\varepsilon}`; eigenvalues of :math:`P = I - S` below ``floor``
    are raised to it (the plan is not integrable there; the weights then punish it)."""
    s, b, _ = phi.quadratic()
    w, vecs = np.linalg.eigh(np.eye(phi.dim) - s)
    w = np.maximum(w, floor)
    return (vecs / w) @ vecs.T, (vecs / np.sqrt(w)) @ vecs.T, 0.5 * float(np.log(w).sum()), b


class DualObjective:
    r"""Unbiased estimates of :math:`J(\varphi, \psi)` and of its parameter gradient.

    Parameters
    ----------
    phi, psi : QuadraticNetwork
        Source and target plan potentials.
    target : GaussianTarget
    epsilon : float
    draws : int
        Proposal draws :math:`x \sim q(\cdot|y)` per target sample.
    """

    def __init__(self, phi, psi, target: GaussianTarget, epsilon: float, draws: int = 4):
        self.phi, self.psi, self.target = phi, psi, target
        self.epsilon = float(epsilon)
        self.draws = int(draws)

    @property
    def n_params(self) -> int:
        return self.phi.n_params + self.psi.n_params

    def params(self):
        return np.concatenate([self.phi.params, self.psi.params])

    def set_params(self, theta) -> None:
        self.phi.set_params(theta[:self.phi.n_params])
        self.psi.set_params(theta[self.phi.n_params:])

    def log_weights(self, y, xi, proposal=None):
        r"""Proposal points ``x`` ``(n, K, d)`` and log-weights :math:`\log\pi(x,y) - \log\nu(y)
        - \log q(x|y)` ``(n, K)`` for target samples ``y`` and standard normal draws ``xi``;
        ``proposal`` (a :func:`conditional_proposal`) freezes :math:`q` (default: the current
        one)."""
        eps, d = self.epsilon, self.phi.dim
        p_inv, p_isqrt, half_logdet, b = proposal or conditional_proposal(self.phi)
        mean = (b + y) @ p_inv
        x = mean[:, None, :] + math.sqrt(eps) * xi @ p_isqrt
        n, k = xi.shape[:2]
        flat = x.reshape(n * k, d)
        phix = self.phi.value(flat).reshape(n, k)
        psiy = self.psi.value(y)
        sq = 0.5 * ((x - y[:, None, :]) ** 2).sum(-1)
        log_q = -0.5 * d * (LOG_2PI + math.log(eps)) + half_logdet - 0.5 * (xi ** 2).sum(-1)
        logw = (phix + psiy[:, None] - sq) / eps - self.target.log_prob(y)[:, None] - log_q
        return x, logw, psiy

    def linear_index(self):
        """Indices in :meth:`params` of the parameters both potentials are linear in."""
        return np.concatenate([self.phi.linear_index(),
                               self.phi.n_params + self.psi.linear_index()])

    def value_and_grad(self, xs, y, xi, want_grad: bool = True, want_curvature: bool = False,
                       proposal=None, total: int | None = None):
        r"""``{"value", "grad", "mass", "curvature"}``: :math:`J` on data ``xs``, target
        samples ``y`` (also the proposal's conditioning points) and draws ``xi``
        ``(len(y), K, d)``; its gradient; the estimated plan mass :math:`I`; and (with
        ``want_curvature``) :math:`F = \varepsilon^{-1}\iint \partial\ell\,\partial\ell^T\,d\pi`,
        :math:`\ell = \varphi(x) + \psi(y)`, in the linear parameters (:meth:`linear_index`):
        minus the Hessian of
        :math:`J` there (exact, since :math:`J` is linear-exponential in them).

        ``total``: the rows are one shard of a batch of ``total`` data and ``total`` target
        samples; every term is then this shard's share, normalized by ``total``, so the
        shards' results add up to the batch's (default: the rows are the batch, and the data
        and the target samples may differ in number)."""
        eps = self.epsilon
        x, logw, psiy = self.log_weights(y, xi, proposal)
        n, k = logw.shape
        total_xs = len(xs) if total is None else int(total)
        total = n if total is None else int(total)
        with np.errstate(over="ignore"):
            w = np.exp(logw)
        mass = float(w.sum() / (total * k))
        phi_x = self.phi.value(xs)
        value = float(phi_x.sum() / total_xs + psiy.sum() / total) - eps * mass
        out = {"value": value, "grad": None, "mass": mass, "curvature": None,
               "terms": (phi_x, psiy - eps * w.mean(axis=1))}
        if not want_grad or not math.isfinite(value):
            return out
        wn = w / (total * k)
        flat = x.reshape(n * k, -1)
        g_phi = self.phi.param_grad(xs, np.full(len(xs), 1.0 / total_xs)) \
            - self.phi.param_grad(flat, wn.reshape(-1))
        g_psi = self.psi.param_grad(y, np.full(n, 1.0 / total) - wn.sum(axis=1))
        out["grad"] = np.concatenate([g_phi, g_psi])
        if want_curvature == "psi":
            fy = self.psi.linear_features(y)
            out["curvature"] = (fy * wn.sum(axis=1)[:, None]).T @ fy / eps
        elif want_curvature:
            fy = self.psi.linear_features(y)
            rows = np.concatenate([self.phi.linear_features(flat),
                                   np.repeat(fy, k, axis=0)], axis=1)
            out["curvature"] = (rows * wn.reshape(-1, 1)).T @ rows / eps
        return out

    def transform_share(self, y, xi):
        r"""The network's share of the transform of :math:`\varphi` at ``y``:
        :math:`r(y) = -\varepsilon\log\mathbb E_{x\sim q(\cdot|y)}e^{h_\varphi(x)/\varepsilon}`
        (Monte Carlo over the draws ``xi``; the quadratic share is :func:`quadratic_transform`)."""
        eps, d = self.epsilon, self.phi.dim
        p_inv, p_isqrt, _, b = conditional_proposal(self.phi)
        x = ((b + y) @ p_inv)[:, None, :] + math.sqrt(eps) * xi @ p_isqrt
        n, k = xi.shape[:2]
        hv = self.phi.net_value_grad(x.reshape(n * k, d))[0].reshape(n, k) / eps
        top = hv.max(axis=1, keepdims=True)
        return -eps * (np.log(np.exp(hv - top).mean(axis=1)) + top[:, 0])

    def transform_regression(self, y, target, total: int | None = None):
        r"""Gradient in :math:`\psi`'s parameters, and the mean, of the squared misfit
        :math:`|h_\psi(y) - r(y)|^2` of :math:`\psi`'s network to ``target`` =
        :meth:`transform_share`. A regression, well conditioned, instead of :math:`J`'s
        exponential in :math:`\psi`: ascending :math:`J` in the network of :math:`\psi`
        diverged on the 2D data sets. ``total`` as in :meth:`value_and_grad`."""
        total = len(y) if total is None else int(total)
        resid = self.psi.net_value_grad(y)[0] - target
        grad = np.zeros(self.psi.n_params)
        grad[self.psi.n_quad:] = self.psi.net.param_vjp_value(y, 0.0, 2.0 * resid / total)
        return grad, float(resid.sum() / total)

    def semi_dual(self, xs, y, xi, want_curvature: bool = False, total: int | None = None):
        r"""The semi-dual in :math:`\varphi`: :math:`\psi` replaced by the transform
        :math:`\psi_\varphi(y) = \varepsilon\log\nu(y) - \varepsilon\log Z_\varphi(y)`,
        :math:`Z_\varphi(y) = \int e^{(\varphi(x) - |x-y|^2/2)/\varepsilon}dx`, which makes the
        plan's second marginal exactly :math:`\nu`:
        :math:`J_s(\varphi) = \mathbb E_\mu\varphi - \varepsilon\,\mathbb E_\nu\log Z_\varphi
        + \varepsilon\,\mathbb E_\nu\log\nu - \varepsilon`. ``{"value", "grad",
        "curvature"}`` with :math:`\log Z_\varphi(y)` by importance sampling from
        :math:`q(\cdot|y)` (exact for a quadratic :math:`\varphi`, biased by :math:`O(1/K)`
        through the network otherwise); gradient :math:`\mathbb E_\mu\partial\varphi -
        \mathbb E_\nu\mathbb E_{\pi(x|y)}\partial\varphi` (self-normalized weights); curvature
        :math:`\varepsilon^{-1}\mathbb E_\nu\mathrm{Cov}_{\pi(x|y)}` of the linear features.
        Unlike :math:`J`'s, this curvature does not couple :math:`\varphi` to :math:`\psi`: its
        conditioning does not degrade as :math:`\varepsilon \to 0`. ``total`` as in
        :meth:`value_and_grad`."""
        eps, d = self.epsilon, self.phi.dim
        p_inv, p_isqrt, half_logdet, b = conditional_proposal(self.phi)
        x = ((b + y) @ p_inv)[:, None, :] + math.sqrt(eps) * xi @ p_isqrt
        n, k = xi.shape[:2]
        total_xs = len(xs) if total is None else int(total)
        total = n if total is None else int(total)
        flat = x.reshape(n * k, d)
        log_q = -0.5 * d * (LOG_2PI + math.log(eps)) + half_logdet - 0.5 * (xi ** 2).sum(-1)
        logr = (self.phi.value(flat).reshape(n, k)
                - 0.5 * ((x - y[:, None, :]) ** 2).sum(-1)) / eps - log_q
        top = logr.max(axis=1, keepdims=True)
        r = np.exp(logr - top)
        tot = r.sum(axis=1, keepdims=True)
        log_z = (np.log(tot / k) + top)[:, 0]
        sw = r / tot
        phi_x = self.phi.value(xs)
        value = float(phi_x.sum() / total_xs
                      + eps * ((self.target.log_prob(y) - log_z).sum() / total)) \
            - eps * (n / total)
        grad = self.phi.param_grad(xs, np.full(len(xs), 1.0 / total_xs)) \
            - self.phi.param_grad(flat, (sw / total).reshape(-1))
        out = {"value": value, "grad": grad, "curvature": None}
        if want_curvature:
            f = self.phi.linear_features(flat).reshape(n, k, -1)
            fbar = (sw[..., None] * f).sum(1)
            second = (f * (sw / total)[..., None]).reshape(n * k, -1).T @ f.reshape(n * k, -1)
            out["curvature"] = (second - fbar.T @ fbar / total) / eps
        return out


def initialize_pair(phi: QuadraticNetwork, psi: QuadraticNetwork, data_mean, data_cov,
                    target: GaussianTarget, epsilon: float) -> None:
    r"""Start from the Gibbs-weighted product of the data's Gaussian fit :math:`N(\hat m,
    \hat\Sigma)` and the target: :math:`\varphi = \varepsilon\log N(\hat m, \hat\Sigma) + a`,
    :math:`\psi = \varepsilon\log\nu + a`, with :math:`a` such that the plan has unit mass,
    :math:`e^{2a/\varepsilon}(2\pi\varepsilon)^{d/2}N(\hat m - m_1; 0, \hat\Sigma + B + \varepsilon I) = 1`.
    (Not the entropic solution: its correlation between x and y is only the kernel's.)"""
    d = phi.dim
    s0, b0, c0 = gaussian_quadratic(data_mean, data_cov, epsilon)
    s1, b1, c1 = gaussian_quadratic(target.mean, target.cov, epsilon)
    cov = data_cov + target.cov + epsilon * np.eye(d)
    r = np.asarray(data_mean) - target.mean
    log_n = -0.5 * (d * LOG_2PI + np.linalg.slogdet(cov)[1]) - 0.5 * r @ np.linalg.solve(cov, r)
    a = -0.5 * epsilon * (0.5 * d * (LOG_2PI + math.log(epsilon)) + log_n)
    phi.set_quadratic(s0, b0, c0 + a)
    psi.set_quadratic(s1, b1, c1 + a)


def exact_gaussian_pair(m0, a, m1, b, epsilon: float):
    r"""Quadratics (S, b, c) of the exact plan potentials between :math:`N(m_0, A)` and
    :math:`N(m_1, B)`, read off the closed-form plan (:func:`~.problem.entropic_gaussian`):
    with :math:`\Lambda` the joint precision,
    :math:`\varepsilon\log\pi = \varphi(x) + \psi(y) - |x - y|^2/2` needs
    :math:`\Lambda_{xy} = -I/\varepsilon` (returned as a check) and gives
    :math:`\varphi = |x|^2/2 - \tfrac\varepsilon2(x-m_0)^T\Lambda_{xx}(x-m_0)
    + \varepsilon x^T\Lambda_{xy}m_1 + \kappa/2`, likewise :math:`\psi`."""
    m0, m1 = np.asarray(m0, float), np.asarray(m1, float)
    d = len(m0)
    _, cross = entropic_gaussian(m0, a, m1, b, epsilon)
    joint = np.block([[a, cross], [cross.T, b]])
    lam = np.linalg.inv(joint)
    lxx, lxy, lyy = lam[:d, :d], lam[:d, d:], lam[d:, d:]
    kappa = -epsilon * m0 @ lxy @ m1 \
        - 0.5 * epsilon * (2 * d * LOG_2PI + np.linalg.slogdet(joint)[1]) \
        - 0.5 * epsilon * (m0 @ lxx @ m0 + m1 @ lyy @ m1)
    eye = np.eye(d)
    phi = (eye - epsilon * lxx, epsilon * (lxx @ m0 + lxy @ m1), 0.5 * kappa)
    psi = (eye - epsilon * lyy, epsilon * (lyy @ m1 + lxy.T @ m0), 0.5 * kappa)
    return phi, psi, lxy


def quadratic_transform(phi: QuadraticNetwork, target: GaussianTarget, epsilon: float):
    r"""(S, b, c) of the transform of :math:`\varphi`'s quadratic part,
    :math:`\psi(y) = \varepsilon\log\nu(y) - \varepsilon\log\int e^{(\varphi_2(x) - |x-y|^2/2)/\varepsilon}dx`
    (the :math:`\psi` that gives the plan the second marginal :math:`\nu` exactly when
    :math:`\varphi = \varphi_2`): with :math:`P = I - S`,
    :math:`\psi = \varepsilon\log\nu + |y|^2/2 - (b+y)^TP^{-1}(b+y)/2 - c
    - \tfrac{\varepsilon d}2\log 2\pi\varepsilon + \tfrac\varepsilon2\log\det P`."""
    d = phi.dim
    p_inv, _, half_logdet, b = conditional_proposal(phi)
    _, _, c = phi.quadratic()
    s_nu, b_nu, c_nu = gaussian_quadratic(target.mean, target.cov, epsilon)
    s_psi = np.eye(d) - p_inv + s_nu
    b_psi = -p_inv @ b + b_nu
    c_psi = (c_nu - c - 0.5 * b @ p_inv @ b - 0.5 * epsilon * d * (LOG_2PI + math.log(epsilon))
             + epsilon * half_logdet)
    return s_psi, b_psi, c_psi
