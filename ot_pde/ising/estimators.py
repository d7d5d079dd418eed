r"""Estimators of :math:`\ln Z` and observables from samples of a variational density.

For samples :math:`x_k \sim q` with known :math:`\ln q(x_k)` and an unnormalized target
:math:`\tilde\pi`, the log-weights are :math:`\ln w_k = \ln\tilde\pi(x_k) - \ln q(x_k)` and

* the **variational** estimate :math:`\widehat{\ln Z}_{var} = \overline{\ln w}` is a lower bound
  in expectation, :math:`\mathbb E_q[\ln w] = \ln Z - \mathrm{KL}(q\,\|\,\pi) \le \ln Z` (the
  variational free energy :math:`F_q = -\overline{\ln w}/\beta` bounds :math:`F` from above);
  its standard error is :math:`\mathrm{sd}(\ln w)/\sqrt n`;
* the **importance** estimate :math:`\widehat{\ln Z}_{IS} = \ln \frac1n\sum_k w_k` is the log of
  an unbiased estimate of :math:`Z`; its standard error is the delta-method one,
  :math:`\mathrm{sd}(w)/(\bar w\sqrt n)`;
* the **effective sample size** fraction is :math:`(\sum w)^2 / (n\sum w^2) \in (0, 1]`, and
  the **largest weight's share** :math:`\max_k w_k / \sum_k w_k \in [1/n, 1]`: when one
  sample carries a good part of the sum, the weights are heavy-tailed, the importance estimate
  rests on the few samples that happened to land in the tail and its delta-method error bar
  (computed from those same samples) is too small to be trusted;
* self-normalized averages :math:`\sum_k w_k f_k / \sum_k w_k` estimate :math:`\mathbb E_\pi[f]`,
  with the delta-method standard error
  :math:`\sqrt{\sum_k w_k^2 (f_k - \hat f)^2} / \sum_k w_k`.

All work on host numpy arrays with the weights rescaled by their maximum (no overflow).
"""
from __future__ import annotations

import math

import numpy as np


def _finite(log_w) -> np.ndarray:
    log_w = np.asarray(log_w, dtype=np.float64).reshape(-1)
    if log_w.size < 2:
        raise ValueError("estimators need at least 2 samples")
    if not np.all(np.isfinite(log_w)):
        raise ValueError("log-weights must be finite")
    return log_w


def log_partition_estimates(log_w) -> dict:
    r"""Variational and importance estimates of :math:`\ln Z` with standard errors, and ESS.

    Returns
    -------
    dict
        ``variational``, ``variational_stderr``, ``importance``, ``importance_stderr``,
        ``ess_fraction``, ``largest_weight_fraction``.
    """
    log_w = _finite(log_w)
    n = log_w.size
    w = np.exp(log_w - log_w.max())
    mean_w = w.mean()
    return {
        "variational": float(log_w.mean()),
        "variational_stderr": float(log_w.std(ddof=1) / math.sqrt(n)),
        "importance": float(log_w.max() + math.log(mean_w)),
        "importance_stderr": float(w.std(ddof=1) / (mean_w * math.sqrt(n))),
        "ess_fraction": float(w.sum() ** 2 / (n * (w * w).sum())),
        "largest_weight_fraction": float(1.0 / w.sum()),  # the largest w is 1 after rescaling
    }


def weighted_mean(values, log_w) -> tuple[float, float]:
    r"""Self-normalized importance average of ``values`` and its delta-method standard error."""
    log_w = _finite(log_w)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != log_w.shape:
        raise ValueError(f"values have shape {values.shape}, log-weights {log_w.shape}")
    w = np.exp(log_w - log_w.max())
    total = w.sum()
    mean = float((w * values).sum() / total)
    stderr = float(math.sqrt(((w * (values - mean)) ** 2).sum()) / total)
    return mean, stderr
