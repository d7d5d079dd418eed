"""numba kernel of the checkerboard base: the inverse CDF of a two-component Gaussian mixture.

There is no numpy twin: the safeguarded Newton iteration runs a data-dependent number of steps
per element, and numba is a core dependency, so every backend uses this kernel.
"""
from __future__ import annotations

import math

import numba


@numba.njit(cache=True)
def mixture_inverse_cdf_kernel(u, w, mu, sigma, quantile, out):
    inv_sqrt2 = 0.7071067811865476
    norm = 1.0 / (sigma * 2.5066282746310002)
    for i in range(u.size):
        # the root lies between the components' quantiles -mu + sigma q and mu + sigma q;
        # Newton steps that leave the shrinking bracket are replaced by bisection
        lo, hi = -mu + sigma * quantile[i], mu + sigma * quantile[i]
        z = hi if w[i] > 0.5 else lo
        for _ in range(200):
            a, b = (z - mu) / sigma, (z + mu) / sigma
            f = (w[i] * 0.5 * math.erfc(-a * inv_sqrt2)
                 + (1.0 - w[i]) * 0.5 * math.erfc(-b * inv_sqrt2) - u[i])
            if f < 0.0:
                lo = z
            else:
                hi = z
            dens = norm * (w[i] * math.exp(-0.5 * a * a) + (1.0 - w[i]) * math.exp(-0.5 * b * b))
            step = f / dens if dens > 0.0 else math.inf
            z_new = z - step
            if not (lo <= z_new <= hi):
                z_new = 0.5 * (lo + hi)
            done = abs(z_new - z) <= 1e-14 * (1.0 + abs(z))
            z = z_new
            if done or hi - lo <= 1e-15 * (1.0 + abs(z)):
                break
        out[i] = z
