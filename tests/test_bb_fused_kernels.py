"""The fused numba passes of a Douglas-Rachford iteration against the array expressions they
replace: the same bits where the arithmetic is the same, round-off where only a sum's order
changes, and the same bits with any thread count."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ot_pde.backends import get_backend
from ot_pde.spacetime import solver as bb
from ot_pde.spacetime._prox import kinetic_prox_numpy

nb = pytest.importorskip("ot_pde.spacetime._kernels_numba")

SHAPES = [(9, 7), (6, 5, 8), (5, 4, 6, 3)]  # (nt, *space) in 1D, 2D, 3D


def _staggered(rng, shape, scale=1.0):
    """Random arrays on the faces of every axis (axis k has one more entry along k)."""
    out = []
    for k in range(len(shape)):
        s = list(shape)
        s[k] += 1
        out.append(rng.normal(size=s) * scale)
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("parallel", [True, False])
def test_divergence_and_gradient_have_numpys_bits(shape, parallel):
    rng = np.random.default_rng(0)
    u = _staggered(rng, shape)
    inv_h = tuple(rng.uniform(1, 40, len(shape)))
    np.testing.assert_array_equal(nb.divergence_numba(u, inv_h, parallel),
                                  bb._divergence_xp(u, inv_h))
    lam = rng.normal(size=shape)
    ours, ref = [a.copy() for a in u], [a.copy() for a in u]
    nb.add_gradient_numba(ours, lam, inv_h, parallel)
    bb._add_gradient_xp(ref, lam, inv_h)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="contiguous"):
        nb.add_gradient_numba([a.T for a in ours], lam, inv_h, parallel)


def test_dr_update_bits_and_blocked_sums():
    """z + alpha (y - x) with numpy's bits, in place; the three sums to round-off of numpy's and
    identical from the threaded and the serial kernel (blocked: independent of threads)."""
    rng = np.random.default_rng(1)
    n = 3 * nb.BLOCK + 17  # several blocks and a partial one
    zs = [rng.normal(size=n), rng.normal(size=(5, 7))]
    ys, xs, ps = ([rng.normal(size=z.shape) for z in zs] for _ in range(3))
    ref_z, ref_sums = bb._dr_update_xp(zs, ys, xs, ps, 1.7)
    results = []
    for parallel in (True, False):
        mine = [z.copy() for z in zs]
        out, sums = nb.dr_update_numba(mine, ys, xs, ps, 1.7, parallel)
        assert all(o is m for o, m in zip(out, mine))  # contiguous: updated in place
        for a, b in zip(out, ref_z):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sums, ref_sums, rtol=1e-13)
        results.append(sums)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_prox_energy_is_the_kinetic_sum_of_the_prox(d):
    """The fused kernel's kinetic sum is kinetic_sum_numba of its own output, bit for bit (the
    objective does not depend on which path formed it), and the prox and the sum agree with
    numpy to round-off; threaded and serial give the same bits."""
    rng = np.random.default_rng(2)
    shape = (nb.BLOCK // 64 + 3, 64)  # more than one block
    ft = rng.normal(size=shape) * 2  # negative densities too: the clipped branch
    mt = [rng.normal(size=shape) for _ in range(d)]
    mt[0][:, :5] = 0.0  # zero momentum: the c = 0 branch
    outs = [nb.kinetic_prox_energy_numba(ft, mt, 0.3, parallel) for parallel in (True, False)]
    f_ref, m_ref = kinetic_prox_numpy(ft, mt, 0.3)
    for f, ms, energy in outs:
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-14)
        for a, b in zip(ms, m_ref):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
        assert energy == nb.kinetic_sum_numba(f, ms)
        assert energy == pytest.approx(bb._kinetic_sum_xp(f_ref, m_ref), rel=1e-12)
    for a, b in zip(outs[0][:2], outs[1][:2]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert outs[0][2] == outs[1][2]


@pytest.mark.parametrize("axis", [0, 1])
def test_line_solves_return_the_reflections(axis):
    """Along the first axis (one line block, threaded by chunks) and the contiguous last one:
    the solve, the reflections, and the serial kernel's bits from the threaded one."""
    rng = np.random.default_rng(3)
    shape = [1100, 1100]  # several chunks of lines
    shape[axis] = 7
    zu = rng.normal(size=shape)
    shape[axis] = 6
    zv = rng.normal(size=shape)
    factors = nb.thomas_factors(7)
    u, v, wu, wv = nb.interpolation_projection_numba(zu, zv, axis, factors)
    np.testing.assert_array_equal(wu, 2.0 * u - zu)
    np.testing.assert_array_equal(wv, 2.0 * v - zv)
    serial = nb.interpolation_projection_numba(zu, zv, axis, factors, parallel=False)
    for a, b in zip((u, v, wu, wv), serial):
        np.testing.assert_array_equal(a, b)
    # the solve itself: (Id + A^T A) u = zu + A^T zv along the axis, v = A u
    a_avg = np.zeros((6, 7))
    a_avg[np.arange(6), np.arange(6)] = a_avg[np.arange(6), np.arange(6) + 1] = 0.5
    lhs = np.eye(7) + a_avg.T @ a_avg
    um, zum, zvm = (np.moveaxis(x, axis, 0) for x in (u, zu, zv))
    np.testing.assert_allclose(lhs @ um, zum + a_avg.T @ zvm, atol=1e-12)
    np.testing.assert_allclose(np.moveaxis(v, axis, 0), a_avg @ um, atol=1e-14)


def test_state_is_a_copy_of_the_in_place_iterate(monkeypatch):
    """z is updated in place: a state taken earlier must not change with later iterations."""
    monkeypatch.setattr(bb, "COMPILED_FROM", 0)  # the compiled kernels on this small grid
    grid = bb.SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (8, 8), 4)
    rho = np.ones((8, 8))
    s = bb.BenamouBrenierSolver(rho, rho[::-1] * 1.0, grid, get_backend("numba"))
    s.step()
    state = s.state()
    kept = {k: np.array(v) for k, v in state.items()}
    for _ in range(3):
        s.step()
    for k, v in kept.items():
        np.testing.assert_array_equal(state[k], v)


def test_threaded_numba_runs_ask_for_passive_openmp_workers(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset")  # recorded first: restored at teardown
    monkeypatch.delenv("OMP_WAIT_POLICY")
    bb._select_kernels(get_backend("numba"), bb.THREADS_FROM - 1)
    assert "OMP_WAIT_POLICY" not in os.environ
    bb._select_kernels(get_backend("numba"), bb.THREADS_FROM)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice wins
    bb._select_kernels(get_backend("numba"), bb.THREADS_FROM)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_four_dimensional_grids_take_numpys_prox(monkeypatch):
    """The fused prox has three momentum slots; a 4D grid (no case file makes one, the solver
    takes it) runs numpy's prox with the numba sum, and agrees with the numpy backend."""
    monkeypatch.setattr(bb, "COMPILED_FROM", 0)  # the compiled kernels on this small grid
    grid = bb.SpaceTimeGrid((0.0,) * 4, (1.0,) * 4, (4, 4, 4, 4), 4)
    rng = np.random.default_rng(5)
    r0, r1 = rng.uniform(0.5, 1.5, (4,) * 4), rng.uniform(0.5, 1.5, (4,) * 4)
    r1 *= r0.sum() / r1.sum()
    runs = []
    for name in ("numba", "numpy"):
        s = bb.BenamouBrenierSolver(r0, r1, grid, get_backend(name))
        for _ in range(5):
            s.step()
        runs.append(s.w2_squared())
    assert runs[0] == pytest.approx(runs[1], rel=1e-12)
