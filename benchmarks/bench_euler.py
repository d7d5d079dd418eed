"""Pseudo-spectral 2D Euler (``euler_spectral``): RK4 steps per second beside the FFTs alone.

One step is 4 right-hand sides (a batched inverse FFT of 4 fields and a forward FFT each) and
the per-step diagnostics (energy, enstrophy, int omega^4, max |div u|: 3 inverse and 2 forward
FFTs): 26 real 2D FFTs. The "FFTs alone" column times exactly those transforms, same shapes,
same library and threads, with nothing between them: the bound a step could reach if
everything else were free. ``step / FFT`` is how far above that bound we are. No markers here
(their exact Fourier sums cost O(markers x K^2), measured separately at 256^2).

Run ``python benchmarks/bench_euler.py [--quick]`` or ``python benchmarks/run.py --only euler``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ot_pde.backends import available_backends, get_backend
from ot_pde.euler.spectral import SpectralEulerSolver


def _omega(n: int) -> np.ndarray:
    x = 2 * np.pi * np.arange(n) / n
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return np.sin(3 * xx) * np.cos(2 * yy) + np.cos(xx + 5 * yy) + 0.5 * np.sin(7 * yy)


def _sync(backend):
    if backend.on_gpu:
        backend.xp.cuda.Device().synchronize()


def _time(fn, backend, repeats: int) -> float:
    """Seconds per call: the best of 3 rounds of ``repeats`` calls, after a warm-up call."""
    fn()  # warm-up: JIT compilation, FFT plans
    _sync(backend)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(backend)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def step_and_fft_times(n: int, backend_name: str, steps: int, markers: int = 0):
    backend = get_backend(backend_name)
    rng = np.random.default_rng(0)
    pos = rng.random((markers, 2)) * 2 * np.pi if markers else None
    solver = SpectralEulerSolver(_omega(n), backend, t_final=1e9, dt=1e-4, max_cfl=10.0,
                                 markers=pos)
    t_step = _time(solver.step, backend, steps)
    xp, fft = backend.xp, solver.fft
    spec4 = solver._spec4
    spec3 = spec4[:3].copy()
    grid1 = xp.asarray(_omega(n))
    grid2 = xp.stack([grid1, grid1])
    spec1 = spec4[0].copy()

    def ffts():
        for _ in range(4):
            fft.irfft2(spec4)
            fft.rfft2(grid1)
        fft.irfft2(spec3)
        fft.rfft2(grid2)
        fft.irfft2(spec1)

    t_fft = _time(ffts, backend, steps)
    return t_step, t_fft


def main(quick: bool) -> None:
    backends = [b for b in ("numpy", "numba", "cupy") if b in available_backends()]
    configs = [(256, 10 if quick else 40), (1024, 2 if quick else 4)]
    print("2D Euler, pseudo-spectral RK4 (2/3 rule), per step: 26 real 2D FFTs + pointwise "
          "work + diagnostics")
    print(f"{'grid':>6} {'backend':>8} {'step':>11} {'steps/s':>9} {'FFTs alone':>11} "
          f"{'step / FFT':>10}")
    for n, steps in configs:
        for b in backends:
            t_step, t_fft = step_and_fft_times(n, b, steps if b != "cupy" else 5 * steps)
            print(f"{n:>5}² {b:>8} {t_step * 1e3:9.2f}ms {1 / t_step:9.1f} "
                  f"{t_fft * 1e3:9.2f}ms {t_step / t_fft:9.2f}x", flush=True)
    m = 16
    print(f"\nwith {m}^2 = {m * m} markers (flow map + F by exact Fourier sums) at 256²:")
    for b in backends:
        t_step, t_fft = step_and_fft_times(256, b, 4 if quick else 10, markers=m * m)
        print(f"{256:>5}² {b:>8} {t_step * 1e3:9.2f}ms {1 / t_step:9.1f} "
              f"{t_fft * 1e3:9.2f}ms {t_step / t_fft:9.2f}x", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
