"""Densities on regular grids, specified in case files.

A density section (``[source]``, ``[target]``) has a ``type``:

``gaussian``
    ``mean`` and either ``std`` (isotropic) or ``cov``; truncated to the box.
``mixture``
    ``means`` (one row per component), ``stds`` (isotropic, one per component), ``weights``.
``uniform``
    constant on the sub-box ``[lower, upper]``.
``product``
    a separable density :math:`\\rho(x) = \\prod_k f_k(x_k)`, each factor a 1D Gaussian
    mixture: row ``k`` of ``means``, ``stds`` and ``weights`` holds the components of
    :math:`f_k` (rows of equal length: pad with weight 0). Exact references use the
    factors (:func:`product_factors`).
``file``
    an array from ``.npy`` (``path``) or an HDF5 dataset (``path`` + ``dataset``); values are
    densities at the cell centres.

Every density is evaluated at the cell centres, checked (finite, non-negative, not all zero)
and, when ``normalize = true`` (the default, stated in every shipped case), scaled to unit mass
:math:`\\sum \\rho\\, \\Delta x = 1`. With ``normalize = false`` the values are used as given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import Field, Section
from .errors import InputError


def density_section(doc: str) -> Section:
    """Case-file section describing one density."""
    common = {"normalize": Field("bool", True, doc="scale to unit mass (sum rho dx = 1)")}
    return Section(
        common,
        variants={
            "gaussian": {
                "mean": Field("float_list", doc="centre"),
                "std": Field("float", None, exclusive_minimum=0.0, doc="isotropic standard deviation"),
                "cov": Field("float_matrix", None, doc="covariance matrix (instead of std)"),
            },
            "mixture": {
                "means": Field("float_matrix", doc="component centres, one row each"),
                "stds": Field("float_list", exclusive_minimum=0.0, doc="isotropic std per component"),
                "weights": Field("float_list", None, minimum=0.0, doc="component weights (default equal)"),
            },
            "uniform": {
                "lower": Field("float_list", doc="lower corner of the support"),
                "upper": Field("float_list", doc="upper corner of the support"),
            },
            "product": {
                "means": Field("float_matrix", doc="component centres of the 1D factor along "
                                                   "axis k in row k"),
                "stds": Field("float_matrix", exclusive_minimum=0.0,
                              doc="component standard deviations, same shape as means"),
                "weights": Field("float_matrix", None, minimum=0.0,
                                 doc="component weights, same shape (default equal); each row "
                                     "is normalized"),
            },
            "file": {
                "path": Field("path", must_exist=True, doc=".npy file or HDF5 file"),
                "dataset": Field("str", None, doc="dataset name inside an HDF5 file"),
            },
        },
        doc=doc,
    )


@dataclass
class GridDensity:
    """A density sampled at cell centres, with what is known about it in closed form."""

    values: np.ndarray
    raw_mass: float
    #: (mean, cov) when the density is a Gaussian, for closed-form references
    gaussian: tuple[np.ndarray, np.ndarray] | None
    #: mass of the continuous density outside the box (0 for file/uniform densities); an
    #: upper bound for correlated Gaussians
    truncated_mass: float
    spec: dict

    def pdf(self, points: np.ndarray) -> np.ndarray | None:
        """Continuous (untruncated) density at ``points`` (shape ``(..., d)``), if analytic."""
        return _analytic_pdf(self.spec, points)


def _covariance(spec, d, where, key_prefix) -> np.ndarray:
    if (spec.get("std") is None) == (spec.get("cov") is None):
        raise InputError("give exactly one of 'std' and 'cov'", source=where,
                         key=f"{key_prefix}.std")
    if spec.get("std") is not None:
        return np.eye(d) * spec["std"] ** 2
    cov = np.asarray(spec["cov"], dtype=np.float64)
    if cov.shape != (d, d) or not np.allclose(cov, cov.T):
        raise InputError(f"expected a symmetric {d}x{d} matrix, got shape {cov.shape}",
                         source=where, key=f"{key_prefix}.cov")
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise InputError("covariance is not positive definite", source=where,
                         key=f"{key_prefix}.cov")
    return cov


def gaussian_pdf(points, mean, cov):
    d = mean.size
    diff = points - mean
    sol = np.linalg.solve(cov, diff.reshape(-1, d).T).T.reshape(diff.shape)
    quad = np.sum(diff * sol, axis=-1)
    norm = np.sqrt((2 * np.pi) ** d * np.linalg.det(cov))
    return np.exp(-0.5 * quad) / norm


def _analytic_pdf(spec, points):
    kind = spec["type"]
    d = points.shape[-1]
    if kind == "gaussian":
        return gaussian_pdf(points, np.asarray(spec["mean"], dtype=float), np.asarray(spec["cov"]))
    if kind == "mixture":
        means = np.asarray(spec["means"], dtype=float)
        weights = _mixture_weights(spec, len(means))
        return sum(w * gaussian_pdf(points, m, np.eye(d) * s ** 2)
                   for w, m, s in zip(weights, means, spec["stds"]))
    if kind == "uniform":
        lo, hi = np.asarray(spec["lower"]), np.asarray(spec["upper"])
        inside = np.all((points >= lo) & (points <= hi), axis=-1)
        return inside / np.prod(hi - lo)
    if kind == "product":
        out = 1.0
        for k, (means, stds, weights) in enumerate(product_factors(spec)):
            x = points[..., k:k + 1]
            out = out * np.sum(weights * np.exp(-0.5 * ((x - means) / stds) ** 2)
                               / (np.sqrt(2 * np.pi) * stds), axis=-1)
        return out
    return None


def product_factors(spec) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(means, stds, weights)`` of each 1D factor of a ``product`` density, weights
    normalized per factor."""
    means = np.asarray(spec["means"], float)
    stds = np.asarray(spec["stds"], float)
    weights = (np.ones_like(means) if spec.get("weights") is None
               else np.asarray(spec["weights"], float))
    return [(m, s, w / w.sum()) for m, s, w in zip(means, stds, weights)]


def _mixture_weights(spec, n):
    weights = np.ones(n) if spec.get("weights") is None else np.asarray(spec["weights"], float)
    return weights / weights.sum()


def _outside_mass_diagonal(mean, std, lower, upper) -> float:
    """Mass of a Gaussian with independent coordinates outside a box (exact)."""
    lo = (np.asarray(lower) - mean) / (np.sqrt(2) * std)
    hi = (np.asarray(upper) - mean) / (np.sqrt(2) * std)
    # math.erf on the d bounds: scipy.special costs ~0.4 s to import, a fifth of a small run
    erf = np.vectorize(math.erf, otypes=[float])
    return float(1.0 - np.prod(0.5 * (erf(hi) - erf(lo))))


def _outside_mass(spec, lower, upper, d) -> float:
    """Mass of the continuous density outside the box.

    Exact for isotropic or diagonal Gaussians and their mixtures; for a correlated Gaussian the
    union bound over the axes (an upper bound).
    """
    kind = spec["type"]
    if kind == "gaussian":
        cov = np.asarray(spec["cov"], float)
        mean = np.asarray(spec["mean"], float)
        std = np.sqrt(np.diag(cov))
        if np.allclose(cov, np.diag(np.diag(cov))):
            return _outside_mass_diagonal(mean, std, lower, upper)
        return float(sum(_outside_mass_diagonal(mean[k:k + 1], std[k:k + 1], lower[k:k + 1],
                                                upper[k:k + 1]) for k in range(d)))
    if kind == "mixture":
        means = np.asarray(spec["means"], float)
        weights = _mixture_weights(spec, len(means))
        return float(sum(w * _outside_mass_diagonal(m, s, lower, upper)
                         for w, m, s in zip(weights, means, spec["stds"])))
    if kind == "product":
        inside = 1.0
        for k, (means, stds, weights) in enumerate(product_factors(spec)):
            inside *= sum(w * (1.0 - _outside_mass_diagonal(np.array([m]), np.array([sd]),
                                                             lower[k:k + 1], upper[k:k + 1]))
                          for m, sd, w in zip(means, stds, weights))
        return float(1.0 - inside)
    return 0.0


def _load_file(spec, where, key_prefix) -> np.ndarray:
    """The density array of a ``file`` section, through the one safe array reader."""
    from .io.arrays import load_array

    return load_array(spec["path"], spec.get("dataset"), source=where,
                      key=f"{key_prefix}.path", dataset_key=f"{key_prefix}.dataset")


def build_density(spec: dict, grid, *, where: str, key_prefix: str) -> GridDensity:
    """Evaluate a density section on ``grid`` (a :class:`SpaceTimeGrid`-like object).

    ``grid`` needs ``ndim``, ``shape``, ``lower``, ``upper``, ``cell_volume`` and ``mesh()``.
    """
    d = grid.ndim
    kind = spec["type"]
    gaussian = None
    truncated = 0.0
    if kind == "file":
        values = np.asarray(_load_file(spec, where, key_prefix), dtype=np.float64)
        if values.shape != tuple(grid.shape):
            raise InputError(f"density has shape {values.shape}, the grid has {tuple(grid.shape)}",
                             source=where, key=f"{key_prefix}.path")
    else:
        for name in {"gaussian": ["mean"], "uniform": ["lower", "upper"]}.get(kind, []):
            if len(spec[name]) != d:
                raise InputError(f"expected {d} values (the grid's dimension), got "
                                 f"{len(spec[name])}", source=where, key=f"{key_prefix}.{name}")
        if kind == "gaussian":
            cov = _covariance(spec, d, where, key_prefix)
            spec = dict(spec, cov=cov.tolist(), std=None)
            gaussian = (np.asarray(spec["mean"], float), cov)
        if kind == "mixture":
            means = np.asarray(spec["means"], float)
            if means.ndim != 2 or means.shape[1] != d:
                raise InputError(f"expected rows of {d} values", source=where,
                                 key=f"{key_prefix}.means")
            n = len(means)
            for name in ("stds", "weights"):
                if spec.get(name) is not None and len(spec[name]) != n:
                    raise InputError(f"expected {n} values (one per row of 'means')",
                                     source=where, key=f"{key_prefix}.{name}")
        if kind == "product":
            shapes = {name: np.shape(spec[name]) for name in ("means", "stds", "weights")
                      if spec.get(name) is not None}
            if shapes["means"][0] != d:
                raise InputError(f"expected {d} rows (one 1D factor per axis), got "
                                 f"{shapes['means'][0]}", source=where,
                                 key=f"{key_prefix}.means")
            for name, shape in shapes.items():
                if shape != shapes["means"]:
                    raise InputError(f"expected the shape of 'means' {shapes['means']}, got "
                                     f"{shape}", source=where, key=f"{key_prefix}.{name}")
            if spec.get("weights") is not None and (np.sum(spec["weights"], axis=1) <= 0).any():
                raise InputError("every row needs a positive weight", source=where,
                                 key=f"{key_prefix}.weights")
        if kind == "uniform" and any(b <= a for a, b in zip(spec["lower"], spec["upper"])):
            raise InputError("expected upper > lower on every axis", source=where,
                             key=f"{key_prefix}.upper")
        points = np.stack(grid.mesh(), axis=-1)
        values = _analytic_pdf(spec, points).astype(np.float64)
        truncated = _outside_mass(spec, grid.lower, grid.upper, d)
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"density has {int(bad.sum())} non-finite values", source=where,
                         key=f"{key_prefix}.{'path' if kind == 'file' else 'type'}")
    if (values < 0).any():
        raise InputError(f"density has {int((values < 0).sum())} negative values (min "
                         f"{values.min():.3g})", source=where,
                         key=f"{key_prefix}.{'path' if kind == 'file' else 'type'}")
    with np.errstate(over="ignore"):
        raw_mass = float(values.sum() * grid.cell_volume)
    if not np.isfinite(raw_mass):
        raise InputError(f"the density's mass overflows (values up to {values.max():.3g}); "
                         "give values of a finite total", source=where,
                         key=f"{key_prefix}.{'path' if kind == 'file' else 'type'}")
    if raw_mass <= 0:
        raise InputError("density is zero on the whole grid (is its support inside the box?)",
                         source=where, key=f"{key_prefix}.type")
    if spec["normalize"]:
        values = values / raw_mass
    return GridDensity(values=values, raw_mass=raw_mass, gaussian=gaussian,
                       truncated_mass=truncated, spec=spec)
