"""Progress reporting on stderr: a tqdm bar when interactive, log lines at a cadence otherwise.

tqdm draws the bar (fitted to the terminal's width, in notebooks too) with its rate, total
and ETA; the log lines say the same in words, for files and CI logs, where ``\\r`` bars
would be noise.
"""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("ot_pde")

#: Diagnostics shown beside the bar (the first few the solver reports): the bar fits the
#: terminal, the full set goes to ``/history``.
_BAR_DIAGNOSTICS = 3


def format_rate(rate: float) -> str:
    """``12 it/s``, ``0.31 it/s``, or ``4.2 s/it`` below 0.1 it/s: never ``0 it/s``."""
    if rate >= 10:
        return f"{rate:.0f} it/s"
    if rate >= 0.1:
        return f"{rate:.2g} it/s"
    return f"{1 / rate:.3g} s/it" if rate > 0 else "? it/s"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 07 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _format_diag(diag, limit: int | None = None) -> str:
    items = list(diag.items())[:limit]
    return ", ".join(f"{k}={v:.4g}" for k, v in items)


class Progress:
    """Report solver progress.

    Parameters
    ----------
    mode : {"auto", "bar", "log", "none"}
        ``auto`` draws a bar when stderr is a terminal and logs lines otherwise.
    cadence : float
        Seconds between log lines (the bar redraws at most ten times as often).
    total : int or None
        Iteration cap, for the fraction and the ETA.
    start : int
        Iteration the run starts from (non-zero after a restart).
    label : str
        Said first on every line (``run 2 of 4`` in a study or a sweep).
    """

    def __init__(self, mode: str = "auto", cadence: float = 2.0, total: int | None = None,
                 start: int = 0, stream=None, label: str = ""):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "log"
        self.mode = mode
        self.cadence = cadence
        self.total = total
        self.start = start
        self.label = label
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, desc=label or None, file=self.stream,
                             dynamic_ncols=True, mininterval=min(0.1, cadence), unit="it",
                             leave=True)

    def update(self, iteration: int, diag) -> None:
        if self._bar is not None:
            self._bar.update(iteration - self._bar.n)
            self._bar.set_postfix_str(_format_diag(diag, _BAR_DIAGNOSTICS), refresh=False)
            return
        if self.mode != "log":
            return
        now = time.perf_counter()
        if now - self._last < self.cadence:
            return
        self._last = now
        rate = (iteration - self.start) / max(now - self._t0, 1e-12)
        where = f"iteration {iteration}"
        if self.total:
            where += f"/{self.total}"
            if rate > 0 and iteration < self.total:
                where += f", ETA {format_seconds((self.total - iteration) / rate)}"
        prefix = f"{self.label}: " if self.label else ""
        log.info("%s%s (%s): %s", prefix, where, format_rate(rate), _format_diag(diag))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
