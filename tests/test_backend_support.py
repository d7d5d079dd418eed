"""Which kinds run on which backends: each kind declares its backends in its ProblemKind,
and a run, check, converge or sweep on any other is refused (exit 2, naming the supported
ones) before anything is built, and so before CuPy is imported or needed. The docs' table
(docs/backends.rst) is checked against the declarations."""
from __future__ import annotations

import re

import pytest

from ot_pde.backends import BACKEND_CHOICES, BACKENDS, CPU_BACKENDS
from ot_pde.config import load_case
from ot_pde.core.registry import ProblemKind, get_kind, kind_names

from .conftest import CASES, ROOT

#: a shipped case of every kind that runs on the CPU only
CPU_ONLY = {
    "gp_flow": "gp_affine_4d.toml",
    "otreg_flow": "otreg_swissroll.toml",
    "euler_lagrangian": "euler_lagrangian_rotation_square.toml",
    "generalized_geodesic": "generalized_inversion_1d.toml",
    "monge_ampere_grid": "ma_torus_constructed_2d.toml",
}
#: a shipped case of every kind with a cupy path (the Ising one without annealing)
WITH_CUPY = {
    "benamou_brenier": ("bb_gaussian_2d.toml", []),
    "monge_ampere_flow": ("maflow_mixture_density.toml", []),
    "ising_variational": ("ising_L4_critical.toml", ["estimate.ais_chains=0"]),
    "euler_spectral": ("euler_shifted_taylor_green.toml", []),
    "entropic_potentials": ("ek_gaussians_degenerate.toml", []),
    "flow_comparison": ("compare_realnvp_moons.toml", []),
}


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture
def no_build(monkeypatch):
    """Building any kind's problem fails loudly: a refusal must come before it."""
    for name in kind_names():  # registered before ProblemKind.build is replaced
        get_kind(name)

    def build(case):
        raise AssertionError(f"{case.kind}: problem built before the backend was refused")
    monkeypatch.setattr(ProblemKind, "build", property(lambda self: build), raising=False)


def test_names_exist_once():
    assert BACKEND_CHOICES == ("auto", *BACKENDS)
    assert set(CPU_BACKENDS) < set(BACKENDS)


def test_every_kind_is_listed_here():
    assert sorted({*CPU_ONLY, *WITH_CUPY}) == kind_names()


@pytest.mark.parametrize("kind", sorted(CPU_ONLY))
def test_cpu_only_kind_refuses_cupy_before_anything_is_built(cli, tmp_path, monkeypatch,
                                                             no_build, kind):
    """Even where CuPy is missing, the answer is the kind's refusal, not 'install CuPy'."""
    monkeypatch.setenv("OT_PDE_DISABLE_CUPY", "1")
    out = tmp_path / "x.h5"
    code, stdout, err = cli("run", CASES / CPU_ONLY[kind], "-o", out, "--backend", "cupy")
    assert code == 2, err
    assert stdout == ""
    assert f"problem kind {kind!r} does not run on backend 'cupy'; supported: numpy, numba" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(CPU_ONLY))
def test_check_refuses_a_case_asking_for_cupy(cli, no_build, kind):
    code, _, err = cli("check", CASES / CPU_ONLY[kind], "--set", "run.backend=cupy")
    assert code == 2
    assert "run.backend: problem kind" in err and "supported: numpy, numba" in err


def test_converge_and_sweep_refuse_before_any_run(cli, tmp_path, no_build):
    case = CASES / CPU_ONLY["generalized_geodesic"]
    code, _, err = cli("converge", case, "--vary", "grid.n=8,16", "--backend", "cupy")
    assert code == 2 and "supported: numpy, numba" in err, err
    code, _, err = cli("sweep", case, "--vary", "grid.n=8,16", "--backend", "cupy",
                       "-o", tmp_path / "sw.h5")
    assert code == 2 and "supported: numpy, numba" in err, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kind", sorted(WITH_CUPY))
def test_cupy_kind_without_cupy_says_what_to_install(cli, tmp_path, monkeypatch, no_build,
                                                     kind):
    """A kind with a cupy path passes the kind's check and meets the usability check."""
    monkeypatch.setenv("OT_PDE_DISABLE_CUPY", "1")
    case, overrides = WITH_CUPY[kind]
    code, _, err = cli("run", CASES / case, "-o", tmp_path / "x.h5", "--backend", "cupy",
                       *_sets(overrides))
    assert code == 2
    assert "backend 'cupy' requested but CuPy is not installed" in err, err


def test_ising_annealing_runs_on_the_cpu_only(cli, monkeypatch, no_build):
    """The annealed importance sampling (Swendsen-Wang in numba) narrows the Ising kind."""
    monkeypatch.setenv("OT_PDE_DISABLE_CUPY", "1")
    code, _, err = cli("run", CASES / "ising_L4_critical.toml", "--backend", "cupy",
                       "--set", "estimate.ais_chains=8")
    assert code == 2
    assert ("does not run on backend 'cupy' (annealed importance sampling "
            "(estimate.ais_chains > 0) runs on the CPU only); supported: numpy, numba") in err
    kind = get_kind("ising_variational")
    case = load_case(CASES / "ising_L4_critical.toml", overrides=["estimate.ais_chains=0"])
    assert kind.supported_backends(case) == BACKENDS


def test_auto_picks_a_cpu_backend_the_kind_supports(monkeypatch):
    kind = get_kind("gp_flow")
    case = load_case(CASES / CPU_ONLY["gp_flow"])
    assert kind.backend_for(case) == "numba"
    assert kind.backend_for(case, "numpy") == "numpy"
    monkeypatch.setenv("OT_PDE_DISABLE_NUMBA", "1")
    assert kind.backend_for(case, "auto") == "numpy"


def test_a_kind_declaring_an_unknown_backend_is_a_bug():
    with pytest.raises(ValueError, match="expected a non-empty subset"):
        ProblemKind("k", "t", None, lambda c: None, lambda *a: None, backends=("numpy", "gpu"))
    with pytest.raises(ValueError, match="expected a non-empty subset"):
        ProblemKind("k", "t", None, lambda c: None, lambda *a: None, backends=())


def _docs_table() -> dict[str, tuple[str, ...]]:
    """kind -> backends marked 'yes' in docs/backends.rst's table of kinds."""
    text = (ROOT / "docs" / "backends.rst").read_text()
    block = text.split(".. kinds-and-backends-table", 1)[1]
    rows = re.findall(r"^   \* - ``(\w+)``\n((?:     - .*\n)+)", block, flags=re.M)
    table = {}
    for kind, cells in rows:
        marks = re.findall(r"^     - (\S+)", cells, flags=re.M)[:len(BACKENDS)]
        table[kind] = tuple(b for b, m in zip(BACKENDS, marks) if m == "yes")
    return table


def test_docs_table_says_what_the_kinds_declare():
    table = _docs_table()
    assert sorted(table) == kind_names()
    for kind in kind_names():
        case, overrides = WITH_CUPY.get(kind, (CPU_ONLY.get(kind), []))
        declared = get_kind(kind).supported_backends(load_case(CASES / case,
                                                               overrides=overrides))
        assert table[kind] == declared, kind
