"""An operating-system lock on a dataset while a process writes it.

The lock is ``fcntl.flock`` on ``DATASET/.rcanlive.lock``, a small text file holding
the writer's PID and what it is (``rcanlive acquire live``). The kernel releases a
flock when its file is closed, so a writer killed in any way (even ``kill -9``)
leaves no stale lock behind; the PID in the file only explains who holds it.

The lock file is never deleted: unlinking it while another process waits on the
same name would let two processes hold "the" lock on two different files. It is
emptied when released. flock is advisory and local to one machine (on NFS it may
not be shared between hosts).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatasetExists, DatasetLocked

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

LOCK_NAME = ".rcanlive.lock"


def describe_process() -> str:
    """What this process is, for the lock file: ``rcanlive acquire live`` or similar."""
    argv = sys.argv
    first = Path(argv[0]) if argv and argv[0] and not argv[0].startswith("-") else Path("python")
    program = first.parent.name if first.name == "__main__.py" else first.name  # python -m X
    words: list[str] = []
    for arg in argv[1:]:
        if arg.startswith("-") or len(words) == 2:
            break
        words.append(Path(arg).name)
    if program == "rcanlive":
        return " ".join(["rcanlive", *words])
    return f"rcanlive in {' '.join([program, *words])}"


def _read_holder(lock_path: Path) -> tuple[int | None, str]:
    """PID and description written in a lock file (the holder writes them just after
    taking the lock, so an empty file is read again briefly)."""
    text = ""
    for _ in range(20):
        try:
            text = lock_path.read_text(encoding="utf-8")
        except OSError:
            text = ""
        if text.strip():
            break
        time.sleep(0.005)
    lines = text.splitlines()
    pid: int | None = None
    if lines:
        with contextlib.suppress(ValueError):
            pid = int(lines[0].strip())
    return pid, lines[1].strip() if len(lines) > 1 else ""


class DatasetLock:
    """An exclusive, non-blocking lock on a dataset directory.

    Parameters
    ----------
    path
        The dataset directory; created (with parents) if it does not exist.
    owner
        What holds the lock, shown to a refused process (default: this process's
        command, e.g. ``rcanlive acquire live``).

    Examples
    --------
    >>> lock = DatasetLock("data/run.ome.zarr").acquire()  # doctest: +SKIP
    >>> ...  # write
    >>> lock.release()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, owner: str | None = None) -> None:
        self.path = Path(path)
        self.owner = owner or describe_process()
        self._fd: int | None = None

    @property
    def lock_path(self) -> Path:
        """The lock file, ``DATASET/.rcanlive.lock``."""
        return self.path / LOCK_NAME

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> DatasetLock:
        """Take the lock, or raise :class:`DatasetLocked` at once if it is held.

        Raises
        ------
        DatasetLocked
            Another process, or another :class:`DatasetLock` in this process, holds it.
        DatasetExists
            ``path`` exists and is not a directory.
        """
        if self._fd is not None:
            return self
        if self.path.exists() and not self.path.is_dir():
            raise DatasetExists(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        for attempt in range(3):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                pid, owner = _read_holder(self.lock_path)
                # no PID written: a moment's holder (``locked_by`` testing it), try again
                if pid is not None or attempt == 2:
                    os.close(fd)
                    raise DatasetLocked(self.path, pid, owner) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{self.owner}\n".encode(), 0)
        except OSError:  # a full disk must not stop the lock from working
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (idempotent); the lock file is emptied, not deleted."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing releases the flock

    def __enter__(self) -> DatasetLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:  # an abandoned lock is released, like its file would be
        with contextlib.suppress(Exception):
            self.release()


@contextlib.contextmanager
def lock_dataset(path: str | Path, owner: str | None = None) -> Iterator[DatasetLock]:
    """Hold the lock on the dataset at ``path`` for the ``with`` block.

    Parameters
    ----------
    path
        The dataset directory.
    owner
        What holds the lock (shown to a refused process), e.g. ``"rcanlive restore"``.

    Raises
    ------
    DatasetLocked
        If another process (or writer) holds it.

    Examples
    --------
    >>> with lock_dataset("data/live-4d.ome.zarr", "rcanlive restore"):  # doctest: +SKIP
    ...     restore_in_place()
    """
    lock = DatasetLock(path, owner).acquire()
    try:
        yield lock
    finally:
        lock.release()


def locked_by(path: str | Path) -> tuple[int | None, str] | None:
    """``(pid, owner)`` of the process writing the dataset at ``path``, or ``None`` if
    nobody holds its lock. Does not create anything."""
    lock_path = Path(path) / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _read_holder(lock_path)
            raise
        return None
    finally:
        os.close(fd)  # also releases the shared lock taken to test
