"""What the restoration workers and the acquisition side tell each other.

Everything here is a small frozen dataclass that pickles cheaply: a message never
carries a volume, only the key of one already on disk (or the reason it was not
restored). Torch-free, so the acquisition process can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path  # noqa: TC003 - a field type, resolved by dataclasses at run time

from ..storage.layout import VolumeKey


class RestorationStatus(StrEnum):
    """What became of a volume sent for restoration."""

    RESTORED = "restored"
    SKIPPED = "skipped"  # never reached a worker: the queue was full, or no worker was left
    FAILED = "failed"  # a worker tried and failed (backend error, crash)


@dataclass(frozen=True, slots=True)
class VolumeRef:
    """The fields of a volume the restoration side needs; its data stays on disk."""

    t: int
    p: int
    c: int
    channel: str = ""
    elapsed_s: float = 0.0

    @property
    def key(self) -> VolumeKey:
        return VolumeKey(self.t, self.p, self.c)


@dataclass(frozen=True, slots=True)
class RestorationEvent:
    """One volume's outcome, sent to listeners (progress bar, dashboard) in order.

    Attributes
    ----------
    status
        Restored, skipped or failed.
    volume
        The volume it is about.
    dataset
        The dataset holding its raw (and, if restored, its restored) data.
    latency_s
        Time from the volume's hand-over to its restored volume on disk.
    compute_s
        Time spent reading, restoring and writing it in the worker.
    queue_depth
        Volumes waiting for a worker after this event.
    reason
        Why it was skipped or failed.
    worker
        Which worker (``"cpu#0 pid 1234"``) handled it.
    """

    status: RestorationStatus
    volume: VolumeRef
    dataset: Path
    latency_s: float | None = None
    compute_s: float | None = None
    queue_depth: int = 0
    reason: str | None = None
    worker: str | None = None


# -- messages on the pipe between the pool and one worker ------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    """Pool → worker: restore this stored volume. ``None`` on the pipe means stop."""

    dataset: Path
    volume: VolumeRef
    submitted: float  # time.monotonic() at hand-over (one clock for all processes)


@dataclass(frozen=True, slots=True)
class Ready:
    """Worker → pool: the backend is open; what it is and how ``auto`` chose it."""

    pid: int
    backend: str
    precision: str
    device: str
    tile_shape: tuple[int, int, int] | None
    threads: int
    choice: tuple[dict[str, object], ...] = ()  # auto's timing table, if it ran


@dataclass(frozen=True, slots=True)
class Done:
    """Worker → pool: the restored volume and its record are on disk."""

    volume: VolumeRef
    latency_s: float
    compute_s: float


@dataclass(frozen=True, slots=True)
class Failed:
    """Worker → pool: a volume (or, with ``volume=None``, the start-up) failed.

    Unless the volume's own data was at fault (``fatal=False``: a damaged raw volume),
    the worker exits after sending it: a backend that failed once (a CUDA error, say)
    is not trusted with the next volume; the pool restarts a fresh process.
    """

    volume: VolumeRef | None
    error: str
    fatal: bool = True  # False: the volume's data was at fault; the worker carries on
