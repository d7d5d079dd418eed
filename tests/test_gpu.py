"""Every kind with a cupy path, run through the CLI on ``cupy`` and on ``numpy``: the same
tiny case (a few iterations, fixed counts) gives the same file to 1e-10 relative in float64.

Written against the public level (case file, ``ot-pde run --backend``, the HDF5 result), so
that it holds through rewrites of the solvers behind it. The ``cupy`` runs are ``gpu`` tests
(``make test-gpu``, skipped without a CuPy device); the same comparison with ``numba`` in
place of ``cupy`` is a ``slow`` test, which keeps the comparison itself checked on machines
without a GPU.

What "the same file" means: every summary value (wall time aside) within
``1e-10 * max(|numpy value|, 1)`` (so relative for values of size 1 and more, 1e-10 absolute
for the small derived ones such as drifts and round-off errors, which are differences of
nearly equal numbers); integers and booleans equal; every field, particle array and history
column (wall time aside) within ``1e-10 * max |numpy array|``, with non-finite entries at
the same places.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from ot_pde.backends import available_backends

from .conftest import CASES

RTOL = 1e-10
#: kind -> (shipped case, overrides making it a few seconds' run with fixed iteration counts)
TINY = {
    "benamou_brenier": ("bb_gaussian_2d.toml", [
        "grid.n=16", "time.nt=8", "solver.tol=1e-15", "solver.max_iterations=100"]),
    "monge_ampere_flow": ("maflow_mixture_density.toml", [
        "training.iterations=3", "training.batch_size=32", "training.n_train=256",
        "training.n_test=256", "grid.n=16", "output.samples=64", "time.n_steps=4"]),
    "ising_variational": ("ising_L4_critical.toml", [
        "training.iterations=3", "training.batch_size=32", "estimate.n_samples=256",
        "estimate.chunk=128", "output.samples=64"]),
    "euler_spectral": ("euler_shifted_taylor_green.toml", [
        "grid.n=32", "time.t_final=0.2", "particles.n=4"]),
    "entropic_potentials": ("ek_gaussians_degenerate.toml", [
        "grid.n=25", "solver.max_iterations=20", "solver.tol=1e-15"]),
    "flow_comparison": ("compare_realnvp_moons.toml", [
        "data.n_test=500", "comparison.n_samples=500", "comparison.ot_sizes=[64,128]",
        "comparison.ot_repeats=2", "grid.n=16", "grid.nt=8", "solver.max_iterations=30",
        "output.samples=64"]),
}
_WALL = {"wall_seconds"}


def _run(cli, kind, backend, path):
    case, overrides = TINY[kind]
    sets = [a for o in overrides for a in ("--set", o)]
    code, _, err = cli("run", CASES / case, "-o", path, "--backend", backend, "-q", *sets)
    assert code == 0, err
    return path


def _arrays(f: h5py.File) -> dict[str, np.ndarray]:
    out = {}
    for group in ("fields", "particles", "history"):
        if group in f:
            for name, ds in f[group].items():
                if isinstance(ds, h5py.Dataset) and name not in _WALL:
                    out[f"{group}/{name}"] = ds[()]
    return out


def assert_same_result(ref_path, other_path, rtol=RTOL) -> int:
    """The comparison of the module docstring; returns how many values it compared."""
    compared = 0
    with h5py.File(ref_path, "r") as a, h5py.File(other_path, "r") as b:
        sa, sb = dict(a["summary"].attrs), dict(b["summary"].attrs)
        assert sorted(sa) == sorted(sb)
        for key in sorted(set(sa) - _WALL):
            x, y = sa[key], sb[key]
            if isinstance(x, (bool, np.bool_, int, np.integer)):
                assert x == y, key
            else:
                x, y = float(x), float(y)
                assert (x == y) or abs(x - y) <= rtol * max(abs(x), 1.0), (key, x, y)
            compared += 1
        xa, xb = _arrays(a), _arrays(b)
        assert sorted(xa) == sorted(xb)
        for name, x in xa.items():
            y = xb[name]
            assert x.shape == y.shape, name
            if x.dtype.kind in "iub":
                np.testing.assert_array_equal(y, x, err_msg=name)
            else:
                finite = np.isfinite(x)
                np.testing.assert_array_equal(np.isfinite(y), finite, err_msg=name)
                np.testing.assert_array_equal(y[~finite], x[~finite], err_msg=name)
                if finite.any():
                    scale = np.abs(x[finite]).max()
                    err = np.abs(y[finite] - x[finite]).max()
                    assert err <= rtol * scale, (name, err, scale)
            compared += x.size
    return compared


_OTHER = [
    pytest.param("cupy", marks=[
        pytest.mark.gpu,
        pytest.mark.skipif("cupy" not in available_backends(), reason="no CuPy device")]),
    pytest.param("numba", marks=[
        pytest.mark.slow,
        pytest.mark.skipif("numba" not in available_backends(), reason="numba not installed")]),
]


@pytest.mark.parametrize("other", _OTHER)
@pytest.mark.parametrize("kind", sorted(TINY))
def test_backend_gives_the_numpy_result(cli, tmp_path, kind, other):
    ref = _run(cli, kind, "numpy", tmp_path / "numpy.h5")
    got = _run(cli, kind, other, tmp_path / f"{other}.h5")
    with h5py.File(got, "r") as f:
        assert f.attrs["backend"] == other
        assert f.attrs["status"] == "completed"
    assert assert_same_result(ref, got) > 0


def test_the_comparison_sees_a_difference(cli, tmp_path):
    """The check above fails where two runs differ by more than the tolerance (here: gamma
    changed by 1e-8 relative), so a pass means agreement, not an empty comparison."""
    ref = _run(cli, "benamou_brenier", "numpy", tmp_path / "a.h5")
    case, overrides = TINY["benamou_brenier"]
    code, _, err = cli("run", CASES / case, "-o", tmp_path / "b.h5", "--backend", "numpy",
                       "-q", *[a for o in overrides + ["solver.gamma=0.300000003"]
                               for a in ("--set", o)])
    assert code == 0, err
    assert assert_same_result(ref, ref) > 0
    with pytest.raises(AssertionError):
        assert_same_result(ref, tmp_path / "b.h5")


def test_every_kind_with_cupy_is_compared():
    from ot_pde.backends import BACKENDS
    from ot_pde.config import load_case
    from ot_pde.core.registry import get_kind, kind_names

    with_cupy = [k for k in kind_names()
                 if "cupy" in get_kind(k).supported_backends(
                     load_case(CASES / TINY[k][0], overrides=TINY[k][1]) if k in TINY
                     else _any_case(k))]
    assert sorted(with_cupy) == sorted(TINY)
    assert "cupy" in BACKENDS


def _any_case(kind):
    from ot_pde.config import load_case
    from ot_pde.config.case import tomllib

    for path in sorted(CASES.glob("*.toml")):
        with open(path, "rb") as f:
            if tomllib.load(f)["case"]["problem"] == kind:
                return load_case(path)
    raise AssertionError(f"no shipped case of {kind}")
