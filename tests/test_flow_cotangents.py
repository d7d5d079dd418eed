"""The discrete adjoint's summed parameter cotangents (ot_pde.flows.potentials.cotangents).

A hidden layer's sink multiplies the rows of many stages at once and the adjoint reuses the
forward pass's pre-activations; both must give the stage-by-stage sum of ``vjp`` to round-off,
whatever the buffer size, the backend, the precision and the composition.
"""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.backends import available_backends, get_backend
from ot_pde.flows import integrators as integ
from ot_pde.flows.composition import Composition
from ot_pde.flows.potentials import OneHiddenLayer, spin_flip, translations_2d
from ot_pde.flows.potentials.cotangents import DenseCotangentSum, HiddenLayerCotangents

BACKENDS = [b for b in ("numpy", "numba") if b in available_backends()]


def _stagewise(potential, traj, lam_x, lam_l):
    """The adjoint's parameter gradient as it was summed before the sinks: ``vjp`` per stage,
    no kept state, dense float64 sum."""
    dense = DenseCotangentSum()
    fields = potential

    class Stagewise:
        def __getattr__(self, name):
            return getattr(fields, name)

        def cotangent_sink(self, rows=None):
            return dense

    class NoState:
        """A field without vjp_into or kept state: the adjoint's fallback through vjp."""

        def __init__(self, inner):
            self.inner = inner

        def vjp(self, x, t, a, b):
            return self.inner.vjp(x, t, a, b)

    real_fields = integ._fields
    try:
        integ._fields = lambda p, actions, n, k: [NoState(f) for f in
                                                  real_fields(fields, actions, n, k)]
        traj = integ.Trajectory(traj.scheme, traj.h, traj.times, traj.stages, traj.actions)
        return integ.integrate_adjoint(Stagewise(), traj, lam_x, lam_l)
    finally:
        integ._fields = real_fields


def _problem(backend, dtype=np.float64, bias=True, time_dependent=True, batch=6):
    rng = np.random.default_rng(5)
    pot = OneHiddenLayer(16, 24, "logcosh", bias=bias, time_dependent=time_dependent,
                         backend=get_backend(backend), rng=4)
    pot = pot.astype(dtype)
    x0 = rng.standard_normal((batch, 16)).astype(dtype)
    l0 = np.zeros(batch, dtype=dtype)
    lam_x = rng.standard_normal((batch, 16)).astype(dtype)
    lam_l = rng.standard_normal(batch).astype(dtype)
    return pot, x0, l0, lam_x, lam_l


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 7, 12, 50, 4096])
@pytest.mark.parametrize("scheme", ["rk4", "midpoint"])
def test_buffered_sum_equals_stagewise_sum(backend, rows, scheme, monkeypatch):
    """Any buffer size (smaller than one stage's rows, unaligned, large) gives the
    stage-by-stage gradient to round-off, with biases and time dependence."""
    monkeypatch.setattr(OneHiddenLayer, "cotangent_sink",
                        lambda self, _rows=None: HiddenLayerCotangents(self, rows=rows))
    pot, x0, l0, lam_x, lam_l = _problem(backend)
    kw = dict(T=0.7, n_steps=5, scheme=scheme)
    _, _, traj = integ.integrate(pot, x0, l0, store=True, **kw)
    assert all(s is not None for step in traj.states for s, b in
               zip(step, integ.SCHEMES[scheme].b) if b != 0.0)
    gx, gl, grad = integ.integrate_adjoint(pot, traj, lam_x, lam_l)
    rx, rl, ref = _stagewise(pot, traj, lam_x, lam_l)
    np.testing.assert_allclose(gx, rx, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(gl, rl)
    assert np.abs(grad - ref).max() <= 1e-12 * np.abs(ref).max()
    assert np.abs(ref).max() > 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_kept_states_are_used_and_equal_the_recomputed_ones(backend):
    """The adjoint reuses the forward pass's pre-activations and row norms (poisoning either
    changes the gradient) and gives what recomputing them gives, to round-off."""
    pot, x0, l0, lam_x, lam_l = _problem(backend)
    kw = dict(T=0.7, n_steps=4, scheme="rk4")
    _, _, traj = integ.integrate(pot, x0, l0, store=True, **kw)
    _, _, grad = integ.integrate_adjoint(pot, traj, lam_x, lam_l)
    fresh = integ.Trajectory(traj.scheme, traj.h, traj.times, traj.stages, traj.actions)
    _, _, recomputed = integ.integrate_adjoint(pot, fresh, lam_x, lam_l)
    assert np.abs(grad - recomputed).max() <= 1e-12 * np.abs(recomputed).max()
    for poison in (lambda z, tr, n: (0.0 * z, tr, n), lambda z, tr, n: (z, tr, 2.0 * n)):
        poisoned = tuple(tuple(poison(*state) for state in step) for step in traj.states)
        bad = integ.Trajectory(traj.scheme, traj.h, traj.times, traj.stages, traj.actions,
                               poisoned)
        _, _, wrong = integ.integrate_adjoint(pot, bad, lam_x, lam_l)
        assert np.abs(wrong - grad).max() > 1e-3 * np.abs(grad).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_twin_sums_in_float64(backend):
    """A float32 twin's buffers multiply in float32 and add their products into float64
    totals: its gradient is the float32 stage-by-stage one to float32 round-off of a
    4096-row product, and the float64 one to the twin's own round-off."""
    pot, x0, l0, lam_x, lam_l = _problem(backend, batch=64)
    twin, *rest = _problem(backend, np.float32, batch=64)
    kw = dict(T=1.0, n_steps=20, scheme="rk4")
    _, _, traj = integ.integrate(pot, x0, l0, store=True, **kw)
    _, _, ref = integ.integrate_adjoint(pot, traj, lam_x, lam_l)
    _, _, traj32 = integ.integrate(twin, *rest[:2], store=True, **kw)
    sink = twin.cotangent_sink()
    assert {a.dtype for a in (sink._W1, sink._w2, sink._q, sink._b, sink._c)} == \
        {np.dtype(np.float64)}
    assert sink._left.dtype == sink._right.dtype == np.float32
    _, _, grad = integ.integrate_adjoint(twin, traj32, *rest[2:])
    _, _, stagewise = _stagewise(twin, traj32, *rest[2:])
    assert np.abs(grad - stagewise).max() <= 2e-6 * np.abs(stagewise).max()
    assert np.abs(grad - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_composed_flow_uses_the_buffered_sum(backend):
    """A composed flow (per-step symmetry draws) sums into its potential's sink with the kept
    pre-activations of the acted inputs: the stage-by-stage gradient to round-off."""
    pot, x0, l0, lam_x, lam_l = _problem(backend, bias=False, time_dependent=False)
    comp = Composition(pot, spin_flip(16) + translations_2d(4))
    assert isinstance(comp.cotangent_sink(), HiddenLayerCotangents)
    actions = comp.draw(np.random.default_rng(3), x0.shape[0], 4, 4)
    _, _, traj = integ.integrate(comp, x0, l0, T=0.6, n_steps=4, store=True, actions=actions)
    gx, _, grad = integ.integrate_adjoint(comp, traj, lam_x, lam_l)
    rx, _, ref = _stagewise(comp, traj, lam_x, lam_l)
    np.testing.assert_allclose(gx, rx, rtol=1e-12, atol=1e-13)
    assert np.abs(grad - ref).max() <= 1e-12 * np.abs(ref).max()


_THREADED = """
import sys
import numpy as np
from ot_pde.backends import get_backend
from ot_pde.flows import training as tr
from ot_pde.flows.composition import Composition
from ot_pde.flows.potentials import OneHiddenLayer, spin_flip, translations_2d

def trainer(threads, backend, dtype):
    # large enough that the shards' products overlap in time on the threads
    pot = OneHiddenLayer(64, 256, "logcosh", bias=False, time_dependent=True,
                         backend=get_backend(backend), rng=4)
    comp = Composition(pot, spin_flip(64) + translations_2d(8))
    target = (lambda x: -0.5 * np.sum(x * x, axis=1) - np.sum(np.cos(x), axis=1),
              lambda x: -x + np.sin(x))
    return tr.Trainer(comp, tr.ReverseKL(*target), batch_size=96, n_steps=4, T=0.5,
                      optimizer=tr.Adam(pot.n_params, lr=0.01), seed=7, shards=3,
                      threads=threads, dtype=dtype)

backend, dtype = sys.argv[1], np.dtype(sys.argv[2])
serial, threaded = trainer(1, backend, dtype), trainer(3, backend, dtype)
for _ in range(4):
    a, b = serial.step(), threaded.step()
    if a != b:
        sys.exit(f"step differs: {a} {b}")
if not np.array_equal(serial.potential.params, threaded.potential.params):
    sys.exit("parameters differ")
assert threaded._pool is not None
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_threaded_shards_are_the_serial_bits(backend, dtype):
    """training.threads: in a process started with one BLAS thread, the shards computed on
    threads give the serial run's losses, gradient norms and parameters to the bit (a
    composed flow, whose draws the shards share out, in float64 and in a float32 twin)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _THREADED, backend, dtype], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_threaded_shards_agree_to_round_off_and_check_their_count():
    """With BLAS started on several threads (this process) the threaded shards still agree
    with the serial run to round-off; a thread count below 1 is refused."""
    namespace = {}
    exec(_THREADED.split("backend, dtype =")[0], namespace)
    serial, threaded = (namespace["trainer"](n, BACKENDS[-1], np.float64) for n in (1, 3))
    for _ in range(3):
        a, b = serial.step(), threaded.step()
        assert abs(a["loss"] - b["loss"]) <= 1e-12 * abs(a["loss"])
    np.testing.assert_allclose(threaded.potential.params, serial.potential.params,
                               rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="threads"):
        namespace["trainer"](0, BACKENDS[-1], np.float64)


def test_threaded_step_keeps_blas_on_one_thread_for_the_gradient_norm(monkeypatch):
    """The whole reduction of a threaded step (the gradient's norm too) runs with one thread
    in every loaded BLAS (numpy's and scipy's OpenBLAS): a call on more threads leaves OpenBLAS's workers spinning into the next step's
    shards (measured 40 % slower on 2 cores)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    namespace = {}
    exec(_THREADED.split("backend, dtype =")[0], namespace)
    threaded = namespace["trainer"](3, BACKENDS[-1], np.float64)
    seen = []
    norm = np.linalg.norm

    def spy(x, *args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return norm(x, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "norm", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        threaded.step()
        assert seen == [1]
        # a serial trainer leaves BLAS as the caller set it
        namespace["trainer"](1, BACKENDS[-1], np.float64).step()
        assert seen == [1, 2]
