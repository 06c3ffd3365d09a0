"""What can go wrong with a dataset: errors that explain themselves, and a warning.

:class:`DatasetError` is the base of the errors a user can act on (a command line
prints the message without a traceback); :class:`IntegrityWarning` reports damage
found while reading (a missing chunk, a checksum mismatch, a truncated log): the
damaged volume is left out and the reading goes on.
"""

from __future__ import annotations

from pathlib import Path


class DatasetError(RuntimeError):
    """A dataset cannot be written or read as asked; the message says what to do."""


class DatasetExists(DatasetError, FileExistsError):
    """A dataset (or a file) already exists at the path and ``overwrite`` was not given."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(
            f"{self.path} already exists; replace it (overwrite) or write to another path"
        )

    def __reduce__(self) -> tuple[type, tuple[Path]]:  # picklable (Dask workers)
        return (type(self), (self.path,))


class DatasetLocked(DatasetError):
    """Another process (or another writer in this one) is writing the dataset.

    Attributes
    ----------
    path
        The dataset.
    pid
        The process holding the lock (``None`` if it could not be read).
    owner
        What that process is, e.g. ``"rcanlive acquire live"``.
    """

    def __init__(self, path: str | Path, pid: int | None, owner: str = "") -> None:
        self.path = Path(path)
        self.pid = pid
        self.owner = owner or "rcanlive"
        who = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"{self.path} is being written by {who} ({self.owner}); wait for it to finish "
            "or write to another path"
        )

    def __reduce__(self) -> tuple[type, tuple[Path, int | None, str]]:
        return (type(self), (self.path, self.pid, self.owner))


class DamagedVolume(DatasetError, KeyError):
    """A volume listed as complete is damaged on disk (a chunk missing or altered).

    A ``KeyError`` (the volume cannot be served), with the details as attributes.

    Attributes
    ----------
    path
        The dataset.
    key
        ``(t, p, c)`` of the volume.
    image
        ``"raw"`` or ``"restored"``.
    chunks
        The damaged chunks, as paths relative to the dataset.
    reason
        ``"missing"`` (chunks absent), ``"checksum"`` (contents differ from what was
        written) or ``"unreadable"`` (a chunk that cannot be decoded).
    """

    def __init__(
        self,
        path: str | Path,
        key: tuple[int, int, int],
        image: str,
        chunks: list[str],
        reason: str,
    ) -> None:
        self.path = Path(path)
        self.key = key
        self.image = image
        self.chunks = list(chunks)
        self.reason = reason
        t, p, c = key
        shown = ", ".join(self.chunks[:3]) + (", ..." if len(self.chunks) > 3 else "")
        many = len(self.chunks) > 1
        verbs = {
            "missing": ("is missing", "are missing"),
            "checksum": ("does not match its checksum", "do not match their checksums"),
            "unreadable": ("cannot be decoded", "cannot be decoded"),
        }[reason]
        text = f"chunks {shown} {verbs[1]}" if many else f"chunk {shown} {verbs[0]}"
        self.message = (
            f"{image} volume t={t} p={p} c={c} of {self.path} is damaged: {text}; it is left "
            "out (run `rcanlive check` on the dataset for a full report)"
        )
        super().__init__(self.message)

    def __reduce__(self) -> tuple[type, tuple[Path, tuple[int, int, int], str, list[str], str]]:
        return (type(self), (self.path, self.key, self.image, self.chunks, self.reason))

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class IntegrityWarning(UserWarning):
    """Damage found while reading a dataset; the damaged part is left out."""
