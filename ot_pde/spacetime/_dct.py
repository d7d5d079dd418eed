"""The orthonormal DCT-II and its inverse along any axes, from numpy's FFT (Makhoul 1980).

The solver's small grids use these instead of ``scipy.fft``: importing ``scipy.fft`` (which
imports ``scipy.special``) costs ~0.4-0.6 s per process, more than a small grid's whole solve;
the transforms agree with scipy's to round-off (tested). Only the calls the solver makes are
provided: ``type=2, norm="ortho"``; ``overwrite_x`` and ``workers`` are accepted and ignored.

Makhoul's reordering :math:`v = (x_0, x_2, x_4, \\dots, x_5, x_3, x_1)` turns the DCT-II of
length :math:`N` into one complex FFT of the same length:
:math:`y_k = 2\\,\\mathrm{Re}(e^{-i\\pi k/2N}\\,\\hat v_k)` (scipy's unnormalized DCT-II),
scaled by :math:`\\sqrt{1/4N}` for :math:`k = 0` and :math:`\\sqrt{1/2N}` otherwise; the
inverse undoes each step.
"""
from __future__ import annotations

import numpy as np


def _check(type: int, norm: str) -> None:  # noqa: A002 (scipy's keyword)
    if type != 2 or norm != "ortho":
        raise ValueError(f"only type=2, norm='ortho' is provided, got type={type}, norm={norm}")


def dct(x, type: int = 2, norm: str = "ortho", axis: int = -1,  # noqa: A002
        overwrite_x: bool = False, workers=None) -> np.ndarray:
    """Orthonormal DCT-II of ``x`` along ``axis`` (``scipy.fft.dct(x, 2, norm="ortho")``)."""
    _check(type, norm)
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    v = np.concatenate([x[..., ::2], x[..., 1::2][..., ::-1]], axis=-1)
    y = 2.0 * (np.fft.fft(v, axis=-1) * np.exp(-0.5j * np.pi * np.arange(n) / n)).real
    y[..., 0] *= np.sqrt(0.25 / n)
    y[..., 1:] *= np.sqrt(0.5 / n)
    return np.moveaxis(y, -1, axis)


def idct(x, type: int = 2, norm: str = "ortho", axis: int = -1,  # noqa: A002
         overwrite_x: bool = False, workers=None) -> np.ndarray:
    """Inverse of :func:`dct` along ``axis`` (``scipy.fft.idct(x, 2, norm="ortho")``)."""
    _check(type, norm)
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    y = x * np.sqrt(2.0 * n)  # back to scipy's unnormalized coefficients
    y[..., 0] = x[..., 0] * np.sqrt(4.0 * n)
    mirrored = np.zeros_like(y)  # y_{N-k}, with y_N = 0
    mirrored[..., 1:] = y[..., :0:-1]
    spectrum = 0.5 * (y - 1j * mirrored) * np.exp(0.5j * np.pi * np.arange(n) / n)
    v = np.fft.ifft(spectrum, axis=-1).real
    out = np.empty_like(v)
    half = (n + 1) // 2
    out[..., ::2] = v[..., :half]
    out[..., 1::2] = v[..., half:][..., ::-1]
    return np.moveaxis(out, -1, axis)


def dctn(x, type: int = 2, norm: str = "ortho", overwrite_x: bool = False,  # noqa: A002
         workers=None) -> np.ndarray:
    """:func:`dct` along every axis."""
    for axis in range(np.ndim(x)):
        x = dct(x, type, norm, axis)
    return x


def idctn(x, type: int = 2, norm: str = "ortho", overwrite_x: bool = False,  # noqa: A002
          workers=None) -> np.ndarray:
    """:func:`idct` along every axis."""
    for axis in range(np.ndim(x)):
        x = idct(x, type, norm, axis)
    return x
