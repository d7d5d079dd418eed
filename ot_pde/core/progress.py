"""Progress reporting on stderr: a bar when interactive, log lines at a cadence otherwise."""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("ot_pde")


def _format_diag(diag) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in diag.items())


class Progress:
    """Report solver progress.

    Parameters
    ----------
    mode : {"auto", "bar", "log", "none"}
        ``auto`` draws a bar when stderr is a terminal and logs lines otherwise.
    cadence : float
        Seconds between log lines (and minimum seconds between bar redraws / 10).
    total : int or None
        Iteration cap, for the bar's fraction.
    start : int
        Iteration the run starts from (non-zero after a restart).
    """

    def __init__(self, mode: str = "auto", cadence: float = 2.0, total: int | None = None,
                 start: int = 0, stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "log"
        self.mode = mode
        self.cadence = cadence
        self.total = total
        self.start = start
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._drawn = False

    def update(self, iteration: int, diag) -> None:
        if self.mode == "none":
            return
        now = time.perf_counter()
        interval = self.cadence if self.mode == "log" else min(0.1, self.cadence)
        if now - self._last < interval:
            return
        self._last = now
        rate = (iteration - self.start) / max(now - self._t0, 1e-12)
        if self.mode == "log":
            log.info("iteration %d (%.0f it/s): %s", iteration, rate, _format_diag(diag))
            return
        width = 30
        if self.total:
            frac = min(iteration / self.total, 1.0)
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            head = f"[{bar}] {iteration}/{self.total}"
        else:
            head = f"iteration {iteration}"
        self.stream.write(f"\r{head} {rate:.0f} it/s {_format_diag(diag)}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
