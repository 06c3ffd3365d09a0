"""Live restoration of a dataset being acquired, by worker processes.

:class:`LiveRestoration` is what an acquisition wires in: :meth:`start` opens the
workers (and their backends) before anything moves, :meth:`attach` is the
``writer_hook`` of :func:`rcanlive.acquisition.run_plan` (the dataset exists),
:meth:`submit` is a volume listener (the raw volume is on disk), and :meth:`finish`
drains the queue and records the summary in the dataset. Volumes not restored live
are recorded in ``restored.jsonl`` with the reason, so that
``rcanlive restore DATASET --only-missing`` finds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..log import logger
from .events import RestorationEvent, RestorationStatus, VolumeRef
from .pool import PoolSummary, RestorationPool
from .recipe import BackendRecipe
from .worker import WorkerSpec

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ..config.experiment import Restoration
    from ..storage import DatasetWriter, RestoredWriter
    from ..storage.lock import DatasetLock
    from ..storage.volume import Volume
    from .backends import Backend
    from .events import Ready


def worker_specs(
    open_backend: BackendRecipe | Callable[[], Backend], settings: Restoration
) -> list[WorkerSpec]:
    """One worker per entry of ``settings.devices``, threads shared out among the CPU ones.

    ``"auto"`` (the first GPU if there is one, else the CPU) is resolved in the worker,
    so this process never imports torch. A plain callable (not a recipe) is used as is
    for every worker.
    """
    devices = list(settings.devices)
    on_cpu = sum(1 for d in devices if d in ("cpu", "auto")) or 1
    cores = os.cpu_count() or 1
    specs = []
    for i, device in enumerate(devices):
        threads = settings.threads or (max(1, cores // on_cpu) if device in ("cpu", "auto") else 2)
        opener = (
            open_backend.replace(device=device)
            if isinstance(open_backend, BackendRecipe)
            else open_backend
        )
        specs.append(
            WorkerSpec(
                opener,
                name=f"{device}#{i}",
                threads=threads,
                nice=settings.nice,
                tile_shape=settings.tile,
            )
        )
    return specs


@dataclass
class LiveRestoration:
    """Restores every volume of a run in worker processes, never blocking the run.

    Parameters
    ----------
    open_backend
        A :class:`~rcanlive.inference.recipe.BackendRecipe` (or any picklable callable
        returning a backend) that each worker calls.
    settings
        The config's ``[restoration]`` table (policy, queue, devices, threads, restarts).
    listeners
        Called with each :class:`~rcanlive.inference.events.RestorationEvent`.
    """

    open_backend: BackendRecipe | Callable[[], Backend]
    settings: Restoration
    listeners: list[Callable[[RestorationEvent], None]] = field(default_factory=list)
    pool: RestorationPool | None = None
    dataset: Path | None = None
    writer: RestoredWriter | None = None
    workers: list[Ready] = field(default_factory=list)
    _lock: DatasetLock | None = None

    def start(self, timeout: float | None = None) -> list[Ready]:
        """Start the workers; returns what each opened. Raises
        :class:`~rcanlive.inference.pool.WorkerDied` if none could."""
        self.pool = RestorationPool(
            worker_specs(self.open_backend, self.settings),
            policy=self.settings.policy,
            max_queue=self.settings.max_queue,
            restarts=self.settings.restarts,
            listeners=[self._record, self._broadcast],
        )
        self.workers = self.pool.start(timeout)
        return self.workers

    def _broadcast(self, event: RestorationEvent) -> None:
        for listener in self.listeners:  # (listeners may be added after start)
            try:
                listener(event)
            except Exception:
                logger.exception("restoration listener %r failed", listener)

    def attach(self, dataset: DatasetWriter) -> None:
        """``writer_hook``: the raw dataset exists; create its restored image."""
        from ..storage import RestoredWriter

        self.dataset = dataset.path
        self.writer = RestoredWriter(dataset.path)  # creates the arrays the workers fill
        # the dataset stays locked until the last restored volume is in (after the run)
        self._lock = dataset.detach_lock()

    def submit(self, volume: Volume) -> None:
        """Volume listener: hand the stored volume's key to a worker (never blocks)."""
        if self.pool is None or self.dataset is None:
            raise RuntimeError("LiveRestoration.submit before start() and attach()")
        ref = VolumeRef(volume.t, volume.p, volume.c, volume.channel, volume.elapsed_s)
        self.pool.submit(self.dataset, ref)

    __call__ = submit

    @property
    def queue_depth(self) -> int:
        return self.pool.queue_depth if self.pool is not None else 0

    def _record(self, event: RestorationEvent) -> None:
        if event.status is not RestorationStatus.RESTORED and self.writer is not None:
            self.writer.skip(event.volume.key, event.reason or "", status=str(event.status))

    def finish(self, timeout: float | None = None) -> dict[str, Any]:
        """Drain the queue, stop the workers, record the summary in the dataset."""
        from ..storage import annotate

        summary = self.pool.close(timeout) if self.pool is not None else PoolSummary()
        record = describe(summary)
        if self.writer is not None:
            self.writer.close()
        if self.dataset is not None:
            try:
                annotate(self.dataset, restoration=record)
            except Exception:  # the raw data matters more than this summary
                logger.exception("could not record the restoration summary in %s", self.dataset)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return record


def describe(summary: PoolSummary) -> dict[str, Any]:
    """The pool's summary as the JSON stored in the dataset's ``restoration`` attribute."""
    first = summary.workers[0] if summary.workers else None
    return {
        "backend": first.backend if first else None,
        "precision": first.precision if first else None,
        "devices": [w.device for w in summary.workers],
        "submitted": summary.submitted,
        "restored": len(summary.restored),
        "skipped": [{"key": list(k), "reason": r} for k, r in summary.not_restored],
        "failed": len(summary.failed),
        "error": summary.error,
        "restarts": summary.restarts,
        "max_queue_depth": summary.max_queue_depth,
        "auto_choice": list(first.choice) if first else [],
    }
