"""The XDMF sidecar read back by VTK's XDMF reader, the one ParaView uses: every point at
its physical position, one gap-free time series, vectors, the Euler flow map."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from ot_pde.io import ResultWriter, write_xdmf

from .conftest import CASES

pytest.importorskip("vtkmodules.vtkIOXdmf2", reason="the vtk wheel (test extra) is missing")
from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402
from vtkmodules.vtkCommonExecutionModel import (  # noqa: E402
    vtkStreamingDemandDrivenPipeline as Pipeline,
)
from vtkmodules.vtkIOXdmf2 import vtkXdmfReader  # noqa: E402


def read(xmf, step=None):
    """``(time steps, [blocks])``: each block a dict of its points and point arrays."""
    reader = vtkXdmfReader()
    reader.SetFileName(str(xmf))
    reader.UpdateInformation()
    info = reader.GetOutputInformation(0)
    times = list(info.Get(Pipeline.TIME_STEPS())) if info.Has(Pipeline.TIME_STEPS()) else []
    if step is None:
        reader.Update()
    else:
        reader.UpdateTimeStep(times[step])
    blocks = []

    def walk(obj):
        if hasattr(obj, "GetNumberOfBlocks"):
            for i in range(obj.GetNumberOfBlocks()):
                walk(obj.GetBlock(i))
            return
        data = obj.GetPointData()
        arrays = {data.GetArrayName(i): vtk_to_numpy(data.GetArray(i))
                  for i in range(data.GetNumberOfArrays())}
        points = vtk_to_numpy(obj.GetPoints().GetData()) if obj.GetPoints() else None
        if points is None:  # a rectilinear grid: its points one by one
            points = np.array([obj.GetPoint(i) for i in range(obj.GetNumberOfPoints())])
        blocks.append({"points": points, **arrays})

    walk(reader.GetOutputDataObject(0))
    return times, blocks


def at_points(points, axes, values):
    """``values`` (C order on ``axes``) at the physical ``points``: looked up by position,
    so a swapped or transposed mesh cannot match."""
    index = [np.searchsorted(ax, points[:, i]) for i, ax in enumerate(axes)]
    for i, ax in enumerate(axes):
        np.testing.assert_allclose(ax[index[i]], points[:, i], atol=1e-12)
    return values[tuple(index)]


def test_benamou_brenier_2d_in_paraview_order(cli, tmp_path):
    out = tmp_path / "g.h5"
    code, _, err = cli("run", CASES / "bb_gaussian_2d.toml", "-o", out, "--set", "grid.n=32",
                       "--set", "time.nt=8", "--set", "solver.max_iterations=200", "-q")
    assert code == 0, err
    with h5py.File(out, "r") as f:
        t, t_mid = f["grid/t"][()], f["grid/t_mid"][()]
        x, y = f["grid/x"][()], f["grid/y"][()]
        rho, m_x, m_y = (f[f"fields/{n}"][()] for n in ("rho", "m_x", "m_y"))
    times, _ = read(out.with_suffix(".xmf"), 0)
    assert times == t.tolist()  # one series, the faces' times, no gap
    for k in (0, 3, len(t) - 1):
        _, [block] = read(out.with_suffix(".xmf"), k)
        assert set(block) == {"points", "rho", "m_x", "m_y", "m"}
        pts = block["points"]
        np.testing.assert_array_equal(block["rho"], at_points(pts, (x, y), rho[k]))
        # the source's peak is at (0.3, 0.4), moving by t (0.4, 0.2): x first, not swapped
        peak = pts[np.argmax(block["rho"])]
        np.testing.assert_allclose(peak[:2], [0.3 + 0.4 * t[k], 0.4 + 0.2 * t[k]], atol=0.04)
        # the momentum at the cell-centre times, linearly interpolated to t[k]
        j = np.clip(np.searchsorted(t_mid, t[k]), 1, len(t_mid) - 1)
        w = np.clip((t[k] - t_mid[j - 1]) / (t_mid[j] - t_mid[j - 1]), 0, 1)
        for comp, data in enumerate((m_x, m_y)):
            want = at_points(pts, (x, y), (1 - w) * data[j - 1] + w * data[j])
            np.testing.assert_allclose(block["m"][:, comp], want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(block["m_x"], block["m"][:, 0], rtol=1e-12, atol=1e-15)
        assert not block["m"][:, 2].any()


def test_euler_velocity_vector_and_flow_map(cli, tmp_path):
    out = tmp_path / "e.h5"
    code, _, err = cli("run", CASES / "euler_shifted_taylor_green.toml", "-o", out,
                       "--set", "time.t_final=0.2", "--set", "particles.n=6", "-q")
    assert code == 0, err
    with h5py.File(out, "r") as f:
        x, y = f["grid/x"][()], f["grid/y"][()]
        u, v = f["fields/u"][()], f["fields/v"][()]
        fx, fy = f["fields/flow_map_x"][()], f["fields/flow_map_y"][()]
        jac = f["fields/jacobian"][()]
    times, blocks = read(out.with_suffix(".xmf"))
    assert times == []
    eulerian = next(b for b in blocks if "u" in b)
    velocity = eulerian["velocity"]
    np.testing.assert_array_equal(velocity[:, 0], at_points(eulerian["points"], (x, y), u))
    np.testing.assert_array_equal(velocity[:, 1], at_points(eulerian["points"], (x, y), v))
    # the flow map: the markers' lattice drawn at the positions X(a, t_final)
    lagrangian = next(b for b in blocks if "jacobian" in b)
    np.testing.assert_array_equal(lagrangian["points"][:, 0], fx.ravel())
    np.testing.assert_array_equal(lagrangian["points"][:, 1], fy.ravel())
    np.testing.assert_array_equal(lagrangian["jacobian"], jac.ravel())


def test_3d_and_1d_fields_and_what_is_left_out(tmp_path):
    path = tmp_path / "f.h5"
    w = ResultWriter(path, problem="benamou_brenier", case_toml="", backend="numpy", seed=0)
    rng = np.random.default_rng(0)
    axes = {"x": np.linspace(0, 1, 3), "y": np.linspace(0, 2, 4), "z": np.linspace(0, 3, 5),
            "s": np.linspace(0, 1, 6)}
    rho = rng.random((3, 4, 5))
    with w.batch():
        for name, coords in axes.items():
            w.write_grid(name, coords)
        w.write_grid("component", np.arange(2.0), kind="other")
        w.write_field("rho", rho, dims=("x", "y", "z"))
        w.write_field("line", rng.random(6), dims=("s",))
        w.write_field("flags", np.zeros(6, dtype=bool), dims=("s",))
        w.write_field("c", rng.random((2, 6)), dims=("component", "s"))
    xmf = write_xdmf(path)
    text = xmf.read_text()
    assert "'flags' left out" in text and "'c' left out" in text
    _, blocks = read(xmf)
    volume = next(b for b in blocks if "rho" in b)
    np.testing.assert_array_equal(volume["rho"], at_points(
        volume["points"], (axes["x"], axes["y"], axes["z"]), rho))
    line = next(b for b in blocks if "line" in b)
    np.testing.assert_array_equal(line["points"][:, 0], axes["s"])


def test_nothing_to_describe(tmp_path):
    w = ResultWriter(tmp_path / "p.h5", problem="benamou_brenier", case_toml="",
                     backend="numpy", seed=0)
    w.write_particles("positions", np.zeros((4, 2)))
    assert write_xdmf(w.path) is None
    assert not (tmp_path / "p.xmf").exists()
