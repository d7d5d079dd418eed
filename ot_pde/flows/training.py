r"""Training the Monge-Ampère flow: objectives, discrete-adjoint gradients, Adam, a trainer.

Objectives on a batch
    *Forward KL* (density estimation, :class:`ForwardKL`): for data samples :math:`x_b`,

    .. math:: L(\theta) = -\frac1B \sum_b \ln p_T(x_b)
              = \frac1B \sum_b \Bigl[-\ln\mathcal N(z_b) + \int_0^T \Delta\varphi\,dt\Bigr],

    with :math:`z_b` and the integral from the backward integration (data to latent).

    *Reverse KL* (variational, :class:`ReverseKL`): for a target known up to normalization,
    :math:`\ln \tilde p`, and latent samples :math:`z_b \sim \mathcal N(0, I)` pushed forward to
    :math:`(x_T, l_T)`,

    .. math:: L(\theta) = \frac1B \sum_b \bigl[l_T(z_b) - \ln\tilde p(x_T(z_b))\bigr]
              \approx \mathrm{KL}(q_T \,\|\, p) - \ln Z .

Gradients
    :func:`loss_and_grad` differentiates the *discrete* loss by the discrete adjoint of the
    fixed-step scheme (:func:`~ot_pde.flows.integrators.integrate_adjoint`,
    discretize-then-optimize), so the gradient equals finite differences of the loss to
    round-off. The end-state cotangents are

    * forward KL: :math:`\lambda_x = z/B` (from :math:`-\ln\mathcal N(z)`), :math:`\lambda_l = 1/B`;
    * reverse KL: :math:`\lambda_x = -\nabla\ln\tilde p(x_T)/B`, :math:`\lambda_l = 1/B`
      (the latent samples are fixed: the reparametrization gradient).

Optimization
    :class:`Adam` (Kingma & Ba 2015) in numpy on the flat parameter vector, and
    :class:`Trainer`, whose :meth:`Trainer.step` draws a batch from its own
    :class:`numpy.random.Generator`, computes the loss and gradient and updates the
    parameters. :meth:`Trainer.state` / :meth:`Trainer.load_state` hold everything a restarted
    run needs to continue bit-for-bit (parameters, Adam moments and step count, the
    generator's state as a JSON string, the iteration).

Nothing here reads files or prints.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from typing import Callable

import numpy as np
from threadpoolctl import ThreadpoolController

from ..backends import get_array_module
from ..errors import InputError, NumericalError
from ..parallel import block_range
from .integrators import (
    SCHEMES,
    integrate,
    integrate_adjoint,
    standard_normal_log_prob,
    to_host,
)


class DataBatches:
    """Mini-batches of an objective trained on data samples (:class:`ForwardKL`, otreg's).

    Parameters
    ----------
    data : array of shape (N, d), or callable ``data(rng, n) -> (n, d)``
        A data set to draw mini-batches from (uniformly, with replacement) or a sampler.
    """

    def __init__(self, data):
        if callable(data):
            self._sampler = data
        else:
            data = np.asarray(data, dtype=np.float64)
            if data.ndim != 2 or data.shape[0] == 0:
                raise ValueError(f"data must have shape (N, d) with N >= 1, got {data.shape}")
            self._sampler = lambda rng, n: data[rng.integers(0, data.shape[0], size=n)]

    def draw(self, rng: np.random.Generator, batch_size: int, dim: int) -> np.ndarray:
        """A batch of data samples, shape ``(batch_size, dim)``."""
        batch = np.asarray(self._sampler(rng, batch_size), dtype=np.float64)
        if batch.shape != (batch_size, dim):
            raise ValueError(f"data batch has shape {batch.shape}, expected {(batch_size, dim)}")
        return batch


class ForwardKL(DataBatches):
    r"""Negative log-likelihood of data under the flow (forward KL up to the data entropy).

    Parameters
    ----------
    data : array of shape (N, d), or callable ``data(rng, n) -> (n, d)``
        A data set to draw mini-batches from (uniformly, with replacement) or a sampler.
    """

    name = "forward_kl"

    def loss(self, potential, batch, *, T: float, n_steps: int, scheme: str,
             actions=None) -> float:
        z, acc = integrate(potential, batch, _zeros_like_rows(batch), T=T, n_steps=n_steps,
                           scheme=scheme, direction="backward", actions=actions)
        return float((acc - standard_normal_log_prob(z)).mean())

    def loss_and_grad(self, potential, batch, *, T: float, n_steps: int, scheme: str,
                      total: int | None = None, actions=None):
        z, acc, traj = integrate(potential, batch, _zeros_like_rows(batch), T=T,
                                 n_steps=n_steps, scheme=scheme, direction="backward",
                                 store=True, actions=actions)
        b = batch.shape[0] if total is None else total
        loss = float((acc - standard_normal_log_prob(z)).sum() / b)  # = mean() when b = B
        # d/dz of -ln N(z) is z; d/d(acc) is 1; both divided by the batch size (mean).
        _, _, grad = integrate_adjoint(potential, traj, z / b, _full_like_rows(batch, 1.0 / b))
        return loss, grad


class ReverseKL:
    r"""Variational objective :math:`\mathbb E_z[l_T - \ln\tilde p(x_T)]`, unnormalized target.

    Parameters
    ----------
    target_log_prob : callable ``(B, d) -> (B,)``
        :math:`\ln\tilde p(x)`, the target's log-density up to an additive constant.
    target_grad : callable ``(B, d) -> (B, d)``
        :math:`\nabla_x \ln\tilde p(x)`.
    base : object with ``draw(rng, batch_size, dim)``, optional
        The flow's start distribution, when not :math:`\mathcal N(0, I)`: its ``draw`` returns
        a ``(B, d + 1)`` batch, the start points :math:`x_0` and their log-density
        :math:`\ln q_0(x_0)` in the last column. The base is fixed while the potential trains
        (the batch carries no gradient back to it).
    """

    name = "reverse_kl"

    def __init__(self, target_log_prob: Callable, target_grad: Callable, base=None):
        self.target_log_prob = target_log_prob
        self.target_grad = target_grad
        self.base = base

    def draw(self, rng: np.random.Generator, batch_size: int, dim: int) -> np.ndarray:
        r"""Latent samples :math:`z \sim \mathcal N(0, I)`, shape ``(batch_size, dim)``, or the
        base's ``(batch_size, dim + 1)`` batch."""
        if self.base is not None:
            return self.base.draw(rng, batch_size, dim)
        return rng.standard_normal((batch_size, dim))

    def _start(self, batch):
        """Start points and their log-density from a batch of :meth:`draw`."""
        if self.base is None:
            return batch, standard_normal_log_prob(batch)
        return batch[:, :-1], batch[:, -1]

    def loss(self, potential, batch, *, T: float, n_steps: int, scheme: str,
             actions=None) -> float:
        x, l = integrate(potential, *self._start(batch), T=T, n_steps=n_steps, scheme=scheme,
                         direction="forward", actions=actions)
        return float((l - self.target_log_prob(x)).mean())

    def loss_and_grad(self, potential, batch, *, T: float, n_steps: int, scheme: str,
                      total: int | None = None, actions=None):
        x, l, traj = integrate(potential, *self._start(batch), T=T, n_steps=n_steps,
                               scheme=scheme, direction="forward", store=True, actions=actions)
        b = batch.shape[0] if total is None else total
        loss = float((l - self.target_log_prob(x)).sum() / b)  # = mean() when b = B
        lam_x = get_array_module(x).asarray(-self.target_grad(x) / b, dtype=x.dtype)
        _, _, grad = integrate_adjoint(potential, traj, lam_x, _full_like_rows(batch, 1.0 / b))
        return loss, grad


def _zeros_like_rows(batch):
    return _full_like_rows(batch, 0.0)


def _full_like_rows(batch, value: float):
    """A (B,) array of ``value`` in the batch's precision, on its array module."""
    return get_array_module(batch).full(batch.shape[0], value, dtype=batch.dtype)


def loss(potential, objective, batch, *, T: float = 1.0, n_steps: int,
         scheme: str = "rk4", actions=None) -> float:
    """The discrete loss of ``objective`` on ``batch`` at the potential's current parameters."""
    return objective.loss(potential, batch, T=T, n_steps=n_steps, scheme=scheme,
                          **_composed(actions))


def _composed(actions) -> dict:
    """``actions`` as a keyword only for a composed flow: the objectives of other kinds
    (otreg's) take none."""
    return {} if actions is None else {"actions": actions}


def loss_and_grad(potential, objective, batch, *, T: float = 1.0, n_steps: int,
                  scheme: str = "rk4", total: int | None = None,
                  actions=None) -> tuple[float, np.ndarray]:
    r"""Discrete loss and its exact gradient in :math:`\theta` (discrete adjoint).

    Parameters
    ----------
    potential : Potential
    objective : ForwardKL or ReverseKL
    batch : array, shape (B, d)
        Data samples (forward KL) or latent samples (reverse KL).
    T, n_steps, scheme
        As in :func:`~ot_pde.flows.integrators.integrate`.
    total : int, optional
        The divisor of the batch mean (default ``B``). A rank of a data-parallel run passes
        the global batch size, so the ranks' losses and gradients add up to the global ones.
    actions : array, optional
        The draws of a composed flow (:mod:`ot_pde.flows.composition`), ``(B, n_steps, k)``.

    Returns
    -------
    loss : float
    grad : numpy.ndarray, shape (n_params,)
    """
    sharded = {} if total is None else {"total": total}
    return objective.loss_and_grad(potential, batch, T=T, n_steps=n_steps, scheme=scheme,
                                   **sharded, **_composed(actions))


class Adam:
    r"""Adam (Kingma & Ba 2015) on a flat float64 parameter vector.

    .. math::

        m_k = \beta_1 m_{k-1} + (1-\beta_1) g_k, \quad
        v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2, \quad
        \theta_k = \theta_{k-1}
                   - \eta\,\frac{m_k / (1-\beta_1^k)}{\sqrt{v_k/(1-\beta_2^k)} + \epsilon}.

    Parameters
    ----------
    n_params : int
    lr, beta1, beta2, eps : float
        :math:`\eta, \beta_1, \beta_2, \epsilon`.
    """

    def __init__(self, n_params: int, *, lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1), got {beta1!r}, {beta2!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.lr, self.beta1, self.beta2 = float(lr), float(beta1), float(beta2)
        self.eps = float(eps)
        self.m = np.zeros(n_params)
        self.v = np.zeros(n_params)
        self.t = 0

    def step(self, params: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Return the updated parameters (``params`` is not modified)."""
        self.t += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * grad * grad
        m_hat = self.m / (1.0 - self.beta1 ** self.t)
        v_hat = self.v / (1.0 - self.beta2 ** self.t)
        return params - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self) -> dict:
        """Moments (copies) and step count; hyperparameters come from the construction."""
        return {"m": self.m.copy(), "v": self.v.copy(), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        m = np.array(state["m"], dtype=np.float64)
        v = np.array(state["v"], dtype=np.float64)
        if m.shape != self.m.shape or v.shape != self.v.shape:
            raise InputError(f"Adam moments have shapes {m.shape}, {v.shape}; expected "
                             f"{self.m.shape}", source="checkpoint", key="adam")
        self.m, self.v, self.t = m, v, int(state["t"])


class Trainer:
    r"""Stochastic optimization of a potential's parameters for one objective.

    Each :meth:`step` draws a batch with the trainer's own generator, computes the discrete
    loss and its adjoint gradient at the current parameters, checks both are finite and
    applies one Adam update.

    Parameters
    ----------
    potential : Potential
        Trained in place (``set_params`` after each step).
    objective : ForwardKL or ReverseKL
    batch_size, n_steps : int
    T : float
    scheme : {"rk4", "midpoint"}
    optimizer : Adam, optional
        Default ``Adam(potential.n_params)``.
    seed : int or numpy.random.Generator
        The generator that draws the batches.
    xp : module
        Array module the batches are moved to (numpy or cupy), the potential's.
    shards : int
        The batch is cut into this many contiguous shards (:func:`block_range`), whose losses
        and gradients are computed one at a time and summed in shard order. This is the unit
        of data parallelism: the arithmetic does not depend on how the shards are spread over
        ranks, so the run is the same to the bit on 1 to ``shards`` ranks. (Round-off
        differences would not stay small: at the learning rates of our Ising cases they grow
        tenfold per step.)
    dtype : numpy dtype
        The precision of the losses and gradients: float64 (default), or float32, computed
        with a float32 twin of the potential (``astype``) whose parameters are copied from
        the float64 ones before each step; Adam and the parameters stay float64, and so does
        everything evaluated with :attr:`potential` outside training.
    threads : int
        This process's shards are computed on up to this many threads (numpy's matrix
        products and the numba kernels release the GIL), each with one BLAS thread, each
        shard's arithmetic unchanged and the results summed in shard order. In a process
        started with ``OPENBLAS_NUM_THREADS=1`` that gives the bits of one thread and of MPI
        ranks of one thread each (tested); started with more BLAS threads, the history
        differs from them by round-off (measured at L = 16: 6e-16 relative in the first
        loss). Two shards on two threads use both cores of a 2-core machine as two MPI
        ranks do.
    clip_norm : float, optional
        Rescale a gradient whose Euclidean norm exceeds this to that norm before the Adam
        update (the reported ``grad_norm`` stays the unclipped one). A rare spike otherwise
        moves Adam's first moment far along one direction and inflates its second moment for
        about 1/(1 - beta2) steps. Stateless, so restarts and shards stay bit-for-bit.
    comm : mpi4py communicator, optional
        Data-parallel training over its ranks: every rank draws the whole batch from the same
        generator (the random stream does not depend on the number of ranks), computes the
        shards :func:`block_range` gives it, and the shards of all ranks are gathered and
        summed in shard order on every rank (:func:`sum_shards`), so all ranks take the same
        Adam step and keep the same parameters.
    """

    def __init__(self, potential, objective, *, batch_size: int, n_steps: int, T: float = 1.0,
                 scheme: str = "rk4", optimizer: Adam | None = None,
                 seed: int | np.random.Generator = 0, xp=np, shards: int = 1, comm=None,
                 dtype=np.float64, clip_norm: float | None = None, threads: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if not 1 <= shards <= batch_size:
            raise ValueError(f"shards must lie in [1, batch_size = {batch_size}], got {shards!r}")
        if comm is not None and shards < comm.Get_size():
            raise ValueError(f"{shards} shard(s) cannot be spread over {comm.Get_size()} MPI "
                             "ranks: set training.shards to a multiple of the number of ranks "
                             "(the serial run with the same shards gives the same history)")
        if clip_norm is not None and not clip_norm > 0.0:
            raise ValueError(f"clip_norm must be > 0 (or None), got {clip_norm!r}")
        if int(threads) != threads or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        self.threads = int(threads)
        self._pool = None
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.potential = potential
        self.objective = objective
        self.batch_size = int(batch_size)
        self.n_steps = int(n_steps)
        self.T = float(T)
        self.scheme = scheme
        self.optimizer = optimizer if optimizer is not None else Adam(potential.n_params)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.xp = xp
        self.shards = int(shards)
        self.comm = comm
        self.dtype = np.dtype(dtype)
        # duck-typed potentials (tests, other kinds) compute in float64 and have no dtype
        own = np.dtype(getattr(potential, "dtype", np.float64))
        self._work = potential if self.dtype == own else potential.astype(self.dtype)
        self.iteration = 0

    def step(self) -> dict:
        """One iteration; returns ``{"loss": float, "grad_norm": float}`` at the old parameters.

        Raises
        ------
        NumericalError
            The loss or the gradient is not finite (the parameters are left unchanged).
        """
        batch = self.objective.draw(self.rng, self.batch_size, self.potential.dim)
        # a composed flow's draws come from the same generator, after the batch, for the
        # whole batch: shards and ranks see the serial run's draws
        actions = draw_actions(self.potential, self.rng, self.batch_size, self.n_steps,
                               self.scheme)
        mine = range(self.shards)
        if self.comm is not None:
            mine = range(*block_range(self.shards, self.comm.Get_size(), self.comm.Get_rank()))
        # whole-batch objectives (otreg's) take no ``total``: they train unsharded and serial
        total = None if self.shards == 1 and self.comm is None else self.batch_size
        if self._work is not self.potential:
            self._work.set_params(self.potential.params)
        def shard_part(k):
            lo, hi = block_range(self.batch_size, self.shards, k)
            shard = self.xp.asarray(batch[lo:hi], dtype=self.dtype)
            return loss_and_grad(self._work, self.objective, shard, T=self.T,
                                 n_steps=self.n_steps, scheme=self.scheme, total=total,
                                 actions=None if actions is None else actions[lo:hi])

        threaded = self.threads > 1 and len(mine) > 1
        if threaded and self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads,
                                            thread_name_prefix="ot-pde-shard")
        # One BLAS thread per shard: BLAS's own threads on top of ours would oversubscribe the
        # cores, and its thread count changes the round-off. The limit also covers the
        # gradient's norm: after a call on several threads OpenBLAS's idle workers spin for a
        # while, and the next step's shards then shared the cores with them (a step at
        # L = 16 took 175 instead of 125 ms). The BLAS libraries are looked up at every step
        # (0.6 ms): one loaded later (scipy's, during the first step) would keep its threads.
        blas = ThreadpoolController().limit(limits=1, user_api="blas") if threaded else None
        with blas or nullcontext():
            if threaded:
                futures = [self._pool.submit(shard_part, k) for k in mine]
                # every shard finishes before an error propagates: none may still read the
                # parameters when the caller goes on (a checkpoint, the averaged estimators)
                wait(futures)
                parts = [f.result() for f in futures]  # in shard order
            else:
                parts = [shard_part(k) for k in mine]
            value, grad = sum_shards(parts, self.comm)
            grad_norm = float(np.linalg.norm(grad))
        if not (math.isfinite(value) and np.all(np.isfinite(grad))):
            raise NumericalError(f"{self.objective.name}: non-finite loss ({value}) or gradient "
                                 f"(norm {grad_norm}) at iteration {self.iteration}")
        if self.clip_norm is not None and grad_norm > self.clip_norm:
            grad = grad * (self.clip_norm / grad_norm)
        self.potential.set_params(self.optimizer.step(to_host(self.potential.params), grad))
        self.iteration += 1
        return {"loss": value, "grad_norm": grad_norm}

    def state(self) -> dict:
        """Everything a restart needs: arrays, ints and one JSON string (HDF5-friendly)."""
        adam = self.optimizer.state_dict()
        return {
            "params": to_host(self.potential.params).copy(),
            "adam_m": adam["m"],
            "adam_v": adam["v"],
            "adam_step": adam["t"],
            "rng_state": json.dumps(self.rng.bit_generator.state),
            "iteration": self.iteration,
        }

    def load_state(self, state: dict) -> None:
        """Restore a :meth:`state`; the run then continues bit-for-bit.

        Raises
        ------
        InputError
            Missing keys, or shapes or a generator type that do not match this trainer.
        """
        missing = {"params", "adam_m", "adam_v", "adam_step", "rng_state", "iteration"} - set(state)
        if missing:
            raise InputError(f"trainer state lacks {', '.join(sorted(missing))}",
                             source="checkpoint")
        params = np.array(state["params"], dtype=np.float64)
        if params.shape != (self.potential.n_params,):
            raise InputError(f"params have shape {params.shape}, expected "
                             f"({self.potential.n_params},)", source="checkpoint", key="params")
        rng_state = state["rng_state"]
        if isinstance(rng_state, bytes):  # h5py returns variable-length strings as bytes
            rng_state = rng_state.decode()
        rng_state = json.loads(str(rng_state))
        if rng_state.get("bit_generator") != type(self.rng.bit_generator).__name__:
            raise InputError(f"generator {rng_state.get('bit_generator')!r} does not match "
                             f"{type(self.rng.bit_generator).__name__!r}", source="checkpoint",
                             key="rng_state")
        self.optimizer.load_state_dict({"m": state["adam_m"], "v": state["adam_v"],
                                        "t": state["adam_step"]})
        self.rng.bit_generator.state = rng_state
        self.potential.set_params(params)
        self.iteration = int(state["iteration"])


def draw_actions(potential, rng: np.random.Generator, batch: int, n_steps: int, scheme: str):
    """A composed flow's draws for ``batch`` samples (None for a plain potential, which
    draws nothing: the generator's stream is then unchanged)."""
    if not hasattr(potential, "acting"):
        return None
    return potential.draw(rng, batch, n_steps, SCHEMES[scheme].stages)


def sum_shards(parts, comm=None) -> tuple[float, np.ndarray]:
    """Sum the shards' ``(loss, gradient)`` pairs in shard order (over all ranks' shards).

    ``allgather`` and an ordered sum rather than ``Allreduce``: the bits must not depend on
    how the shards are spread over ranks, and MPI does not even promise that every rank
    gets the same bits from a floating-point reduction.
    """
    parts = [(float(v), np.asarray(g, dtype=np.float64)) for v, g in parts]
    if comm is not None:
        parts = [p for rank_parts in comm.allgather(parts) for p in rank_parts]
    value, grad = parts[0][0], parts[0][1]
    for part_value, part_grad in parts[1:]:
        value += part_value
        grad = grad + part_grad
    return value, grad


def geometric_lr(lr: float, lr_final: float | None, k: int, iterations: int) -> float:
    """``lr (lr_final / lr)^(k / iterations)``: the rate at step ``k`` of a decay over
    ``iterations`` steps (constant ``lr`` when ``lr_final`` is None)."""
    if lr_final is None:
        return lr
    return lr * (lr_final / lr) ** (k / max(iterations, 1))


class TrainingRun:
    """The runner's view of a training: Adam steps with a learning-rate schedule.

    ``lr_k = lr (lr_final / lr)^(k / iterations)`` depends on the iteration only, so a
    restarted run follows the same schedule. With ``trainer = None`` (objective ``none``)
    there is nothing to iterate and the potential stays at its initialization.

    With ``average_decay = d`` the run also keeps an exponential moving average of the
    parameters after each step, bias-corrected as Adam's moments are: after k steps
    ``a_k = sum_i d^(k-i) theta_i (1 - d) / (1 - d^k)``, so that a short average does not
    lean on its first step (``k`` counts the steps since the average started), for evaluation
    (:meth:`averaged`): Adam's steps at a finite learning rate leave the parameters jittering
    about the optimum the rate can resolve, and their average sits closer to it. Training
    itself never sees the average, so the loss history is the same with or without it.
    """

    def __init__(self, potential, trainer: Trainer | None, iterations: int, lr: float,
                 lr_final: float | None, average_decay: float | None = None):
        if average_decay is not None and not 0.0 <= average_decay < 1.0:
            raise ValueError(f"average_decay must lie in [0, 1), got {average_decay!r}")
        self.potential = potential
        self.trainer = trainer
        self.iterations = iterations if trainer is not None else 0
        self.lr = lr
        self.lr_final = lr if lr_final is None else lr_final
        self.average_decay = average_decay
        self.average = None  # the moving average (host float64), None before a first step

    def _update_average(self, k: int) -> None:
        """Fold in the parameters after the ``k``-th step of the average (k = 1 starts it)."""
        if self.average_decay is None:
            return
        params = np.array(to_host(self.potential.params), dtype=np.float64)
        if k == 1:  # a restart from a checkpoint of iteration 0 also comes here
            self.average = params
        else:
            # the bias-corrected recursion: the weight of the new step is (1 - d) / (1 - d^k)
            d = self.average_decay
            w = (1.0 - d) / (1.0 - d ** k)
            self.average = (1.0 - w) * self.average + w * params

    @contextmanager
    def averaged(self):
        """The potential with the averaged parameters inside the block (its own parameters
        outside it); the potential as it is without ``average_decay`` or before a step."""
        if self.average is None:
            yield self.potential
            return
        own = to_host(self.potential.params).copy()
        try:
            self.potential.set_params(self.average)
            yield self.potential
        finally:
            self.potential.set_params(own)

    @property
    def iteration(self) -> int:
        return self.trainer.iteration if self.trainer is not None else 0

    @property
    def finished(self) -> bool:
        return self.iteration >= self.iterations

    def learning_rate(self, k: int) -> float:
        return geometric_lr(self.lr, self.lr_final, k, self.iterations)

    def step(self) -> dict:
        lr = self.learning_rate(self.iteration)
        self.trainer.optimizer.lr = lr
        diag = self.trainer.step()
        self._update_average(self.iteration)
        return {"loss": diag["loss"], "grad_norm": diag["grad_norm"], "lr": lr}

    def state(self) -> dict:
        if self.trainer is None:
            return {"params": to_host(self.potential.params).copy()}
        state = self.trainer.state()
        if self.average_decay is not None:
            # the checkpoint's layout is fixed at the start: before a first step the
            # parameters stand in for the average (a restart from iteration 0 drops them)
            state["average_params"] = (to_host(self.potential.params).copy()
                                       if self.average is None else self.average.copy())
        return state

    def load_state(self, state) -> None:
        if self.trainer is None:
            self.potential.set_params(np.asarray(state["params"]))
            return
        self.trainer.load_state(state)
        if self.average_decay is None:
            return
        if "average_params" not in state:
            raise InputError("the checkpoint has no parameter average: it was written without "
                             "training.average_decay", source="checkpoint",
                             key="average_params")
        average = np.array(state["average_params"], dtype=np.float64)
        if average.shape != (self.potential.n_params,):
            raise InputError(f"average_params have shape {average.shape}, expected "
                             f"({self.potential.n_params},)", source="checkpoint",
                             key="average_params")
        self.average = average if self.iteration > 0 else None
