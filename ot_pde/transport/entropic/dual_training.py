"""Training of learned entropy-Kantorovich potentials (:mod:`.neural`): the runner's iterative
solver. Nothing here reads files or prints."""
from __future__ import annotations

import json
import math

import numpy as np

from ...errors import InputError, NumericalError
from ...flows.training import Adam, geometric_lr
from ...parallel import block_range
from .neural import MASS_LIMIT, SAFEGUARD_TRIES, DualObjective, quadratic_transform

#: Adam steps of psi's network on each batch's regression targets (psi must track phi)
PSI_REGRESSION_STEPS = 5


class DualTraining:
    r"""The runner's iterative solver: stochastic ascent of :math:`J` on mini-batches.

    Each :meth:`step` draws ``batch`` data rows (from the training set, with replacement, or
    fresh from ``sampler`` when there is no training set), ``batch`` target samples and
    ``draws`` proposal draws each, all from the trainer's own generator (restartable: its
    state is in :meth:`state`). The step size decays geometrically from ``lr`` to
    ``lr_final`` over the iterations.

    ``optimizer = "newton"`` (Gauss-Seidel, one batch per step):

    1. :math:`\varphi` ascends the semi-dual (:meth:`DualObjective.semi_dual`, :math:`\psi`
       eliminated): its quadratic part by the damped stochastic Newton step
       :math:`\eta_k(\bar F + \lambda)^{-1}\nabla J_s/(1 + \delta)`, :math:`\bar F` the running
       (bias-corrected, factor ``beta``) average of the curvature estimates,
       :math:`\lambda = 10^{-8}` of its largest diagonal entry (the curvature vanishes along
       :math:`S`'s antisymmetric part and the constant, like the gradient), :math:`\delta` the
       Newton decrement in units of :math:`\varepsilon`; its network by Adam;
    2. :math:`\psi`'s quadratic part becomes the exact transform of :math:`\varphi`'s
       (:func:`~.neural.quadratic_transform`); its network takes :data:`PSI_REGRESSION_STEPS`
       Adam steps of the regression :meth:`DualObjective.transform_regression`, its constant
       the least-squares shift.

    ``optimizer = "adam"``: Adam on every parameter of the joint dual :math:`J` (kept for
    comparison: the joint curvature couples :math:`\varphi(x)` and :math:`\psi(y)` through the
    nearly deterministic plan, with a condition number growing like :math:`1/\varepsilon`, and
    diagonal Adam crawls). Every update is shrunk while it would make the batch's plan mass
    overflow (:meth:`_safeguard`).

    Data parallelism (``shards``, ``comm``) as in :class:`~ot_pde.flows.training.Trainer`:
    every rank draws the whole batch from the same generator, the batch's rows (data, target
    samples and their proposal draws alike) are cut into ``shards`` contiguous shards, each
    rank evaluates the estimators on its shards (:func:`~ot_pde.parallel.block_range`), and
    every sum over the batch is the shards' parts gathered from all ranks and added in shard
    order (:meth:`_batch_sum`). The arithmetic does not depend on how the shards are spread
    over ranks: a run is the same to the bit on 1 to ``shards`` ranks, and every rank takes
    the same steps. Different ``shards`` differ by round-off in the sums.
    """

    def __init__(self, objective: DualObjective, *, iterations: int, batch: int, lr: float,
                 lr_final: float, seed: int, train=None, sampler=None, optimizer: str = "newton",
                 adam_lr: float = 1e-3, adam_lr_final: float | None = None, beta: float = 0.9,
                 shards: int = 1, comm=None):
        if (train is None) == (sampler is None):
            raise ValueError("give exactly one of train and sampler")
        if not 1 <= shards <= batch:
            raise ValueError(f"shards must lie in [1, batch = {batch}], got {shards!r}")
        if comm is not None and shards < comm.Get_size():
            raise ValueError(f"{shards} shard(s) cannot be spread over {comm.Get_size()} MPI "
                             "ranks")
        if optimizer not in ("adam", "newton"):
            raise ValueError(f"unknown optimizer {optimizer!r}")
        self.objective = objective
        self.iterations = int(iterations)
        self.batch = int(batch)
        self.lr, self.lr_final = float(lr), float(lr_final)
        self.adam_lr = float(adam_lr)
        self.adam_lr_final = self.adam_lr if adam_lr_final is None else float(adam_lr_final)
        self.train, self.sampler = train, sampler
        self.optimizer = optimizer
        self.beta = float(beta)
        self.shards, self.comm = int(shards), comm
        self.rng = np.random.default_rng(seed)
        n_phi = objective.phi.n_params
        if optimizer == "newton":
            self.lin_phi = objective.phi.linear_index()
            self.lin_psi = n_phi + objective.psi.linear_index()  # slaved: no steps
        else:
            self.lin_phi = self.lin_psi = np.arange(0)
        self.hid_phi = np.setdiff1d(np.arange(n_phi), self.lin_phi)
        self.hid_psi = np.setdiff1d(np.arange(n_phi, objective.n_params), self.lin_psi)
        if optimizer == "newton":
            self.adam = Adam(len(self.hid_phi), lr=self.adam_lr)
            self.adam_psi = Adam(len(self.hid_psi), lr=self.adam_lr)
        else:
            self.adam = Adam(objective.n_params, lr=self.lr)
            self.adam_psi = Adam(0)
        self.curv_phi = np.zeros((len(self.lin_phi), len(self.lin_phi)))
        self.iteration = 0

    @property
    def finished(self) -> bool:
        return self.iteration >= self.iterations

    def draw(self, rng, n: int):
        """``(data, y, xi)`` of a batch of ``n``."""
        obj = self.objective
        if self.train is not None:
            xs = self.train[rng.integers(0, len(self.train), n)]
        else:
            xs = self.sampler(n, rng)
        y = obj.target.sample(n, rng)
        xi = rng.standard_normal((n, obj.draws, obj.phi.dim))
        return xs, y, xi

    def step(self) -> dict:
        obj = self.objective
        xs, y, xi = self.draw(self.rng, self.batch)
        k, n_it = self.iteration, self.iterations
        lr = geometric_lr(self.lr, self.lr_final, k, n_it)
        if self.optimizer == "adam":
            res = self._dual(xs, y, xi, want_grad=True)
            self._check(res["value"], res["grad"], res["mass"])
            self.adam.lr = lr
            theta = obj.params()
            theta = self.adam.step(theta, -res["grad"])  # Adam minimizes: descend -J
            shrink = self._safeguard(theta, xs, y, xi)
        else:
            # Gauss-Seidel: phi by the semi-dual, then psi by J at the new phi
            adam_lr = geometric_lr(self.adam_lr, self.adam_lr_final, k, n_it)
            semi = self._semi_dual(xs, y, xi, want_curvature=True)
            self._check(semi["value"], semi["grad"], 1.0)
            theta = obj.params()
            self.curv_phi = self._newton(theta, semi["grad"], self.lin_phi, self.curv_phi,
                                         semi["curvature"], lr)
            self._adam_step(self.adam, theta, semi["grad"], self.hid_phi, adam_lr)
            shrink = self._safeguard(theta, xs, y, xi, semi=True)
            obj.psi.set_quadratic(*quadratic_transform(obj.phi, obj.target, obj.epsilon))
            if len(self.hid_psi):
                self._regress_psi(y, xi, adam_lr)
            res = self._dual(xs, y, xi, want_grad=False)
            res["grad"] = semi["grad"]
        self.iteration += 1
        return {"dual": res["value"], "plan_mass": res["mass"],
                "grad_norm": float(np.linalg.norm(res["grad"])), "lr": lr,
                "step_shrink": shrink}

    # -- sums over the batch, shard by shard ----------------------------------------------------
    def _my_shards(self):
        """``(lo, hi)`` row ranges of this rank's shards of the batch."""
        mine = range(self.shards)
        if self.comm is not None:
            mine = range(*block_range(self.shards, self.comm.Get_size(), self.comm.Get_rank()))
        return [block_range(self.batch, self.shards, k) for k in mine]

    def _batch_sum(self, part):
        """``part(lo, hi)``, a dict of floats, arrays or None for the rows ``lo:hi``, summed
        over the shards of all ranks in shard order (``allgather`` and an ordered sum, not
        ``Allreduce``: the bits must not depend on the ranks)."""
        parts = [part(lo, hi) for lo, hi in self._my_shards()]
        if self.comm is not None:
            parts = [p for rank_parts in self.comm.allgather(parts) for p in rank_parts]
        out = dict(parts[0])
        for p in parts[1:]:
            for key, v in p.items():
                out[key] = None if v is None or out[key] is None else out[key] + v
        return out

    def _semi_dual(self, xs, y, xi, want_curvature=False):
        obj = self.objective

        def part(lo, hi):
            r = obj.semi_dual(xs[lo:hi], y[lo:hi], xi[lo:hi], want_curvature=want_curvature,
                              total=self.batch)
            return {key: r[key] for key in ("value", "grad", "curvature")}

        return self._batch_sum(part)

    def _dual(self, xs, y, xi, want_grad):
        obj = self.objective

        def part(lo, hi):
            r = obj.value_and_grad(xs[lo:hi], y[lo:hi], xi[lo:hi], want_grad=want_grad,
                                   total=self.batch)
            return {key: r[key] for key in ("value", "grad", "mass")}

        return self._batch_sum(part)

    def _regress_psi(self, y, xi, adam_lr):
        """:data:`PSI_REGRESSION_STEPS` Adam steps of psi's network on the transform targets
        of this batch; the constant is fitted exactly (least squares: it absorbs the mean
        misfit)."""
        obj = self.objective
        target = np.empty(self.batch)
        for lo, hi in self._my_shards():  # each rank needs the targets of its rows only
            target[lo:hi] = obj.transform_share(y[lo:hi], xi[lo:hi])

        def part(lo, hi):
            grad, offset = obj.transform_regression(y[lo:hi], target[lo:hi], total=self.batch)
            return {"grad": grad, "offset": offset}

        theta = obj.params()
        grad_psi = np.zeros(obj.n_params)
        for _ in range(PSI_REGRESSION_STEPS):
            reg = self._batch_sum(part)
            grad_psi[obj.phi.n_params:] = -reg["grad"]
            self._adam_step(self.adam_psi, theta, grad_psi, self.hid_psi, adam_lr)
            theta[obj.phi.n_params + obj.psi.n_quad - 1] -= reg["offset"]
            obj.set_params(theta)

    def _check(self, value, grad, mass):
        if grad is None or not (math.isfinite(value) and np.all(np.isfinite(grad))):
            raise NumericalError(f"entropic dual: non-finite value ({value}) or gradient at "
                                 f"iteration {self.iteration + 1} (plan mass estimate {mass}); "
                                 "lower potentials.lr or potentials.adam_lr")

    @staticmethod
    def _adam_step(adam, theta, grad, idx, lr):
        if len(idx):
            adam.lr = lr
            theta[idx] = adam.step(theta[idx], -grad[idx])  # Adam minimizes: descend -J

    def _newton(self, theta, grad, idx, average, curvature, lr):
        """Damped Newton step on ``theta[idx]`` (in place); returns the new running average."""
        k = self.iteration
        average = self.beta * average + (1.0 - self.beta) * curvature
        f = average / (1.0 - self.beta ** (k + 1))
        damp = 1e-8 * max(float(np.max(np.diag(f))), 1e-300)
        try:
            direction = np.linalg.solve(f + damp * np.eye(len(f)), grad[idx])
        except np.linalg.LinAlgError as exc:
            raise NumericalError(f"entropic dual: singular curvature at iteration {k + 1}") \
                from exc
        # damped Newton (Nesterov): 1 / (1 + decrement), the decrement in units of eps
        decrement = math.sqrt(max(float(grad[idx] @ direction), 0.0) / self.objective.epsilon)
        theta[idx] += lr / (1.0 + decrement) * direction
        return average

    def _safeguard(self, theta, xs, y, xi, semi: bool = False) -> float:
        r"""Apply the step from the current parameters to ``theta``, divided by 4 until the
        batch's plan-mass estimate stays below :data:`MASS_LIMIT` (a step into a region where
        :math:`\varphi + \psi` overshoots makes :math:`e^{(\varphi+\psi-c)/\varepsilon}`
        overflow before the gradient can pull it back). Returns the factor applied."""
        obj = self.objective
        old = obj.params()
        delta = theta - old
        factor = 1.0
        for _ in range(SAFEGUARD_TRIES):
            obj.set_params(old + factor * delta)
            with np.errstate(over="ignore", invalid="ignore"):
                if semi:
                    ok = math.isfinite(self._semi_dual(xs, y, xi)["value"])
                else:
                    mass = self._dual(xs, y, xi, want_grad=False)["mass"]
                    ok = math.isfinite(mass) and mass < MASS_LIMIT
            if ok:
                return factor
            factor *= 0.25
        raise NumericalError(f"entropic dual: every step from iteration {self.iteration} "
                             f"overflows the plan mass (lower potentials.lr or "
                             f"potentials.adam_lr)")

    def state(self) -> dict:
        adam, adam_psi = self.adam.state_dict(), self.adam_psi.state_dict()
        return {"params": self.objective.params(), "adam_m": adam["m"], "adam_v": adam["v"],
                "adam_step": np.int64(adam["t"]), "adam_psi_m": adam_psi["m"],
                "adam_psi_v": adam_psi["v"], "adam_psi_step": np.int64(adam_psi["t"]),
                "iteration": np.int64(self.iteration),
                "curvature_phi": self.curv_phi.copy(),
                "rng_state": json.dumps(self.rng.bit_generator.state)}

    def load_state(self, state) -> None:
        params = np.asarray(state["params"], dtype=np.float64)
        if params.shape != (self.objective.n_params,):
            raise InputError(f"params have shape {params.shape}, expected "
                             f"({self.objective.n_params},)", source="checkpoint", key="params")
        curvatures = []
        for key, have in (("curvature_phi", self.curv_phi),):
            c = np.asarray(state[key], dtype=np.float64)
            if c.shape != have.shape:
                raise InputError(f"{key} has shape {c.shape}, expected {have.shape}",
                                 source="checkpoint", key=key)
            curvatures.append(c)
        rng_state = state["rng_state"]
        if isinstance(rng_state, bytes):
            rng_state = rng_state.decode()
        self.adam.load_state_dict({"m": state["adam_m"], "v": state["adam_v"],
                                   "t": int(state["adam_step"])})
        self.adam_psi.load_state_dict({"m": state["adam_psi_m"], "v": state["adam_psi_v"],
                                       "t": int(state["adam_psi_step"])})
        self.rng.bit_generator.state = json.loads(str(rng_state))
        self.curv_phi, = curvatures
        self.objective.set_params(params)
        self.iteration = int(state["iteration"])
