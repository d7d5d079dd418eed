"""Grid densities from case sections: values, masses, truncation, file sources, errors."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.special import erf

from ot_pde.densities import build_density
from ot_pde.errors import InputError
from ot_pde.spacetime import SpaceTimeGrid

GRID = SpaceTimeGrid((0.0, 0.0), (1.0, 2.0), (40, 80), 4)


def spec(**kw):
    return {"normalize": True, **kw}


def test_gaussian_mass_and_truncation():
    d = build_density(spec(type="gaussian", mean=[0.5, 1.0], std=0.1), GRID, where="c",
                      key_prefix="source")
    assert d.values.sum() * GRID.cell_volume == pytest.approx(1.0, abs=1e-12)
    assert d.raw_mass == pytest.approx(1.0, abs=1e-4)  # midpoint rule of the untruncated pdf
    assert d.truncated_mass < 1e-6
    # a Gaussian near a wall: truncated mass is the exact 1D tail (the other axis is far)
    near = build_density(spec(type="gaussian", mean=[0.1, 1.0], std=0.1), GRID, where="c",
                         key_prefix="source")
    tail = 0.5 * (1 - erf(1 / np.sqrt(2)))  # mass below x = 0
    assert near.truncated_mass == pytest.approx(tail, rel=1e-6)


def test_uniform_and_mixture():
    u = build_density(spec(type="uniform", lower=[0.25, 0.5], upper=[0.75, 1.5]), GRID,
                      where="c", key_prefix="target")
    inside = u.values > 0
    assert inside.sum() == 20 * 40 and np.allclose(u.values[inside], 2.0)
    m = build_density(spec(type="mixture", means=[[0.3, 0.5], [0.7, 1.5]], stds=[0.05, 0.05],
                           weights=[1.0, 3.0]), GRID, where="c", key_prefix="target")
    x, y = GRID.mesh()
    left = m.values[x < 0.5].sum() / m.values.sum()
    assert left == pytest.approx(0.25, abs=1e-4)  # tails beyond 4 std cross x = 0.5


def test_hdf5_dataset_source(tmp_path):
    values = np.random.default_rng(0).random((40, 80))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["rho"] = values
    d = build_density(spec(type="file", path=str(tmp_path / "d.h5"), dataset="rho",
                           normalize=False), GRID, where="c", key_prefix="source")
    np.testing.assert_array_equal(d.values, values)
    with pytest.raises(InputError, match="no dataset") as info:
        build_density(spec(type="file", path=str(tmp_path / "d.h5"), dataset="nope"), GRID,
                      where="c", key_prefix="source")
    assert info.value.key == "source.dataset"
    with pytest.raises(InputError, match="needs 'dataset'"):
        build_density(spec(type="file", path=str(tmp_path / "d.h5")), GRID, where="c",
                      key_prefix="source")


@pytest.mark.parametrize("kw,key", [
    (dict(type="gaussian", mean=[0.5], std=0.1), "source.mean"),
    (dict(type="gaussian", mean=[0.5, 1.0], std=0.1, cov=[[1, 0], [0, 1]]), "source.std"),
    (dict(type="gaussian", mean=[0.5, 1.0], cov=[[1, 2], [2, 1]]), "source.cov"),
    (dict(type="uniform", lower=[0.5, 0.5], upper=[0.4, 1.0]), "source.upper"),
    (dict(type="uniform", lower=[1.5, 2.5], upper=[1.7, 2.7]), "source.type"),  # outside: zero
    (dict(type="mixture", means=[[0.3, 0.5]], stds=[0.1, 0.2]), "source.stds"),
])
def test_inconsistent_sections(kw, key):
    with pytest.raises(InputError) as info:
        build_density(spec(**kw), GRID, where="case.toml", key_prefix="source")
    assert info.value.key == key and info.value.source == "case.toml"


def test_unnormalized_masses_must_match(cli, tmp_path):
    from .conftest import CASES

    code, _, err = cli("check", CASES / "bb_translation_1d.toml", "--set",
                       "source.normalize=false", "--set", "target.normalize=false",
                       "--set", "target.std=0.01")
    assert code == 2 and "target.normalize" in err and "masses differ" in err
