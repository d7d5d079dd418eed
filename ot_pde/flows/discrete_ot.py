r"""The optimal transport cost between two sampled distributions, by exact assignment.

For :math:`n` samples :math:`a_i\sim\mu` and :math:`b_j\sim\nu`, the discrete problem
:math:`\min_\sigma \frac1n\sum_i |a_i - b_{\sigma(i)}|^2` over permutations is solved exactly by
:func:`scipy.optimize.linear_sum_assignment`. Its expectation is biased *upwards*:
:math:`W_2^2` is jointly convex and the empirical measures average to :math:`\mu,\nu`, so
:math:`\mathbb E\,W_2^2(\mu_n,\nu_n)\ge W_2^2(\mu,\nu)`, with a bias that decays like
:math:`n^{-2/d}` for :math:`d\ge 3` (about :math:`\log n/n` in 2D).

Estimators (:func:`estimate_w2`)
    ``"plain"``: :math:`W_n = W_2^2(\mu_n,\nu_n)`.
    ``"debiased"``: :math:`D_n = W_2^2(\mu_n,\nu_n) - \tfrac12 W_2^2(\mu_n,\mu_n') -
    \tfrac12 W_2^2(\nu_n,\nu_n')` with independent copies :math:`\mu_n',\nu_n'`; its expectation
    is exactly 0 when :math:`\mu = \nu` and exactly :math:`|b|^2` for a translation by
    :math:`b`, and its residual bias is much smaller than that of :math:`W_n` in general.

Extrapolation in the sample size
    At each size :math:`n_k` the estimator is averaged over repeats (standard error from their
    spread); :math:`E(n) = W_\infty + c\,r(n)` is fitted by weighted least squares with
    :math:`r(n) = n^{-2/d}` for :math:`d\ge3`, :math:`\log n / n` for :math:`d = 2` and
    :math:`1/n` for :math:`d = 1`; :math:`W_\infty` and its standard error (from the fit's
    covariance, inflated by the reduced :math:`\chi^2` when that exceeds 1) are the estimate.
    When the slope :math:`c` is not significant (within two standard errors of 0) the
    weighted mean over sizes is used instead.
    In high dimension :math:`r(n)` varies little over feasible :math:`n` and the extrapolation
    is uncontrolled (in 43D it lands above the flow's own cost, an upper bound), so by default
    it is done only for :math:`d\le4`; above, the largest size's value is reported, and the
    debiased estimator is then biased *low* (use :func:`gelbrich_bound` beside it).

Gelbrich's bound (:func:`gelbrich_bound`)
    :math:`W_2^2(\mu,\nu)\ge |m_\mu - m_\nu|^2 + \mathrm{tr}(\Sigma_\mu + \Sigma_\nu -
    2(\Sigma_\mu^{1/2}\Sigma_\nu\Sigma_\mu^{1/2})^{1/2})` for *any* two distributions with
    these means and covariances (equality for Gaussians): a true lower bound that sample
    moments estimate well in any dimension, where the discrete OT estimate does not.

Nothing here reads files or prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

ESTIMATORS = ("debiased", "plain")


def assignment_cost(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """Exact discrete OT between two equal-size point clouds (uniform weights).

    Returns the mean squared distance of the optimal matching and ``perm`` such that
    ``a[i]`` is matched to ``b[perm[i]]``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cost = (np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * a @ b.T)
    np.maximum(cost, 0.0, out=cost)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return float(cost[rows, cols].mean()), perm


def rate(n, dim: int):
    """The regressor :math:`r(n)` of the bias model (see the module notes)."""
    n = np.asarray(n, dtype=np.float64)
    if dim >= 3:
        return n ** (-2.0 / dim)
    if dim == 2:
        return np.log(n) / n
    return 1.0 / n


@dataclass
class OTEstimate:
    """Result of :func:`estimate_w2`; per-size arrays are indexed like ``sizes``."""

    value: float
    stderr: float
    slope: float
    estimator: str
    sizes: np.ndarray
    plain_mean: np.ndarray
    plain_stderr: np.ndarray
    estimate_mean: np.ndarray
    estimate_stderr: np.ndarray
    #: the largest size's first repeat: a-samples, matched b-samples (b[perm])
    matched: tuple[np.ndarray, np.ndarray]


def _mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se


def fit_extrapolation(sizes, means, stderrs, dim: int) -> tuple[float, float, float]:
    """Weighted least squares of ``means ~ W + c r(n)``: (W, stderr of W, c).

    When the fitted slope ``c`` is within two standard errors of zero the data show no trend
    and the constant model is used instead (weighted mean, ``c = 0``): extrapolating a trend
    that is not there only adds variance.
    """
    sizes, means = np.asarray(sizes, dtype=np.float64), np.asarray(means, dtype=np.float64)
    stderrs = np.asarray(stderrs, dtype=np.float64)
    if sizes.size == 1:
        return float(means[0]), float(stderrs[0]), 0.0
    finite = np.isfinite(stderrs) & (stderrs > 0)
    se = np.where(finite, stderrs, stderrs[finite].max() if finite.any() else 1.0)
    w = 1.0 / se ** 2

    def wls(X):
        XtW = X.T * w
        cov = np.linalg.inv(XtW @ X)
        coef = cov @ (XtW @ means)
        dof = sizes.size - X.shape[1]
        if dof > 0:
            chi2 = float(np.sum(w * (means - X @ coef) ** 2)) / dof
            cov = cov * max(1.0, chi2)
        return coef, cov

    coef, cov = wls(np.stack([np.ones_like(sizes), rate(sizes, dim)], axis=1))
    if abs(coef[1]) <= 2.0 * math.sqrt(cov[1, 1]):
        coef, cov = wls(np.ones((sizes.size, 1)))
        return float(coef[0]), float(math.sqrt(cov[0, 0])), 0.0
    return float(coef[0]), float(math.sqrt(cov[0, 0])), float(coef[1])


def estimate_w2(sample_a, sample_b, sizes, repeats: int, rng: np.random.Generator, dim: int,
                estimator: str = "debiased", extrapolate: bool | None = None) -> OTEstimate:
    r""":math:`W_2^2(\mu,\nu)` from samplers of the two distributions, extrapolated in ``n``.

    Parameters
    ----------
    sample_a, sample_b : callable
        ``sample(n, rng) -> (n, d)`` host arrays of :math:`\mu` and :math:`\nu`.
    sizes : sequence of int
        Sample sizes, each >= 2.
    repeats : int
        Independent repeats per size (>= 2 for error bars).
    estimator : {"debiased", "plain"}
    extrapolate : bool, optional
        Fit the bias model (default: only for ``dim <= 4``, where :math:`r(n)` varies enough
        over feasible sizes); otherwise the largest size's mean is the estimate.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}")
    sizes = np.asarray(sorted(int(n) for n in sizes), dtype=np.int64)
    plain_m, plain_s, est_m, est_s = [], [], [], []
    matched = None
    for n in sizes:
        plain, est = [], []
        for rep in range(repeats):
            a1, b1 = sample_a(int(n), rng), sample_b(int(n), rng)
            w_ab, perm = assignment_cost(a1, b1)
            if n == sizes[-1] and rep == 0:
                matched = (a1, b1[perm])
            plain.append(w_ab)
            if estimator == "debiased":
                w_aa = assignment_cost(a1, sample_a(int(n), rng))[0]
                w_bb = assignment_cost(b1, sample_b(int(n), rng))[0]
                est.append(w_ab - 0.5 * (w_aa + w_bb))
            else:
                est.append(w_ab)
        m, s = _mean_se(plain)
        plain_m.append(m)
        plain_s.append(s)
        m, s = _mean_se(est)
        est_m.append(m)
        est_s.append(s)
    if extrapolate is None:
        extrapolate = dim <= 4
    if extrapolate:
        value, stderr, slope = fit_extrapolation(sizes, est_m, est_s, dim)
    else:
        value, stderr, slope = est_m[-1], est_s[-1], 0.0
    return OTEstimate(value, stderr, slope, estimator, sizes, np.array(plain_m),
                      np.array(plain_s), np.array(est_m), np.array(est_s), matched)


def gelbrich_bound(samples: np.ndarray) -> float:
    r"""Gelbrich's lower bound on :math:`W_2^2(\mathcal N(0, I), \nu)` from samples of
    :math:`\nu`: :math:`|m|^2 + \mathrm{tr}(I + \Sigma - 2\Sigma^{1/2})`."""
    x = np.asarray(samples, dtype=np.float64)
    m = x.mean(axis=0)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    return float(m @ m + np.sum(1.0 + eig - 2.0 * np.sqrt(eig)))
