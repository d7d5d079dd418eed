"""Unit checks of the Benamou-Brenier building blocks against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from ot_pde.backends import available_backends, get_backend
from ot_pde.spacetime import _dct
from ot_pde.spacetime import solver as bb
from ot_pde.spacetime._prox import kinetic_prox_numpy


def _gaussian_pair(grid, m0, m1, s):
    pts = np.stack(grid.mesh(), axis=-1)
    r0 = np.exp(-np.sum((pts - m0) ** 2, -1) / (2 * s * s))
    r1 = np.exp(-np.sum((pts - m1) ** 2, -1) / (2 * s * s))
    return r0 / (r0.sum() * grid.cell_volume), r1 / (r1.sum() * grid.cell_volume)


@pytest.mark.parametrize("n_faces", [2, 3, 8, 33])
def test_averaging_solve_equals_dense_inverse(n_faces, backend_name, monkeypatch):
    """Id + A^T A solved by DCT (numpy, cupy) or Thomas sweeps (numba) = the dense inverse."""
    monkeypatch.setattr(bb, "COMPILED_FROM", 0)  # the compiled kernels on this small grid
    a = np.zeros((n_faces - 1, n_faces))
    i = np.arange(n_faces - 1)
    a[i, i] = a[i, i + 1] = 0.5
    dense = np.linalg.inv(np.eye(n_faces) + a.T @ a)
    grid = bb.SpaceTimeGrid((0.0,), (1.0,), (4,), n_faces - 1)
    backend = get_backend(backend_name)
    solver = bb.BenamouBrenierSolver(np.ones(4), np.ones(4), grid, backend)
    rng = np.random.default_rng(1)
    zu = [rng.normal(size=(n_faces, 4)), rng.normal(size=(n_faces - 1, 5))]
    zv = [rng.normal(size=(n_faces - 1, 4)), rng.normal(size=(n_faces - 1, 4))]
    solver._zu = [backend.asarray(z) for z in zu]
    solver._zv = [backend.asarray(z) for z in zv]
    u, v, wu, wv = solver._project_and_reflect()
    for w, x, z in zip(wu + wv, u + v, zu + zv):  # and the reflections 2 x - z
        np.testing.assert_allclose(backend.to_numpy(w), 2 * backend.to_numpy(x) - z, atol=1e-13)
    expected = dense @ (zu[0] + a.T @ zv[0])
    np.testing.assert_allclose(backend.to_numpy(u[0]), expected, atol=1e-13)
    np.testing.assert_allclose(backend.to_numpy(v[0]), a @ expected, atol=1e-13)
    # the space axis too (second component, faces along axis 1)
    a_space = np.zeros((4, 5))
    a_space[np.arange(4), np.arange(4)] = a_space[np.arange(4), np.arange(4) + 1] = 0.5
    expected_m = (np.linalg.inv(np.eye(5) + a_space.T @ a_space)
                  @ (zu[1] + zv[1] @ a_space).T).T
    np.testing.assert_allclose(backend.to_numpy(u[1]), expected_m, atol=1e-13)


def test_small_grids_skip_the_compiled_kernels():
    """Below COMPILED_FROM space-time cells the numba backend runs the numpy kernels (loading
    numba costs more than they lose there); from it on, its own."""
    if "numba" not in available_backends():
        pytest.skip("numba not installed")
    numba = get_backend("numba")
    small = bb._select_kernels(numba, bb.COMPILED_FROM - 1)
    assert small.interpolation_lines is None and small.dr_update is bb._dr_update_xp
    assert small.fft is _dct
    assert bb._select_kernels(numba, bb.COMPILED_FROM).interpolation_lines is not None


def test_small_case_imports_neither_numba_nor_scipy(tmp_path):
    """The 1D case's process stays small: numba's import and cache load and scipy.fft's import
    (with scipy.special) were 1.5 s of its 2.5-3 s, the iterations 0.1 s."""
    import subprocess
    import sys

    from .conftest import CASES

    script = ("import sys; from ot_pde.cli import main; "
              f"code = main(['run', {str(CASES / 'bb_translation_1d.toml')!r}, '-o', "
              f"{str(tmp_path / 'r.h5')!r}, '-q']); "
              "print(code, sorted(m for m in ('numba', 'scipy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.split("\n")[-2] == "0 []", run.stdout + run.stderr


@pytest.mark.parametrize("shape,axis", [((1,), 0), ((2, 3), 0), ((5, 7), 1), ((4, 33, 3), 1),
                                        ((6, 8, 9), 2)])
def test_numpy_fft_dct_is_scipys(shape, axis):
    """The DCT-II of small grids (numpy's FFT, Makhoul's reordering) and its inverse are
    scipy.fft's orthonormal ones, along one axis and along all of them."""
    import scipy.fft

    x = np.random.default_rng(7).normal(size=shape)
    ortho = {"type": 2, "norm": "ortho"}
    np.testing.assert_allclose(_dct.dct(x, axis=axis, **ortho),
                               scipy.fft.dct(x, axis=axis, **ortho), rtol=0, atol=1e-14)
    np.testing.assert_allclose(_dct.idct(x, axis=axis, **ortho),
                               scipy.fft.idct(x, axis=axis, **ortho), rtol=0, atol=1e-14)
    np.testing.assert_allclose(_dct.dctn(x, **ortho), scipy.fft.dctn(x, **ortho),
                               rtol=0, atol=1e-13)
    np.testing.assert_allclose(_dct.idctn(_dct.dctn(x, **ortho), **ortho), x,
                               rtol=0, atol=1e-13)


def test_numba_threaded_and_serial_line_solves_agree():
    """Grids below THREADS_FROM cells run the serial numba kernels (the tests above); the
    threaded ones, used above it, give the same bits."""
    nb = pytest.importorskip("ot_pde.spacetime._kernels_numba")
    rng = np.random.default_rng(2)
    zu, zv = rng.normal(size=(10, 40, 41)), rng.normal(size=(9, 40, 41))
    factors = nb.thomas_factors(10)
    threaded = nb.interpolation_projection_numba(zu, zv, 0, factors, parallel=True)
    serial = nb.interpolation_projection_numba(zu, zv, 0, factors, parallel=False)
    for a, b in zip(threaded, serial):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape,nt", [((16,), 8), ((8, 6), 5), ((5, 4, 6), 4)])
def test_continuity_projection(shape, nt):
    """After the projection: zero divergence, boundary values imposed, idempotent, minimal."""
    grid = bb.SpaceTimeGrid((0.0,) * len(shape), (1.0,) * len(shape), shape, nt)
    rng = np.random.default_rng(2)
    r0, r1 = rng.random(shape), rng.random(shape)
    r1 *= r0.sum() / r1.sum()
    solver = bb.BenamouBrenierSolver(r0, r1, grid, get_backend("numpy"))
    u0 = [rng.normal(size=a.shape) for a in solver._zu]
    u = solver._project_continuity(u0)
    assert np.abs(solver._divergence(u)).max() < 1e-10 * max(1, np.abs(u[0]).max() * nt)
    np.testing.assert_array_equal(u[0][0], r0)
    np.testing.assert_array_equal(u[0][-1], r1)
    for k in range(1, len(u)):
        assert np.all(np.take(u[k], [0, -1], axis=k) == 0)
    again = solver._project_continuity(u)
    for a, b in zip(u, again):
        np.testing.assert_allclose(a, b, atol=1e-11)
    # minimal distance: the correction is orthogonal to any feasible direction u - w
    w = solver._project_continuity([rng.normal(size=a.shape) for a in solver._zu])
    inner = sum(np.vdot(a - b, c - d) for a, b, c, d in zip(u0, u, u, w))
    assert abs(inner) < 1e-8 * sum(np.vdot(a, a) for a in u0)


def test_prox_is_the_minimiser():
    """The cubic-root prox equals a direct numerical minimisation, cell by cell."""
    rng = np.random.default_rng(3)
    gamma = 0.7
    ft = rng.normal(size=12) * 2
    mt = [rng.normal(size=12), rng.normal(size=12)]
    f, ms = kinetic_prox_numpy(ft, mt, gamma)
    for i in range(12):
        def objective(p):
            fi, mi = p[0], p[1:]
            j = mi @ mi / (2 * fi) if fi > 1e-300 else (0.0 if not mi.any() else 1e300)
            return j + ((fi - ft[i]) ** 2 + np.sum((mi - [mt[0][i], mt[1][i]]) ** 2)) / (2 * gamma)
        ours = np.array([f[i], ms[0][i], ms[1][i]])
        best = minimize(objective, x0=ours + 0.05, method="Nelder-Mead",
                        options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 20000}).fun
        assert objective(ours) <= best + 1e-10


@pytest.mark.skipif("numba" not in available_backends(), reason="numba not installed")
def test_prox_numba_matches_numpy():
    from ot_pde.spacetime._kernels_numba import kinetic_prox_energy_numba

    rng = np.random.default_rng(4)
    ft = rng.normal(size=(7, 9, 5)) * 3
    mt = [rng.normal(size=(7, 9, 5)) for _ in range(3)]
    f_np, m_np = kinetic_prox_numpy(ft, mt, 0.3)
    for parallel in (True, False):  # the threaded and the serial kernel (small grids)
        f_nb, m_nb, _ = kinetic_prox_energy_numba(ft, mt, 0.3, parallel=parallel)
        np.testing.assert_allclose(f_nb, f_np, rtol=0, atol=1e-14)
        for a, b in zip(m_nb, m_np):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def _iterate(backend, iterations=300):
    grid = bb.SpaceTimeGrid((0.0, 0.0), (1.0, 1.0), (16, 16), 8)
    r0, r1 = _gaussian_pair(grid, np.array([0.35, 0.4]), np.array([0.65, 0.55]), 0.08)
    s = bb.BenamouBrenierSolver(r0, r1, grid, get_backend(backend), relaxation=1.8)
    for _ in range(iterations):
        s.step()
    return s


def test_backends_agree(backend_name, monkeypatch):
    """numpy and every other backend give the same iterate after the same iterations."""
    ref = _iterate("numpy")
    monkeypatch.setattr(bb, "COMPILED_FROM", 0)  # the compiled kernels on this small grid
    other = _iterate(backend_name)
    np.testing.assert_allclose(other.density(), ref.density(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(other.momentum(), ref.momentum(), rtol=0, atol=1e-10)
    assert abs(other.w2_squared() - ref.w2_squared()) <= 1e-10


def test_state_roundtrip_is_bit_for_bit():
    """Continuing from state() gives exactly the iterates of an uninterrupted run."""
    a = _iterate("numpy", 50)
    b = _iterate("numpy", 20)
    state = b.state()
    c = _iterate("numpy", 1)
    c.load_state(state)
    for _ in range(30):
        c.step()
    np.testing.assert_array_equal(c.density(), a.density())
    assert c.w2_squared() == a.w2_squared()
