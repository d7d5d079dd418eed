r"""A checkerboard mean-field base distribution for the Ising flows.

Why
---
The relaxed density is a mixture of :math:`2^N` Gaussians :math:`\mathcal N(\mathbf K's,
\mathbf K')`, one per spin state, whose per-site modes lie about 2.7 standard deviations
apart. A Monge-Ampère flow started from :math:`\mathcal N(0, I)` must create all of that
multimodality itself; at :math:`L = 16` the shipped one reaches 22 % (the best Gaussian 15 %).
This base starts the flow from a distribution that already has the spin structure, so the flow
only refines it.

The distribution
----------------
Sites of the periodic :math:`L\times L` lattice (even :math:`L`) split into two sublattices by
the parity of :math:`r + c`; every bond joins the two. Write
:math:`f_w^{\mu,\sigma}(z) = w\,\mathcal N(z;\mu,\sigma^2) + (1-w)\,\mathcal N(z;-\mu,\sigma^2)`.
The parameters are :math:`\mu, \sigma, \mu_c, \sigma_c > 0`, magnetizations
:math:`m_1..m_K \in (-1, 1)` with weights :math:`\pi_j`, :math:`\kappa, \gamma, \delta` and a
translation- and point-group-invariant positive spectrum :math:`a_k`:

1. pick the "free" sublattice :math:`F` (even or odd, probability 1/2), a branch
   :math:`b = \pm1` (probability 1/2) and a component :math:`j` (probability :math:`\pi_j`);
2. on :math:`F`, independently, :math:`z_i \sim f^{\mu,\sigma}_{(1+bm_j)/2}`: mean field with
   magnetization :math:`bm_j` (more than one component lets the magnetization fluctuate);
3. on the other sublattice, whose neighbours are all in :math:`F`, independently,
   :math:`z_i - \delta h_i \sim f^{\mu_c,\sigma_c}_{w_i}` with
   :math:`w_i = \mathrm{sigmoid}(2\kappa h_i)` and :math:`h_i = \sum_{j\sim i}\tanh(\gamma
   z_j)`: the spin-space conditional :math:`P(s_i \mid s_{\partial i}) \propto e^{\beta s_i
   \sum_j s_j}` with the neighbours' spins read off softly from :math:`z`, and the shift of
   :math:`x_i`'s mean by its neighbours (:math:`\mathbf K's`) that the relaxation has;
4. ``couplings`` additive coupling layers: layer :math:`k` shifts one sublattice (the free
   one for odd :math:`k`) by :math:`c_k\sum_{j\sim i}\tanh(g_k z_j)`, a function of its
   neighbours, which are all on the other sublattice: unit Jacobian, inverted by subtracting
   the same shift (NICE, Dinh et al. 2014, on the checkerboard);
5. :math:`x = \mathbf A z`, :math:`\mathbf A = \mathcal F^{-1}\,\mathrm{diag}(a)\,\mathcal F`
   (symmetric positive definite, the time-1 map of the quadratic potential
   :math:`\tfrac12 x^\top\ln\mathbf A\,x`).

Its density is exact and cheap: :math:`\ln q(x) = \ln q(z) - \sum_k\ln a_k`, with
:math:`q(z)` the average over :math:`F` of the mixture over :math:`(b, j)` of step 2 times
the product of step 3, both at the :math:`z` with the couplings of that :math:`F` undone;
:math:`q(-x) = q(x)`. It is invariant under the spin flip, the lattice
translations (a translation by one site swaps the sublattices, hence the average over
:math:`F`) and reflections. In spin space the same ansatz (mean field on half the lattice, the
exact conditional on the other half) has a variational error of 0.92 % at :math:`L = 16`,
:math:`\beta_c`, against 1.95 % for mean field, before the averages over :math:`F` and
:math:`b`, which are worth up to :math:`\ln 4/N` more.

Sampling is by the inverse distribution function of each site's two-Gaussian mixture (a
safeguarded Newton iteration), so samples are smooth functions of the parameters and the fit
below can differentiate through them.

Fitting
-------
:meth:`CheckerboardMixtureBase.fit` maximizes the variational bound
:math:`\mathbb E_q[\ln\tilde\pi(x) - \ln q(x)]` on a fixed sample of the base's random numbers
(sample-average approximation) by L-BFGS. The expectation over the component :math:`j` is
taken exactly (:math:`\sum_j\pi_j\,\mathbb E_j`, each on the same random numbers), so the
objective is smooth in every parameter; its gradient is analytic in :math:`\ln a_k` and by
central differences in the others. The bound a run reports is computed afterwards on fresh
samples, so the fit's own sample does not bias it.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, special

from ...flows.integrators import standard_normal_log_prob
from ._kernels_numba import mixture_inverse_cdf_kernel

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
#: names of the scalar parameters that lead :attr:`CheckerboardMixtureBase.params`; then come
#: the coupling layers' scales and gains, :math:`\operatorname{artanh} m_j` and the weight
#: logits of the components (the first logit is fixed at 0), then :math:`\ln a` per spectrum
#: class
SCALARS = ("mu", "log_sigma", "mu_cond", "log_sigma_cond", "kappa", "gamma", "delta")
#: initial magnetizations of the free sublattice's components, by number of components
_INITIAL_M = {1: (0.85,), 2: (0.85, 0.5), 3: (0.85, 0.6, 0.3), 4: (0.9, 0.75, 0.5, 0.25)}
_NS = len(SCALARS)


def spectrum_classes(L: int) -> np.ndarray:
    """(L, L) index of each wave vector's class under k -> -k and the point group of the
    square (swapping and negating components), so that a spectrum constant on classes is the
    eigenvalue list of a real symmetric, translation- and reflection-invariant operator."""
    folded = np.minimum(np.arange(L), L - np.arange(L))
    kx, ky = np.meshgrid(folded, folded, indexing="ij")
    key = np.minimum(kx, ky) * (L + 1) + np.maximum(kx, ky)
    return np.unique(key, return_inverse=True)[1].reshape(L, L)


def _mixture_inverse_cdf(u, w, mu, sigma):
    r"""Solve :math:`w\Phi((z-\mu)/\sigma) + (1-w)\Phi((z+\mu)/\sigma) = u` elementwise
    (``u`` and ``w`` of one shape), by safeguarded Newton steps to round-off."""
    u = np.ascontiguousarray(u, dtype=np.float64)
    w = np.ascontiguousarray(np.broadcast_to(w, u.shape), dtype=np.float64)
    out = np.empty(u.size)
    mixture_inverse_cdf_kernel(u.ravel(), w.ravel(), float(mu), float(sigma),
                                special.ndtri(u.ravel()), out)
    return out.reshape(u.shape)


class CheckerboardMixtureBase:
    r"""The base distribution of the module notes on the periodic ``L x L`` lattice.

    Parameters
    ----------
    L : int
        Even lattice side.
    beta, J : float
        Set the initial :math:`\kappa = \beta J` (the exact spin conditional) before fitting.
    components : int
        Magnetizations :math:`m_j` the free sublattice mixes (1 to 4).
    couplings : int
        Additive coupling layers (step 4 of the module notes).

    Attributes
    ----------
    params : ndarray
        :data:`SCALARS`, the layers' :math:`c_k` then :math:`g_k` (``couplings`` each),
        :math:`\operatorname{artanh} m_j` (``components``), the weight logits of components
        2.. (component 1's is 0), then :math:`\ln a` per spectrum class
        (:func:`spectrum_classes`).
    """

    def __init__(self, L: int, beta: float, J: float = 1.0, components: int = 1,
                 couplings: int = 2):
        if L < 2 or L % 2:
            raise ValueError(f"the checkerboard base needs an even lattice side, got L = {L}")
        if components not in _INITIAL_M:
            raise ValueError(f"components must be 1 to 4, got {components!r}")
        if couplings < 0:
            raise ValueError(f"couplings must be >= 0, got {couplings!r}")
        self.L, self.N, self.components = int(L), int(L) * int(L), int(components)
        self.couplings = int(couplings)
        self.classes = spectrum_classes(self.L)
        self.class_sizes = np.bincount(self.classes.ravel())
        rows, cols = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        self._odd = ((rows + cols) % 2).astype(bool)
        # modes near +-1.5 of unit width, the exact spin conditional, no mixing by A
        self.params = np.concatenate([[1.5, 0.0, 1.5, 0.0, beta * J, 1.0, 0.0],
                                      np.zeros(self.couplings), np.ones(self.couplings),
                                      np.arctanh(_INITIAL_M[self.components]),
                                      np.zeros(self.components - 1),
                                      np.zeros(self.class_sizes.size)])
        self._spectrum = _NS + 2 * self.couplings + 2 * self.components - 1

    # -- parameters -------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.params.size

    def _unpack(self, params):
        mu, log_sigma, mu_c, log_sigma_c, kappa, gamma, delta = params[:_NS]
        C, K = self.couplings, self.components
        shifts = np.stack([params[_NS:_NS + C], params[_NS + C:_NS + 2 * C]], axis=1)
        atanh_m = params[_NS + 2 * C:_NS + 2 * C + K]
        log_weights = self.log_weights(params)
        return (mu, np.exp(log_sigma), mu_c, np.exp(log_sigma_c), kappa, gamma, delta, shifts,
                atanh_m, log_weights, params[self._spectrum:][self.classes])

    def log_weights(self, params=None) -> np.ndarray:
        """ln pi_j, the log-weights of the free sublattice's components."""
        params = self.params if params is None else params
        logits = np.concatenate([[0.0], params[self._spectrum - self.components + 1:
                                               self._spectrum]])
        return logits - special.logsumexp(logits)

    # -- the distribution -------------------------------------------------------------------
    @staticmethod
    def _field(z, kappa, gamma, delta):
        """The conditional sites' logit kappa h and shift delta h, with h_i the sum of
        tanh(gamma z_j) over the four neighbours; z is (B, L, L)."""
        t = np.tanh(gamma * z)
        h = np.roll(t, 1, 1) + np.roll(t, -1, 1) + np.roll(t, 1, 2) + np.roll(t, -1, 2)
        return kappa * h, delta * h

    @staticmethod
    def _log_normals(z, mu, sigma):
        """ln N(z; mu, sigma^2) and ln N(z; -mu, sigma^2)."""
        c = -_LOG_SQRT_2PI - np.log(sigma)
        return -0.5 * ((z - mu) / sigma) ** 2 + c, -0.5 * ((z + mu) / sigma) ** 2 + c

    def log_prob_z(self, z, params=None) -> np.ndarray:
        """ln q(z) of the lattice variables before the linear map; z is (B, L, L)."""
        (mu, sigma, mu_c, sigma_c, kappa, gamma, delta, shifts, atanh_m, log_weights,
         _) = self._unpack(self.params if params is None else params)
        per_parity = []
        for free in (~self._odd, self._odd):
            pre = self._couple(z, free, shifts, inverse=True)
            lgp, lgm = self._log_normals(pre, mu, sigma)
            u, shift = self._field(pre, kappa, gamma, delta)
            cgp, cgm = self._log_normals(pre - shift, mu_c, sigma_c)
            # ln sigmoid(2u) + cgp, ln sigmoid(-2u) + cgm: the conditional sites' mixtures
            conditional = np.logaddexp(-np.logaddexp(0.0, -2.0 * u) + cgp,
                                       -np.logaddexp(0.0, 2.0 * u) + cgm)
            terms = []
            for t, lw in zip(atanh_m, log_weights):
                # (1 + b m)/2 = sigmoid(2 b artanh m), for the branches b = +1, -1
                up, down = -np.logaddexp(0.0, -2.0 * t), -np.logaddexp(0.0, 2.0 * t)
                for site in (np.logaddexp(up + lgp, down + lgm),
                             np.logaddexp(down + lgp, up + lgm)):
                    terms.append(lw + (site * free).sum(axis=(1, 2)))
            per_parity.append(special.logsumexp(terms, axis=0) - np.log(2.0)
                              + (conditional * ~free).sum(axis=(1, 2)))
        return np.logaddexp(per_parity[0], per_parity[1]) - np.log(2.0)

    def _couple(self, z, free, shifts, inverse=False):
        """The additive coupling layers: layer k shifts the free sites (k odd) or the others
        (k even) by c_k times the sum over their four neighbours, all on the other sublattice,
        of tanh(g_k z_j). Each has unit Jacobian and is undone by subtracting the same shift."""
        order = range(len(shifts) - 1, -1, -1) if inverse else range(len(shifts))
        for k in order:
            c, g = shifts[k]
            moved = free if k % 2 == 0 else ~free
            shift = np.where(moved, self._field(z, 0.0, g, c)[1], 0.0)
            z = z - shift if inverse else z + shift
        return z

    def _linear(self, z, log_a):
        return np.real(np.fft.ifft2(np.fft.fft2(z) * np.exp(log_a)))

    def transform(self, noise, params=None, component=None):
        """Samples from the base's random numbers.

        Parameters
        ----------
        noise : ndarray, shape (B, N + 3)
            Uniforms in (0, 1): N for the sites, then one each for the free sublattice, the
            branch and the component.
        component : int, optional
            Draw every sample from this component of the free sublattice (the fit's
            stratification) instead of choosing by the last column.

        Returns
        -------
        x : (B, N), ln q(x) : (B,), z : (B, L, L)
        """
        params = self.params if params is None else params
        (mu, sigma, mu_c, sigma_c, kappa, gamma, delta, shifts, atanh_m, log_weights,
         log_a) = self._unpack(params)
        B, L = noise.shape[0], self.L
        u = noise[:, :self.N].reshape(B, L, L)
        free = np.where((noise[:, self.N] < 0.5)[:, None, None], ~self._odd, self._odd)
        branch = np.where(noise[:, self.N + 1] < 0.5, 1.0, -1.0)
        if component is None:
            cumulative = np.cumsum(np.exp(log_weights))[:-1]
            component = np.searchsorted(cumulative, noise[:, self.N + 2], side="right")
        m = np.broadcast_to(np.tanh(atanh_m)[component], (B,))
        w_free = np.broadcast_to((0.5 * (1.0 + branch * m))[:, None, None], u.shape)
        z = np.zeros_like(u)  # each sublattice's inverses only where it is drawn
        z[free] = _mixture_inverse_cdf(u[free], w_free[free], mu, sigma)
        field, shift = self._field(z, kappa, gamma, delta)
        cond = ~free
        z[cond] = shift[cond] + _mixture_inverse_cdf(u[cond], special.expit(2.0 * field[cond]),
                                                     mu_c, sigma_c)
        z = self._couple(z, free, shifts)
        x = self._linear(z, log_a)
        log_q = self.log_prob_z(z, params) - log_a.sum()
        return x.reshape(B, self.N), log_q, z

    def log_prob(self, x, params=None) -> np.ndarray:
        """ln q(x) anywhere, x (B, N): the linear map undone, then :meth:`log_prob_z`."""
        params = self.params if params is None else params
        log_a = params[self._spectrum:][self.classes]
        z = self._linear(np.asarray(x, dtype=np.float64).reshape(-1, self.L, self.L), -log_a)
        return self.log_prob_z(z, params) - log_a.sum()

    def draw(self, rng: np.random.Generator, batch_size: int, dim: int | None = None):
        """``batch_size`` samples as one (B, N + 1) array: x, then ln q(x) in the last column
        (the batch layout of :class:`~ot_pde.flows.training.ReverseKL` with a base)."""
        if dim is not None and dim != self.N:
            raise ValueError(f"the base has {self.N} sites, the flow {dim} dimensions")
        x, log_q, _ = self.transform(rng.random((batch_size, self.N + 3)))
        return np.concatenate([x, log_q[:, None]], axis=1)

    # -- fit --------------------------------------------------------------------------------
    def _objective(self, params, noise, relax):
        """Minus the bound: sum over components j of w_j times the mean of ln pi~ - ln q over
        ``noise`` drawn from component j (exact in the weights, smooth in every parameter)."""
        log_weights = self.log_weights(params)
        total, parts = 0.0, []
        for j in range(self.components):
            x, log_q, z = self.transform(noise, params, component=j)
            total -= np.exp(log_weights[j]) * np.mean(relax.log_prob(x) - log_q)
            parts.append((x, z))
        return total, parts

    def _bound_and_grad(self, params, noise, relax, step=1e-6):
        """The objective of :meth:`fit` on ``noise`` and its gradient: by central differences
        in the leading parameters, analytic in the spectrum."""
        f, parts = self._objective(params, noise, relax)
        grad = np.empty_like(params)
        for k in range(self._spectrum):
            e = np.zeros_like(params)
            e[k] = step
            grad[k] = (self._objective(params + e, noise, relax)[0]
                       - self._objective(params - e, noise, relax)[0]) / (2.0 * step)
        # d/d ln a_k of ln pi~(A z) is a_k Re(conj(g^_k) z^_k) / N with g = grad ln pi~(x);
        # ln q(x) carries -sum ln a_k, so each wave vector adds 1 more
        a = np.exp(params[self._spectrum:][self.classes])
        weights = np.exp(self.log_weights(params))
        per_k = 1.0
        for w, (x, z) in zip(weights, parts):
            g = relax.grad_log_prob(x).reshape(z.shape)
            per_k = per_k + w * a * np.real(np.conj(np.fft.fft2(g))
                                            * np.fft.fft2(z)).mean(axis=0) / self.N
        grad[self._spectrum:] = -np.bincount(self.classes.ravel(), weights=per_k.ravel())
        return f, grad

    def fit(self, relax, rng: np.random.Generator, n_samples: int = 1024,
            iterations: int = 200, progress=None) -> dict:
        """Maximize the bound on ``n_samples`` fixed draws per component (see the module
        notes); updates :attr:`params` and returns the bound per site (relaxation units) and
        the L-BFGS report. ``progress(iteration, bound_per_site)``, if given, is called after
        each L-BFGS iteration."""
        noise = rng.random((n_samples, self.N + 3))
        # Box bounds far outside the useful range keep the line search away from parameters
        # that overflow (sigma = e^800) or put all the mass of a mixture in one component.
        bounds = [(0.05, 10.0), (-5.0, 5.0), (0.05, 10.0), (-5.0, 5.0)] \
            + [(-10.0, 10.0)] * (self._spectrum - 4) + [(-5.0, 5.0)] * (self.n_params
                                                                         - self._spectrum)
        start = np.clip(self.params, *np.array(bounds).T)
        done = []

        def report(intermediate_result):
            done.append(None)
            if progress is not None:
                progress(len(done), -float(intermediate_result.fun) / self.N)

        res = optimize.minimize(self._bound_and_grad, start, args=(noise, relax), jac=True,
                                method="L-BFGS-B", bounds=bounds, callback=report,
                                options={"maxiter": int(iterations)})
        self.params = np.array(res.x, dtype=np.float64)
        return {"bound_per_site": -float(res.fun) / self.N, "iterations": int(res.nit),
                "message": str(res.message)}


class StandardNormalBase:
    """The flow's default base :math:`\\mathcal N(0, I)`, in the batch layout of
    :meth:`CheckerboardMixtureBase.draw` (its draws are the plain normal draws)."""

    def draw(self, rng: np.random.Generator, batch_size: int, dim: int):
        z = rng.standard_normal((batch_size, dim))
        return np.concatenate([z, standard_normal_log_prob(z)[:, None]], axis=1)

    def log_prob(self, x) -> np.ndarray:
        return standard_normal_log_prob(np.asarray(x, dtype=np.float64))
