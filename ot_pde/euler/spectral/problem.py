r"""The ``euler_spectral`` problem kind: case schema, initial data, exact reference, outputs.

Initial vorticities (``[initial] type``):

* ``taylor_green``: :math:`\omega_0 = 2A\sin x\sin y` (:math:`\psi_0 = A\sin x\sin y`), a
  steady Euler flow; with the uniform flow :math:`U` (``mean_velocity``) the exact solution is
  :math:`\omega(x, t) = \omega_0(x - Ut)` and the flow map is :math:`X(a, t) = Y(a, t) + Ut`
  with :math:`\dot Y = u_0(Y)` the steady Taylor-Green flow map (integrated to 1e-13 by
  DOP853, independently of the solver): the kind's exact reference;
* ``shear_layer``: the double shear layer of Bell, Colella & Glaz (1989) on
  :math:`[0, 2\pi)^2`: :math:`u = \tanh((y - \pi/2)/\delta)` for :math:`y \le \pi`,
  :math:`\tanh((3\pi/2 - y)/\delta)` above, :math:`v = \varepsilon\sin x`;
* ``random``: a smooth random vorticity (seeded by ``run.seed``), Gaussian spectrum peaked at
  ``k_peak``, scaled to an r.m.s. velocity.

Under ``mpiexec -n P`` (``mpi_mode = "distributed"``) the solver is the slab-decomposed
:class:`~ot_pde.euler.spectral.distributed.SlabSpectralEulerSolver`: each rank builds, holds
and returns only its rows ``block_range(n, P, rank)`` of the grid fields (written with their
``offset``), the markers are replicated, and the summary is global (the same on every rank).
"""
from __future__ import annotations

import math

import numpy as np

from ...config import Field, Section, make_schema
from ...core.problem import FieldData, GridAxis, ParticleData, Problem, Reference
from ...errors import BackendError, InputError
from ...parallel import block_range
from .distributed import SlabFFT, SlabSpectralEulerSolver
from .solver import TWO_PI, SpectralEulerSolver, dealias_cutoff

SCHEMA = make_schema({
    "grid": Section({
        "n": Field("int", minimum=4, resolution="inverse",
                   doc="grid points per axis on [0, 2 pi) (even); modes |k| <= (n - 1) // 3 "
                       "are kept"),
    }, doc="the periodic grid"),
    "initial": Section({
        "mean_velocity": Field("float_list", [0.0, 0.0], length=2,
                               doc="uniform flow U added to the velocity (conserved)"),
    }, variants={
        "taylor_green": {
            "amplitude": Field("float", 1.0, doc="A in omega = 2 A sin x sin y"),
        },
        "shear_layer": {
            "thickness": Field("float", math.pi / 15, exclusive_minimum=0.0,
                               doc="layer thickness delta"),
            "perturbation": Field("float", 0.05, doc="epsilon of v = epsilon sin x"),
        },
        "random": {
            "k_peak": Field("float", 4.0, exclusive_minimum=0.0,
                            doc="wavenumber of the peak of the Gaussian spectrum"),
            "rms_velocity": Field("float", 1.0, exclusive_minimum=0.0,
                                  doc="r.m.s. of the velocity fluctuation"),
        },
    }, doc="the initial vorticity"),
    "time": Section({
        "t_final": Field("float", exclusive_minimum=0.0, doc="end time (reached exactly)"),
        "dt": Field("float", None, exclusive_minimum=0.0, resolution="direct",
                    doc="fixed step, rounded down to t_final / ceil(t_final / dt)"),
        "cfl": Field("float", None, exclusive_minimum=0.0, maximum=1.3,
                     doc="CFL-adaptive step dt = cfl dx / max(|u| + |v|) (instead of dt)"),
        "max_cfl": Field("float", 1.0, exclusive_minimum=0.0,
                         doc="a fixed-step run fails when a step's CFL number exceeds this "
                             "(RK4 + dealiased spectral advection is stable to about 1.35)"),
    }, doc="RK4 time stepping: give dt or cfl"),
    "particles": Section({
        "n": Field("int", 16, minimum=0,
                   doc="markers per axis (n^2 on a cell-centred lattice) tracking the flow "
                       "map and its Jacobian; 0: none"),
    }, doc="Lagrangian markers (velocity by exact Fourier sums, O(n^2 K^2) per stage)"),
    "output": Section({
        "every": Field("int", 50, minimum=1, doc="steps between flushes of history and "
                                                 "checkpoint"),
        "every_time": Field("float", None, exclusive_minimum=0.0,
                            doc="simulated time between snapshots of the vorticity "
                                "(/fields/omega_t on the time axis t_snap; t = 0 and every "
                                "step crossing a multiple; serial runs only); none if unset"),
    }),
})


def taylor_green_velocity(points, amplitude: float) -> np.ndarray:
    """The steady Taylor-Green velocity ``A (sin x cos y, -cos x sin y)`` at ``points (M, 2)``."""
    x, y = points[:, 0], points[:, 1]
    return amplitude * np.stack([np.sin(x) * np.cos(y), -np.cos(x) * np.sin(y)], axis=1)


def taylor_green_flow_map(markers, t: float, amplitude: float, mean_velocity) -> np.ndarray:
    """Exact flow map of the shifted Taylor-Green vortex: ``Y(a, t) + U t`` (DOP853, 1e-13)."""
    from scipy.integrate import solve_ivp

    markers = np.asarray(markers, dtype=np.float64)
    if t == 0:
        return markers.copy()

    def rhs(_, z):
        return taylor_green_velocity(z.reshape(-1, 2), amplitude).ravel()

    sol = solve_ivp(rhs, (0.0, t), markers.ravel(), method="DOP853", rtol=1e-13, atol=1e-13)
    return sol.y[:, -1].reshape(-1, 2) + np.asarray(mean_velocity) * t


class SpectralEulerProblem(Problem):
    mpi_mode = "distributed"

    def __init__(self, case):
        super().__init__(case)
        where = case.source
        self._snapshot_time: float | None = None  # the time seen by the last snapshot()
        self.n = n = case.get("grid.n")
        if n % 2:
            raise InputError(f"expected an even number of points, got {n}", source=where,
                             key="grid.n")
        dt, cfl = case.get("time.dt"), case.get("time.cfl")
        if dt is None and cfl is None:
            raise InputError("give time.dt (fixed step) or time.cfl (adaptive step)",
                             source=where, key="time.dt")
        if dt is not None and cfl is not None:
            raise InputError("give time.dt or time.cfl, not both", source=where,
                             key="time.cfl")
        self.kind = case.get("initial.type")
        self.mean_velocity = tuple(case.get("initial.mean_velocity"))
        self.x = TWO_PI * np.arange(n) / n
        m = case.get("particles.n")
        self.n_markers = m
        self.a = (np.arange(m) + 0.5) * TWO_PI / m if m else np.zeros(0)

    # -- set-up -----------------------------------------------------------------------------
    def describe(self) -> str:
        t = self.case.section("time")
        step = f"dt = {t['dt']:g}" if t["dt"] is not None else f"CFL {t['cfl']:g}"
        return (f"2D Euler ({self.kind}) on {self.n}^2 points (modes |k| <= "
                f"{dealias_cutoff(self.n)}), RK4 {step} to t = {t['t_final']:g}, "
                f"{self.n_markers ** 2} markers")

    def rows(self) -> tuple[int, int]:
        """The x rows ``lo:hi`` of the grid fields held here (all of them when serial)."""
        if self.comm is None:
            return 0, self.n
        return block_range(self.n, self.comm.Get_size(), self.comm.Get_rank())

    def initial_vorticity(self) -> np.ndarray:
        """The initial vorticity on the rows :meth:`rows` (the whole grid when serial)."""
        lo, hi = self.rows()
        x, y = np.meshgrid(self.x[lo:hi], self.x, indexing="ij")
        s = self.case.section("initial")
        if self.kind == "taylor_green":
            return 2.0 * s["amplitude"] * np.sin(x) * np.sin(y)
        if self.kind == "shear_layer":
            d, eps = s["thickness"], s["perturbation"]
            # omega = dv/dx - du/dy
            lower = 1.0 / np.cosh((y - math.pi / 2) / d) ** 2 / d
            upper = 1.0 / np.cosh((3 * math.pi / 2 - y) / d) ** 2 / d
            return eps * np.cos(x) - np.where(y <= math.pi, lower, -upper)
        if self.comm is None:
            return self._random_vorticity(s["k_peak"], s["rms_velocity"])
        return self._random_vorticity_slab(s["k_peak"], s["rms_velocity"])

    def _random_amplitude(self, kx, ky, k_peak: float) -> np.ndarray:
        """Spectral amplitude of the random field: a Gaussian shell, kept modes only."""
        k = np.hypot(kx, ky)
        amp = np.exp(-((k - k_peak) / max(1.0, 0.5 * k_peak)) ** 2) * (k > 0)
        return amp * ((np.abs(kx) <= dealias_cutoff(self.n)) & (ky <= dealias_cutoff(self.n)))

    def _random_vorticity(self, k_peak: float, rms: float) -> np.ndarray:
        n = self.n
        rng = np.random.default_rng(self.case.get("run.seed"))
        kx = np.fft.fftfreq(n, 1.0 / n)[:, None]
        ky = np.fft.rfftfreq(n, 1.0 / n)[None, :]
        k = np.hypot(kx, ky)
        amp = self._random_amplitude(kx, ky, k_peak)
        coef = amp * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        omega = np.fft.irfft2(coef, s=(n, n))
        # scale to the r.m.s. velocity: <|u|^2> = sum |omega_k|^2 / |k|^2 (Parseval)
        w_hat = np.fft.rfft2(omega)
        half = np.full(ky.shape, 2.0)
        half[0, 0] = 1.0
        half[0, -1] = 1.0
        k2 = np.where(k > 0, k * k, 1.0)
        mean_u2 = float((half * np.abs(w_hat) ** 2 / k2 * (k > 0)).sum()) / n ** 4
        return omega * (rms / math.sqrt(mean_u2)) if mean_u2 > 0 else omega

    def _random_vorticity_slab(self, k_peak: float, rms: float) -> np.ndarray:
        """This rank's rows of :meth:`_random_vorticity`'s field (equal to round-off) without
        the whole grid: the spectrum in the slab solver's columns, its inverse slab FFT.

        Each rank draws the whole random stream, row block by row block (the same numbers as
        the serial ``(n, n // 2 + 1)`` draws), and keeps its columns: O(n^2) time, O(n^2 / P)
        memory. The serial ``rfft2(irfft2(coef))`` round trip only symmetrizes the ky = 0
        column (the ky = n/2 column and kx = n/2 row are outside the kept modes), done here
        directly.
        """
        n, nky = self.n, self.n // 2 + 1
        fft = SlabFFT(self.comm, n)
        lo, hi = fft.klo, fft.khi
        rng = np.random.default_rng(self.case.get("run.seed"))
        block = max(1, (1 << 20) // nky)  # rows per draw: 8 MB at a time

        def draw():
            out = np.empty((n, hi - lo))
            for r in range(0, n, block):
                out[r:r + block] = rng.standard_normal((min(block, n - r), nky))[:, lo:hi]
            return out

        kx = np.fft.fftfreq(n, 1.0 / n)[:, None]
        ky = np.fft.rfftfreq(n, 1.0 / n)[None, lo:hi]
        k = np.hypot(kx, ky)
        coef = self._random_amplitude(kx, ky, k_peak) * (draw() + 1j * draw())
        if lo == 0:
            coef[:, 0] = 0.5 * (coef[:, 0] + np.conj(coef[-np.arange(n) % n, 0]))
        half = np.where((ky == 0) | (ky == n // 2), 1.0, 2.0)
        k2 = np.where(k > 0, k * k, 1.0)
        mine = float((half * np.abs(coef) ** 2 / k2 * (k > 0)).sum())
        mean_u2 = sum(self.comm.allgather(mine)) / n ** 4  # added in rank order on every rank
        omega = fft.irfft2(coef)
        return omega * (rms / math.sqrt(mean_u2)) if mean_u2 > 0 else omega

    def markers(self) -> np.ndarray | None:
        if not self.n_markers:
            return None
        ax, ay = np.meshgrid(self.a, self.a, indexing="ij")
        return np.stack([ax.ravel(), ay.ravel()], axis=1)

    def max_iterations(self) -> int | None:
        dt = self.case.get("time.dt")
        if dt is None:
            return None
        return max(1, math.ceil(self.case.get("time.t_final") / dt * (1.0 - 1e-12)))

    def make_solver(self, backend) -> SpectralEulerSolver:
        t = self.case.section("time")
        options = dict(t_final=t["t_final"], dt=t["dt"], cfl=t["cfl"], max_cfl=t["max_cfl"],
                       mean_velocity=self.mean_velocity, markers=self.markers())
        if self.comm is None:
            return SpectralEulerSolver(self.initial_vorticity(), backend, **options)
        if self.case.get("output.every_time") is not None:
            raise InputError("snapshots are written by serial runs only (under mpiexec the "
                             "vorticity is split over the ranks); unset it or run serially",
                             source=self.case.source, key="output.every_time")
        size = self.comm.Get_size()
        if backend.on_gpu:
            raise BackendError(f"backend {backend.name!r} runs on one rank only; under mpiexec "
                               "use numpy or numba", source=self.case.source, key="run.backend")
        if size > self.n:
            raise InputError(f"{size} ranks for {self.n} grid rows: at most one rank per row",
                             source=self.case.source, key="grid.n")
        return SlabSpectralEulerSolver(self.initial_vorticity(), backend, self.comm, **options)

    def grid(self) -> list[GridAxis]:
        axes = [GridAxis("x", self.x, "length", "grid points along x on [0, 2 pi)", "space"),
                GridAxis("y", self.x.copy(), "length", "grid points along y on [0, 2 pi)",
                         "space")]
        if self.n_markers:
            axes += [GridAxis("a_x", self.a, "length", "initial marker x (Lagrangian label)",
                              "other"),
                     GridAxis("a_y", self.a.copy(), "length",
                              "initial marker y (Lagrangian label)", "other")]
        return axes

    # -- results ----------------------------------------------------------------------------
    def snapshot(self, solver) -> tuple[float, list[FieldData]] | None:
        """``(t, [omega])`` when a snapshot is due (``output.every_time``): at t = 0 of a
        fresh run and after each step that crosses a multiple of ``every_time``; else None.
        The runner calls it once before the first step and after every step."""
        every = self.case.get("output.every_time")
        if every is None:
            return None
        t, last = float(solver.time), self._snapshot_time
        self._snapshot_time = t
        # a tiny slack: t = k * every reached by k steps of every / k counts as crossing
        due = t == 0.0 if last is None else \
            math.floor(t / every + 1e-9) > math.floor(last / every + 1e-9)
        if not due:
            return None
        return t, [FieldData("omega_t", solver.vorticity(), ("x", "y"), "1/time",
                             "vorticity snapshots (every output.every_time)")]

    def fields(self, solver) -> list[FieldData]:
        u, v = solver.velocity()
        # under MPI each rank's rows, placed in the whole grid; the markers are replicated
        slab = {} if self.comm is None else {"offset": (self.rows()[0], 0),
                                             "global_shape": (self.n, self.n)}
        out = [FieldData("omega", solver.vorticity(), ("x", "y"), "1/time",
                         "vorticity at t_final", **slab),
               FieldData("u", u, ("x", "y"), "length/time", "velocity x at t_final (U included)",
                         **slab),
               FieldData("v", v, ("x", "y"), "length/time", "velocity y at t_final (U included)",
                         **slab)]
        if self.n_markers:
            m = self.n_markers
            pos = solver.marker_positions().reshape(m, m, 2)
            f = solver.deformation_gradients()
            det = (f[:, 0, 0] * f[:, 1, 1] - f[:, 0, 1] * f[:, 1, 0]).reshape(m, m)
            out += [FieldData("flow_map_x", pos[..., 0], ("a_x", "a_y"), "length",
                              "X(a, t_final), x (unwrapped: not reduced modulo 2 pi)"),
                    FieldData("flow_map_y", pos[..., 1], ("a_x", "a_y"), "length",
                              "X(a, t_final), y (unwrapped)"),
                    FieldData("jacobian", det, ("a_x", "a_y"), "1",
                              "det of the flow map's deformation gradient (exactly 1)")]
        return out

    def particles(self, solver) -> list[ParticleData]:
        if not self.n_markers:
            return []
        return [ParticleData("markers", solver.marker_positions(), "length",
                             "marker positions X(a, t_final), unwrapped"),
                ParticleData("deformation_gradient", solver.deformation_gradients(), "1",
                             "F = dX/da at the markers, F[m, i, j] = d X_i / d a_j")]

    def _exact_invariants(self) -> dict[str, float] | None:
        if self.kind != "taylor_green":
            return None
        amp = self.case.get("initial.amplitude")
        ux, uy = self.mean_velocity
        # int |grad psi|^2 = 2 pi^2 A^2, int omega^2 = 4 pi^2 A^2, int omega^4 = 9 pi^2 A^4
        return {"energy": 2 * math.pi ** 2 * (ux * ux + uy * uy) + math.pi ** 2 * amp ** 2,
                "enstrophy": 2 * math.pi ** 2 * amp ** 2,
                "casimir": 9 * math.pi ** 2 * amp ** 4}

    def _exact_fields(self, t: float, rows: tuple[int, int] | None = None
                      ) -> dict[str, np.ndarray]:
        """The exact Taylor-Green fields at ``t`` on the grid rows ``rows`` (default all)."""
        amp = self.case.get("initial.amplitude")
        ux, uy = self.mean_velocity
        lo, hi = (0, self.n) if rows is None else rows
        x, y = np.meshgrid(self.x[lo:hi], self.x, indexing="ij")
        out = {"omega": 2 * amp * np.sin(x - ux * t) * np.sin(y - uy * t)}
        if self.n_markers:
            m = self.n_markers
            pos = taylor_green_flow_map(self.markers(), t, amp, self.mean_velocity)
            out["flow_map_x"] = pos[:, 0].reshape(m, m)
            out["flow_map_y"] = pos[:, 1].reshape(m, m)
        return out

    def summary(self, solver) -> dict:
        d = solver.diagnostics()
        r = solver.running
        out = {"t_final": solver.time, "steps": solver.iteration,
               "energy": d["energy"], "enstrophy": d["enstrophy"], "casimir": d["casimir"]}
        for name, v0 in solver.initial.items():
            out[f"{name}_drift"] = (d[name] - v0) / v0 if v0 else d[name]
        out.update({"jacobian_error_max": r["jacobian_error_max"],
                    "divergence_max": r["divergence_max"], "cfl_max": r["cfl_max"],
                    "dt_min": r["dt_min"] if math.isfinite(r["dt_min"]) else 0.0,
                    "dt_max": r["dt_max"]})
        if self.kind == "taylor_green":
            exact = self._exact_fields(solver.time, self.rows())
            error = float(np.abs(solver.vorticity() - exact["omega"]).max())
            out["omega_error_max"] = float(solver.global_max([error])[0])  # over all ranks
            if self.n_markers:
                pos = solver.marker_positions()
                ref = np.stack([exact["flow_map_x"].ravel(), exact["flow_map_y"].ravel()], 1)
                out["flow_map_error_max"] = float(np.abs(pos - ref).max())
        return out

    def reference(self) -> Reference | None:
        invariants = self._exact_invariants()
        if invariants is None:
            return None
        t_final = self.case.get("time.t_final")
        exact = self._exact_fields(t_final)
        dx2 = (TWO_PI / self.n) ** 2
        ref = Reference(scalars=invariants, fields={"omega": (exact["omega"], dx2)})
        if self.n_markers:
            da2 = (TWO_PI / self.n_markers) ** 2
            ref.fields["flow_map_x"] = (exact["flow_map_x"], da2)
            ref.fields["flow_map_y"] = (exact["flow_map_y"], da2)
        return ref


def build(case) -> SpectralEulerProblem:
    return SpectralEulerProblem(case)
