r"""2D incompressible Euler on the torus :math:`[0, 2\pi)^2`, pseudo-spectral, with a flow map.

The equations, in vorticity--stream-function form with a uniform mean flow :math:`U`:

.. math::

    \partial_t \omega + u\cdot\nabla\omega = 0, \qquad
    u = U + \nabla^\perp\psi = U + (\partial_y\psi, -\partial_x\psi), \qquad
    -\Delta\psi = \omega .

(:math:`U`, the mean of :math:`u`, is conserved on the torus and is not seen by :math:`\psi`.)

Discretization (Canuto et al., *Spectral Methods*, ch. 3):

* ``N x N`` grid points :math:`x_j = 2\pi j / N`, real FFTs (``rfft2``), the vorticity kept as
  its Fourier coefficients :math:`\hat\omega_k` with the 2/3 rule: only modes with
  :math:`|k_x|, |k_y| \le K = \lfloor (N-1)/3 \rfloor` are non-zero, so the quadratic product
  :math:`u\cdot\nabla\omega` formed on the grid has no aliasing onto the kept modes (the scheme
  is the Galerkin truncation, which conserves energy and enstrophy exactly in time-continuous
  form);
* one right-hand side: :math:`\hat\psi = \hat\omega/|k|^2`; the four fields
  :math:`\partial_y\psi, -\partial_x\psi, \partial_x\omega, \partial_y\omega` by one batched
  inverse FFT; the product on the grid; one forward FFT; the 2/3 mask (5 FFTs);
* classical RK4 in time; the step is fixed (``dt``, rounded down so that a whole number of
  steps ends exactly at ``t_final``) or CFL-adaptive (the last steps shortened to land on
  ``t_final``).

The Lagrangian flow map :math:`X(a, t)` (a volume-preserving diffeomorphism) is tracked by
marker particles advanced by the same RK4 stages, :math:`\dot X = u(X, t)`, together with their
deformation gradient :math:`\dot F = (\nabla u)(X)\, F`, :math:`F(0) = I`. The velocity and its
gradient at the markers are exact Fourier sums of the dealiased :math:`\hat\psi` (a
non-uniform Fourier sum, :math:`O(M K^2)` per evaluation), so :math:`\operatorname{tr}\nabla u =
0` at the markers to round-off and :math:`\det F - 1` measures the time integrator alone.

Nothing here reads files or prints. Arrays live on the backend's array module (numpy or
cupy); the numba backend runs the pointwise parts and the marker sums in numba kernels.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ...backends import CUPY, NUMBA, Backend
from ...errors import NumericalError

TWO_PI = 2.0 * math.pi
#: the run is declared blown up when the enstrophy grows past this factor of its initial value
#: (the Galerkin truncation conserves it; only an unstable time step can make it grow)
BLOWUP_FACTOR = 10.0


def dealias_cutoff(n: int) -> int:
    """Largest kept wavenumber ``K`` of the 2/3 rule: ``3 K < n``."""
    return (n - 1) // 3


class _FFT:
    """Batched real 2D FFTs on the last two axes: scipy.fft (host) or cupy.fft (GPU)."""

    def __init__(self, backend: Backend, n: int):
        self.n = n
        if backend.on_gpu:
            import cupy

            self._rfft2 = lambda a: cupy.fft.rfft2(a, axes=(-2, -1))
            self._irfft2 = lambda a: cupy.fft.irfft2(a, s=(n, n), axes=(-2, -1))
        else:
            import scipy.fft

            # FFT threads for large grids only (on shared cores they cost more than they give
            # at 256^2: 28 ms vs 24 ms for the 26 FFTs of a step, measured under load)
            workers = backend.bind({NUMBA: lambda: -1 if n >= 512 else 1}, default=lambda: 1)
            self._rfft2 = lambda a: scipy.fft.rfft2(a, axes=(-2, -1), workers=workers)
            self._irfft2 = lambda a: scipy.fft.irfft2(a, s=(n, n), axes=(-2, -1),
                                                      workers=workers)

    def rfft2(self, a):
        return self._rfft2(a)

    def irfft2(self, a):
        return self._irfft2(a)


# -- pointwise parts and marker sums, numpy/cupy versions (numba twins in _kernels_numba) ----
def derivatives_xp(omega_hat, ikx, iky, inv_k2, out):
    r"""``out[0..3]`` = spectra of :math:`\partial_y\psi, -\partial_x\psi, \partial_x\omega,
    \partial_y\omega` (``ikx = 1j * kx`` etc.)."""
    psi = omega_hat * inv_k2
    out[0] = iky * psi
    out[1] = -(ikx * psi)
    out[2] = ikx * omega_hat
    out[3] = iky * omega_hat
    return out


def advection_xp(grid4, ux, uy, inv_dx, xp):
    """``(u . grad omega)`` on the grid and the CFL rate ``max(|u| + |v|) / dx``."""
    u = grid4[0] + ux
    v = grid4[1] + uy
    product = u * grid4[2] + v * grid4[3]
    rate = float(xp.max(xp.abs(u) + xp.abs(v))) * inv_dx
    return product, rate


def marker_sums_xp(psi_block, kxs, kys, weights, positions, mean_velocity, xp):
    r"""Velocity and velocity gradient at the markers by exact Fourier sums.

    Parameters
    ----------
    psi_block : (2K+1, K+1) complex
        The kept modes of :math:`\hat\psi` (rows ``kxs``, columns ``kys >= 0``).
    kxs, kys : float arrays
        Their wavenumbers.
    weights : (K+1,) float
        ``1/N^2`` for ``ky = 0`` and ``2/N^2`` otherwise (the half spectrum of a real field).
    positions : (M, 2)
        Marker positions (any real values: the sums are periodic).

    Returns
    -------
    vel : (M, 2), grad : (M, 2, 2)
        :math:`u(X)` and :math:`\nabla u(X)` with ``grad[m, i, j] = d u_i / d x_j``.
    """
    x = xp.mod(positions[:, 0], TWO_PI)
    y = xp.mod(positions[:, 1], TWO_PI)
    ex = xp.exp(1j * x[:, None] * kxs[None, :])                      # (M, 2K+1)
    ey = xp.exp(1j * y[:, None] * kys[None, :]) * weights[None, :]   # (M, K+1)
    m = ex.shape[0]
    stacked = xp.concatenate([ex, ex * (1j * kxs)[None, :], ex * (-(kxs * kxs))[None, :]])
    a = stacked @ psi_block                                          # (3M, K+1)
    a0, a1, a2 = a[:m], a[m:2 * m], a[2 * m:]
    eyy = ey * (1j * kys)[None, :]
    psi_y = xp.real((a0 * eyy).sum(axis=1))
    psi_x = xp.real((a1 * ey).sum(axis=1))
    psi_xy = xp.real((a1 * eyy).sum(axis=1))
    psi_yy = xp.real((a0 * (ey * (-(kys * kys))[None, :])).sum(axis=1))
    psi_xx = xp.real((a2 * ey).sum(axis=1))
    vel = xp.stack([psi_y + mean_velocity[0], -psi_x + mean_velocity[1]], axis=1)
    grad = xp.stack([xp.stack([psi_xy, psi_yy], axis=1),
                     xp.stack([-psi_xx, -psi_xy], axis=1)], axis=1)
    return vel, grad


# The kernel table of the solver: (derivatives, advection, marker sums) per backend.
def _numba_kernels():
    from . import _kernels_numba as nb

    return (nb.derivatives, (lambda g, ux, uy, inv_dx: nb.advection(g, ux, uy, inv_dx)),
            nb.marker_sums)


def _cupy_kernels(xp):
    from . import _kernels_cupy as cu

    return derivatives_xp, cu.advection, (lambda *a: marker_sums_xp(*a, xp))


def _xp_kernels(xp):
    return (derivatives_xp, (lambda g, ux, uy, inv_dx: advection_xp(g, ux, uy, inv_dx, xp)),
            (lambda *a: marker_sums_xp(*a, xp)))


class SpectralEulerSolver:
    r"""RK4 pseudo-spectral integration of 2D Euler on :math:`[0, 2\pi)^2` with marker particles.

    Parameters
    ----------
    omega0 : (N, N) ndarray
        Initial vorticity at the grid points ``x_i = 2 pi i / N`` (index ``[i_x, i_y]``), host
        array. It is projected on the dealiased modes; its mean (the zero mode) is removed.
    backend : Backend
    t_final : float
        End time; the last step lands on it exactly.
    dt : float, optional
        Fixed step (rounded down to ``t_final / ceil(t_final / dt)``).
    cfl : float, optional
        CFL-adaptive step ``dt = cfl * dx / max(|u| + |v|)``; exactly one of ``dt``/``cfl``.
    max_cfl : float
        A fixed-step run stops with :class:`~ot_pde.errors.NumericalError` when the CFL number
        of a step exceeds it (RK4 with dealiased spectral advection is stable to about 1.35).
    mean_velocity : (2,) floats
        The uniform flow :math:`U`.
    markers : (M, 2) ndarray, optional
        Initial marker positions (none: no flow map).
    """

    def __init__(self, omega0, backend: Backend, *, t_final: float, dt: float | None = None,
                 cfl: float | None = None, max_cfl: float = 1.0,
                 mean_velocity=(0.0, 0.0), markers=None):
        omega0 = np.asarray(omega0, dtype=np.float64)
        n = omega0.shape[0]
        if omega0.shape != (n, n) or n < 4:
            raise ValueError(f"expected a square (N, N) vorticity with N >= 4, got {omega0.shape}")
        self._setup(backend, n, (0, n // 2 + 1), _FFT(backend, n), t_final=t_final, dt=dt,
                    cfl=cfl, max_cfl=max_cfl, mean_velocity=mean_velocity)
        self._start(omega0, markers)

    def _setup(self, backend: Backend, n: int, columns: tuple[int, int], fft, *,
               t_final: float, dt: float | None, cfl: float | None, max_cfl: float,
               mean_velocity):
        """Parameters, FFTs and the spectral multipliers of the half-spectrum columns
        ``columns = (lo, hi)`` held here (all ``N // 2 + 1`` of them serially; a slab of
        them in :class:`~ot_pde.euler.spectral.distributed.SlabSpectralEulerSolver`)."""
        if (dt is None) == (cfl is None):
            raise ValueError("give exactly one of dt and cfl")
        self.backend = backend
        self.xp = xp = backend.xp
        self.n = n
        self.dx = TWO_PI / n
        self.t_final = float(t_final)
        self.cfl = None if cfl is None else float(cfl)
        self.max_cfl = float(max_cfl)
        if dt is not None:
            self.n_steps = max(1, math.ceil(self.t_final / float(dt) * (1.0 - 1e-12)))
            self.dt_fixed = self.t_final / self.n_steps
        else:
            self.n_steps = None
            self.dt_fixed = None
        self.mean_velocity = (float(mean_velocity[0]), float(mean_velocity[1]))
        self.fft = fft

        # wavenumbers of the rfft2 layout (axis 0: x, all k; axis 1: y, k >= 0), our columns
        lo, hi = columns
        self._column0 = lo
        kx = np.fft.fftfreq(n, 1.0 / n).reshape(n, 1)
        ky = np.fft.rfftfreq(n, 1.0 / n)[lo:hi].reshape(1, hi - lo)
        k_cut = dealias_cutoff(n)
        self.k_cut = k_cut
        mask = (np.abs(kx) <= k_cut) & (ky <= k_cut)
        k2 = kx * kx + ky * ky
        inv_k2 = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0) * mask
        # half-spectrum weights of Parseval sums: 1 for ky = 0 (and N/2), 2 otherwise
        half = np.full(n // 2 + 1, 2.0)
        half[0] = 1.0
        if n % 2 == 0:
            half[-1] = 1.0
        half = half[lo:hi].reshape(1, hi - lo)
        self._mask = xp.asarray(mask.astype(np.float64))
        self._inv_k2 = xp.asarray(inv_k2)
        self._ikx = xp.asarray(1j * kx * np.ones_like(ky))
        self._iky = xp.asarray(1j * ky * np.ones_like(kx))
        self._kx = kx
        self._ky = ky
        # Parseval: int f^2 = dx^2 / N^2 sum_half w |f_hat|^2
        norm = self.dx * self.dx / (n * n)
        self._w_enstrophy = xp.asarray(0.5 * norm * half * mask)
        self._w_energy = xp.asarray(0.5 * norm * half * inv_k2)
        self._mean_energy = 0.5 * TWO_PI ** 2 * (self.mean_velocity[0] ** 2
                                                + self.mean_velocity[1] ** 2)

        # kept modes for the marker sums: rows |kx| <= K, our columns with ky <= K (they come
        # first; none when our first column is past K)
        rows = np.r_[0:k_cut + 1, n - k_cut:n]
        kept = max(0, min(hi, k_cut + 1) - lo)
        self._rows = xp.asarray(rows)
        self._cols = kept
        self._kxs = xp.asarray(kx[rows, 0].copy())
        self._kys = xp.asarray(ky[0, :kept].copy())
        w = np.full(kept, 2.0 / (n * n))
        if lo == 0 and kept:
            w[0] = 1.0 / (n * n)
        self._weights = xp.asarray(w)
        self._spec4 = xp.empty((4, n, hi - lo), dtype=np.complex128)

    def _start(self, omega0, markers):
        """The initial state from the grid vorticity (our rows), its invariants."""
        xp = self.xp
        omega_hat = self.fft.rfft2(xp.asarray(omega0)) * self._mask
        if self._column0 == 0:
            omega_hat[0, 0] = 0.0
        self.omega_hat = omega_hat
        if markers is not None and len(markers):
            markers = np.asarray(markers, dtype=np.float64).reshape(-1, 2)
            self.markers = xp.asarray(markers)
            self.deformation = xp.asarray(np.tile(np.eye(2), (len(markers), 1, 1)))
        else:
            self.markers = None
            self.deformation = None
        self.iteration = 0
        self.time = 0.0
        self._select_kernels()
        d = self.diagnostics()
        self.initial = {"energy": d["energy"], "enstrophy": d["enstrophy"],
                        "casimir": d["casimir"]}
        self.running = {"jacobian_error_max": d["jacobian_error"],
                        "divergence_max": d["max_divergence"], "cfl_max": 0.0,
                        "dt_min": math.inf, "dt_max": 0.0}

    # -- backends ----------------------------------------------------------------------------
    def _select_kernels(self):
        xp = self.xp
        self._derivatives, self._advection, self._marker_sums = self.backend.bind(
            {NUMBA: _numba_kernels, CUPY: lambda: _cupy_kernels(xp)},
            default=lambda: _xp_kernels(xp))

    # -- the right-hand side -----------------------------------------------------------------
    def psi_hat(self, omega_hat=None):
        return (self.omega_hat if omega_hat is None else omega_hat) * self._inv_k2

    def velocity_at(self, positions, omega_hat=None):
        """Velocity and its gradient at arbitrary points (exact Fourier sums)."""
        block = self.psi_hat(omega_hat)[self._rows, :self._cols]
        return self._marker_sums(block, self._kxs, self._kys, self._weights,
                                 self.xp.asarray(positions), self.mean_velocity)

    def _rhs(self, omega_hat, markers, deformation):
        """Time derivatives of (omega_hat, X, F) and the CFL rate of the velocity."""
        spec = self._derivatives(omega_hat, self._ikx, self._iky, self._inv_k2, self._spec4)
        grid4 = self.fft.irfft2(spec)
        product, rate = self._advection(grid4, self.mean_velocity[0], self.mean_velocity[1],
                                        1.0 / self.dx)
        d_omega = self.fft.rfft2(product)
        d_omega *= -self._mask
        if markers is None:
            return d_omega, None, None, rate
        vel, grad = self.velocity_at(markers, omega_hat)
        d_def = grad @ deformation
        return d_omega, vel, d_def, rate

    # -- the runner's interface --------------------------------------------------------------
    @property
    def finished(self) -> bool:
        if self.n_steps is not None:
            return self.iteration >= self.n_steps
        return self.time >= self.t_final

    def _choose_dt(self, rate: float) -> float:
        if self.dt_fixed is not None:
            return self.dt_fixed
        remaining = self.t_final - self.time
        dt_cfl = self.cfl / rate if rate > 0 else remaining
        if remaining <= dt_cfl * (1.0 + 1e-12):
            return remaining
        if remaining < 2.0 * dt_cfl:  # two equal steps rather than a tiny last one
            return 0.5 * remaining
        return dt_cfl

    def step(self) -> Mapping[str, float]:
        """One RK4 step; raises :class:`NumericalError` on a CFL violation or a blow-up."""
        w0, x0, f0 = self.omega_hat, self.markers, self.deformation
        k1 = self._rhs(w0, x0, f0)
        rate = k1[3]
        step_no = self.iteration + 1
        if not math.isfinite(rate):
            raise NumericalError(f"step {step_no} (t = {self.time:.6g}): non-finite velocity "
                                 "(blow-up)")
        dt = self._choose_dt(rate)
        cfl = dt * rate
        if self.dt_fixed is not None and cfl > self.max_cfl:
            raise NumericalError(f"step {step_no} (t = {self.time:.6g}): CFL number {cfl:.3g} "
                                 f"exceeds time.max_cfl = {self.max_cfl:g} (dt = {dt:.4g}); "
                                 "reduce time.dt or use time.cfl")
        has_markers = x0 is not None

        def stage(k, c):
            w = w0 + (c * dt) * k[0]
            if not has_markers:
                return w, None, None
            return w, x0 + (c * dt) * k[1], f0 + (c * dt) * k[2]

        k2 = self._rhs(*stage(k1, 0.5))
        k3 = self._rhs(*stage(k2, 0.5))
        k4 = self._rhs(*stage(k3, 1.0))
        sixth = dt / 6.0
        self.omega_hat = w0 + sixth * (k1[0] + 2.0 * (k2[0] + k3[0]) + k4[0])
        if has_markers:
            self.markers = x0 + sixth * (k1[1] + 2.0 * (k2[1] + k3[1]) + k4[1])
            self.deformation = f0 + sixth * (k1[2] + 2.0 * (k2[2] + k3[2]) + k4[2])
        self.iteration = step_no
        if self.n_steps is not None:
            self.time = self.t_final if step_no == self.n_steps else step_no * self.dt_fixed
        else:
            self.time = self.t_final if dt == self.t_final - self.time else self.time + dt
        d = self.diagnostics()
        if not all(math.isfinite(v) for v in d.values()):
            raise NumericalError(f"step {step_no} (t = {self.time:.6g}): the solution became "
                                 "non-finite (blow-up)")
        if d["enstrophy"] > BLOWUP_FACTOR * max(self.initial["enstrophy"], 1e-300):
            raise NumericalError(f"step {step_no} (t = {self.time:.6g}): enstrophy grew "
                                 f"{d['enstrophy'] / self.initial['enstrophy']:.3g}-fold "
                                 "(blow-up; reduce time.dt or time.cfl)")
        r = self.running
        r["jacobian_error_max"] = max(r["jacobian_error_max"], d["jacobian_error"])
        r["divergence_max"] = max(r["divergence_max"], d["max_divergence"])
        r["cfl_max"] = max(r["cfl_max"], cfl)
        r["dt_min"] = min(r["dt_min"], dt)
        r["dt_max"] = max(r["dt_max"], dt)
        row = {"t": self.time, "dt": dt, "cfl": cfl}
        row.update(d)
        for name, v0 in self.initial.items():
            row[f"{name}_drift"] = (d[name] - v0) / v0 if v0 else d[name]
        return row

    # -- diagnostics -------------------------------------------------------------------------
    def global_sum(self, values) -> np.ndarray:
        """Sums over the processes holding parts of the state: here, one holds everything."""
        return np.asarray(values, dtype=np.float64)

    def global_max(self, values) -> np.ndarray:
        """Maxima over the processes holding parts of the state (NaN wins)."""
        return np.asarray(values, dtype=np.float64)

    def diagnostics(self) -> dict[str, float]:
        """Energy, enstrophy, Casimir int omega^4, max ``|div u|`` and max ``|det F - 1|`` now."""
        xp = self.xp
        w = self.omega_hat
        a2 = w.real * w.real + w.imag * w.imag
        psi = w * self._inv_k2
        grids = self.fft.irfft2(xp.stack([w, self._iky * psi, -(self._ikx * psi)]))
        omega, u, v = grids[0], grids[1], grids[2]
        uv_hat = self.fft.rfft2(xp.stack([u, v]))
        div = self.fft.irfft2(self._ikx * uv_hat[0] + self._iky * uv_hat[1])
        energy, enstrophy, casimir = self.global_sum(
            [float((self._w_energy * a2).sum()), float((self._w_enstrophy * a2).sum()),
             float((omega ** 4).sum())])
        max_div = float(self.global_max([float(xp.abs(div).max())])[0])
        jac = 0.0
        if self.deformation is not None:
            f = self.deformation
            det = f[:, 0, 0] * f[:, 1, 1] - f[:, 0, 1] * f[:, 1, 0]
            jac = float(xp.abs(det - 1.0).max())
        return {"energy": self._mean_energy + float(energy), "enstrophy": float(enstrophy),
                "casimir": float(casimir) * self.dx * self.dx, "max_divergence": max_div,
                "jacobian_error": jac}

    def vorticity(self) -> np.ndarray:
        return self.backend.to_numpy(self.fft.irfft2(self.omega_hat))

    def velocity(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid velocity (u, v), mean flow included."""
        psi = self.psi_hat()
        grids = self.fft.irfft2(self.xp.stack([self._iky * psi, -(self._ikx * psi)]))
        g = self.backend.to_numpy(grids)
        return g[0] + self.mean_velocity[0], g[1] + self.mean_velocity[1]

    def marker_positions(self) -> np.ndarray | None:
        return None if self.markers is None else self.backend.to_numpy(self.markers)

    def deformation_gradients(self) -> np.ndarray | None:
        return None if self.deformation is None else self.backend.to_numpy(self.deformation)

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        to_np = self.backend.to_numpy
        out = {"omega_hat": np.ascontiguousarray(to_np(self.omega_hat)).view(np.float64),
               "iteration": np.int64(self.iteration), "time": np.float64(self.time),
               "initial": np.array([self.initial[k] for k in ("energy", "enstrophy",
                                                               "casimir")]),
               "running": np.array([self.running[k] for k in _RUNNING])}
        if self.markers is not None:
            out["markers"] = to_np(self.markers)
            out["deformation"] = to_np(self.deformation)
        return out

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        xp = self.xp
        w = np.ascontiguousarray(np.asarray(state["omega_hat"], dtype=np.float64))
        w = w.view(np.complex128)
        if w.shape != self.omega_hat.shape:
            raise ValueError(f"checkpoint vorticity of shape {w.shape}, expected "
                             f"{self.omega_hat.shape}")
        self.omega_hat = xp.asarray(w)
        self.iteration = int(state["iteration"])
        self.time = float(state["time"])
        self.initial = dict(zip(("energy", "enstrophy", "casimir"),
                                (float(v) for v in np.asarray(state["initial"]))))
        self.running = dict(zip(_RUNNING, (float(v) for v in np.asarray(state["running"]))))
        if self.markers is not None:
            self.markers = xp.asarray(np.asarray(state["markers"], dtype=np.float64))
            self.deformation = xp.asarray(np.asarray(state["deformation"], dtype=np.float64))


_RUNNING = ("jacobian_error_max", "divergence_max", "cfl_max", "dt_min", "dt_max")
