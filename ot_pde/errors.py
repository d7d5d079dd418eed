"""Exceptions that carry the CLI's exit codes (:doc:`/cli`, :doc:`/architecture`).

Every error the user can cause is an :class:`InputError` (exit 2) whose message names
where the bad input came from (a file, ``--set`` or an argument) and which key.
Numerical failures (NaN, divergence) are :class:`NumericalError` (exit 1).
"""
from __future__ import annotations


class OtPdeError(Exception):
    """Base class of ot_pde's own errors."""

    exit_code = 1


class InputError(OtPdeError):
    """Bad input: a case file, an override, an argument, a data file or a checkpoint.

    Parameters
    ----------
    message : str
        What was wrong and what was expected.
    source : str, optional
        Where the input came from (a path, ``"--set"``, ``"argument"``).
    key : str, optional
        The dotted key (``"grid.n"``) or dataset name at fault.
    """

    exit_code = 2

    def __init__(self, message: str, source: str | None = None, key: str | None = None):
        self.message = message
        self.source = source
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.key) if p]
        return ": ".join(parts + [self.message])


class BackendError(InputError):
    """A requested array backend (numba, cupy) is not usable on this machine."""


class NumericalError(OtPdeError):
    """The computation diverged or produced non-finite values."""

    exit_code = 1
