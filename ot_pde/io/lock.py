"""One writer per output file: an advisory lock held for the whole run.

:class:`OutputLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the output file itself (a
descriptor opened beside HDF5's own; the HDF5 library's locking stays off, see
:mod:`ot_pde.io.writer`). The kernel releases a ``flock`` when the process ends however it
ends, SIGKILL included, so a killed run never leaves a stale lock: ``--restart`` of its
file just works. A second ``ot-pde run`` (or ``--restart``) on a file whose run is alive
is refused with exit 2, naming that run's process id (the ``writer_pid`` root attribute
the writer records). Readers (``plot``, ``ResultFile``, h5py) take no lock and are never
blocked.

On a file system without ``flock`` support (some NFS mounts) the lock is skipped with a
warning: the run proceeds, unprotected, as before.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

log = logging.getLogger("ot_pde")

__all__ = ["OutputLock", "check_fresh_output", "check_output_path"]


def _writer_pid(path: Path, tries: int = 5, pause: float = 0.05) -> int | None:
    """The ``writer_pid`` root attribute of ``path``, if it can be read within ``tries``
    attempts ``pause`` seconds apart (only on the refusal path, so at most a fifth of a
    second there)."""
    import h5py

    for attempt in range(tries):
        try:
            with h5py.File(path, "r", locking=False) as f:
                pid = f.attrs.get("writer_pid")
            if pid is not None:
                return int(pid)
        except Exception:  # the other run is writing this very moment: try again shortly
            pass
        if attempt + 1 < tries:  # (or has not recorded its pid yet)
            time.sleep(pause)
    return None


class OutputLock:
    """Exclusive advisory lock on ``path`` (created empty if missing); a context manager.

    Attributes
    ----------
    created : bool
        True when the lock created the (empty) file; :meth:`release` removes it again if
        nothing was written into it.
    """

    def __init__(self, path: str | os.PathLike[str], *, key: str = "output.path"):
        self.path = Path(path)
        self.key = key
        self._fd: int | None = None
        self.created = False

    def acquire(self) -> OutputLock:
        import fcntl

        existed = self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise InputError(f"cannot write output file: {exc.strerror or exc}",
                             source=str(self.path), key=self.key) from None
        self.created = not existed
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid = _writer_pid(self.path)
                who = f"process {pid}" if pid is not None else "another process"
                raise InputError(f"the file is being written by another ot-pde run ({who}); "
                                 "wait for it to end, or write elsewhere with -o",
                                 source=str(self.path), key=self.key) from None
            log.warning("%s: file locking not supported here (%s); two runs writing this "
                        "file at once would not be detected", self.path, exc.strerror)
            return self
        self._fd = fd
        return self

    def replace_with(self, new: str | os.PathLike[str]) -> None:
        """Move the file ``new`` over the locked path, keeping the lock: the new file is
        locked before the rename, so no second writer can slip in between (the lock
        belongs to the inode, and the rename swaps inodes)."""
        if self._fd is None:  # no locking here (or never acquired): a plain rename
            os.replace(new, self.path)
            return
        import fcntl

        fd = os.open(new, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(new, self.path)
        except BaseException:
            os.close(fd)
            raise
        old, self._fd = self._fd, fd
        self.created = False
        os.close(old)  # closing drops the lock on the replaced (now unlinked) inode

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fd, self._fd = self._fd, None
            try:
                if self.created and os.fstat(fd).st_size == 0:
                    with_name = self.path
                    if with_name.exists() and with_name.stat().st_size == 0:
                        with_name.unlink()
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_output_path(output: str | os.PathLike[str], *, case_source: str | None = None,
                      key: str = "output.path", what: str = "an HDF5 file") -> None:
    """Refuse an output that is not (or cannot become) a regular file, or is the case file.

    ``/dev/null``, a FIFO or a directory would make the writer fail deep inside HDF5 (or
    write beside them, e.g. ``/dev/null_runs/``); the case file would be overwritten.
    """
    output = Path(output)
    source = str(output)
    if output.exists() and not output.is_file():
        kind = "a directory" if output.is_dir() else \
            "not a regular file (a device, FIFO, socket)"
        raise InputError(f"the output is {kind}; give a path for {what}", source=source,
                         key=key)
    if case_source and case_source != "<string>" and output.exists():
        try:
            same = output.samefile(case_source)
        except OSError:
            same = False
        if same:
            raise InputError("the output is the case file itself; it would be overwritten",
                             source=source, key=key)


def check_fresh_output(output: Path, overwrite: bool) -> None:
    """A run without --restart refuses to discard an unfinished run or a foreign file."""
    if overwrite or not output.exists() or output.stat().st_size == 0:
        return
    source = str(output)
    try:
        import h5py

        with h5py.File(output, "r", locking=False) as f:
            status = f.attrs.get("status")
            ours = "ot_pde_version" in f.attrs
            iteration = f["checkpoint"].attrs.get("iteration") if "checkpoint" in f else None
    except Exception:  # not HDF5, or unreadable
        ours, status, iteration = False, None, None
    if not ours:
        raise InputError("the file exists and is not an ot_pde result file; refusing to "
                         "overwrite it (use --overwrite to replace it)", source=source,
                         key="output.path")
    if isinstance(status, bytes):
        status = status.decode()
    if status in ("running", "interrupted"):
        at = f" at iteration {iteration}" if isinstance(iteration, (int, np.integer)) else ""
        raise InputError(f"the file holds an unfinished run (status {status!r}{at}); use "
                         "--restart to continue it or --overwrite to start over",
                         source=source, key="output.path")
