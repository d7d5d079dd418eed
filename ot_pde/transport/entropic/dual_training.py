"""Training of learned entropy-Kantorovich potentials (:mod:`.neural`): the runner's iterative
solver. Nothing here reads files or prints."""
from __future__ import annotations

import json
import math

import numpy as np

from ...errors import InputError, NumericalError
from ...flows.training import Adam, geometric_lr
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
    """

    def __init__(self, objective: DualObjective, *, iterations: int, batch: int, lr: float,
                 lr_final: float, seed: int, train=None, sampler=None, optimizer: str = "newton",
                 adam_lr: float = 1e-3, adam_lr_final: float | None = None, beta: float = 0.9):
        if (train is None) == (sampler is None):
            raise ValueError("give exactly one of train and sampler")
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
            res = obj.value_and_grad(xs, y, xi)
            self._check(res["value"], res["grad"], res["mass"])
            self.adam.lr = lr
            theta = obj.params()
            theta = self.adam.step(theta, -res["grad"])  # Adam minimizes: descend -J
            shrink = self._safeguard(theta, xs, y, xi)
        else:
            # Gauss-Seidel: phi by the semi-dual, then psi by J at the new phi
            adam_lr = geometric_lr(self.adam_lr, self.adam_lr_final, k, n_it)
            semi = obj.semi_dual(xs, y, xi, want_curvature=True)
            self._check(semi["value"], semi["grad"], 1.0)
            theta = obj.params()
            self.curv_phi = self._newton(theta, semi["grad"], self.lin_phi, self.curv_phi,
                                         semi["curvature"], lr)
            self._adam_step(self.adam, theta, semi["grad"], self.hid_phi, adam_lr)
            shrink = self._safeguard(theta, xs, y, xi, semi=True)
            obj.psi.set_quadratic(*quadratic_transform(obj.phi, obj.target, obj.epsilon))
            if len(self.hid_psi):
                theta = obj.params()
                grad_psi = np.zeros(obj.n_params)
                target = obj.transform_share(y, xi)
                for _ in range(PSI_REGRESSION_STEPS):
                    reg, offset = obj.transform_regression(y, target)
                    grad_psi[obj.phi.n_params:] = -reg
                    self._adam_step(self.adam_psi, theta, grad_psi, self.hid_psi, adam_lr)
                    # the constant is fitted exactly (least squares): c absorbs the mean misfit
                    theta[obj.phi.n_params + obj.psi.n_quad - 1] -= offset
                    obj.set_params(theta)
            res = obj.value_and_grad(xs, y, xi, want_grad=False)
            res["grad"] = semi["grad"]
        self.iteration += 1
        return {"dual": res["value"], "plan_mass": res["mass"],
                "grad_norm": float(np.linalg.norm(res["grad"])), "lr": lr,
                "step_shrink": shrink}

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
                    ok = math.isfinite(obj.semi_dual(xs, y, xi)["value"])
                else:
                    mass = obj.value_and_grad(xs, y, xi, want_grad=False)["mass"]
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
