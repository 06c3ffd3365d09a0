"""Glue between a live acquisition and the live restorer: backend, writer, callbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..log import logger

if TYPE_CHECKING:
    from pathlib import Path

    from ..config.experiment import Restoration
    from ..inference import Backend, LiveRestorer, Restored
    from ..storage import DatasetWriter, RestoredWriter
    from ..storage.volume import Volume


@dataclass
class LiveRestoration:
    """Wires a :class:`~rcanlive.inference.LiveRestorer` to a dataset being acquired.

    ``attach`` is the ``writer_hook`` of :func:`rcanlive.acquisition.run_plan` (it
    runs once the raw dataset exists); ``submit`` is a volume listener (it runs
    after the raw volume is written). Events go to ``listeners`` as
    ``("restored", volume, info)`` or ``("skipped", volume, reason)``; ``info`` holds
    the stored record's fields (latency, backend, ...) plus ``data`` (the restored
    volume) and ``queue_depth`` (volumes waiting behind it).
    """

    backend: Backend
    settings: Restoration
    listeners: list[Any] = field(default_factory=list)
    restorer: LiveRestorer | None = None
    writer: RestoredWriter | None = None

    def attach(self, dataset: DatasetWriter) -> None:
        from ..inference import LiveRestorer
        from ..storage import RestoredWriter

        self.writer = RestoredWriter(dataset.path)
        self.restorer = LiveRestorer(
            self.backend,
            policy=self.settings.policy,
            max_queue=self.settings.max_queue,
            tile_shape=self.settings.tile,
            on_restored=self._restored,
            on_skipped=self._skipped,
        )

    def submit(self, volume: Volume) -> None:
        if self.restorer is not None:
            self.restorer.submit(volume)

    def _restored(self, volume: Volume, result: Restored) -> None:
        assert self.writer is not None
        info = {
            "latency_s": round(result.latency_s, 4),
            "compute_s": round(result.compute_s, 4),
            "backend": result.backend,
            "precision": result.precision,
            "raw_mean": float(volume.data.mean()),
        }
        self.writer.write(volume.key, result.data, **info)
        # listeners (dashboard) also get the restored volume and the queue behind it
        event = {**info, "data": result.data, "queue_depth": self._queue_depth()}
        for listener in self.listeners:
            listener("restored", volume, event)

    def _skipped(self, volume: Volume, reason: str) -> None:
        assert self.writer is not None
        self.writer.skip(volume.key, reason)
        for listener in self.listeners:
            listener("skipped", volume, reason)

    def _queue_depth(self) -> int:
        return self.restorer.queue_depth if self.restorer is not None else 0

    def finish(self, dataset: Path) -> dict[str, Any]:
        """Drain the queue, close everything, record the summary in the dataset."""
        from ..storage import annotate

        summary: dict[str, Any] = {
            "backend": self.backend.name,
            "precision": str(self.backend.precision),
        }
        if self.restorer is not None:
            stats = self.restorer.close()
            summary.update(
                restored=len(stats.restored),
                skipped=[{"key": list(k), "reason": r} for k, r in stats.skipped],
                error=stats.error,
                max_queue_depth=stats.max_queue_depth,
            )
        if self.writer is not None:
            self.writer.close()
        self.backend.close()
        try:
            annotate(dataset, restoration=summary)
        except Exception:  # the raw data matters more than this summary
            logger.exception("could not record the restoration summary in %s", dataset)
        return summary
