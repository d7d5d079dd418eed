r"""The ``otreg_flow`` problem kind: transport-regularized potential flows (OT-Flow objective).

A case trains a potential :math:`\Phi` (OT-Flow's ResNet, or a time-dependent one-hidden-layer
Monge-Ampère potential) so that :math:`dx/dt = -\nabla\Phi` carries the data at :math:`t = 0`
to :math:`\mathcal N(0, I)` at :math:`t = 1`, minimizing
:math:`\alpha_0 L + \alpha_1 C + \alpha_2 R` (transport cost, NLL, HJB residual; see
:mod:`.objective`) with Adam and the exact discrete adjoint. ``/history`` holds the three
batch terms per iteration; the summary measures how close the trained map :math:`T` is to
the Monge map, on held-out data:

``nll_test``, ``transport_term_test``, ``hjb_test``
    The three terms of the loss (:math:`C`, :math:`L = \mathbb E\int\frac12|v|^2`, :math:`R`).
``transport_cost``
    :math:`\mathbb E|T(x) - x|^2` (the displacement cost of the map), and ``layerwise_cost``
    :math:`N\,\mathbb E\sum_n|x_{n+1} - x_n|^2 \ge` ``transport_cost`` (the discrete kinetic
    energy, :math:`\approx 2L`).
``ot_bound``
    :math:`W_2^2(\text{data}, \mathcal N(0, I))` by exact discrete OT on samples, extrapolated
    in the sample size (:mod:`ot_pde.flows.discrete_ot`); ``ot_gap`` =
    ``transport_cost - ot_bound`` (``relative_ot_gap``).
``paired_gap``
    :math:`\frac1n\sum|T(x_i) - x_i|^2 - \min_\sigma\frac1n\sum|T(x_{\sigma(i)}) - x_i|^2` on
    ``evaluation.paired_size`` held-out points: the cost of the map's own coupling above the
    optimal coupling of the same points, 0 exactly for a Monge map (cyclical monotonicity).

With ``output.checkpoint`` the trained model is also written as an exported ``.npz``
checkpoint (:mod:`.export`) with reference pairs, for the ``flow_comparison`` kind (which
adds Benamou-Brenier in 2D).
"""
from __future__ import annotations

import math

import numpy as np

from ...backends import Backend
from ...config import Field, Section, make_schema
from ...core.problem import EvaluatedOnce, FieldData, GridAxis, ParticleData, Problem
from ...errors import InputError, NumericalError
from ..discrete_ot import assignment_cost, estimate_w2
from ..exported.checkpoint import save_checkpoint
from ..integrators import SCHEMES, to_host
from ..model import build_potential, check_model, model_label, model_section, training_fields
from ..targets import build_target, target_section
from ..training import Adam, Trainer, TrainingRun
from .export import checkpoint_arrays
from .objective import OTRegularized, integrate_ot

_CHUNK = 8192

_model = model_section(width=32, activation="logcosh")
_model.default_variant = "otflow_resnet"

SCHEMA = make_schema({
    "model": _model,
    "time": Section({
        "T": Field("float", 1.0, exclusive_minimum=0.0,
                   doc="flow time (OT-Flow: 1; export of a ResNet needs 1)"),
        "n_steps": Field("int", 8, minimum=1, resolution="inverse",
                         doc="fixed Runge-Kutta steps on [0, T] (OT-Flow's nt)"),
        "scheme": Field("str", "rk4", choices=tuple(SCHEMES), doc="Runge-Kutta scheme"),
    }, doc="time integration of dx/dt = -grad Phi with the cost states l, v, r"),
    "target": target_section(),
    "training": Section({
        "alpha": Field("float_list", [1.0, 30.0, 15.0], length=3, minimum=0.0,
                       doc="weights of transport cost, NLL and HJB residual (OT-Flow's alph)"),
        **training_fields(iterations=1000, batch_size=1024, lr=0.05),
        "n_train": Field("int", 100000, minimum=1, doc="training samples drawn from the target"),
        "n_test": Field("int", 10000, minimum=2, doc="held-out samples for the summary"),
    }, doc="the transport-regularized objective and Adam"),
    "evaluation": Section({
        "ot_sizes": Field("int_list", [256, 512, 1024], minimum=2,
                          doc="sample sizes of the discrete OT bound (extrapolated)"),
        "ot_repeats": Field("int", 3, minimum=2, doc="repeats per size"),
        "paired_size": Field("int", 1024, minimum=2,
                             doc="held-out points of paired_gap (exact assignment)"),
    }, doc="distance of the trained map to optimal transport"),
    "grid": Section({
        "lower": Field("float_list", [-4.0, -4.0], length=2, doc="lower corner (2D figure)"),
        "upper": Field("float_list", [4.0, 4.0], length=2, doc="upper corner (2D figure)"),
        "n": Field("int", 64, minimum=4, doc="cells per axis of the density field"),
    }, doc="2D grid of the model density written to /fields"),
    "output": Section({
        "every": Field("int", 50, minimum=1,
                       doc="iterations between flushes of history and checkpoint"),
        "samples": Field("int", 2000, minimum=1, doc="points written to /particles"),
        "checkpoint": Field("str", None, doc="write the trained model to this exported "
                                             ".npz checkpoint (relative to the working "
                                             "directory), for flow_comparison"),
    }),
})


class OTRegRun(TrainingRun):
    """:class:`TrainingRun` whose history rows add the three loss terms of the batch."""

    def step(self) -> dict:
        row = super().step()
        terms = self.trainer.objective.last_terms
        row.update({f"{k}_term": v for k, v in terms.items()})
        return row


class OTRegFlowProblem(EvaluatedOnce, Problem):
    def __init__(self, case):
        super().__init__(case)
        where = case.source
        self._seeds = self.seed_streams("init", "data", "batches", "eval")
        self.target = build_target(case, np.random.default_rng(self._seeds["data"]))
        self.dim = self.target.dim
        self.generators = check_model(case, self.dim)
        if self.generators:
            raise InputError("symmetry averaging is not supported by otreg_flow (its time "
                             "derivative is not implemented)", source=where,
                             key="model.symmetry")
        if case.get("model.family") == "lattice_conv":
            raise InputError("otreg_flow needs the potential's time derivative, which "
                             "lattice_conv does not implement: use one_hidden_layer or "
                             "otflow_resnet", source=where, key="model.family")
        if case.get("model.family") == "one_hidden_layer" and not case.get(
                "model.time_dependent"):
            raise InputError("the HJB residual needs a time-dependent potential: set "
                             "model.time_dependent = true", source=where,
                             key="model.time_dependent")
        if case.get("model.family") == "otflow_resnet" and case.get("time.T") != 1.0 and \
                case.get("output.checkpoint"):
            raise InputError("an exported OT-Flow checkpoint runs on [0, 1]: set time.T = 1",
                             source=where, key="time.T")
        lower, upper = case.get("grid.lower"), case.get("grid.upper")
        if any(b <= a for a, b in zip(lower, upper)):
            raise InputError("expected upper > lower on both axes", source=where,
                             key="grid.upper")
        self.alpha = tuple(case.get("training.alpha"))

    def describe(self) -> str:
        c = self.case
        return (f"transport-regularized flow, d = {self.dim}, {c.get('target.type')}, "
                f"{model_label(c)}, alpha = "
                f"{list(self.alpha)}, {c.get('time.n_steps')} {c.get('time.scheme')} steps")

    def max_iterations(self) -> int:
        return self.case.get("training.iterations")

    def _flow(self) -> dict:
        c = self.case
        return {"T": c.get("time.T"), "n_steps": c.get("time.n_steps"),
                "scheme": c.get("time.scheme")}

    def make_solver(self, backend: Backend) -> OTRegRun:
        c = self.case
        potential = build_potential(c, self.dim, backend,
                                    np.random.default_rng(self._seeds["init"]), [])
        objective = OTRegularized(self.target.train, self.alpha)
        trainer = Trainer(potential, objective, batch_size=c.get("training.batch_size"),
                          optimizer=Adam(potential.n_params, lr=c.get("training.lr")),
                          seed=np.random.default_rng(self._seeds["batches"]), xp=backend.xp,
                          **self._flow())
        return OTRegRun(potential, trainer, c.get("training.iterations"), c.get("training.lr"),
                        c.get("training.lr_final"))

    def grid(self) -> list[GridAxis]:
        if self.dim != 2:
            return []
        X, Y = self._axes()
        return [GridAxis("x", X, "1", "cell centres along x", "space"),
                GridAxis("y", Y, "1", "cell centres along y", "space")]

    def _axes(self):
        lo, up, n = self.case.get("grid.lower"), self.case.get("grid.upper"), \
            self.case.get("grid.n")
        return tuple(lo[k] + (np.arange(n) + 0.5) * (up[k] - lo[k]) / n for k in range(2))

    # -- evaluation -------------------------------------------------------------------------
    def _to_latent(self, pot, x):
        """Latent points, the three per-sample cost states and the layerwise cost, chunked."""
        xp, parts = pot.xp, []
        for s in range(0, x.shape[0], _CHUNK):
            run = integrate_ot(pot, xp.asarray(x[s:s + _CHUNK]), **self._flow())
            parts.append(run)
        z = np.concatenate([to_host(r.z) for r in parts])
        cat = {k: np.concatenate([to_host(getattr(r, k)) for r in parts])
               for k in ("l", "v", "r", "layerwise")}
        return z, cat

    def _results(self, solver) -> tuple:
        c, pot = self.case, solver.potential
        rng = np.random.default_rng(self._seeds["eval"])
        test = self.target.test
        z, st = self._to_latent(pot, test)
        d = self.dim
        nll = 0.5 * (z * z).sum(axis=1) + 0.5 * d * math.log(2.0 * math.pi) - st["l"]
        disp = ((z - test) ** 2).sum(axis=1)
        if not (np.all(np.isfinite(nll)) and np.all(np.isfinite(disp))):
            raise NumericalError("non-finite latent points or log-densities on the test data")
        n = test.shape[0]
        se = (lambda a: float(a.std(ddof=1) / math.sqrt(a.size)))
        s = {"nll_test": float(nll.mean()), "nll_test_stderr": se(nll),
             "transport_term_test": float(st["v"].mean()), "hjb_test": float(st["r"].mean()),
             "transport_cost": float(disp.mean()), "transport_cost_stderr": se(disp),
             "layerwise_cost": float(st["layerwise"].mean()),
             "alpha_transport": self.alpha[0], "alpha_nll": self.alpha[1],
             "alpha_hjb": self.alpha[2],
             "loss_test": float(self.alpha[0] * st["v"].mean() + self.alpha[1] * nll.mean()
                                + self.alpha[2] * st["r"].mean())}
        if self.target.entropy is not None:
            s["kl_estimate"] = s["nll_test"] - self.target.entropy
        # the discrete OT bound W2^2(data, N(0, I)), and the map's own coupling vs the optimal
        pool = self.target.train

        def data(k, g):
            return pool[g.integers(0, pool.shape[0], size=k)]

        def gauss(k, g):
            return g.standard_normal((k, d))

        est = estimate_w2(data, gauss, c.get("evaluation.ot_sizes"),
                          c.get("evaluation.ot_repeats"), rng, d)
        s["ot_bound"] = float(est.value)
        s["ot_bound_stderr"] = float(est.stderr)
        s["ot_gap"] = s["transport_cost"] - s["ot_bound"]
        s["relative_ot_gap"] = s["ot_gap"] / s["ot_bound"] if s["ot_bound"] > 0 else math.inf
        k = min(c.get("evaluation.paired_size"), n)
        s["paired_gap"] = float(disp[:k].mean() - assignment_cost(test[:k], z[:k])[0])

        m = min(c.get("output.samples"), n)
        particles = [ParticleData("test_data", test[:m], "1", "held-out data x"),
                     ParticleData("test_latent", z[:m], "1", "their images T(x) at t = T")]
        fields = []
        if d == 2:
            X, Y = self._axes()
            pts = np.stack(np.meshgrid(X, Y, indexing="ij"), axis=-1).reshape(-1, 2)
            zg, sg = self._to_latent(pot, pts)
            logp = -0.5 * (zg * zg).sum(axis=1) - math.log(2.0 * math.pi) + sg["l"]
            cell = (X[1] - X[0]) * (Y[1] - Y[0])
            s["mass_on_grid"] = float(np.exp(logp).sum() * cell)
            fields.append(FieldData("log_density", logp.reshape(X.size, Y.size), ("x", "y"),
                                    "1", "ln p of the trained flow at the cell centres"))
        out = c.get("output.checkpoint")
        if out:
            self._export(pot, out, test[:16])
            s["checkpoint_written"] = True
        return s, fields, particles

    def _export(self, pot, path, ref_x) -> None:
        meta, params = checkpoint_arrays(pot, alpha=self.alpha, extra={
            "source": f"ot_pde otreg_flow, case {self.case.source}",
            "data": self.case.get("target.type"), "reference_by": "ot_pde (numpy, float64)"},
            **self._flow())
        reference = None
        if meta["model_type"] == "otflow":  # data_to_latent: the pairs are (x, T(x), ln p(x))
            z, st = self._to_latent(pot, ref_x)
            logp = -0.5 * (z * z).sum(axis=1) - 0.5 * self.dim * math.log(2.0 * math.pi) \
                + st["l"]
            reference = {"input": ref_x, "output": z, "log_density": logp}
        try:
            save_checkpoint(path, meta, params, reference)
        except OSError as exc:
            raise InputError(f"cannot write the checkpoint: {exc}", source=self.case.source,
                             key="output.checkpoint") from None



def build(case) -> OTRegFlowProblem:
    return OTRegFlowProblem(case)
