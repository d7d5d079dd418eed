r"""Exported flows evaluated without their training framework: forward, inverse, log-density.

Every model maps latent samples :math:`z\sim\mathcal N(0, I)` to data :math:`x = T(z)`
(:meth:`ExportedFlow.to_data`) and back (:meth:`ExportedFlow.to_latent`), with the model's
log-density :math:`\ln p(x)` either way, and lists the intermediate states
:math:`F_0 = z, F_1, \dots, F_L = x` of :math:`T` (:meth:`ExportedFlow.trajectory`) for the
per-layer transport cost. Computation is in float64 whatever the checkpoint's dtype.

:class:`CouplingFlow` (RealNVP, Dinh et al. 2017), ``latent_to_data``
    Layer :math:`l` splits the coordinates by a random permutation :math:`\pi_l` into the
    conditioning set :math:`c = \pi_l[:k]` and the transformed set :math:`\tau = \pi_l[k:]` and
    updates in place (no reordering, so every state lives in the data's coordinates):

    .. math:: y_\tau = x_\tau \odot e^{s_l(x_c)} + t_l(x_c), \qquad y_c = x_c, \qquad
              \ln|\det \partial y/\partial x| = \textstyle\sum s_l(x_c),

    with :math:`s_l = \tanh(\text{MLP})` (``scale_activation = "tanh"``) or the plain MLP,
    :math:`t_l` an MLP; :math:`\ln p(x) = \ln\mathcal N(z) - \sum_l \sum s_l`. The inverse is
    exact: :math:`x_\tau = (y_\tau - t_l(y_c)) e^{-s_l(y_c)}`.
:class:`OTFlow` (Onken et al. 2021), ``data_to_latent``
    :math:`dx/dt = -\nabla_x\Phi(x, t)/\alpha_0` on :math:`t\in[0, 1]` from data to latent, the
    potential :class:`~ot_pde.flows.potentials.otflow_resnet.OTFlowResNet` (exact Hessian trace), fixed-step
    RK4 of :mod:`ot_pde.flows.integrators`; :math:`T` is the same scheme run backwards in time.
:class:`MongeAmpere`, ``latent_to_data``
    :math:`dx/dt = \nabla\varphi` with a potential of :mod:`ot_pde.flows.potentials` (the
    native flows of the ``monge_ampere_flow`` kind).

Backends: ``numpy`` is the reference; with ``numba`` the dense layers of the coupling
networks run in :mod:`._kernels_numba` (the ODE flows use the potentials' ``xp`` code on
every backend); ``cupy`` runs everything on the GPU's ``xp``. Nothing here reads files or
prints: :func:`build_flow` turns a loaded :class:`~.checkpoint.Checkpoint` into a model.
"""
from __future__ import annotations

import numpy as np

from ...backends import NUMBA, Backend, as_backend
from ...errors import InputError
from ..integrators import (
    SCHEMES,
    integrate,
    stage_input,
    standard_normal_log_prob,
    to_host,
)
from ..potentials import ACTIVATIONS, OneHiddenLayer, OTFlowResNet
from .checkpoint import Checkpoint

#: Points per call when a flow is applied to a large sample: bounds the memory of one evaluation.
CHUNK = 4096


def apply_in_chunks(fn, x, xp):
    """``fn`` (returning a tuple of arrays) applied to ``x`` in blocks of :data:`CHUNK` rows;
    the results on the host."""
    outs = [fn(xp.asarray(x[s:s + CHUNK])) for s in range(0, x.shape[0], CHUNK)]
    return tuple(np.concatenate([to_host(o[k]) for o in outs]) for k in range(len(outs[0])))

HIDDEN_ACTIVATIONS = ("tanh", "relu", "leaky_relu", "elu", "softplus")
LEAKY_SLOPE = 0.01


def _activation(xp, name: str, z):
    if name == "tanh":
        return xp.tanh(z)
    if name == "relu":
        return xp.maximum(z, 0.0)
    if name == "leaky_relu":
        return xp.where(z > 0.0, z, LEAKY_SLOPE * z)
    if name == "elu":
        return xp.where(z > 0.0, z, xp.expm1(xp.minimum(z, 0.0)))
    if name == "softplus":
        return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))
    return z


class ExportedFlow:
    """Common interface; ``dim``, ``backend``, ``xp``, ``n_layers`` and the methods below."""

    dim: int
    backend: Backend
    model_type: str
    direction: str

    def to_data(self, z):
        """:math:`x = T(z)` and :math:`\\ln p(x)`, shapes ``(B, d)`` and ``(B,)``."""
        raise NotImplementedError

    def to_latent(self, x):
        """:math:`z = T^{-1}(x)` and :math:`\\ln p(x)`."""
        raise NotImplementedError

    def trajectory(self, z) -> list:
        """States :math:`F_0 = z, \\dots, F_L = T(z)` (``n_layers + 1`` arrays)."""
        raise NotImplementedError

    def log_prob(self, x):
        return self.to_latent(x)[1]

    def sample(self, z):
        """:math:`T(z)` only (ODE flows skip the log-density's Laplacians)."""
        return self.to_data(z)[0]

    def apply_stored_direction(self, inputs):
        """The map of the checkpoint's ``direction`` and the data-side log-density."""
        if self.direction == "latent_to_data":
            return self.to_data(inputs)
        return self.to_latent(inputs)

    def _x(self, a):
        a = self.xp.asarray(a, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"expected an array of shape (B, {self.dim}), got {a.shape}")
        return a


# -- RealNVP ------------------------------------------------------------------------------------
def _numba_dense():
    """The coupling networks' dense layer fused in one numba kernel (matrix product, bias and
    activation); the numpy path computes the same in three array operations."""
    from ._kernels_numba import CODES, dense

    def fused(h, W, b, act):
        return dense(np.ascontiguousarray(h), W, b, CODES[act], LEAKY_SLOPE)
    return fused


class CouplingFlow(ExportedFlow):
    """Affine coupling flow (see the module notes).

    Parameters
    ----------
    dim : int
    permutations : list of sequences of int
        One permutation of ``range(dim)`` per coupling layer.
    split : int
        :math:`k`, the size of the conditioning set (1 <= k < dim).
    s_layers, t_layers : list of list of (W, b)
        Per coupling layer, the dense layers of the scale and shift networks (``W`` of shape
        ``(out, in)``), hidden activation between them, none after the last.
    activation : str
        Hidden activation, one of :data:`HIDDEN_ACTIVATIONS`.
    scale_activation : {"tanh", "none"}
    backend : Backend, optional
    """

    model_type = "realnvp"
    direction = "latent_to_data"

    def __init__(self, dim, permutations, split, s_layers, t_layers, activation="tanh",
                 scale_activation="tanh", backend=None):
        self.backend = as_backend(backend, default=None)
        self.xp = xp = self.backend.xp
        self.dim, self.split = int(dim), int(split)
        self.activation, self.scale_activation = activation, scale_activation
        self.cond = [xp.asarray(np.asarray(p[:split], dtype=np.int64)) for p in permutations]
        self.trans = [xp.asarray(np.asarray(p[split:], dtype=np.int64)) for p in permutations]
        cast = [[(xp.asarray(W, dtype=np.float64), xp.asarray(b, dtype=np.float64))
                 for W, b in net] for net in s_layers]
        self.s_layers = cast
        self.t_layers = [[(xp.asarray(W, dtype=np.float64), xp.asarray(b, dtype=np.float64))
                          for W, b in net] for net in t_layers]
        self.n_layers = len(permutations)
        self._dense = self.backend.bind({NUMBA: _numba_dense}, default=lambda: None)

    def _mlp(self, net, h):
        last = len(net) - 1
        for j, (W, b) in enumerate(net):
            act = self.activation if j < last else "identity"
            if self._dense is not None:
                h = self._dense(h, W, b, act)
            else:
                h = _activation(self.xp, act, h @ W.T + b)
        return h

    def _st(self, l, h):
        s = self._mlp(self.s_layers[l], h)
        if self.scale_activation == "tanh":
            s = self.xp.tanh(s)
        return s, self._mlp(self.t_layers[l], h)

    def _forward_layer(self, l, x):
        s, t = self._st(l, x[:, self.cond[l]])
        y = x.copy()
        y[:, self.trans[l]] = x[:, self.trans[l]] * self.xp.exp(s) + t
        return y, self.xp.sum(s, axis=1)

    def to_data(self, z):
        x = self._x(z)
        logdet = self.xp.zeros(x.shape[0])
        for l in range(self.n_layers):
            x, ld = self._forward_layer(l, x)
            logdet = logdet + ld
        return x, standard_normal_log_prob(self._x(z)) - logdet

    def to_latent(self, x):
        y = self._x(x)
        logdet = self.xp.zeros(y.shape[0])
        for l in reversed(range(self.n_layers)):
            s, t = self._st(l, y[:, self.cond[l]])
            nxt = y.copy()
            nxt[:, self.trans[l]] = (y[:, self.trans[l]] - t) * self.xp.exp(-s)
            y = nxt
            logdet = logdet + self.xp.sum(s, axis=1)
        return y, standard_normal_log_prob(y) - logdet

    def trajectory(self, z):
        states = [self._x(z)]
        for l in range(self.n_layers):
            states.append(self._forward_layer(l, states[-1])[0])
        return states


# -- ODE flows ----------------------------------------------------------------------------------
class _ScaledPotential:
    r""":math:`c\,\Phi`: the velocity potential of OT-Flow is :math:`-\Phi/\alpha_0`."""

    def __init__(self, base, factor: float):
        self.base, self.factor, self.dim, self.xp = base, float(factor), base.dim, base.xp

    def grad(self, x, t):
        return self.factor * self.base.grad(x, t)

    def grad_and_laplacian(self, x, t):
        g, lap = self.base.grad_and_laplacian(x, t)
        return self.factor * g, self.factor * lap


class _ODEFlow(ExportedFlow):
    """A flow :math:`dx/dt = \\nabla\\psi(x, t)` on :math:`[0, T]`, fixed-step RK."""

    potential = None
    T = 1.0
    scheme = "rk4"
    steps = 1
    #: True: t = 0 is the latent side (Monge-Ampère); False: t = 0 is the data side (OT-Flow)
    latent_at_zero = True

    def _run(self, x, l0, direction, store=False):
        return integrate(self.potential, x, l0, T=self.T, n_steps=self.steps,
                         scheme=self.scheme, direction=direction, store=store)

    @property
    def n_layers(self) -> int:
        return self.steps

    def to_data(self, z):
        z = self._x(z)
        direction = "forward" if self.latent_at_zero else "backward"
        x, lp = self._run(z, standard_normal_log_prob(z), direction)
        return x, lp

    def to_latent(self, x):
        x = self._x(x)
        direction = "backward" if self.latent_at_zero else "forward"
        z, acc = self._run(x, self.xp.zeros(x.shape[0]), direction)
        return z, standard_normal_log_prob(z) - acc

    def trajectory(self, z):
        """Positions only: the same RK steps as :meth:`to_data` without the Laplacians."""
        tab = SCHEMES[self.scheme]
        h = self.T / self.steps if self.latent_at_zero else -self.T / self.steps
        states = [self._x(z)]
        for n in range(self.steps):
            t = n * h if self.latent_at_zero else self.T * (self.steps - n) / self.steps
            x, grads, dx = states[-1], [], 0.0
            for i in range(tab.stages):
                xi = stage_input(tab, i, x, h, grads)
                grads.append(self.potential.grad(xi, t + tab.c[i] * h))
                dx = dx + tab.b[i] * grads[-1]
            states.append(x + h * dx)
        return states

    def sample(self, z):
        return self.trajectory(z)[-1]


class OTFlow(_ODEFlow):
    """OT-Flow: :math:`dx/dt = -\\nabla_x\\Phi/\\alpha_0`, data at :math:`t = 0`."""

    model_type = "otflow"
    direction = "data_to_latent"
    latent_at_zero = False

    def __init__(self, resnet: OTFlowResNet, alpha0: float, steps: int, scheme: str = "rk4"):
        self.resnet, self.alpha0 = resnet, float(alpha0)
        self.potential = _ScaledPotential(resnet, -1.0 / self.alpha0)
        self.dim, self.backend, self.xp = resnet.dim, resnet.backend, resnet.xp
        self.steps, self.scheme = int(steps), scheme


class MongeAmpere(_ODEFlow):
    """Monge-Ampère flow: :math:`dx/dt = \\nabla\\varphi`, latent at :math:`t = 0`."""

    model_type = "monge_ampere"
    direction = "latent_to_data"

    def __init__(self, potential, T: float, steps: int, scheme: str = "rk4"):
        self.potential, self.T, self.steps, self.scheme = potential, float(T), int(steps), scheme
        self.dim, self.backend, self.xp = potential.dim, potential.backend, potential.xp


# -- from a checkpoint --------------------------------------------------------------------------
def _int_at_least(lo):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def build_flow(ck: Checkpoint, backend=None, steps: int | None = None) -> ExportedFlow:
    """The model of a loaded checkpoint, its weights checked against the metadata.

    ``steps`` overrides the checkpoint's number of integrator steps (ODE flows).
    """
    backend = as_backend(backend, default=None)
    meta, where, d = ck.meta, ck.path, ck.meta["dim"]
    kind = meta["model_type"]
    expected_direction = {"realnvp": "latent_to_data", "otflow": "data_to_latent",
                          "monge_ampere": "latent_to_data"}[kind]
    if meta["direction"] != expected_direction:
        raise InputError(f"a {kind} checkpoint maps {expected_direction}, not "
                         f"{meta['direction']}", source=where, key="metadata.direction")
    if kind == "realnvp":
        return _build_realnvp(ck, backend)
    if meta["integrator"] not in SCHEMES:
        raise InputError(f"expected one of {', '.join(SCHEMES)}, got {meta['integrator']!r}",
                         source=where, key="metadata.integrator")
    if meta["steps"] is None:
        raise InputError("an ODE flow needs its number of steps", source=where,
                         key="metadata.steps")
    n_steps = steps or meta["steps"]
    if kind == "otflow":
        sizes = meta["layer_sizes"]  # [d + 1, m, ..., m]: input then the widths of the layers
        if len(sizes) < 3 or sizes[0] != d + 1 or len(set(sizes[1:])) != 1:
            raise InputError(f"expected [d + 1, m, m, ...] with d = {d}, got {sizes}",
                             source=where, key="metadata.layer_sizes")
        if meta["activation"] != "log2cosh":
            raise InputError(f"OT-Flow uses 'log2cosh', got {meta['activation']!r}",
                             source=where, key="metadata.activation")
        m, n_layers = sizes[1], len(sizes) - 1
        rank = ck.config("rank", int, _int_at_least(1), "an integer >= 1")
        alpha0 = ck.config("alpha", list, lambda a: len(a) >= 1 and all(
            isinstance(v, (int, float)) and v > 0 for v in a), "a list of positive numbers")[0]
        net = OTFlowResNet(d, m, n_layers=n_layers, rank=rank, backend=backend)
        blocks = {"A": ("A", (rank, d + 1)), "c": ("c.weight", (1, d + 1)),
                  "c0": ("c.bias", (1,)), "w": ("w.weight", (1, m))}
        values = {ours: ck.param(theirs, shape).reshape(-1) for ours, (theirs, shape)
                  in blocks.items()}
        for i in range(n_layers):
            fan_in = d + 1 if i == 0 else m
            values[f"K{i}"] = ck.param(f"N.layers.{i}.weight", (m, fan_in))
            values[f"b{i}"] = ck.param(f"N.layers.{i}.bias", (m,))
        net.set_params(np.concatenate([values[name].reshape(-1) for name, _ in net._layout]))
        return OTFlow(net, alpha0, n_steps, meta["integrator"])
    # monge_ampere
    family = ck.config("family", str, lambda v: v == "one_hidden_layer",
                       "'one_hidden_layer'")
    width = ck.config("width", int, _int_at_least(1), "an integer >= 1")
    act = meta["activation"]
    if act not in ACTIVATIONS:
        raise InputError(f"expected one of {', '.join(ACTIVATIONS)}, got {act!r}",
                         source=where, key="metadata.activation")
    bias = ck.config("bias", bool, None, "a boolean")
    time_dependent = ck.config("time_dependent", bool, None, "a boolean")
    T = ck.config("T", (int, float), lambda v: v > 0, "a positive number")
    del family
    pot = OneHiddenLayer(d, width, activation=act, bias=bias, time_dependent=time_dependent,
                         backend=backend)
    pot.set_params(ck.param("params", (pot.n_params,)))
    return MongeAmpere(pot, T, n_steps, meta["integrator"])


def _build_realnvp(ck: Checkpoint, backend) -> CouplingFlow:
    meta, where, d = ck.meta, ck.path, ck.meta["dim"]
    if d < 2:
        raise InputError("a coupling flow needs d >= 2", source=where, key="metadata.dim")
    split = ck.config("split", int, lambda k: 1 <= k < d, f"an integer in [1, {d - 1}]")
    perms = ck.config("permutations", list, lambda ps: len(ps) >= 1 and all(
        isinstance(p, list) and sorted(p) == list(range(d)) for p in ps),
        f"a non-empty list of permutations of 0..{d - 1}")
    scale_act = ck.config("scale_activation", str, lambda v: v in ("tanh", "none"),
                          "'tanh' or 'none'")
    if meta["activation"] not in HIDDEN_ACTIVATIONS:
        raise InputError(f"expected one of {', '.join(HIDDEN_ACTIVATIONS)}, got "
                         f"{meta['activation']!r}", source=where, key="metadata.activation")
    sizes = meta["layer_sizes"]
    if len(sizes) < 2 or sizes[0] != split or sizes[-1] != d - split:
        raise InputError(f"expected [split = {split}, hidden..., d - split = {d - split}], got "
                         f"{sizes}", source=where, key="metadata.layer_sizes")
    nets = {"s": [], "t": []}
    for l in range(len(perms)):
        for which in nets:
            nets[which].append([
                (ck.param(f"coupling{l}.{which}.{j}.weight", (sizes[j + 1], sizes[j])),
                 ck.param(f"coupling{l}.{which}.{j}.bias", (sizes[j + 1],)))
                for j in range(len(sizes) - 1)])
    return CouplingFlow(d, perms, split, nets["s"], nets["t"], meta["activation"], scale_act,
                        backend)


def realnvp_param_names(n_couplings: int, n_dense: int) -> list[str]:
    """The ``param/`` names of a coupling flow (for converters and tests)."""
    return [f"coupling{l}.{w}.{j}.{p}" for l in range(n_couplings) for w in ("s", "t")
            for j in range(n_dense) for p in ("weight", "bias")]


def flow_from_file(path, backend=None, steps: int | None = None) -> ExportedFlow:
    """Load a checkpoint and build its model (convenience for tools and tests)."""
    from .checkpoint import load_checkpoint

    return build_flow(load_checkpoint(path), backend, steps)


__all__ = ["CouplingFlow", "ExportedFlow", "MongeAmpere", "OTFlow", "build_flow",
           "flow_from_file", "realnvp_param_names", "HIDDEN_ACTIVATIONS"]
