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
from ._common import BETA_C, adjacency
from .brute import brute_force
from .kaufman import kaufman_energy_per_site, kaufman_lnZ
from .onsager import onsager_energy_per_site, onsager_lnZ_per_site
from .relaxation import IsingRelaxation, WhitenedIsingRelaxation

__all__ = ["BETA_C", "adjacency", "brute_force", "kaufman_lnZ", "kaufman_energy_per_site",
           "onsager_lnZ_per_site", "onsager_energy_per_site", "IsingRelaxation",
           "WhitenedIsingRelaxation"]
