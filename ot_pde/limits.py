"""Sizes against memory, arithmetic against overflow: the one place that checks both.

A case can ask for more than the machine has (``grid.n = 100000`` in 2D is 75 GiB per
array) or for numbers that leave finite arithmetic (``time.t_final = 1e308`` gives an
infinite step count). Left alone, NumPy or Python would fail deep inside a kind with a
``MemoryError``, an ``OverflowError`` or a ``ValueError: array is too big``, after the
output file was created. This module turns both into an :class:`~ot_pde.errors.InputError`
(exit 2) *before* the run starts:

* :func:`memory_budget` is what a case may use: 80 % of the machine's memory, or
  ``OT_PDE_MAX_MEMORY`` (e.g. ``2G``) when set;
* :func:`check_allocation` compares a planned array (shape, item size) with the memory of
  the machine using exact integer arithmetic, before anything is allocated; the safe array
  loader (:mod:`ot_pde.io.arrays`) calls it with the header of every file it reads;
* :func:`guarded` wraps the construction of a case's problem and solver (every kind's
  ``build`` and ``make_solver``, called by ``check`` and ``run`` alike, see
  :func:`ot_pde.core.building.build_problem`): the failures above become an InputError
  naming the case; while it runs the process's address space is capped at its current
  size plus the budget, so that an allocation beyond it fails at once (rather than the
  operating system killing the run later); and a solver whose arrays, once allocated,
  exceed the budget is refused by :func:`check_footprint` before its first step.

``check`` builds the solver too, so what ``run`` would refuse for size, ``check`` refuses
first.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["available_memory", "memory_budget", "check_allocation", "check_footprint",
           "guarded", "array_bytes", "MEMORY_FRACTION"]

#: a case may plan at most this fraction of the machine's physical memory
MEMORY_FRACTION = 0.8

# NumPy's messages for shapes it cannot represent (they are ValueErrors, not MemoryErrors)
_SIZE_MESSAGES = ("maximum allowed size", "maximum allowed dimension", "array is too big",
                  "negative dimensions", "too large to convert", "out of bounds for int",
                  "cannot convert float infinity", "cannot convert float nan",
                  "python int too large", "integer is too large")


def memory_budget() -> int:
    """Bytes a case may plan: :data:`MEMORY_FRACTION` of the machine's memory, or the
    environment variable ``OT_PDE_MAX_MEMORY`` (bytes, or with a suffix K, M, G) if set."""
    text = os.environ.get("OT_PDE_MAX_MEMORY", "").strip().upper()
    if text:
        scale = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}.get(text[-1:], 1)
        try:
            return int(float(text.rstrip("KMGB") or "x") * scale)
        except ValueError:
            raise InputError(f"expected a number of bytes (e.g. 2G), got {text!r}",
                             source="environment", key="OT_PDE_MAX_MEMORY") from None
    return int(MEMORY_FRACTION * available_memory())


def available_memory() -> int:
    """Bytes of physical memory of this machine (``MemTotal``; 2**63 when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 63


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.3g} GiB"


def check_allocation(shape: Iterable[Any], itemsize: int, *, what: str, source: str | None,
                     key: str | None, budget: int | None = None) -> int:
    """The bytes of an array of ``shape`` and ``itemsize``, or InputError if it cannot fit.

    The product is computed with Python integers (no overflow); negative or non-integral
    extents are refused as well. ``budget`` defaults to :data:`MEMORY_FRACTION` of the
    machine's memory.
    """
    total = int(itemsize)
    for n in shape:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            if isinstance(n, (float, np.floating)) and math.isfinite(n) and float(n).is_integer():
                n = int(n)
            else:
                raise InputError(f"{what}: extent {n!r} is not a non-negative integer",
                                 source=source, key=key)
        if n < 0:
            raise InputError(f"{what}: negative extent {n}", source=source, key=key)
        total *= int(n)
    budget = memory_budget() if budget is None else budget
    if total > budget:
        raise InputError(f"{what} needs {_gib(total)}, more than this machine can hold "
                         f"({_gib(budget)} usable); reduce the sizes", source=source, key=key)
    return total


def array_bytes(obj: Any, depth: int = 3, _seen: set | None = None) -> int:
    """Bytes of the distinct NumPy (or CuPy) arrays reachable from ``obj`` within ``depth``
    attribute/container levels (views counted by their base)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    try:
        nbytes = getattr(obj, "nbytes", None)
    except Exception:  # an exotic property: not an array
        return 0
    if isinstance(nbytes, (int, np.integer)) and hasattr(obj, "shape") and hasattr(obj, "dtype"):
        base = getattr(obj, "base", None)
        if base is not None and hasattr(base, "nbytes"):
            return array_bytes(base, depth, seen)
        return int(nbytes)
    if depth <= 0 or isinstance(obj, (str, bytes, int, float, complex, type)):
        return 0
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    else:
        items = list(getattr(obj, "__dict__", {}).values())
    return sum(array_bytes(v, depth - 1, seen) for v in items[:10_000])


def check_footprint(obj: Any, *, what: str, source: str | None, key: str | None = None) -> int:
    """Refuse ``obj`` (a built solver or problem) whose arrays exceed the memory budget.

    NumPy's zero-filled arrays take no physical memory until written, so a solver that
    asked for more than the machine holds is still created; it would be killed by the
    operating system at its first step. Counting its arrays refuses it before.
    """
    total = array_bytes(obj)
    budget = memory_budget()
    if total > budget:
        raise InputError(f"{what} needs {_gib(total)} of arrays, more than this machine can "
                         f"hold ({_gib(budget)} usable); reduce the sizes", source=source,
                         key=key)
    return total


@contextlib.contextmanager
def _address_space_limit() -> Iterator[None]:
    """Cap this process's address space at its current size plus :func:`memory_budget`
    while the block runs, so that an allocation beyond the budget fails at once with
    MemoryError (zero-filled arrays are otherwise granted lazily and the process is killed
    by the operating system at first use). Restored afterwards; a no-op where the platform
    has no ``RLIMIT_AS``, where a lower limit is already set, or with a GPU backend loaded
    (CUDA reserves large address ranges)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, AttributeError):
        yield
        return
    import sys

    limit = current + memory_budget()
    if "cupy" in sys.modules or (soft != resource.RLIM_INFINITY and soft <= limit) or (
            hard != resource.RLIM_INFINITY and hard < limit):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _is_size_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(m in text for m in _SIZE_MESSAGES)


@contextlib.contextmanager
def guarded(what: str, *, source: str | None, key: str | None = None) -> Iterator[None]:
    """Turn the failures of sizes and arithmetic beyond the machine into InputError.

    ``MemoryError``, ``OverflowError`` (a float too large for an integer, ``math.exp`` of
    a huge value), ``FloatingPointError``, ``RecursionError`` and NumPy's "array is too
    big" ``ValueError`` raised while ``what`` is built become "the case asks for more
    than ...", naming ``source``. Other exceptions pass through unchanged.
    """
    try:
        with _address_space_limit():
            yield
    except MemoryError as exc:
        detail = str(exc) or "out of memory"
        raise InputError(f"{what}: not enough memory for this case ({detail}); reduce the "
                         "sizes", source=source, key=key) from None
    except (OverflowError, FloatingPointError) as exc:
        raise InputError(f"{what}: a value of the case leaves finite arithmetic "
                         f"({type(exc).__name__}: {exc}); use smaller magnitudes",
                         source=source, key=key) from None
    except RecursionError:
        raise InputError(f"{what}: input nested too deeply", source=source,
                         key=key) from None
    except ValueError as exc:
        if _is_size_error(exc):
            raise InputError(f"{what}: the case asks for an array larger than NumPy can "
                             f"represent ({exc}); reduce the sizes", source=source,
                             key=key) from None
        raise
