r"""Exact reference values of the 2D Ising model and of its continuous relaxation.

Conventions
-----------
The lattice is the periodic :math:`L\times L` square lattice, :math:`L \ge 2`, with
:math:`N = L^2` sites indexed row-major, :math:`i = rL + c` (row :math:`r`, column :math:`c`).
With :math:`i + \hat x` the right neighbour :math:`(r, c+1 \bmod L)` and :math:`i + \hat y` the
one below, :math:`(r+1 \bmod L, c)`, the energy of :math:`s \in \{-1, +1\}^N` is

.. math::

    E(s) = -J \sum_{i=1}^{N} s_i \,(s_{i+\hat x} + s_{i+\hat y}),

a sum over exactly :math:`2N` bonds. For :math:`L = 2` the right and the left neighbour of a
site coincide, so every neighbouring pair is counted twice (the direct bond and the wrap-around
one): the :math:`2\times 2` torus is *not* the 4-cycle with coupling :math:`J`, it is the 4-cycle
with coupling :math:`2J`. Everything here (brute force, Kaufman's formula, :func:`adjacency`)
uses this convention. With :math:`K := \beta J`,

.. math::

    Z = \sum_s e^{-\beta E(s)} = \sum_s \exp\bigl(\tfrac12 s^\top \mathbf K s\bigr),
    \qquad \mathbf K = K A,

where :math:`A` is :func:`adjacency`, :math:`A_{ij}` the number of bonds between :math:`i` and
:math:`j`. "Per site" means divided by :math:`N`: ``lnZ / N``, :math:`\langle E\rangle / N`,
:math:`\langle |M|\rangle / N` and :math:`\langle M^2\rangle / N^2` with :math:`M = \sum_i s_i`.
The critical point is :math:`\beta_c J = \tfrac12\ln(1 + \sqrt2)` (:data:`BETA_C` for
:math:`J = 1`).

Exact values
------------
* :func:`brute_force`: enumeration of the :math:`2^N` states, :math:`L \le 4`.
* :func:`kaufman_lnZ`, :func:`kaufman_energy_per_site`: Kaufman's finite-size partition function
  (B. Kaufman, Phys. Rev. 76, 1232 (1949); in the form of A. E. Ferdinand and M. E. Fisher,
  Phys. Rev. 185, 832 (1969)),

  .. math::

      Z = \tfrac12 (2\sinh 2K)^{N/2} (Z_1 + Z_2 + Z_3 + Z_4),\qquad
      Z_{1,2} = \prod_{r=0}^{L-1} 2\,\{\cosh, \sinh\}\bigl(\tfrac L2 \gamma_{2r+1}\bigr),\qquad
      Z_{3,4} = \prod_{r=0}^{L-1} 2\,\{\cosh, \sinh\}\bigl(\tfrac L2 \gamma_{2r}\bigr),

  with :math:`\cosh\gamma_k = \cosh 2K \coth 2K - \cos(\pi k / L)`, :math:`\gamma_k > 0` for
  :math:`k \ne 0`, and the *signed* :math:`\gamma_0 = 2K + \ln\tanh K`, which is negative for
  :math:`K < K_c`, zero at :math:`K_c` and positive above. :math:`Z_4` carries the sign of
  :math:`\gamma_0`: it is negative in the high-temperature phase (where at large :math:`L` it
  equals :math:`-Z_3` to all digits) and zero at :math:`K_c`. Rather than adding signed terms,
  the sum is evaluated in logs as :math:`Z_1(1 + \prod_r\tanh x_{2r+1}) + Z_3(1 + \tanh x_0
  \prod_{r\ge1}\tanh x_{2r})`, :math:`x_k = L\gamma_k/2`: two positive terms whose second
  factors are computed with ``expm1`` / ``log1p``. The energy is the analytic
  :math:`K`-derivative of the same expression. Valid for every :math:`L \ge 2`, odd or even.
  An antiferromagnet (:math:`J < 0`) on even :math:`L` (bipartite, :math:`L = 2` included) has
  the same :math:`Z` and :math:`\langle E\rangle` as the ferromagnet with :math:`|J|` (flip the
  spins of one sublattice); odd :math:`L` with :math:`J < 0` is frustrated and not covered by the
  formula (``ValueError``).
* :func:`onsager_lnZ_per_site`, :func:`onsager_energy_per_site`: :math:`L = \infty`
  (L. Onsager, Phys. Rev. 65, 117 (1944)). With :math:`K = \beta|J|` and
  :math:`\kappa = 2\sinh 2K / \cosh^2 2K`,

  .. math::

      \frac{\ln Z}{N} = \ln 2 + \frac{1}{8\pi^2}\iint_0^{2\pi}
      \ln\bigl[\cosh^2 2K - \sinh 2K(\cos\theta_1 + \cos\theta_2)\bigr]\,d\theta_1 d\theta_2
      = \ln(2\cosh 2K) + \frac1{2\pi} \int_0^{\pi}
      \ln\frac{1 + \sqrt{1 - \kappa^2\sin^2\theta}}{2}\,d\theta,

  .. math::

      \frac{\langle E\rangle}{N} = -|J|\coth 2K\,\Bigl[1 + \frac2\pi (2\tanh^2 2K - 1)
      \,\mathrm{K}(\kappa)\Bigr],

  :math:`\mathrm K(\kappa) = \int_0^{\pi/2} (1 - \kappa^2\sin^2\theta)^{-1/2}\,d\theta`. At
  :math:`K_c`: :math:`\ln Z / N = \tfrac12\ln 2 + 2G/\pi = 0.92969539834161...`
  (:math:`G` Catalan's constant) and :math:`\langle E\rangle / N = -\sqrt2\, |J|`.

Finite size (checked in the tests): :math:`\ln Z_L - N\ln Z_\infty/N` tends to 0
exponentially fast for :math:`K < K_c`, to :math:`\ln 2` (the two ordered states) for
:math:`K > K_c`, and to :math:`\ln(2^{1/4} + 2^{-1/2})` at :math:`K_c` (the Ising CFT torus
partition function at modular parameter :math:`i`), with an :math:`O(L^{-2})` remainder.

Continuous relaxation
---------------------
:class:`IsingRelaxation` is the Gaussian (Hubbard-Stratonovich) relaxation of Zhang, E & Wang
(2018) and Li & Wang (NeuralRG, 2018). :math:`\mathbf K` is indefinite (the spectrum of
:math:`A` is :math:`2(\cos\frac{2\pi a}L + \cos\frac{2\pi b}L)`), so shift it:
:math:`\mathbf K' = \mathbf K + \alpha I` positive definite, by default with
:math:`\lambda_{\min}(\mathbf K') = 0.1`. The continuous target on :math:`\mathbb R^N` is

.. math::

    \ln\tilde\pi(x) = -\tfrac12 x^\top \mathbf K'^{-1} x + \sum_i \ln\cosh x_i,
    \qquad Z_{\rm relax} = \int_{\mathbb R^N} \tilde\pi(x)\,dx.

Derivation of :math:`\ln Z_{\rm Ising}` from :math:`Z_{\rm relax}`:

1. Since :math:`s_i^2 = 1`, :math:`\tfrac12 s^\top \mathbf K' s = \tfrac12 s^\top\mathbf K s
   + \tfrac12\alpha N`, so :math:`Z = e^{-\alpha N/2} \sum_s \exp(\tfrac12 s^\top\mathbf K' s)`.
2. Gaussian integral (complete the square :math:`x = \mathbf K' s + y`): for positive definite
   :math:`\mathbf K'`,
   :math:`\int e^{-\frac12 x^\top\mathbf K'^{-1}x + s^\top x}\,dx
   = \sqrt{(2\pi)^N\det\mathbf K'}\; e^{\frac12 s^\top\mathbf K' s}`, i.e.
   :math:`e^{\frac12 s^\top\mathbf K' s} = [(2\pi)^N\det\mathbf K']^{-1/2}
   \int e^{-\frac12 x^\top\mathbf K'^{-1}x + s^\top x}\,dx`.
3. Sum over :math:`s` under the integral (finite sum): :math:`\sum_s e^{s^\top x}
   = \prod_i 2\cosh x_i = 2^N \prod_i \cosh x_i`, hence
   :math:`Z = e^{-\alpha N/2} [(2\pi)^N\det\mathbf K']^{-1/2}\, 2^N Z_{\rm relax}`.
4. Taking logs,

   .. math::

       \ln Z_{\rm Ising} = \ln Z_{\rm relax} + N\ln 2 - \frac N2\ln(2\pi)
       - \frac12\ln\det\mathbf K' - \frac{\alpha N}{2}.

   The last four terms are :attr:`IsingRelaxation.constant`.

Also :math:`p(s\mid x) \propto e^{s^\top x}` factorizes, :math:`P(s_i = +1 \mid x) =
\sigma(2x_i)`, and :math:`p(x \mid s)` is :math:`\mathcal N(\mathbf K' s, \mathbf K')`, the
joint being :math:`\propto \exp(-\frac12 x^\top\mathbf K'^{-1}x + s^\top x)`.

Everything is float64 numpy/scipy. Nothing here prints or touches files. Invalid arguments
raise ``ValueError``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import integrate, linalg, special

__all__ = ["BETA_C", "adjacency", "brute_force", "kaufman_lnZ", "kaufman_energy_per_site",
           "onsager_lnZ_per_site", "onsager_energy_per_site", "IsingRelaxation"]

BETA_C = math.log(1.0 + math.sqrt(2.0)) / 2.0
"""Critical inverse temperature of the square lattice for :math:`J = 1`."""

_LOG2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)
_BRUTE_MAX_L = 4
_CHUNK = 1 << 14  # states per chunk: (2^14, 16) float64 is 2 MiB
# Kaufman's formula needs sinh(2K) and 1/sinh(2K)^2 to stay finite and normal.
_K_MIN, _K_MAX = 1e-100, 300.0
# Its K-derivative is N coth 2K ~ N / 2K minus a sum of nearly the same size: relative error
# ~4e-17 / K^2 (measured 4e-7 at K = 1e-5, 1e-9 at 1e-4, 6e-11 at 1e-3), so below this the
# energy is refused rather than returned with few digits.
_K_MIN_ENERGY = 1e-3


# -- argument checks ---------------------------------------------------------------------------
def _check_L(L, max_L=None):
    if isinstance(L, bool) or not isinstance(L, numbers.Integral):
        raise ValueError(f"L must be an integer >= 2, got {L!r}")
    L = int(L)
    if L < 2:
        raise ValueError(f"L must be >= 2 (periodic L x L lattice), got {L}")
    if max_L is not None and L > max_L:
        raise ValueError(f"brute force enumerates 2^(L*L) states and is limited to "
                         f"L <= {max_L}, got L = {L}")
    return L


def _check_real(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _check_beta_J(beta, J):
    return _check_real("beta", beta, positive=True), _check_real("J", J)


def _kaufman_K(L, beta, J):
    """The ferromagnetic coupling K = beta |J| Kaufman's formula is evaluated at (or None)."""
    if J < 0.0 and L % 2 == 1:
        raise ValueError(f"Kaufman's formula covers J < 0 only on bipartite lattices (even L); "
                         f"L = {L} is odd and the antiferromagnet is frustrated")
    K = beta * abs(J)
    if K == 0.0:
        return None  # J = 0: free spins, Z = 2^N
    if not _K_MIN <= K <= _K_MAX:
        raise ValueError(f"beta*|J| = {K:g} is outside [{_K_MIN:g}, {_K_MAX:g}], where "
                         f"Kaufman's formula is evaluated in double precision")
    return K


# -- lattice -----------------------------------------------------------------------------------
def adjacency(L):
    r"""Bond-count matrix of the periodic :math:`L\times L` lattice.

    Parameters
    ----------
    L : int
        Linear size, :math:`L \ge 2`.

    Returns
    -------
    ndarray, shape (N, N), float64
        Symmetric, :math:`A_{ij}` the number of bonds between sites :math:`i` and :math:`j`
        (row-major indices), zero diagonal. Each row sums to 4; for :math:`L = 2` the two
        neighbours of a site carry 2 bonds each. :math:`\sum_{\rm bonds} s_is_j
        = \tfrac12 s^\top A s`.
    """
    L = _check_L(L)
    N = L * L
    idx = np.arange(N).reshape(L, L)
    A = np.zeros((N, N))
    # One += per bond, so the doubled bonds of L = 2 (right == left neighbour) count twice.
    for nb in (np.roll(idx, -1, axis=1), np.roll(idx, -1, axis=0)):
        np.add.at(A, (idx.ravel(), nb.ravel()), 1.0)
        np.add.at(A, (nb.ravel(), idx.ravel()), 1.0)
    return A


def _spin_states(N, start, stop):
    """Spin configurations ``start .. stop-1`` of N sites as float64 +-1, bit i -> site i."""
    codes = np.arange(start, stop, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(N, dtype=np.int64)) & 1
    return (2 * bits - 1).astype(np.float64)


# -- brute force -------------------------------------------------------------------------------
def brute_force(L, beta, J=1.0):
    r"""Exact thermodynamics by enumerating all :math:`2^N` states (:math:`L \le 4`).

    The bond sum :math:`b(s) = \sum_i s_i(s_{i+\hat x} + s_{i+\hat y})` (by lattice shifts, not
    through :func:`adjacency`) and :math:`M(s)` are integers, so the states are first counted
    into an exact joint histogram :math:`g(b, M)`; the Boltzmann sums are then log-sum-exps over
    at most :math:`(4N+1)(N+1)` entries, relative to the largest. :math:`L = 4` (65536 states)
    takes ~15 ms.

    Parameters
    ----------
    L : int
        Linear size, :math:`2 \le L \le 4`.
    beta : float
        Inverse temperature, > 0.
    J : float, default 1.0
        Coupling, any real (negative: antiferromagnet).

    Returns
    -------
    dict
        ``lnZ``, ``energy_per_site`` (:math:`\langle E\rangle/N`),
        ``abs_magnetization_per_site`` (:math:`\langle|M|\rangle/N`) and
        ``magnetization_sq_per_site`` (:math:`\langle M^2\rangle/N^2`), floats.
    """
    L = _check_L(L, max_L=_BRUTE_MAX_L)
    beta, J = _check_beta_J(beta, J)
    N = L * L
    # b in [-2N, 2N] (index b + 2N); M in {-N, -N+2, .., N} (index (M + N) / 2).
    nb, nm = 4 * N + 1, N + 1
    hist = np.zeros(nb * nm, dtype=np.int64)
    for start in range(0, 1 << N, _CHUNK):
        s = _spin_states(N, start, min(start + _CHUNK, 1 << N)).astype(np.int64)
        grid = s.reshape(-1, L, L)
        b = (grid * (np.roll(grid, -1, axis=2) + np.roll(grid, -1, axis=1))).sum(axis=(1, 2))
        m = s.sum(axis=1)
        hist += np.bincount((b + 2 * N) * nm + (m + N) // 2, minlength=nb * nm)
    hist = hist.reshape(nb, nm)
    bi, mi = np.nonzero(hist)
    b = (bi - 2 * N).astype(np.float64)
    m = (2 * mi - N).astype(np.float64)
    # -beta E = beta J b. Relative to the integer b0 of the largest term, so that the weights
    # do not inherit the rounding of beta J b ~ lnZ (an error ~eps lnZ: 1e-13 in <E> at
    # beta = 50, L = 4, where lnZ = 1600).
    log_count = np.log(hist[bi, mi].astype(np.float64))
    b0 = b[np.argmax(log_count + beta * J * b)]
    logw = log_count + beta * J * (b - b0)
    lse = special.logsumexp(logw)
    lnZ = beta * J * b0 + lse
    p = np.exp(logw - lse)
    return {"lnZ": float(lnZ),
            "energy_per_site": float(-J * (p @ b) / N),
            "abs_magnetization_per_site": float((p @ np.abs(m)) / N),
            "magnetization_sq_per_site": float((p @ (m * m)) / (N * N))}


# -- Kaufman -----------------------------------------------------------------------------------
def _log2cosh(x):
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2.0 * ax))


def _log_tanh(x):
    """log(tanh x) = log(1 - e^{-2x}) - log(1 + e^{-2x}) for x > 0, to full relative accuracy.

    log(1 - e^{-a}) switches between log(-expm1(-a)) (a <= ln 2) and log1p(-e^{-a}) (a > ln 2)
    (Maechler 2012): the first loses the ~e^{-a} value once 1 - e^{-a} rounds to 1, the second
    loses digits as a -> 0.
    """
    a = 2.0 * np.asarray(x, dtype=np.float64)
    e = np.exp(-a)
    small = a <= _LOG2
    log1m = np.where(small, np.log(-np.expm1(-np.where(small, a, _LOG2))),
                     np.log1p(-np.where(small, 0.5, e)))
    return log1m - np.log1p(e)


def _two_over_sinh2x(x):
    """d/dx log tanh x = 2 / sinh(2x) for x > 0, without overflow of sinh."""
    return 4.0 * np.exp(-2.0 * x) / -np.expm1(-4.0 * x)


def _kaufman_lnZ_and_dK(L, K):
    r"""Kaufman's ln Z and d ln Z / dK at K > 0 (J > 0, or J < 0 mapped to |J|).

    Written as Z = 1/2 (2 sinh 2K)^{N/2} (G_12 + G_34) with

        G_12 = Z_1 + Z_2 = Z_1 (1 + prod_r tanh x_{2r+1}),
        G_34 = Z_3 + Z_4 = Z_3 (1 + tanh x_0 prod_{r>=1} tanh x_{2r}),   x_k = L gamma_k / 2.

    Both factors are positive (|tanh| < 1), so no two terms of opposite sign are ever added:
    below K_c, where x_0 < 0 and Z_4 ~ -Z_3 to all digits at large L, the summed form loses
    N * eps in the weights and ~1e-12 in the energy per site at L = 128; here 1 + tanh x_0 Q is
    -expm1(log|tanh x_0| + log Q), accurate to eps relative.
    """
    N = L * L
    s = math.sinh(2.0 * K)
    ch = math.cosh(2.0 * K)
    k = np.arange(2 * L)
    # cosh(gamma_k) - 1 = cosh2K coth2K - 1 - cos(pi k/L) = (1 - s)^2 / s + 2 sin^2(pi k / 2L):
    # written this way there is no cancellation as K -> K_c (s -> 1) or for small k / large L,
    # where the textbook arccosh(cosh2K coth2K - cos(pi k / L)) loses the digits of gamma.
    base = (1.0 - s) ** 2 / s if s <= 1.0 else s * (1.0 - 1.0 / s) ** 2
    d = base + 2.0 * np.sin(0.5 * np.pi * k / L) ** 2
    sinh_g = np.sqrt(d) * np.sqrt(d + 2.0)
    g = np.log1p(d + sinh_g)
    dg = np.empty_like(g)
    # d(cosh gamma_k)/dK = d(cosh2K coth2K)/dK = 2 cosh2K (1 - 1/s^2); sinh gamma_k > 0, k != 0.
    dg[1:] = 2.0 * ch * (1.0 - 1.0 / (s * s)) / sinh_g[1:]
    # gamma_0 = 2K + ln tanh K is *signed*: |gamma_0| is the arccosh above, and gamma_0 > 0 iff
    # K > K_c iff sinh 2K > 1. Its derivative 2 + 2 / sinh 2K is smooth through K_c.
    g[0] = math.copysign(g[0], s - 1.0) if s != 1.0 else 0.0
    dg[0] = 2.0 + 2.0 / s

    x, dx = 0.5 * L * g, 0.5 * L * dg
    xo, dxo = x[1::2], dx[1::2]          # k odd: x > 0
    xe, dxe = x[0::2], dx[0::2]          # k even: xe[0] = x_0 signed, xe[1:] > 0
    x0, dx0 = float(xe[0]), float(dxe[0])

    # G_12 = Z_1 (1 + Qo), Qo = prod tanh(xo) in (0, 1).
    log_Qo = float(_log_tanh(xo).sum())
    Qo = math.exp(log_Qo)
    D1 = float((dxo * np.tanh(xo)).sum())                       # d ln Z_1 / dK
    dQo = Qo * float((dxo * _two_over_sinh2x(xo)).sum())        # d Qo / dK
    # G_34 = Z_3 (1 + y), y = tanh(x0) Qe, Qe = prod_{r>=1} tanh(xe_r) in (0, 1).
    log_Qe = float(_log_tanh(xe[1:]).sum())
    Qe = math.exp(log_Qe)
    if x0 == 0.0:  # exactly K_c in floating point: Z_4 = 0
        log1p_y, t0 = 0.0, 0.0
    else:
        log_y = float(_log_tanh(abs(x0))) + log_Qe
        if x0 > 0.0:
            log1p_y = math.log1p(math.exp(log_y))
        elif log_y < 0.0:
            log1p_y = math.log(-math.expm1(log_y))
        else:  # 1 - |y| = 2 sum e^{-2 x_k} underflowed: G_34 is below 1e-308 Z_3
            log1p_y = -math.inf
        t0 = math.tanh(x0)
    D3 = float((dxe * np.tanh(xe)).sum())                       # d ln Z_3 / dK
    sech2_0 = 4.0 * math.exp(-2.0 * abs(x0)) / (1.0 + math.exp(-2.0 * abs(x0))) ** 2
    # dy/dK = dx0 sech^2(x0) Qe + tanh(x0) dQe. dx0 > 0, and dQe has the sign of
    # dx_r ~ (1 - 1/s^2), i.e. of x0: both terms are >= 0, no cancellation here either.
    dy = dx0 * sech2_0 * Qe + t0 * Qe * float((dxe[1:] * _two_over_sinh2x(xe[1:])).sum())

    # Logs relative to ln Z_1, accumulated term by term (differences of O(L) numbers rather
    # than of two O(N) sums).
    log_z3_over_z1 = float((_log2cosh(xe) - _log2cosh(xo)).sum())
    log_g12 = math.log1p(Qo)                      # ln(G_12 / Z_1)
    log_g34 = log_z3_over_z1 + log1p_y            # ln(G_34 / Z_1)
    log_S = float(np.logaddexp(log_g12, log_g34))  # ln((G_12 + G_34) / Z_1)
    w12 = math.exp(log_g12 - log_S)
    w34 = math.exp(log_g34 - log_S)
    z1_over_S = math.exp(-log_S)
    z3_over_S = math.exp(log_z3_over_z1 - log_S)

    lnZ = (-_LOG2 + 0.5 * N * math.log(2.0 * s)
           + float(_log2cosh(xo).sum()) + log_S)
    dlnZ = (N * ch / s                           # d/dK (N/2) ln(2 sinh 2K)
            + w12 * D1 + z1_over_S * dQo + w34 * D3 + z3_over_S * dy)
    return lnZ, dlnZ


def kaufman_lnZ(L, beta, J=1.0):
    r"""Kaufman's exact :math:`\ln Z` of the periodic :math:`L\times L` lattice.

    Parameters
    ----------
    L : int
        Linear size, :math:`L \ge 2` (odd or even).
    beta : float
        Inverse temperature, > 0; :math:`10^{-100} \le \beta|J| \le 300`.
    J : float, default 1.0
        Coupling. :math:`J < 0` only for even :math:`L` (mapped to :math:`|J|`); :math:`J = 0`
        gives :math:`N\ln 2`.

    Returns
    -------
    float
        :math:`\ln Z` (not per site). Relative accuracy ~:math:`\varepsilon\max(1, |\ln K|)`
        (the prefactor and the products are :math:`\mp\frac N2\ln K` each): against
        60-digit arithmetic <= 1e-15 for :math:`10^{-3} \le K \le 50`, :math:`L \le 128`;
        6e-14 at :math:`K = 10^{-100}`, :math:`L = 1000`.
    """
    L = _check_L(L)
    beta, J = _check_beta_J(beta, J)
    K = _kaufman_K(L, beta, J)
    if K is None:
        return L * L * _LOG2
    return _kaufman_lnZ_and_dK(L, K)[0]


def kaufman_energy_per_site(L, beta, J=1.0):
    r""":math:`\langle E\rangle / N = -\partial_\beta \ln Z / N` from Kaufman's formula.

    The derivative is analytic (:math:`\partial_K` of every :math:`\gamma_k` and of the
    prefactor), not a finite difference. For small :math:`K` the result is the difference of
    :math:`N\coth 2K \approx N/2K` and a term of nearly the same size, so its relative accuracy
    degrades like ~:math:`4\cdot10^{-17}/K^2`. Measured against 60-digit arithmetic: 6e-11 at
    :math:`K = 10^{-3}`, 5e-15 at :math:`K = 0.1`, <= 1.2e-15 for :math:`0.3 \le K \le 50`
    (:math:`L` = 2 .. 128, :math:`K_c (1 \pm 10^{-9})` included). :math:`K < 10^{-3}` raises
    ``ValueError``.

    Parameters
    ----------
    L, beta, J
        As in :func:`kaufman_lnZ`, and :math:`\beta|J| \ge 10^{-3}`.

    Returns
    -------
    float
    """
    L = _check_L(L)
    beta, J = _check_beta_J(beta, J)
    K = _kaufman_K(L, beta, J)
    if K is None:
        return 0.0
    if K < _K_MIN_ENERGY:
        raise ValueError(f"beta*|J| = {K:g} < {_K_MIN_ENERGY:g}: the energy from Kaufman's "
                         f"formula loses digits like 4e-17/(beta J)^2 at high temperature; use "
                         f"brute_force (L <= 4) or a high-temperature expansion there")
    # lnZ depends on beta only through K = beta |J| (J < 0 mapped to the ferromagnet).
    return -abs(J) * _kaufman_lnZ_and_dK(L, K)[1] / (L * L)


# -- Onsager -----------------------------------------------------------------------------------
def _onsager_params(K):
    """(kappa^2, q, 1 - q) at K > 0: q = (1 - s^2) / (1 + s^2) = -(2 tanh^2 2K - 1), s = sinh 2K.

    q^2 = 1 - kappa^2 without the cancellation of 1 - kappa^2 as kappa -> 1 (K -> K_c), and
    1 - q = 2 s^2 / (1 + s^2) without the one as K -> 0; all finite where s^2 overflows.
    """
    s = math.sinh(2.0 * K) if K < 350.0 else math.inf
    kappa = 2.0 / (s + 1.0 / s)               # 2 s / (1 + s^2)
    # Near s = 1 the factored form keeps q's relative accuracy; beyond s = 2 (q < -0.6) the
    # second form has no cancellation and survives s * s = inf.
    q = (1.0 - s) * (1.0 + s) / (1.0 + s * s) if s <= 2.0 else -1.0 + 2.0 / (1.0 + s * s)
    one_minus_q = 2.0 * s * s / (1.0 + s * s) if s <= 1.0 else 2.0 / (1.0 + 1.0 / (s * s))
    return kappa * kappa, q, one_minus_q


# Below this kappa^2 the quadrature is replaced by its Taylor series (next term ~ kappa^6 / 80,
# < 1e-18 there), which also keeps quad away from integrands of size ~kappa^2 ~ 1e-300.
_KAPPA2_SERIES = 1e-6


def onsager_lnZ_per_site(beta, J=1.0):
    r"""Onsager's :math:`\lim_{L\to\infty} \ln Z / N` (:math:`= -\beta f`).

    Evaluates :math:`\ln(2\cosh 2K) + \frac1\pi\int_0^{\pi/2}\ln\frac{1 + \sqrt{1 -
    \kappa^2\sin^2\theta}}{2}\,d\theta` (the same as :math:`\frac1{2\pi}\int_0^\pi`) by adaptive
    quadrature. On :math:`[0, \pi]` the integrand has a kink at :math:`\pi/2` when
    :math:`\kappa = 1`; on :math:`[0, \pi/2]` it is smooth for every :math:`\kappa \le 1`, and
    :math:`1 - \kappa^2\sin^2\theta` is evaluated as :math:`(1 - \kappa^2) + \kappa^2\cos^2\theta`
    with :math:`1 - \kappa^2` in closed form, so there is no cancellation near :math:`K_c`. Near
    (not at) :math:`K_c` the integrand varies on the scale :math:`\sqrt{1 - \kappa^2}` near
    :math:`\theta = \pi/2`; geometric panels resolve it. For :math:`\kappa^2 < 10^{-6}` (:math:`K
    \lesssim 2.5\cdot10^{-4}` or :math:`K \gtrsim 7.6`) the integral is
    :math:`-\frac\pi{16}\kappa^2 - \frac{9\pi}{512}\kappa^4`. Accuracy: <= 2e-16 against 40-digit
    quadrature for :math:`0.05 \le K \le 10`, including :math:`K_c(1 \pm 10^{-6})`,
    :math:`K_c(1 \pm 10^{-10})`; :math:`\tfrac12\ln2 + 2G/\pi` at :math:`K_c` to 1e-16.

    Parameters
    ----------
    beta : float
        Inverse temperature, > 0.
    J : float, default 1.0
        Coupling; the square lattice is bipartite, so :math:`J < 0` gives the :math:`|J|` value.

    Returns
    -------
    float
    """
    beta, J = _check_beta_J(beta, J)
    K = beta * abs(J)
    if K == 0.0:
        return _LOG2
    kappa2, q, _ = _onsager_params(K)
    p = q * q  # 1 - kappa^2
    if kappa2 < _KAPPA2_SERIES:
        # log((1 + sqrt(1 - u)) / 2) = -u/4 - 3u^2/32 + O(u^3), u = kappa^2 sin^2;
        # int_0^{pi/2} sin^2 = pi/4, sin^4 = 3 pi/16.
        val = -math.pi / 16.0 * kappa2 - 9.0 * math.pi / 512.0 * kappa2 * kappa2
    else:
        # theta -> pi/2 - t: the integrand log1p(sqrt(p + kappa^2 sin^2 t)) - ln 2 varies on
        # the scale t ~ sqrt(p) near t = 0, which one Gauss-Kronrod panel misses near K_c
        # (1.7e-12 error at K = K_c (1 + 1e-6), with an error estimate of ~1e-14). Panels
        # [0, a], [a, 4a], [4a, 16a], .. with a = sqrt(p) resolve it (<= 28 panels, as
        # sqrt(p) >= 1e-16 in double precision unless p == 0, where the integrand is smooth).
        def integrand(t):
            st = math.sin(t)
            return math.log1p(math.sqrt(p + kappa2 * st * st)) - _LOG2

        edges = [0.0]
        a = math.sqrt(p)
        while 0.0 < a < 0.25 * math.pi:
            edges.append(a)
            a *= 4.0
        edges.append(0.5 * math.pi)
        val = sum(integrate.quad(integrand, lo, hi, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
                  for lo, hi in zip(edges[:-1], edges[1:]))
    # ln(2 cosh 2K) = 2K + log1p(e^{-4K}), safe for large K.
    return 2.0 * K + math.log1p(math.exp(-4.0 * K)) + val / math.pi


def _two_K_over_pi_minus_1(m, p):
    """2 K(m) / pi - 1 (K the complete elliptic integral, parameter m = 1 - p).

    For small m it is ~ m / 4 and ``2 / pi * ellipk(m) - 1`` would keep only its absolute
    accuracy; the hypergeometric series sum_{n>=1} [(2n-1)!! / (2n)!!]^2 m^n keeps the relative
    one (m < 0.1: <= 17 terms).
    """
    if m >= 0.1:
        return 2.0 / math.pi * float(special.ellipkm1(p)) - 1.0
    total, term, n = 0.0, 1.0, 0
    while True:
        n += 1
        term *= ((2 * n - 1) / (2 * n)) ** 2 * m
        total += term
        if term <= 1e-17 * total:
            return total


def onsager_energy_per_site(beta, J=1.0):
    r"""Onsager's :math:`\lim_{L\to\infty}\langle E\rangle / N`.

    :math:`-|J|\coth 2K\,[1 + \frac2\pi(2\tanh^2 2K - 1)\mathrm K(\kappa)]`, rearranged as
    :math:`-|J|\coth 2K\,[(1 + f) + f(\frac2\pi\mathrm K(\kappa) - 1)]` with
    :math:`f = 2\tanh^2 2K - 1 = (s^2 - 1)/(s^2 + 1)`, :math:`s = \sinh 2K`,
    :math:`1 + f = 2s^2 / (1 + s^2)`: at high temperature the bracket is :math:`O(K^2)` and
    the textbook form loses it to cancellation (relative error ~:math:`10^{-17}/K^2`);
    :math:`\frac2\pi\mathrm K - 1` comes from its series for :math:`\kappa^2 < 0.1` and from
    ``scipy.special.ellipkm1(1 - kappa^2)``, with :math:`1 - \kappa^2 = f^2` in closed form,
    otherwise. At :math:`K_c` the logarithmic divergence of :math:`\mathrm K` multiplies
    :math:`f \to 0`, both computed without cancellation; exactly there the value is
    :math:`-\sqrt2\,|J|`. For :math:`J < 0` the value of :math:`|J|` (bipartite lattice).
    Accuracy: <= 3e-16 relative against 40-digit differentiation of the integral for
    :math:`0.05 \le K \le 1.5`.

    Parameters
    ----------
    beta : float
        Inverse temperature, > 0.
    J : float, default 1.0

    Returns
    -------
    float
    """
    beta, J = _check_beta_J(beta, J)
    K = beta * abs(J)
    if K == 0.0:
        return 0.0
    kappa2, q, one_plus_f = _onsager_params(K)
    f = -q
    if f == 0.0:  # exactly K_c: f K(kappa) -> 0 (K only diverges logarithmically)
        bracket = 1.0
    else:
        bracket = one_plus_f + f * _two_K_over_pi_minus_1(kappa2, q * q)
    return -abs(J) / math.tanh(2.0 * K) * bracket


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
