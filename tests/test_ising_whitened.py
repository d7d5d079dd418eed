"""The relaxation in whitened variables: its density, gradient and constant against routes
that do not use its code."""
import itertools

import numpy as np
import pytest
from scipy import special

from ot_pde.ising.exact import BETA_C, IsingRelaxation, WhitenedIsingRelaxation, brute_force


def _lnZ_whitened_by_enumeration(relax):
    r""":math:`\int e^{-|y|^2/2}\prod_i\cosh(Sy)_i\,dy = (2\pi)^{N/2}2^{-N}\sum_s
    e^{s^\top K's/2}`: the Gaussian moment generating function, term by term."""
    N = relax.N
    s = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
    q = 0.5 * np.einsum("bi,ij,bj->b", s, relax.Kp, s)
    return 0.5 * N * np.log(2 * np.pi) - N * np.log(2.0) + special.logsumexp(q)


@pytest.mark.parametrize("L,beta", [(2, 0.3), (3, BETA_C), (3, 0.6)])
def test_constant_and_partition_function(L, beta):
    relax = WhitenedIsingRelaxation(L, beta)
    field = IsingRelaxation(L, beta)
    assert abs(relax.lnZ_relax_exact() - _lnZ_whitened_by_enumeration(relax)) < 1e-10
    # ln Z_Ising is the same from either variables, and equals brute force
    exact = brute_force(L, beta)["lnZ"]
    assert abs(relax.lnZ_relax_exact() + relax.constant - exact) < 1e-10
    assert abs(field.lnZ_relax_exact() + field.constant - exact) < 1e-10
    np.testing.assert_allclose(relax.sqrt_Kp @ relax.sqrt_Kp, relax.Kp, atol=1e-12)


def test_density_by_monte_carlo_at_L2():
    """E_{y ~ N(0, I)}[pi~(y) e^{|y|^2/2}] (2 pi)^{N/2} = Z: the unnormalized density itself,
    integrated by plain Monte Carlo, within 5 standard errors of the enumeration."""
    relax = WhitenedIsingRelaxation(2, 0.5)
    y = np.random.default_rng(0).standard_normal((400_000, relax.N))
    w = np.exp(relax.log_prob(y) + 0.5 * (y * y).sum(axis=1))
    Z = np.exp(_lnZ_whitened_by_enumeration(relax)) / (2 * np.pi) ** (relax.N / 2)
    assert abs(w.mean() - Z) < 5 * w.std() / np.sqrt(w.size)


def test_gradient_and_spins_in_the_field_variables():
    relax = WhitenedIsingRelaxation(3, BETA_C)
    rng = np.random.default_rng(1)
    y = rng.standard_normal((4, relax.N))
    h = 1e-6
    fd = np.stack([(relax.log_prob(y + h * e) - relax.log_prob(y - h * e)) / (2 * h)
                   for e in np.eye(relax.N)], axis=1)
    np.testing.assert_allclose(relax.grad_log_prob(y), fd, rtol=1e-7, atol=1e-7)
    u = rng.random(y.shape)
    np.testing.assert_array_equal(relax.spins_from_uniforms(y, u),
                                  IsingRelaxation(3, BETA_C).spins_from_uniforms(
                                      y @ relax.sqrt_Kp, u))
