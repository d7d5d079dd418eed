"""Array backends: ``numpy`` (reference), ``numba`` (CPU kernels), ``cupy`` (GPU).

Detection follows PyLops' ``deps.py``: optional libraries are looked up once with
:func:`importlib.util.find_spec` (cheap, imports nothing) and imported only when a backend
that needs them is asked for. Set ``OT_PDE_DISABLE_NUMBA=1`` or ``OT_PDE_DISABLE_CUPY=1``
to pretend a library is absent (used by tests of the error paths).

The choice is always explicit: asking for ``cupy`` without a usable GPU raises
:class:`~ot_pde.errors.BackendError`; there is no silent fallback.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib.util import find_spec
from types import ModuleType

import numpy as np

from .errors import BackendError

#: every backend name, the one place they are spelled (CLI choices, case schema, kinds)
BACKENDS = ("numpy", "numba", "cupy")
#: the backends on the CPU: every kind runs on these
CPU_BACKENDS = ("numpy", "numba")
#: what ``--backend`` and ``run.backend`` accept: ``auto`` or a backend name
BACKEND_CHOICES = ("auto", *BACKENDS)


def _installed(module: str, env_var: str) -> bool:
    if os.environ.get(env_var, "0") not in ("", "0"):
        return False
    return find_spec(module) is not None


def numba_installed() -> bool:
    return _installed("numba", "OT_PDE_DISABLE_NUMBA")


def cupy_installed() -> bool:
    return _installed("cupy", "OT_PDE_DISABLE_CUPY")


@functools.lru_cache(maxsize=None)
def cupy_device_count() -> int:
    """Number of CUDA devices CuPy can use (0 when CuPy or the driver is missing)."""
    if not cupy_installed():
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # any driver/runtime failure means "no usable GPU"
        return 0


def available_backends() -> list[str]:
    """Backends usable on this machine, in order of preference for CPU runs."""
    names = ["numpy"]
    if numba_installed():
        names.append("numba")
    if cupy_device_count() > 0:
        names.append("cupy")
    return names


def default_backend() -> str:
    """``numba`` when importable, else ``numpy`` (docs/architecture.rst)."""
    return "numba" if numba_installed() else "numpy"


@dataclass(frozen=True)
class Backend:
    """A resolved backend: its name and the array module ``xp`` its arrays live in."""

    name: str
    xp: ModuleType

    @property
    def on_gpu(self) -> bool:
        return self.name == "cupy"

    def asarray(self, a, dtype=np.float64):
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Copy an array of this backend to host memory."""
        if self.on_gpu:
            return self.xp.asnumpy(a)
        return np.asarray(a)


def get_backend(name: str | None = None, source: str = "run.backend") -> Backend:
    """Resolve a backend by name (``None`` means :func:`default_backend`).

    Raises
    ------
    BackendError
        The name is unknown, or the library behind it is missing or has no device.
    """
    if name is None or name == "auto":
        name = default_backend()
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}",
                           key=source)
    if name == "numpy":
        return Backend("numpy", np)
    if name == "numba":
        if not numba_installed():
            raise BackendError("backend 'numba' requested but numba is not installed "
                               "(pip install numba)", key=source)
        return Backend("numba", np)
    if not cupy_installed():
        raise BackendError("backend 'cupy' requested but CuPy is not installed "
                           "(pip install 'ot_pde[gpu]')", key=source)
    if cupy_device_count() == 0:
        raise BackendError("backend 'cupy' requested but CuPy sees no CUDA device", key=source)
    import cupy

    return Backend("cupy", cupy)


def get_array_module(a) -> ModuleType:
    """numpy or cupy, whichever owns ``a`` (PyLops' ``get_array_module``)."""
    if cupy_installed() and type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np
