"""The ``[model]`` section shared by the flow problem kinds, and the potential it describes.

A kind takes :func:`model_section` with its own defaults (the Ising kind: the original
paper's even logcosh potential with the lattice's symmetries; density estimation: a biased,
time-dependent tanh layer), and builds the potential with :func:`build_potential`.
"""
from __future__ import annotations

import math

import numpy as np

from ..config import Field, Section
from ..errors import InputError
from .composition import PER, Composition
from .integrators import SCHEMES
from .lattice import TranslationAveraged
from .lattice_conv import LatticeConvolution
from .potentials import (
    ACTIVATIONS,
    GroupAveraged,
    OneHiddenLayer,
    OTFlowResNet,
    Summed,
    reflections_2d,
    translations_2d,
)

#: symmetries a case may ask for; each names generators of a group of signed permutations
SYMMETRIES = ("spin_flip", "axis_mirrors", "lattice_translations", "lattice_reflections")


def model_section(*, width: int = 32, activation: str = "tanh", bias: bool = True,
                  time_dependent: bool = True, symmetry=(), composable: bool = False) -> Section:
    """The ``[model]`` section with a kind's defaults; ``composable`` adds the keys of
    symmetry-composed flows (:mod:`ot_pde.flows.composition`) for kinds whose targets are
    invariant under the groups a case names."""
    compose = {
        "compose": Field("str_list", [], choices=SYMMETRIES,
                         doc="symmetry-composed flow: at every Runge-Kutta step each sample's "
                             "velocity is that of phi(g x) for a random element g of the group "
                             "these generate (the target must be invariant under it); empty: "
                             "one fixed potential"),
        "compose_per": Field("str", "step", choices=PER,
                             doc="draw g per step (consistent with the scheme: the carried "
                                 "log-density is that of the discrete map to the scheme's "
                                 "order) or per stage (the draws of the 2018 code, "
                                 "inconsistent; for comparison)"),
    } if composable else {}
    return Section({
        **compose,
        "width": Field("int", width, minimum=1,
                       doc="hidden units (OneHiddenLayer) or ResNet width; unused by "
                           "lattice_conv (see channels, dense_width)"),
        "symmetry": Field("str_list", list(symmetry), choices=SYMMETRIES,
                          doc="exact average over the group these generate: spin_flip (x -> -x), "
                              "axis_mirrors (x_k -> -x_k), lattice_translations and "
                              "lattice_reflections (periodic L x L lattice, d = L^2)"),
        "init_scale": Field("float", 1.0, exclusive_minimum=0.0,
                            doc="factor on the initial output weights (w2, or w of the ResNet)"),
    }, variants={
        "one_hidden_layer": {
            "activation": Field("str", activation, choices=tuple(ACTIVATIONS),
                                doc="sigma of phi = sum_j w_j sigma(W_j x + c_j t + b_j)"),
            "bias": Field("bool", bias, doc="hidden biases b (false + logcosh: phi even in x)"),
            "time_dependent": Field("bool", time_dependent, doc="pre-activations get c_j t"),
        },
        "lattice_conv": {
            "kernel": Field("int", 3, minimum=1,
                            doc="odd side k of the k x k patch of a periodic L x L lattice "
                                "(d = L^2), k <= L"),
            "channels": Field("int", 8, minimum=1,
                              doc="filters m of phi = sum_p sum_j w_j sigma(W_j . patch_p(x) "
                                  "+ c_j t + b_j), summed over the sites p"),
            "dense_width": Field("int", 0, minimum=0,
                                 doc="hidden units of a dense one-hidden-layer potential added "
                                     "to the convolution (global modes such as the "
                                     "magnetization); 0: none"),
            "activation": Field("str", activation, choices=tuple(ACTIVATIONS),
                                doc="sigma of the filters and of the dense part"),
            "bias": Field("bool", bias, doc="hidden biases b"),
            "time_dependent": Field("bool", time_dependent, doc="pre-activations get c_j t"),
        },
        "otflow_resnet": {
            "n_layers": Field("int", 2, minimum=2, doc="ResNet layers M (OT-Flow uses 2)"),
            "rank": Field("int", None, minimum=1, doc="rank of the quadratic term, "
                                                      "default min(10, d + 1)"),
        },
    }, discriminator="family", default_variant="one_hidden_layer",
        doc="the potential phi(x, t) (seeded by run.seed)")


def time_section(*, T: float = 1.0, n_steps: int = 20) -> Section:
    """The ``[time]`` section: fixed Runge-Kutta steps on [0, T]."""
    return Section({
        "T": Field("float", T, exclusive_minimum=0.0, doc="flow time"),
        "n_steps": Field("int", n_steps, minimum=1, resolution="inverse",
                         doc="fixed Runge-Kutta steps on [0, T]"),
        "scheme": Field("str", "rk4", choices=tuple(SCHEMES), doc="Runge-Kutta scheme"),
    }, doc="time integration of dx/dt = grad phi, d ln p/dt = -laplacian phi")


def training_fields(*, iterations: int = 1000, batch_size: int = 256,
                    lr: float = 1e-2) -> dict:
    """The Adam keys of a ``[training]`` section (a kind adds its own)."""
    return {
        "iterations": Field("int", iterations, minimum=0, doc="Adam steps"),
        "batch_size": Field("int", batch_size, minimum=1, doc="samples per step"),
        "lr": Field("float", lr, exclusive_minimum=0.0, doc="Adam learning rate"),
        "lr_final": Field("float", None, exclusive_minimum=0.0,
                          doc="learning rate at the last step (geometric decay from lr); "
                              "default: constant lr"),
    }


#: ``[training]`` key of the kinds that train data-parallel under MPI (Trainer's ``shards``)
SHARDS_FIELD = Field(
    "int", 1, minimum=1,
    doc="parts the batch is summed in, the unit of data-parallel training under MPI: the "
        "loss history is the same to the bit on any number of ranks up to shards (each rank "
        "takes whole shards), so set it to a multiple of the ranks you will use")


#: ``[training]`` key of the kinds that train data-parallel (Trainer's ``threads``)
THREADS_FIELD = Field(
    "int", 1, minimum=1, maximum=64,
    doc="threads a process computes its shards on, one BLAS thread each: started with "
        "OPENBLAS_NUM_THREADS=1 the loss history is that of one thread and of MPI ranks, to "
        "the bit (each shard's arithmetic is unchanged, the shards are summed in order), "
        "otherwise to round-off; with shards = 2 and threads = 2 one process uses two cores "
        "the way two MPI ranks do")


#: ``[training]`` key of the kinds that may train in single precision
DTYPE_FIELD = Field(
    "str", "float64", choices=("float64", "float32"),
    doc="precision of the training's losses and gradients (float32: about twice as fast, "
        "one_hidden_layer potentials averaged by GroupAveraged only); the parameters, Adam and "
        "every reported estimate stay float64")


#: the families whose potentials have float32 twins (``supports_float32``)
FLOAT32_FAMILIES = ("one_hidden_layer", "lattice_conv")


def checked_dtype(case, dim: int) -> np.dtype:
    """``training.dtype``, checked against the potential family."""
    dtype = np.dtype(case.get("training.dtype"))
    if dtype != np.float64 and (case.get("model.family") not in FLOAT32_FAMILIES
                                or _fft_translations(case, dim)):
        raise InputError("training.dtype = \"float32\" needs model.family = "
                         "\"one_hidden_layer\" or \"lattice_conv\", without the FFT "
                         "translation average "
                         f"(lattice_translations in model.symmetry at L >= "
                         f"{FFT_TRANSLATIONS_MIN_L}); compose the translations instead",
                         source=case.source, key="training.dtype")
    return dtype


def checked_shards(case, comm=None) -> int:
    """``training.shards``, checked against the batch size and the number of MPI ranks."""
    shards, batch = case.get("training.shards"), case.get("training.batch_size")
    if shards > batch:
        raise InputError(f"training.shards = {shards} exceeds training.batch_size = {batch}",
                         source=case.source, key="training.shards")
    ranks = 1 if comm is None else comm.Get_size()
    if shards < ranks:
        raise InputError(f"training.shards = {shards} cannot be spread over {ranks} MPI ranks "
                         "(each rank takes whole shards): set it to a multiple of the number "
                         "of ranks; the serial run with the same shards gives the same loss "
                         "history to the bit", source=case.source, key="training.shards")
    return shards


def flow_options(case) -> dict:
    """``T``, ``n_steps`` and ``scheme`` of ``[time]``, as keywords of the integrators."""
    return {"T": case.get("time.T"), "n_steps": case.get("time.n_steps"),
            "scheme": case.get("time.scheme")}


def symmetry_generators(names, dim: int, where: str):
    """Generators (perm, signs) of the symmetry group named in ``model.symmetry``."""
    gens = []
    for name in names:
        if name == "spin_flip":
            gens.append((np.arange(dim), -np.ones(dim)))
        elif name == "axis_mirrors":
            for k in range(dim):
                signs = np.ones(dim)
                signs[k] = -1.0
                gens.append((np.arange(dim), signs))
        else:
            side = math.isqrt(dim)
            if side * side != dim:
                raise InputError(f"{name} needs d = L^2 sites of a square lattice, but d = "
                                 f"{dim}", source=where, key="model.symmetry")
            gens += translations_2d(side) if name == "lattice_translations" \
                else reflections_2d(side)
    return gens


#: smallest lattice side whose translations are averaged by FFTs. Measured (numba backend,
#: width 64, 2 cores), grad_and_laplacian: L = 8, batch 256: GroupAveraged 20 ms, FFT 36 ms;
#: L = 16, batch 64: GroupAveraged 95 ms, FFT 26 ms (vjp alike). The switch lies between.
FFT_TRANSLATIONS_MIN_L = 12


def _fft_translations(case, dim: int) -> bool:
    """Whether the lattice translations are averaged by :class:`TranslationAveraged` (FFTs)
    rather than by :class:`GroupAveraged` (one evaluation per translation): the same
    function, whichever is faster at this size."""
    return (case.get("model.family") == "one_hidden_layer"
            and "lattice_translations" in case.get("model.symmetry")
            and math.isqrt(dim) >= FFT_TRANSLATIONS_MIN_L)


def check_model(case, dim: int) -> list:
    """Validate ``[model]`` against the dimension; returns the generators left for
    :class:`GroupAveraged` (all of them, except translations done by FFTs)."""
    where = case.source
    if case.get("model.family") == "otflow_resnet":
        rank = case.get("model.rank")
        if rank is not None and rank > dim + 1:
            raise InputError(f"rank must be at most d + 1 = {dim + 1}", source=where,
                             key="model.rank")
    if case.get("model.family") == "lattice_conv":
        side = math.isqrt(dim)
        if side * side != dim:
            raise InputError(f"lattice_conv needs d = L^2 sites of a square lattice, but d = "
                             f"{dim}", source=where, key="model.family")
        kernel = case.get("model.kernel")
        if kernel % 2 == 0 or kernel > side:
            raise InputError(f"kernel must be odd and at most L = {side}, got {kernel}",
                             source=where, key="model.kernel")
    symmetry_generators(_compose_names(case), dim, where)  # d must be L^2 for lattices
    names = list(case.get("model.symmetry"))
    if _fft_translations(case, dim):
        symmetry_generators(["lattice_translations"], dim, where)  # d must be L^2
        names.remove("lattice_translations")
    return symmetry_generators(names, dim, where)


def build_potential(case, dim: int, backend, rng: np.random.Generator, generators):
    """The potential of ``[model]`` at its seeded initialization, averaged over the group
    (``generators`` from :func:`check_model`)."""
    if _fft_translations(case, dim):
        # The translation average of the one-hidden-layer potential, by FFT correlations; the
        # other generators (point group, spin flip) are averaged on top of it, which averages
        # over the whole group since the translations form a normal subgroup.
        base = TranslationAveraged(math.isqrt(dim), case.get("model.width"),
                                   case.get("model.activation"), bias=case.get("model.bias"),
                                   time_dependent=case.get("model.time_dependent"),
                                   backend=backend, rng=rng)
        out_block = "w2"
    elif case.get("model.family") == "one_hidden_layer":
        base = OneHiddenLayer(dim, case.get("model.width"), case.get("model.activation"),
                              bias=case.get("model.bias"),
                              time_dependent=case.get("model.time_dependent"),
                              backend=backend, rng=rng)
        out_block = "w2"
    elif case.get("model.family") == "lattice_conv":
        base = _lattice_conv(case, dim, backend, rng)
        out_block = None
    else:
        base = OTFlowResNet(dim, case.get("model.width"), case.get("model.n_layers"),
                            rank=case.get("model.rank"), backend=backend, rng=rng)
        out_block = "w"
    if out_block is not None:
        base.param_blocks()[out_block][...] *= case.get("model.init_scale")
    if generators:
        try:
            base = GroupAveraged(base, generators)
        except ValueError as exc:
            raise InputError(str(exc), source=case.source, key="model.symmetry") from None
    composed = _compose_names(case)
    if not composed:
        return base
    return Composition(base, symmetry_generators(composed, dim, case.source),
                       per=case.get("model.compose_per"))


def model_label(case) -> str:
    """The potential in a few words, for a run's description."""
    family = case.get("model.family")
    if family != "lattice_conv":
        return f"{family} (width {case.get('model.width')})"
    k, dense = case.get("model.kernel"), case.get("model.dense_width")
    return (f"lattice_conv ({k}x{k}, {case.get('model.channels')} channels"
            + (f", + dense width {dense})" if dense else ")"))


def _lattice_conv(case, dim: int, backend, rng):
    """The ``lattice_conv`` family: the convolution, plus a dense layer if ``dense_width``."""
    kw = {"activation": case.get("model.activation"), "bias": case.get("model.bias"),
          "time_dependent": case.get("model.time_dependent"), "backend": backend, "rng": rng}
    conv = LatticeConvolution(math.isqrt(dim), case.get("model.kernel"),
                              case.get("model.channels"), **kw)
    parts = [conv]
    if case.get("model.dense_width"):
        parts.append(OneHiddenLayer(dim, case.get("model.dense_width"), **kw))
    for part in parts:
        part.param_blocks()["w2"][...] *= case.get("model.init_scale")
    return parts[0] if len(parts) == 1 else Summed(parts)


def _compose_names(case) -> list:
    """``model.compose`` where the kind has it, else []."""
    return list(case.section("model").get("compose") or [])
