"""Restore volumes while the acquisition runs, without ever slowing it down.

:class:`LiveRestorer.submit` never blocks: volumes go into a bounded queue served by
one worker thread. When restoration falls behind, the skip policy decides which
volume gives way, and the skipped ones are reported (the raw data is already on
disk, so they can be restored afterwards). If the backend fails, the worker reports
the error once and every later volume is reported as skipped; acquisition carries on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..log import logger
from .tiling import predict_volume

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np

    from .backends import Backend

SkipPolicy = Literal["latest", "fifo"]


class VolumeLike(Protocol):
    """What the restorer needs of a volume: its data and a key naming it."""

    @property
    def data(self) -> np.ndarray: ...

    @property
    def key(self) -> tuple[int, ...]: ...


@dataclass(frozen=True, slots=True)
class Restored:
    """One restored volume and how it was made."""

    key: tuple[int, ...]
    data: np.ndarray
    latency_s: float  # from submit() to the restored array
    compute_s: float  # time in the backend
    backend: str
    precision: str


@dataclass
class LiveStats:
    """Counts kept by the restorer (read them after :meth:`LiveRestorer.close`)."""

    submitted: int = 0
    restored: list[tuple[int, ...]] = field(default_factory=list)
    skipped: list[tuple[tuple[int, ...], str]] = field(default_factory=list)
    error: str | None = None
    max_queue_depth: int = 0


class LiveRestorer:
    """Bounded queue + worker thread restoring volumes with one backend.

    Parameters
    ----------
    backend
        The inference backend (built before acquisition starts).
    policy
        ``"latest"``: when the queue is full the *oldest* waiting volume is skipped,
        so the restorer keeps up with the newest data; ``"fifo"``: the *new* volume
        is skipped, so restored volumes stay contiguous from the start.
    max_queue
        Volumes allowed to wait (≥ 1).
    on_restored, on_skipped
        Called from the worker thread (``on_skipped`` also from :meth:`submit`);
        their exceptions are logged, never raised into acquisition.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        policy: SkipPolicy = "latest",
        max_queue: int = 1,
        tile_shape: Sequence[int] | None = None,
        overlap: int | Sequence[int] | None = None,
        on_restored: Callable[[VolumeLike, Restored], None] | None = None,
        on_skipped: Callable[[VolumeLike, str], None] | None = None,
    ) -> None:
        if policy not in ("latest", "fifo"):
            raise ValueError(f"policy must be 'latest' or 'fifo', got {policy!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be ≥ 1, got {max_queue}")
        self.backend = backend
        self.policy = policy
        self.max_queue = max_queue
        self.tile_shape = tile_shape
        self.overlap = overlap
        self.on_restored = on_restored
        self.on_skipped = on_skipped
        self.stats = LiveStats()
        self._queue: deque[tuple[VolumeLike, float]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self._worker = threading.Thread(target=self._run, name="rcanlive-restorer", daemon=True)
        self._worker.start()

    # -- producer side (acquisition relay thread) ------------------------------
    def submit(self, volume: VolumeLike) -> None:
        """Queue ``volume`` for restoration; returns at once."""
        skipped: tuple[VolumeLike, str] | None = None
        with self._cond:
            self.stats.submitted += 1
            if self.stats.error is not None:
                skipped = (volume, f"backend failed earlier: {self.stats.error}")
            elif self._closing:
                skipped = (volume, "restorer closed")
            elif len(self._queue) >= self.max_queue:
                if self.policy == "latest":
                    old, _ = self._queue.popleft()
                    self._queue.append((volume, time.perf_counter()))
                    skipped = (old, "restoration fell behind (policy latest)")
                else:
                    skipped = (volume, "restoration fell behind (policy fifo)")
            else:
                self._queue.append((volume, time.perf_counter()))
            self.stats.max_queue_depth = max(self.stats.max_queue_depth, len(self._queue))
            self._cond.notify()
        if skipped is not None:
            self._skip(*skipped)

    __call__ = submit  # usable directly as a volume listener

    @property
    def queue_depth(self) -> int:
        """Volumes waiting (not counting the one being restored)."""
        return len(self._queue)

    def close(self, timeout: float | None = None) -> LiveStats:
        """Restore what is queued, stop the worker and return the stats."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join(timeout)
        if self._worker.is_alive():
            logger.warning("live restorer still busy after %s s; leaving it", timeout)
        return self.stats

    # -- worker ----------------------------------------------------------------
    def _skip(self, volume: VolumeLike, reason: str) -> None:
        with self._cond:
            self.stats.skipped.append((volume.key, reason))
        logger.info("volume %s not restored live: %s", volume.key, reason)
        self._notify(self.on_skipped, volume, reason)

    def _notify(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("live restorer callback %r failed", callback)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                volume, t_submit = self._queue.popleft()
            if self.stats.error is not None:
                self._skip(volume, f"backend failed earlier: {self.stats.error}")
                continue
            t0 = time.perf_counter()
            try:
                out = predict_volume(
                    volume.data, self.backend, tile_shape=self.tile_shape, overlap=self.overlap
                )
            except Exception as exc:
                with self._cond:
                    self.stats.error = f"{type(exc).__name__}: {exc}"
                logger.error("live restoration failed on %s: %s", volume.key, self.stats.error)
                self._skip(volume, f"backend failed: {self.stats.error}")
                continue
            t1 = time.perf_counter()
            result = Restored(
                key=volume.key,
                data=out,
                latency_s=t1 - t_submit,
                compute_s=t1 - t0,
                backend=self.backend.name,
                precision=str(self.backend.precision),
            )
            with self._cond:
                self.stats.restored.append(volume.key)
            self._notify(self.on_restored, volume, result)
