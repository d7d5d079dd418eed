r"""The pseudo-spectral 2D Euler solver split in slabs over MPI ranks (``mpiexec -n P``).

Same physics, RK4, 2/3 rule, markers, time steps and failure conditions as
:class:`~ot_pde.euler.spectral.solver.SpectralEulerSolver` (whose step, right-hand side and
diagnostics this class runs unchanged); only where the numbers live differs:

* **grid fields**: rank ``r`` holds the x rows ``block_range(N, P, r)`` (all y): ``(nx_r, N)``;
* **spectra**: rank ``r`` holds the half-spectrum columns ``block_range(K + 1, P, r)`` of the
  columns ``ky <= K`` the 2/3 rule keeps (all kx): ``(N, nk_r)``, exactly the slice
  ``[:, lo:hi]`` of the serial ``rfft2`` layout, so every spectral multiplier is the serial one
  sliced (the serial columns ``ky > K`` are zero: :meth:`SlabSpectralEulerSolver.state` writes
  them so);
* **2D FFTs** (:class:`SlabFFT`): forward, a real FFT along y on the local rows, a transpose
  by ``Alltoallw`` (each rank sends every other rank the columns it will hold), then a complex
  FFT along x on the local columns; the inverse runs the same steps backwards. A transform of
  a batch of fields moves all of them in one ``Alltoallw``;
* **markers** (few) are replicated: each rank sums the Fourier series of the velocity and its
  gradient over the kept modes in its columns, and the partial sums are gathered and added in
  rank order, so every rank gets the same bits and the replicated markers never drift apart;
* **diagnostics** (energy, enstrophy, int omega^4, max ``|div u|``) and the CFL rate are global
  the same way (sums in rank order, maxima with NaN propagated) and identical on every rank:
  every rank takes the same ``dt`` and raises :class:`~ot_pde.errors.NumericalError` at the
  same step, so a failure never leaves a rank waiting in a collective.

The rank-ordered sums (an ``Allgather`` of a few numbers, then a loop) rather than
``Allreduce``: MPI leaves the order of a reduction to the library, and the contract here is
bits identical on every rank, independent of the MPI build.

Host backends only (numpy, numba). The caller hands in its mpi4py communicator; mpi4py is
imported only when a :class:`SlabFFT` is built (a serial run never imports it).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ...backends import NUMBA, Backend
from ...parallel import block_range
from .solver import SpectralEulerSolver, dealias_cutoff


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


class SlabFFT:
    """Real 2D FFTs of an ``N x N`` grid held in slabs of x rows, spectra in slabs of ky
    columns (see the module docstring). Collective: every rank calls every transform.

    The transpose is one ``Alltoallw`` whose MPI subarray datatypes pick each peer's block
    straight out of the source array and drop it straight into place in the destination
    (no packing copies of ours: at 512^2 on 2 ranks a forward transform of 4 fields took
    5.6 ms, against 8.6 ms with ``Alltoallv`` and packed buffers; same bits).

    Parameters
    ----------
    comm : mpi4py communicator
    n : int
        Grid points per axis.
    workers : int
        scipy.fft threads per rank.
    columns : int, optional
        Half-spectrum columns ``0 <= ky < columns`` kept (default all ``N // 2 + 1``):
        :meth:`rfft2` computes only those, :meth:`irfft2` takes the others as zero.
    """

    def __init__(self, comm, n: int, workers: int = 1, columns: int | None = None):
        import scipy.fft
        from mpi4py import MPI

        self._scipy_fft = scipy.fft
        self._complex = MPI.C_DOUBLE_COMPLEX
        self.comm = comm
        self.n = n
        self.workers = workers
        self.columns = n // 2 + 1 if columns is None else columns
        size, rank = comm.Get_size(), comm.Get_rank()
        self.row_slabs = [block_range(n, size, r) for r in range(size)]
        self.column_slabs = [block_range(self.columns, size, r) for r in range(size)]
        self.lo, self.hi = self.row_slabs[rank]
        self.klo, self.khi = self.column_slabs[rank]
        self._types = {}
        self._inverse_rows = {}

    def _block_types(self, batch: int):
        """``(in_rows, in_columns)``: per peer, the counts (1, or 0 for an empty block) and
        MPI datatypes of its block in the row layout ``(batch, nx, N//2+1)`` (the peer's
        columns) and in the column layout ``(batch, N, nk)`` (the peer's rows), committed
        once per batch size."""
        if batch not in self._types:
            nx, nk, nky = self.hi - self.lo, self.khi - self.klo, self.n // 2 + 1

            def block(sizes, subsizes, starts):
                if 0 in subsizes:  # an empty block: nothing to move (subarrays must not be)
                    return 0, self._complex
                return 1, self._complex.Create_subarray(sizes, subsizes, starts).Commit()

            in_rows = [block((batch, nx, nky), (batch, nx, hi - lo), (0, 0, lo))
                       for lo, hi in self.column_slabs]
            in_columns = [block((batch, self.n, nk), (batch, hi - lo, nk), (0, lo, 0))
                          for lo, hi in self.row_slabs]
            self._types[batch] = tuple(([c for c, _ in t], [d for _, d in t])
                                       for t in (in_rows, in_columns))
        return self._types[batch]

    def _transpose(self, source, target, source_types, target_types):
        zeros = [0] * len(source_types[0])  # the datatypes carry the offsets
        self.comm.Alltoallw([source, (source_types[0], zeros), source_types[1]],
                            [target, (target_types[0], zeros), target_types[1]])

    def rfft2(self, a):
        """``(..., nx, N)`` real rows -> ``(..., N, nk)`` complex columns of ``rfft2``."""
        a = np.asarray(a, dtype=np.float64)
        lead, n = a.shape[:-2], self.n
        b = int(np.prod(lead, dtype=np.int64))
        rows = np.ascontiguousarray(self._scipy_fft.rfft(a.reshape(b, self.hi - self.lo, n),
                                                         axis=-1, workers=self.workers))
        cols = np.empty((b, n, self.khi - self.klo), dtype=np.complex128)
        in_rows, in_columns = self._block_types(b)
        self._transpose(rows, cols, in_rows, in_columns)
        out = self._scipy_fft.fft(cols, axis=-2, overwrite_x=True, workers=self.workers)
        return out.reshape(*lead, n, self.khi - self.klo)

    def irfft2(self, a):
        """``(..., N, nk)`` complex columns -> ``(..., nx, N)`` real rows of ``irfft2``."""
        a = np.asarray(a)
        lead, n = a.shape[:-2], self.n
        b = int(np.prod(lead, dtype=np.int64))
        cols = np.ascontiguousarray(self._scipy_fft.ifft(a.reshape(b, n, self.khi - self.klo),
                                                         axis=-2, workers=self.workers))
        # one buffer per batch size, kept: the transpose rewrites its columns < self.columns,
        # the others stay zero, and scipy's irfft never writes to its input (a fresh,
        # zero-filled buffer per call: 60 instead of 49 ms per step at 512^2 on 2 ranks)
        if b not in self._inverse_rows:
            self._inverse_rows[b] = np.zeros((b, self.hi - self.lo, n // 2 + 1),
                                             dtype=np.complex128)
        rows = self._inverse_rows[b]
        in_rows, in_columns = self._block_types(b)
        self._transpose(cols, rows, in_columns, in_rows)
        out = self._scipy_fft.irfft(rows, n=n, axis=-1, workers=self.workers)
        return out.reshape(*lead, self.hi - self.lo, n)


class SlabSpectralEulerSolver(SpectralEulerSolver):
    r""":class:`~ot_pde.euler.spectral.solver.SpectralEulerSolver` with the grid split in
    slabs of x rows over the ranks of ``comm``.

    Every method is collective (all ranks call it, in the same order). :meth:`vorticity` and
    :meth:`velocity` return this rank's rows ``self.rows = (lo, hi)``;
    :meth:`marker_positions`, :meth:`deformation_gradients`, :meth:`diagnostics`,
    :meth:`step`'s row and the ``iteration``, ``time``, ``finished``, ``initial`` and
    ``running`` attributes are the same on every rank. :meth:`state` gathers the whole state
    on rank 0 in the serial solver's format (other ranks get ``{}``); :meth:`load_state` takes
    that whole state on every rank, so checkpoints move freely between the serial solver and
    any number of ranks.

    Parameters
    ----------
    omega0 : (hi - lo, N) ndarray
        This rank's rows ``block_range(N, P, rank)`` of the initial vorticity, never the whole
        grid (grids too big for one process work).
    backend : Backend
        ``numpy`` or ``numba`` (whose pointwise kernels and marker sums run on the slabs).
    comm : mpi4py communicator
        Its ``P`` ranks share the grid; ``P <= N`` (ranks past the ``K + 1`` kept columns
        ``ky <= K`` hold no spectral columns: they transform their rows and take part in
        the transposes).
    t_final, dt, cfl, max_cfl, mean_velocity, markers
        As for the serial solver; ``markers`` the same on every rank.
    """

    def __init__(self, omega0, backend: Backend, comm, *, t_final: float,
                 dt: float | None = None, cfl: float | None = None, max_cfl: float = 1.0,
                 mean_velocity=(0.0, 0.0), markers=None):
        if backend.on_gpu:
            raise ValueError(f"the MPI slab solver runs on the host (numpy or numba), not "
                             f"{backend.name!r}; run a GPU case on one rank")
        omega0 = np.asarray(omega0, dtype=np.float64)
        size = comm.Get_size()
        # all ranks check all slabs, so bad input raises on every rank before any transpose
        shapes = comm.allgather(omega0.shape)
        n = omega0.shape[-1] if omega0.ndim == 2 else 0
        expected = [(hi - lo, n) for lo, hi in (block_range(n, size, r) for r in range(size))]
        if n < 4 or list(shapes) != expected:
            raise ValueError(f"expected the rows block_range(N, {size}, rank) of an (N, N) "
                             f"vorticity with N >= 4 on the {size} ranks: shapes {expected}, "
                             f"got {list(shapes)}")
        if size > n:
            raise ValueError(f"{size} ranks for {n} grid rows: at most one rank per row")
        self.comm = comm
        # scipy.fft threads: the serial rule (numba backend, N >= 512), with the rank's share
        # of the cores that ot_pde.parallel.share_cores gave numba
        workers = backend.bind({NUMBA: lambda: _numba_threads() if n >= 512 else 1},
                               default=lambda: 1)
        # only the columns ky <= K of the 2/3 rule: the others of every spectrum the solver
        # inverts are exactly zero and of every spectrum it computes are masked (the one
        # exception, the re-differentiated velocity of the divergence diagnostic, loses only
        # round-off there), so the transposes move 2/3 of the half spectrum and the x FFTs,
        # the spectral pointwise work and the marker sums are spread evenly over the ranks
        fft = SlabFFT(comm, n, workers, columns=dealias_cutoff(n) + 1)
        self.rows = (fft.lo, fft.hi)
        self._setup(backend, n, (fft.klo, fft.khi), fft, t_final=t_final, dt=dt, cfl=cfl,
                    max_cfl=max_cfl, mean_velocity=mean_velocity)
        self._start(omega0, markers)

    # -- the global pieces -------------------------------------------------------------------
    def _gathered(self, values) -> np.ndarray:
        mine = np.ascontiguousarray(values, dtype=np.float64).ravel()
        every = np.empty((self.comm.Get_size(), mine.size))
        self.comm.Allgather(mine, every)
        return every

    def global_sum(self, values) -> np.ndarray:
        """Sums over the ranks, added in rank order: the same bits on every rank."""
        every = self._gathered(values)
        total = every[0].copy()
        for part in every[1:]:
            total += part
        return total.reshape(np.shape(values))

    def global_max(self, values) -> np.ndarray:
        """Maxima over the ranks; a NaN anywhere is the maximum everywhere."""
        return self._gathered(values).max(axis=0).reshape(np.shape(values))

    def _select_kernels(self):
        super()._select_kernels()
        local_advection = self._advection

        def advection(grid4, ux, uy, inv_dx):
            product, rate = local_advection(grid4, ux, uy, inv_dx)
            return product, float(self.global_max([rate])[0])

        self._advection = advection

    def velocity_at(self, positions, omega_hat=None):
        """Velocity and its gradient at points given on every rank (collective)."""
        block = self.psi_hat(omega_hat)[self._rows, :self._cols]
        positions = np.asarray(positions, dtype=np.float64)
        # this rank's share of the Fourier sums; the mean flow once, after the sum
        vel, grad = self._marker_sums(block, self._kxs, self._kys, self._weights, positions,
                                      (0.0, 0.0))
        m = positions.shape[0]
        total = self.global_sum(np.concatenate([np.ravel(vel), np.ravel(grad)]))
        vel = total[:2 * m].reshape(m, 2) + np.array(self.mean_velocity)
        return vel, total[2 * m:].reshape(m, 2, 2)

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The whole state on rank 0 (the serial solver's keys and shapes), ``{}`` elsewhere."""
        out = super().state()
        counts = [self.n * (hi - lo) for lo, hi in self.fft.column_slabs]
        starts = np.cumsum([0] + counts)
        root = self.comm.Get_rank() == 0
        whole = np.empty(starts[-1], dtype=np.complex128) if root else None
        self.comm.Gatherv(np.ascontiguousarray(self.omega_hat),
                          [whole, (counts, starts[:-1])] if root else None, root=0)
        if not root:
            return {}
        spectrum = np.zeros((self.n, self.n // 2 + 1), dtype=np.complex128)  # ky > K: zero
        spectrum[:, :self.fft.columns] = np.concatenate(
            [whole[at:at + count].reshape(self.n, count // self.n)
             for at, count in zip(starts, counts)], axis=1)
        out["omega_hat"] = spectrum.view(np.float64)
        return out

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Continue from a whole state (serial or gathered), given on every rank."""
        w = np.ascontiguousarray(np.asarray(state["omega_hat"], dtype=np.float64))
        whole = (self.n, 2 * (self.n // 2 + 1))
        if w.shape != whole:
            raise ValueError(f"checkpoint vorticity of shape {w.shape}, expected {whole}")
        mine = np.ascontiguousarray(w.view(np.complex128)[:, self.fft.klo:self.fft.khi])
        super().load_state(dict(state, omega_hat=mine.view(np.float64)))
