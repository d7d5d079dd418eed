"""Onsager's infinite-lattice free energy and energy per site."""
from __future__ import annotations

import math

from scipy import integrate, special

from ._common import _LOG2, _check_beta_J


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
