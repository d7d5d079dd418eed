r"""Exact 2D Ising references (:mod:`ot_pde.ising.exact`) against each other and known values.

Oracles, each independent of the code it checks:

* a naive ``itertools`` enumeration (L = 2, 3) for :func:`brute_force`, and for L = 2 the closed
  form :math:`Z = (2\cosh 2K)^4 + (2\sinh 2K)^4` of the 4-ring with coupling 2K, which is what the
  2x2 torus is with its doubled bonds;
* brute force (L = 2, 3, 4) for Kaufman's lnZ and energy and for the relaxation identity
  ``lnZ_relax_exact() + constant`` (acceptance point 1: 1e-12 relative; measured: Kaufman
  <= 2.2e-16, relaxation <= 4.0e-15, Kaufman energy <= 8.9e-16 absolute);
* a 4D tensor Gauss-Hermite quadrature of :math:`\tilde\pi` after whitening (L = 2), which uses
  neither the Hubbard-Stratonovich identity nor the spin sum: 28 nodes per axis give
  <= 1.6e-15 relative (20 nodes: up to 5.5e-12, 10 nodes: 3e-7 .. 1.2e-4), held to 1e-13;
* Onsager at the critical point: :math:`\ln Z/N = \tfrac12\ln2 + 2G/\pi` (G Catalan's constant)
  and :math:`E/N = -\sqrt2`; away from it, the 2D integral of Onsager's formula by the periodic
  trapezoid rule (spectrally accurate there);
* finite-size behaviour of Kaufman's lnZ against Onsager's f: exponentially fast for
  :math:`\beta < \beta_c`; :math:`\ln Z_L - N f \to \ln 2` for :math:`\beta > \beta_c` (the two
  ordered states: ``lnZ/N - f`` is ln2/N there, *not* exponentially small); at
  :math:`\beta_c`, :math:`\ln Z_L - N f \to \ln(2^{1/4} + 2^{-1/2}) = 0.6399119...`, the Ising
  CFT torus partition function :math:`\frac12\sum_{i=2}^4|\theta_i/\eta|` at :math:`\tau = i`
  (:math:`\theta_3 = \pi^{1/4}/\Gamma(3/4)`, :math:`\theta_2 = \theta_4 = 2^{-1/4}\theta_3`,
  :math:`\eta = \Gamma(1/4)/2\pi^{3/4}`, :math:`\Gamma(\frac14)\Gamma(\frac34) = \pi\sqrt2`), with
  a remainder :math:`\approx 0.081/L^2` (measured 0.0872, 0.0826, 0.0816, 0.0814, 0.0813 times
  :math:`L^{-2}` at L = 8 .. 128).

Measured outside the suite against mpmath (not a dependency): Kaufman lnZ <= 9.3e-16 relative
(L = 2 .. 128, K = 1e-5 .. 50), energy <= 1.2e-15 for K >= 0.3 and ~4e-17 / K^2 below; Onsager
lnZ and energy <= 4e-16 for K = 1e-8 .. 8 (K_c (1 +- 1e-6), K_c (1 - 1e-10) included). The whole
file runs in ~3 s.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from scipy import linalg, special

from ot_pde.ising.exact import (
    BETA_C,
    IsingRelaxation,
    adjacency,
    brute_force,
    kaufman_energy_per_site,
    kaufman_lnZ,
    onsager_energy_per_site,
    onsager_lnZ_per_site,
)

ACCEPT_TOL = 1e-12          # acceptance point 1, relative on lnZ
BETAS = (0.3, BETA_C, 0.6)
CATALAN = 0.915965594177219015054603514932384110774
LN_Z_CFT = math.log(2.0 ** 0.25 + 2.0 ** -0.5)  # 0.63991194719162...


def rel(a, b):
    return abs(a - b) / abs(b)


def naive(L, beta, J=1.0):
    """Textbook enumeration with explicit neighbour loops (no numpy tricks)."""
    N = L * L
    Zs, Es, Ms, M2s = [], [], [], []
    for spins in itertools.product((-1, 1), repeat=N):
        E = 0.0
        for r in range(L):
            for c in range(L):
                s = spins[r * L + c]
                E -= J * s * (spins[r * L + (c + 1) % L] + spins[((r + 1) % L) * L + c])
        M = sum(spins)
        Zs.append(-beta * E)
        Es.append(E)
        Ms.append(abs(M))
        M2s.append(M * M)
    lw = np.array(Zs)
    lnZ = special.logsumexp(lw)
    p = np.exp(lw - lnZ)
    return {"lnZ": lnZ, "energy_per_site": p @ np.array(Es) / N,
            "abs_magnetization_per_site": p @ np.array(Ms) / N,
            "magnetization_sq_per_site": p @ np.array(M2s) / N ** 2}


# -- lattice and brute force -------------------------------------------------------------------
def test_beta_c():
    assert BETA_C == pytest.approx(0.4406867935097714, rel=1e-15)
    assert math.sinh(2 * BETA_C) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("L", [2, 3, 4, 5])
def test_adjacency(L):
    A = adjacency(L)
    N = L * L
    assert A.shape == (N, N) and np.array_equal(A, A.T)
    assert np.all(np.diag(A) == 0) and np.all(A.sum(axis=1) == 4)
    # L = 2: right == left neighbour, so each of the 2 distinct neighbours carries 2 bonds.
    assert set(np.unique(A)) == ({0.0, 2.0} if L == 2 else {0.0, 1.0})
    assert A[0, 1] == (2 if L == 2 else 1) and A[0, L] == (2 if L == 2 else 1)  # i = r L + c
    rng = np.random.default_rng(L)
    s = rng.choice([-1.0, 1.0], size=(20, N))
    g = s.reshape(-1, L, L)
    bonds = (g * (np.roll(g, -1, axis=2) + np.roll(g, -1, axis=1))).sum(axis=(1, 2))
    np.testing.assert_array_equal(0.5 * np.einsum("bi,ij,bj->b", s, A, s), bonds)


@pytest.mark.parametrize("L", [2, 3])
@pytest.mark.parametrize("beta,J", [(0.3, 1.0), (BETA_C, 1.0), (0.6, -0.7)])
def test_brute_force_vs_naive(L, beta, J):
    bf, ref = brute_force(L, beta, J), naive(L, beta, J)
    assert set(bf) == set(ref)
    for key in ref:
        assert bf[key] == pytest.approx(ref[key], rel=1e-13, abs=1e-15), key


@pytest.mark.parametrize("beta", BETAS)
def test_brute_force_L2_double_bonds(beta):
    # 2x2 torus = 4-ring with coupling 2K (doubled bonds): Z = (2 cosh 2K)^4 + (2 sinh 2K)^4
    # (transfer matrix eigenvalues 2cosh 2K, 2sinh 2K); E = -d lnZ / d beta.
    K = 2.0 * beta
    Z = (2 * math.cosh(K)) ** 4 + (2 * math.sinh(K)) ** 4
    dZ = 2.0 * 4 * ((2 * math.cosh(K)) ** 3 * 2 * math.sinh(K)
                    + (2 * math.sinh(K)) ** 3 * 2 * math.cosh(K))
    bf = brute_force(2, beta)
    assert rel(bf["lnZ"], math.log(Z)) < 1e-15
    assert rel(bf["energy_per_site"], -dZ / Z / 4) < 1e-14
    # The single-bond 4-ring, (2cosh K)^4 + (2sinh K)^4 at K = beta, is clearly different.
    single = math.log((2 * math.cosh(beta)) ** 4 + (2 * math.sinh(beta)) ** 4)
    assert bf["lnZ"] - single > 0.5


def test_brute_force_L4_fast_and_sane():
    t = time.perf_counter()
    bf = brute_force(4, BETA_C)
    assert time.perf_counter() - t < 1.0
    assert 0 < bf["abs_magnetization_per_site"] ** 2 <= bf["magnetization_sq_per_site"] <= 1
    hot, cold = brute_force(4, 1e-6), brute_force(4, 3.0)
    assert hot["lnZ"] == pytest.approx(16 * math.log(2), rel=1e-10)
    assert hot["magnetization_sq_per_site"] == pytest.approx(1 / 16, rel=1e-4)  # <M^2> = N
    assert cold["energy_per_site"] == pytest.approx(-2.0, rel=1e-8)
    assert cold["abs_magnetization_per_site"] == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize("call", [
    lambda: brute_force(5, 0.3), lambda: brute_force(1, 0.3), lambda: brute_force(2.0, 0.3),
    lambda: brute_force(2, 0.0), lambda: brute_force(2, -1.0), lambda: brute_force(2, math.inf),
    lambda: adjacency(1), lambda: kaufman_lnZ(1, 0.3), lambda: kaufman_lnZ(4, 0.0),
    lambda: kaufman_lnZ(3, 0.3, J=-1.0), lambda: kaufman_energy_per_site(5, 0.3, J=-1.0),
    lambda: kaufman_lnZ(4, 1e3), lambda: kaufman_energy_per_site(8, 1e-4),
    lambda: onsager_lnZ_per_site(-0.1),
    lambda: onsager_energy_per_site(0.0), lambda: IsingRelaxation(1, 0.3),
    lambda: IsingRelaxation(3, 0.3, alpha=0.5), lambda: IsingRelaxation(5, 0.3).lnZ_relax_exact(),
    lambda: IsingRelaxation(2, 0.3).log_prob(np.zeros((3, 5))),
])
def test_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


# -- acceptance point 1: brute force = Kaufman = relaxation identity ---------------------------
@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("J", [1.0, 0.7, -1.3])
def test_acceptance_brute_kaufman_relaxation(L, beta, J):
    bf = brute_force(L, beta, J)
    relax = IsingRelaxation(L, beta, J)
    assert rel(relax.lnZ_relax_exact() + relax.constant, bf["lnZ"]) < ACCEPT_TOL
    if J < 0 and L % 2 == 1:  # frustrated antiferromagnet: outside Kaufman's formula
        with pytest.raises(ValueError, match="odd"):
            kaufman_lnZ(L, beta, J)
        return
    assert rel(kaufman_lnZ(L, beta, J), bf["lnZ"]) < ACCEPT_TOL
    assert kaufman_energy_per_site(L, beta, J) == pytest.approx(bf["energy_per_site"],
                                                                rel=1e-13, abs=1e-14)


@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("beta", [0.002, 0.05, 2.0, 50.0])
def test_kaufman_vs_brute_force_extreme_beta(L, beta):
    bf = brute_force(L, beta)
    assert rel(kaufman_lnZ(L, beta), bf["lnZ"]) < 1e-14
    # Energy accuracy degrades like 4e-17 / K^2 at small K (see the docstring); measured 4e-14
    # at K = 0.05.
    assert rel(kaufman_energy_per_site(L, beta), bf["energy_per_site"]) < 1e-15 + 2e-16 / beta ** 2


def test_kaufman_J_zero_and_scaling():
    assert kaufman_lnZ(3, 0.4, J=0.0) == 9 * math.log(2)
    assert kaufman_energy_per_site(3, 0.4, J=0.0) == 0.0
    assert kaufman_lnZ(6, 0.3, J=2.0) == pytest.approx(kaufman_lnZ(6, 0.6), rel=1e-15)
    assert kaufman_lnZ(6, 0.3, J=-2.0) == kaufman_lnZ(6, 0.3, J=2.0)  # bipartite


@pytest.mark.parametrize("L", [2, 3, 8, 33])
def test_kaufman_continuous_through_beta_c(L):
    # sinh(2 BETA_C) == 1 in floating point, so gamma_0 = 0 exactly there (Z_4 = 0 branch);
    # on either side gamma_0 has the opposite sign. lnZ and E must be smooth across.
    d = 1e-9
    lo, mid, hi = (kaufman_lnZ(L, BETA_C * f) for f in (1 - d, 1, 1 + d))
    elo, emid, ehi = (kaufman_energy_per_site(L, BETA_C * f) for f in (1 - d, 1, 1 + d))
    N = L * L
    assert abs((hi - lo) / (2 * d * BETA_C) / N + emid) < 1e-6  # -d lnZ/d beta / N = E
    assert abs(0.5 * (lo + hi) - mid) < 1e-12 * abs(mid)
    assert abs(ehi - elo) < 1e-7 and abs(0.5 * (ehi + elo) - emid) < 1e-12


@pytest.mark.parametrize("L,beta", [(8, 0.3), (8, BETA_C), (5, 0.6), (16, 0.45)])
def test_kaufman_energy_vs_richardson(L, beta):
    # 4th-order central difference of lnZ: truncation h^4 |lnZ^(5)| / 30 (large near beta_c:
    # the error per site is 1e-8 at h = 1e-3 for L = 16, beta = 0.45, and drops 16x per halving),
    # round-off ~ eps |lnZ| / h. h = 1e-4: measured 9e-14 .. 3e-12 per site.
    h = 1e-4
    f = [kaufman_lnZ(L, beta + k * h) for k in (-2, -1, 1, 2)]
    d = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    assert abs(kaufman_energy_per_site(L, beta) + d / (L * L)) < 1e-10


# -- Onsager -----------------------------------------------------------------------------------
def test_onsager_at_beta_c():
    assert onsager_lnZ_per_site(BETA_C) == pytest.approx(0.5 * math.log(2) + 2 * CATALAN / math.pi,
                                                         rel=1e-15, abs=0)
    assert onsager_lnZ_per_site(BETA_C) == pytest.approx(0.9296953983416102, rel=1e-15)
    assert onsager_energy_per_site(BETA_C) == pytest.approx(-math.sqrt(2), rel=1e-15)
    assert onsager_energy_per_site(BETA_C / 1.5, J=-1.5) == pytest.approx(-1.5 * math.sqrt(2),
                                                                          rel=1e-15)
    # Near K_c the 1D integrand is sharp (width ~ |K - K_c|); values stay continuous. The
    # midpoint defect is f'' dK^2 / 2 with f'' ~ (8/pi) ln(1/dK) (the log-divergent specific
    # heat): measured 3.6e-12 at d = 1e-6, at round-off level at d = 1e-10.
    for d in (1e-6, 1e-10):
        lo, hi = (onsager_lnZ_per_site(BETA_C * (1 + sg * d)) for sg in (-1, 1))
        assert abs(0.5 * (lo + hi) - onsager_lnZ_per_site(BETA_C)) < 1e-15 + 100 * (d * BETA_C) ** 2
        assert abs((hi - lo) / (2 * d * BETA_C) - math.sqrt(2)) < 1e-4


@pytest.mark.parametrize("beta", [0.1, 0.3, 0.6, 1.0])
def test_onsager_vs_double_integral(beta):
    # ln 2 + (1/8 pi^2) iint ln[cosh^2 2K - sinh 2K (cos t1 + cos t2)]: smooth and periodic away
    # from K_c, so the trapezoid rule converges geometrically (n = 256: ~1e-16).
    n = 256
    t = 2 * np.pi * np.arange(n) / n
    c = np.cos(t)
    K = beta
    val = np.log(math.cosh(2 * K) ** 2 - math.sinh(2 * K) * (c[:, None] + c[None, :])).mean()
    assert onsager_lnZ_per_site(beta) == pytest.approx(math.log(2) + 0.5 * val, rel=1e-14)


@pytest.mark.parametrize("beta", [0.2, 0.3, 0.6, 0.9])
def test_onsager_energy_vs_derivative(beta):
    h = 1e-3
    f = [onsager_lnZ_per_site(beta + k * h) for k in (-2, -1, 1, 2)]
    d = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    assert abs(onsager_energy_per_site(beta) + d) < 1e-10


def test_onsager_limits():
    # High temperature: ln Z / N = ln 2 + K^2 + O(K^4) (2 ln cosh K, plaquettes at K^4) and
    # E / N = -2 tanh K + O(K^3); the textbook energy formula cancels there, this one must not.
    for K in (1e-8, 1e-5, 1e-3):
        assert onsager_lnZ_per_site(K) == pytest.approx(math.log(2) + K * K, rel=1e-15)
        assert onsager_energy_per_site(K) == pytest.approx(-2 * K, rel=2 * K * K)
    # Kaufman at L = 64 is exponentially converged at K = 1e-3 and K = 2 (plus ln 2 there).
    for K in (1e-3, 2.0):
        assert rel(onsager_energy_per_site(K), kaufman_energy_per_site(64, K)) < 1e-10
        offset = math.log(2) if K > BETA_C else 0.0
        assert rel(onsager_lnZ_per_site(K), (kaufman_lnZ(64, K) - offset) / 64 ** 2) < 1e-15
    # Low temperature and beyond the range of sinh: ln Z / N -> 2K, E / N -> -2.
    for K in (10.0, 300.0, 1e6):
        assert onsager_lnZ_per_site(K) == pytest.approx(2 * K, rel=1e-15)
        assert onsager_energy_per_site(K) == pytest.approx(-2.0, rel=1e-15)


# -- finite size: Kaufman -> Onsager -----------------------------------------------------------
def test_kaufman_to_onsager_off_critical():
    L = 64
    N = L * L
    # beta < beta_c: exponentially fast (measured |lnZ/N - f| = 2e-16 at L = 64).
    f = onsager_lnZ_per_site(0.3)
    assert abs(kaufman_lnZ(L, 0.3) / N - f) < 1e-14
    assert abs(kaufman_energy_per_site(L, 0.3) - onsager_energy_per_site(0.3)) < 1e-13
    # beta > beta_c: lnZ_L -> N f + ln 2 (two ordered states), exponentially fast
    # (measured 2.9e-5, 7.5e-9, 1.7e-13 at L = 8, 16, 32); lnZ/N - f itself is ln2/N = 1.7e-4.
    f = onsager_lnZ_per_site(0.6)
    assert abs(kaufman_lnZ(L, 0.6) - N * f - math.log(2)) < 1e-11
    assert abs(kaufman_energy_per_site(L, 0.6) - onsager_energy_per_site(0.6)) < 1e-13


def test_kaufman_to_onsager_at_beta_c():
    f = onsager_lnZ_per_site(BETA_C)
    Ls = [8, 16, 32, 64, 128]
    diff = [kaufman_lnZ(L, BETA_C) / L ** 2 - f for L in Ls]
    # Monotone from above, ~0.64 / N: 1.0e-2 (L=8) ... 3.9e-5 (L=128).
    assert all(a > b > 0 for a, b in zip(diff, diff[1:]))
    assert diff[-1] < 1e-4
    # The universal constant: L^2 (lnZ_L / N - f) - ln(2^{1/4} + 2^{-1/2}) = c / L^2 + ...,
    # c = 0.0872, 0.0826, 0.0816, 0.0814, 0.0813 at L = 8 .. 128.
    c = [(d * L ** 2 - LN_Z_CFT) * L ** 2 for d, L in zip(diff, Ls)]
    assert all(0.081 < x < 0.088 for x in c)
    assert all(a > b for a, b in zip(c, c[1:]))
    # The energy converges like 1/L at criticality: E_L - E_inf ~ -0.62 / L.
    e = [(kaufman_energy_per_site(L, BETA_C) - onsager_energy_per_site(BETA_C)) * L for L in Ls]
    assert all(-0.65 < x < -0.6 for x in e)


# -- continuous relaxation ---------------------------------------------------------------------
@pytest.mark.parametrize("L,beta,J,alpha", [(2, 0.3, 1.0, None), (3, BETA_C, -0.7, None),
                                            (4, 0.6, 1.0, 4.0)])
def test_relaxation_attributes(L, beta, J, alpha):
    r = IsingRelaxation(L, beta, J, alpha)
    N = L * L
    assert r.N == N
    np.testing.assert_array_equal(r.K, beta * J * adjacency(L))
    lam = np.linalg.eigvalsh(r.K)
    if alpha is None:
        assert r.alpha == pytest.approx(0.1 - lam[0], rel=1e-14)
        assert np.linalg.eigvalsh(r.Kp)[0] == pytest.approx(0.1, rel=1e-12)
    else:
        assert r.alpha == alpha
    np.testing.assert_allclose(r.Kp, r.K + r.alpha * np.eye(N), rtol=0, atol=0)
    np.testing.assert_allclose(r.Kp_inv @ r.Kp, np.eye(N), atol=1e-12)
    assert np.array_equal(r.Kp_inv, r.Kp_inv.T)
    assert r.logdet_Kp == pytest.approx(np.linalg.slogdet(r.Kp)[1], rel=1e-13)
    assert r.constant == pytest.approx(N * math.log(2) - 0.5 * N * math.log(2 * math.pi)
                                       - 0.5 * r.logdet_Kp - 0.5 * r.alpha * N, rel=1e-14)


def test_relaxation_alpha_does_not_change_lnZ():
    # Z_relax and the constant both depend on alpha; their sum is ln Z_Ising.
    ref = brute_force(3, 0.5)["lnZ"]
    for alpha in (None, 2.5, 10.0):
        r = IsingRelaxation(3, 0.5, alpha=alpha)
        assert rel(r.lnZ_relax_exact() + r.constant, ref) < 1e-13


def test_relaxation_log_prob_and_grad():
    r = IsingRelaxation(3, 0.6, J=0.8)
    rng = np.random.default_rng(0)
    x = rng.normal(scale=2.0, size=(7, 9))
    expected = (-0.5 * np.einsum("bi,ij,bj->b", x, r.Kp_inv, x)
                + np.log(np.cosh(x)).sum(axis=1))
    np.testing.assert_allclose(r.log_prob(x), expected, rtol=1e-13, atol=1e-13)
    assert r.log_prob(x[0]).shape == ()  # any leading shape
    big = np.full((1, 9), 1e3)           # cosh overflows at 710; the stable form does not
    assert np.isfinite(r.log_prob(big)).all() and np.isfinite(r.log_prob(-big)).all()
    # Central differences, h = 1e-5: error ~1e-10.
    h = 1e-5
    fd = np.stack([(r.log_prob(x + h * e) - r.log_prob(x - h * e)) / (2 * h)
                   for e in np.eye(9)], axis=1)
    np.testing.assert_allclose(r.grad_log_prob(x), fd, rtol=0, atol=1e-8)
    np.testing.assert_allclose(r.grad_log_prob(x), -x @ r.Kp_inv + np.tanh(x), atol=1e-15)


def test_relaxation_sample_spins_given_x():
    r = IsingRelaxation(2, 0.4)
    x = np.array([[-2.0, -0.3, 0.0, 1.1]])
    B = 200_000
    s = r.sample_spins_given_x(np.repeat(x, B, axis=0), np.random.default_rng(1))
    assert s.shape == (B, 4) and set(np.unique(s)) == {-1.0, 1.0}
    # E[s_i | x] = tanh x_i; standard error sqrt(1 - tanh^2) / sqrt(B) <= 2.3e-3.
    assert np.all(np.abs(s.mean(axis=0) - np.tanh(x[0])) < 5 * np.sqrt(1 / B))
    again = r.sample_spins_given_x(np.repeat(x, B, axis=0), np.random.default_rng(1))
    assert np.array_equal(s, again)
    extreme = r.sample_spins_given_x(np.array([[800.0, -800.0, 800.0, -800.0]]),
                                     np.random.default_rng(2))
    np.testing.assert_array_equal(extreme, [[1.0, -1.0, 1.0, -1.0]])


def _gauss_hermite_lnZ_relax(r, n):
    """ln of int exp(ln pi~(x)) dx in 4D by tensor Gauss-Hermite after whitening.

    x = C z with K' = C C^T turns the Gaussian factor into exp(-|z|^2 / 2) (dx = det C dz); the
    rest, prod cosh((C z)_i), is entire, so the probabilists' Gauss-Hermite rule with n nodes per
    axis converges faster than geometrically. Summed in logs.
    """
    z, w = special.roots_hermitenorm(n)
    C = linalg.cholesky(r.Kp, lower=True)
    grid = np.stack(np.meshgrid(*([z] * r.N), indexing="ij"), axis=-1).reshape(-1, r.N)
    log_w = sum(np.meshgrid(*([np.log(w)] * r.N), indexing="ij")).ravel()
    X = grid @ C.T
    log_cosh = (np.abs(X) + np.log1p(np.exp(-2.0 * np.abs(X))) - math.log(2.0)).sum(axis=1)
    return special.logsumexp(log_w + log_cosh) + np.log(np.diag(C)).sum()


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("alpha", [None, 5.0])
def test_relaxation_quadrature_L2(beta, alpha):
    r = IsingRelaxation(2, beta, alpha=alpha)
    quad = _gauss_hermite_lnZ_relax(r, 28)   # measured ~1e-15 relative (20 nodes: <= 6e-12)
    assert rel(quad, r.lnZ_relax_exact()) < 1e-13
    assert rel(quad, kaufman_lnZ(2, beta) - r.constant) < 1e-13
    assert rel(_gauss_hermite_lnZ_relax(r, 10), quad) > 1e-8  # the check is not vacuous
