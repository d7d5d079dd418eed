"""Target distributions of flow cases (a library): the ``[target]`` section and its data.

A Gaussian mixture (density known in closed form), a 2D toy data set (samples only; the
checkerboard's entropy is known) or samples from a file, each split into training and held-out
sets by one generator; or real images, scikit-learn's 8x8 digits, in logit space with a fixed
train/validation/test split (:class:`PixelSpace`: the pixel-space likelihoods of a model and
of two Gaussian baselines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import Field, Section
from ..errors import InputError
from ..io.arrays import load_samples
from . import data as toy_data
from .data import LogitPixels, fit_gaussian
from .exported.checkpoint import load_checkpoint
from .exported.models import build_flow

#: sample-only toy data sets (their densities are not known in closed form, except noted)
TOY_SETS = tuple(toy_data.DATASETS)


#: scikit-learn's ``load_digits``: 1797 images of 8 x 8 pixels with grey levels 0..16
DIGITS_LEVELS = 17
DIGITS_DIM = 64
#: the fixed split: a permutation of the 1797 images by this seed (whatever run.seed is), the
#: first DIGITS_TEST for testing, the next DIGITS_VALIDATION for validation, the rest (1197)
#: for training
DIGITS_SPLIT_SEED = 0
DIGITS_TEST = 300
DIGITS_VALIDATION = 300


def target_section(*, images: bool = False) -> Section:
    """The ``[target]`` schema section shared by the flow kinds that learn a distribution;
    ``images`` adds the ``digits`` type (for kinds that report :class:`PixelSpace`)."""
    digits = {"digits": {
        "alpha": Field("float", 0.05, exclusive_minimum=0.0, exclusive_maximum=0.5,
                       doc="logit transform y = logit(alpha + (1 - 2 alpha) s / 17) of the "
                           "dequantized grey levels s (RealNVP's 0.05)"),
        "checkpoint": Field("path", None, must_exist=True,
                            doc="an exported flow of the same logit space (e.g. "
                                "checkpoints/realnvp_digits.npz), evaluated on the same test "
                                "images as a further baseline (the 'checkpoint' keys)"),
    }} if images else {}
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
        **digits,
    }, doc="the distribution to learn: a Gaussian mixture (known density), a 2D toy data set, "
           "samples from a file" + (" or the 8x8 digits images (needs scikit-learn)"
                                    if images else ""))


@dataclass
class PixelSpace:
    """Images modelled in logit space: the transform, the training images (their grey levels,
    dequantized afresh for every batch by :meth:`sampler`), and per held-out split (``test``,
    ``validation``) its fixed dequantization's log-Jacobians and the logit-space
    log-densities of the Gaussian baselines fitted on the training split."""

    transform: LogitPixels
    train_images: np.ndarray
    validation: np.ndarray
    log_jacobian: dict
    baselines: dict

    def sampler(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` training images (with replacement), freshly dequantized, in logit space."""
        rows = self.train_images[rng.integers(0, self.train_images.shape[0], size=n)]
        return self.transform.to_logit(self.transform.dequantize(rows, rng))

    def summary(self, split: str, log_p_logit) -> dict:
        r"""Summary keys of a model's logit-space log-densities on a held-out ``split``: the
        pixel-space NLL (nats per image) and bits per dimension with standard errors, and on
        ``test`` the same bits per dimension of each baseline and the model's gain over it
        (baseline minus model, standard error of the paired differences)."""
        jac = self.log_jacobian[split]
        out = _nll_keys(f"{split}_pixel", np.asarray(log_p_logit) + jac)
        if split == "test":
            model_bpd = _bits_per_dim(np.asarray(log_p_logit) + jac)
            for name, lp in self.baselines.items():
                out.update(_nll_keys(f"{split}_{name}", lp + jac))
                gain = _bits_per_dim(lp + jac) - model_bpd
                out[f"bits_per_dim_gain_over_{name}"] = float(gain.mean())
                out[f"bits_per_dim_gain_over_{name}_stderr"] = _stderr(gain)
        return out


def _stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(values.size))


def _bits_per_dim(log_p_pixels: np.ndarray) -> np.ndarray:
    r""":math:`-\ln p_S / (d \ln 2)` per image."""
    return -log_p_pixels / (DIGITS_DIM * math.log(2.0))


def _nll_keys(label: str, log_p_pixels: np.ndarray) -> dict:
    """``nll_<label>`` (nats per image) and ``bits_per_dim_<label>``, with standard errors."""
    nll, bpd = -log_p_pixels, _bits_per_dim(log_p_pixels)
    return {f"nll_{label}": float(nll.mean()), f"nll_{label}_stderr": _stderr(nll),
            f"bits_per_dim_{label}": float(bpd.mean()),
            f"bits_per_dim_{label}_stderr": _stderr(bpd)}


def digits_images(where: str) -> np.ndarray:
    """scikit-learn's 1797 digit images, (1797, 64) grey levels 0..16 as float64.

    Raises
    ------
    InputError
        scikit-learn is not installed (the optional extra ``[data]``), naming ``target.type``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError("type = \"digits\" needs scikit-learn, the optional extra [data] "
                         "(pip install 'ot_pde[data]' or pip install scikit-learn)",
                         source=where, key="target.type") from None
    images = np.asarray(load_digits().data, dtype=np.float64)
    if images.shape[1] != DIGITS_DIM or images.min() < 0 or images.max() >= DIGITS_LEVELS:
        raise InputError(f"scikit-learn's digits have shape {images.shape} and grey levels "
                         f"{images.min()}..{images.max()}; expected 64 pixels of 0..16",
                         source=where, key="target.type")
    return images


def digits_split(images: np.ndarray) -> dict:
    """The fixed split of :data:`DIGITS_SPLIT_SEED`: ``{"train", "validation", "test"}``."""
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(images.shape[0])
    val_end = DIGITS_TEST + DIGITS_VALIDATION
    return {"test": images[order[:DIGITS_TEST]],
            "validation": images[order[DIGITS_TEST:val_end]],
            "train": images[order[val_end:]]}


@dataclass
class TargetData:
    """The distribution of a case: exact mixture (if known), data sets, entropy (if known)."""

    dim: int
    mixture: toy_data.GaussianMixture | None
    train: np.ndarray | None
    test: np.ndarray | None
    entropy: float | None
    pixels: PixelSpace | None = None


def _checkpoint_log_prob(case, logit_test: np.ndarray) -> np.ndarray:
    """The log-density of ``target.checkpoint``'s flow at the test images (logit space),
    after checking it models the same space (dimension; alpha, where its metadata states it)."""
    path, where = case.get("target.checkpoint"), case.source
    ck = load_checkpoint(path)
    alpha = ck.meta["config"].get("alpha")
    if ck.meta["dim"] != DIGITS_DIM or alpha not in (None, case.get("target.alpha")):
        raise InputError(f"{path} models d = {ck.meta['dim']} with alpha = {alpha}; expected "
                         f"the digits' d = {DIGITS_DIM}, alpha = {case.get('target.alpha')}",
                         source=where, key="target.checkpoint")
    return np.asarray(build_flow(ck).log_prob(logit_test), dtype=np.float64)


def _digits(case, rng: np.random.Generator) -> TargetData:
    """The digits split; held-out images dequantized once by ``rng``, the training split too
    (for the baselines; training itself redraws the noise, :meth:`PixelSpace.sampler`)."""
    transform = LogitPixels(DIGITS_LEVELS, case.get("target.alpha"))
    split = digits_split(digits_images(case.source))
    deq = {name: transform.dequantize(split[name], rng) for name in ("train", "validation", "test")}
    logit = {name: transform.to_logit(s) for name, s in deq.items()}
    fits = {"gaussian_diag": fit_gaussian(logit["train"], diagonal=True),
            "gaussian_full": fit_gaussian(logit["train"], diagonal=False)}
    baselines = {name: fit.log_prob(logit["test"]) for name, fit in fits.items()}
    if case.get("target.checkpoint") is not None:
        baselines["checkpoint"] = _checkpoint_log_prob(case, logit["test"])
    pixels = PixelSpace(
        transform, split["train"], logit["validation"],
        {name: transform.log_jacobian(deq[name]) for name in ("validation", "test")},
        baselines)
    return TargetData(DIGITS_DIM, None, logit["train"], logit["test"], None, pixels)


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
    if kind == "digits":  # a fixed split: n_train and n_test do not apply
        return _digits(case, rng)
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
