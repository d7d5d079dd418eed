"""Target distributions of flow cases (a library): the ``[target]`` section and its data.

A Gaussian mixture (density known in closed form), a 2D toy data set (samples only; the
checkerboard's entropy is known) or samples from a file, each split into training and held-out
sets by one generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import Field, Section
from ..errors import InputError
from ..io.arrays import load_samples
from . import data as toy_data

#: sample-only toy data sets (their densities are not known in closed form, except noted)
TOY_SETS = tuple(toy_data.DATASETS)


def target_section() -> Section:
    """The ``[target]`` schema section shared by the flow kinds that learn a distribution."""
    return Section({}, variants={
        "mixture": {
            "means": Field("float_matrix", doc="component centres, one row each (sets d)"),
            "stds": Field("float_list", exclusive_minimum=0.0,
                          doc="isotropic std per component"),
            "weights": Field("float_list", None, minimum=0.0,
                             doc="component weights (default equal)"),
        },
        **{name: {} for name in TOY_SETS},
        "file": {
            "path": Field("path", must_exist=True, doc=".npy file or HDF5 file of samples (N, d)"),
            "dataset": Field("str", None, doc="dataset name inside an HDF5 file"),
        },
    }, doc="the distribution to learn: a Gaussian mixture (known density), a 2D toy data set "
           "or samples from a file")


@dataclass
class TargetData:
    """The distribution of a case: exact mixture (if known), data sets, entropy (if known)."""

    dim: int
    mixture: toy_data.GaussianMixture | None
    train: np.ndarray | None
    test: np.ndarray | None
    entropy: float | None


def _mixture(case) -> toy_data.GaussianMixture:
    where = case.source
    means = np.asarray(case.get("target.means"), dtype=np.float64)
    stds = case.get("target.stds")
    weights = case.get("target.weights")
    k = means.shape[0]
    if len(stds) != k:
        raise InputError(f"expected one std per component ({k}), got {len(stds)}", source=where,
                         key="target.stds")
    if weights is not None:
        if len(weights) != k:
            raise InputError(f"expected one weight per component ({k}), got {len(weights)}",
                             source=where, key="target.weights")
        if sum(weights) <= 0:
            raise InputError("weights sum to zero", source=where, key="target.weights")
    return toy_data.GaussianMixture(means, stds=np.asarray(stds), weights=weights)


def _load_samples(case) -> np.ndarray:
    """The target samples of a ``file`` target, through the one safe array reader."""
    return load_samples(case.get("target.path"), case.get("target.dataset"),
                        source=case.source, key="target.path", dataset_key="target.dataset")


def build_target(case, rng: np.random.Generator) -> TargetData:
    """Exact density and train/test sets of ``[target]`` (drawn with ``rng``)."""
    where, kind = case.source, case.get("target.type")
    n_train, n_test = case.get("training.n_train"), case.get("training.n_test")
    if kind == "file":
        arr = _load_samples(case)
        if arr.shape[0] <= n_test:
            raise InputError(f"the file holds {arr.shape[0]} samples, not more than "
                             f"training.n_test = {n_test}", source=where, key="training.n_test")
        arr = arr[rng.permutation(arr.shape[0])]
        test, train = arr[:n_test], arr[n_test:n_test + n_train]
        return TargetData(arr.shape[1], None, train, test, None)
    if kind == "mixture":
        mixture = _mixture(case)
    elif kind == "eight_gaussians":
        mixture = toy_data.eight_gaussians_mixture()
    else:
        mixture = None
    if mixture is not None:
        train, test = mixture.sample(n_train, rng), mixture.sample(n_test, rng)
        entropy = mixture.entropy() if mixture.dim <= 2 else None
        return TargetData(mixture.dim, mixture, train, test, entropy)
    train, test = toy_data.sample(kind, n_train, rng), toy_data.sample(kind, n_test, rng)
    # checkerboard: uniform on 8 squares of side 2, density 1/32, entropy ln 32
    entropy = math.log(32.0) if kind == "checkerboard" else None
    return TargetData(2, None, train, test, entropy)
