"""The summary numbers every gp_flow construction reports (2D shooting, d > 2 polynomial and
neural fields): transport costs before/after, the gap to a lower bound, the log-likelihood
change on held-out data."""
from __future__ import annotations

import math

import numpy as np

from ...errors import NumericalError
from ..discrete_ot import gelbrich_bound


def transport_costs(s: dict, sample, z, gz, ld_fwd):
    """Into ``s``: E|T(z) - z|^2 before and E|T(G z) - z|^2 after on the draws ``z``, their
    standard errors, and the largest pointwise defect of G as a Gaussian-preserving map,
    ln gamma(G z) + ln det DG - ln gamma(z). Returns T(z) and T(G z)."""
    n = z.shape[0]
    x0, x1 = sample(z), sample(gz)
    c0 = np.sum((x0 - z) ** 2, axis=1)
    c1 = np.sum((x1 - z) ** 2, axis=1)
    s["transport_cost_before"] = float(c0.mean())
    s["transport_cost_after"] = float(c1.mean())
    s["transport_cost_before_stderr"] = float(c0.std(ddof=1) / math.sqrt(n))
    s["transport_cost_after_stderr"] = float(c1.std(ddof=1) / math.sqrt(n))
    s["cost_change_stderr"] = float((c1 - c0).std(ddof=1) / math.sqrt(n))
    defect = -0.5 * np.sum(gz ** 2, 1) + ld_fwd + 0.5 * np.sum(z ** 2, 1)
    s["gaussian_defect_max_abs"] = float(np.abs(defect).max())
    return x0, x1


def gap_to_bound(s: dict, est) -> None:
    """Into ``s``: the discrete-OT bound ``est`` and the fraction of the gap to it closed."""
    s["ot_lower_bound"] = est.value
    s["ot_lower_bound_stderr"] = est.stderr
    gap0 = s["transport_cost_before"] - est.value
    s["gap_closed_fraction"] = ((s["transport_cost_before"] - s["transport_cost_after"])
                                / gap0 if gap0 > 0 else 0.0)
    s["cost_above_bound"] = bool(s["transport_cost_after"]
                                 >= est.value - 3.0 * est.stderr
                                 - 3.0 * s["transport_cost_after_stderr"])


def likelihood_change(s: dict, lp, zd, w, ld_back) -> None:
    """Into ``s``: held-out log-likelihoods before/after, ln p_new(x) = ln p(x) - ln gamma(z)
    + ln gamma(G^{-1} z) + ln det DG^{-1} with z = T^{-1} x, w = G^{-1} z."""
    change = -0.5 * np.sum(w ** 2, 1) + 0.5 * np.sum(zd ** 2, 1) + ld_back
    if not (np.all(np.isfinite(lp)) and np.all(np.isfinite(change))):
        raise NumericalError("non-finite log-likelihood before/after the rearrangement")
    s["log_likelihood_before"] = float(lp.mean())
    s["log_likelihood_after"] = float((lp + change).mean())
    s["log_likelihood_change"] = float(change.mean())
    s["log_likelihood_change_max_abs"] = float(np.abs(change).max())


def gelbrich_with_error(s: dict, x0: np.ndarray, rng: np.random.Generator,
                        resamples: int = 32) -> None:
    """Into ``s``: Gelbrich's moment bound on W2^2(gamma, T#gamma) from the flow's samples
    ``x0`` with its bootstrap standard error, and the fraction of the gap to it closed (a
    valid lower bound in any dimension, unlike a discrete-OT estimate in high d)."""
    n = x0.shape[0]
    value = gelbrich_bound(x0)
    boot = [gelbrich_bound(x0[rng.integers(0, n, n)]) for _ in range(resamples)]
    s["gelbrich_bound"] = value
    s["gelbrich_bound_stderr"] = float(np.std(boot, ddof=1))
    gap0 = s["transport_cost_before"] - value
    s["gap_closed_fraction_gelbrich"] = ((s["transport_cost_before"]
                                          - s["transport_cost_after"]) / gap0
                                         if gap0 > 0 else 0.0)
