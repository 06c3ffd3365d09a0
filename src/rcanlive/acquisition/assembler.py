"""Frames → volumes, on the MDA relay thread (never on the acquisition thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..log import logger
from ..storage.volume import Volume

if TYPE_CHECKING:
    import numpy as np
    from useq import MDAEvent

VolumeCallback = Callable[[Volume], None]
VolumeMetadata = Callable[[dict[str, Any]], dict[str, Any]]
"""Camera metadata of a volume's first frame → what its log record keeps (the rig's)."""
EventKey = Callable[["MDAEvent"], tuple[int, int, int]]
"""An event → the ``(t, p, c)`` of the volume it belongs to in the dataset."""


@dataclass(slots=True)
class _Partial:
    """A volume whose planes are still arriving."""

    event: MDAEvent
    meta: dict[str, Any]
    planes: list[np.ndarray | None]
    z_um: list[float]
    filled: int = 0


class VolumeAssembler:
    """Collects the planes of each ``(t, p, c)`` and emits a :class:`Volume` when full.

    Passed as ``output=[assembler]`` to ``core.mda.run``, so ``frameReady`` runs on
    pymmcore-plus's relay thread. Planes may arrive interleaved (low/high at every
    plane): each volume is keyed and filled independently.

    ``sink`` runs first for every volume (the raw store) and its failure is fatal
    to the run: it is recorded in :attr:`errors` (and the volume in
    :attr:`failed_volume`), ``on_error`` is called at once (the runner cancels the
    acquisition there) and no later volume is stored or handed on (their keys are in
    :attr:`dropped`). ``listeners`` run after the sink and their failures are only
    logged, so a slow or broken consumer cannot lose raw data.

    ``key_of`` maps an event to its volume's ``(t, p, c)`` (default: the event's own
    ``t``, ``p`` and ``c`` indices); ``channel_names`` are indexed by that ``c``.
    """

    def __init__(
        self,
        planes: int,
        channel_names: list[str],
        sink: VolumeCallback | None = None,
        listeners: list[VolumeCallback] | None = None,
        on_frame: Callable[[int], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        volume_metadata: VolumeMetadata | None = None,
        key_of: EventKey | None = None,
    ) -> None:
        self.planes = planes
        self.channel_names = channel_names
        self.sink = sink
        self.listeners = list(listeners or [])
        self.on_frame = on_frame
        self.on_error = on_error
        self.volume_metadata = volume_metadata
        self.key_of = key_of
        self.frames = 0
        self.volumes = 0
        self.errors: list[BaseException] = []
        self.failed_volume: tuple[int, int, int] | None = None
        self.dropped: list[tuple[int, int, int]] = []
        self._partial: dict[tuple[int, int, int], _Partial] = {}
        self._lock = threading.Lock()

    def frameReady(self, img: np.ndarray, event: MDAEvent, meta: dict[str, Any]) -> None:
        """Place one frame; emit the volume when its last plane arrives."""
        idx = event.index
        if self.key_of is not None:
            key = self.key_of(event)
        else:
            key = (idx.get("t", 0), idx.get("p", 0), idx.get("c", 0))
        z = idx.get("z", 0)
        with self._lock:
            self.frames += 1
            entry = self._partial.get(key)
            if entry is None:
                entry = self._partial[key] = _Partial(
                    event, meta, [None] * self.planes, [0.0] * self.planes
                )
            # the frame itself, not a copy: MMCore hands each frame over as a new array
            entry.planes[z] = img
            entry.z_um[z] = float(event.z_pos or 0.0)
            entry.filled += 1
            done = entry.filled == self.planes
            if done:
                del self._partial[key]
        if self.on_frame is not None:
            self.on_frame(self.frames)
        if done:
            self._emit(key, entry)

    def _emit(self, key: tuple[int, int, int], entry: _Partial) -> None:
        event = entry.event
        cam = entry.meta.get("camera_metadata", {}) or {}
        extra = self.volume_metadata(cam) if self.volume_metadata is not None else {}
        runner_t = entry.meta.get("runner_time_ms")
        vol = Volume(
            planes=tuple(entry.planes),  # type: ignore[arg-type]  # (all filled by now)
            t=key[0],
            p=key[1],
            c=key[2],
            channel=self.channel_names[key[2]] if key[2] < len(self.channel_names) else str(key[2]),
            z_um=tuple(entry.z_um),
            xy_um=(float(event.x_pos or 0.0), float(event.y_pos or 0.0)),
            elapsed_s=float(runner_t) / 1e3 if runner_t is not None else 0.0,
            meta=extra,
        )
        if self.errors:  # storage failed: the run is being cancelled, store nothing more
            self.dropped.append(key)
            return
        if self.sink is not None:
            try:
                self.sink(vol)
            except BaseException as exc:
                logger.error("writing volume %s failed: %s", key, exc)
                self.errors.append(exc)
                self.failed_volume = key
                if self.on_error is not None:
                    try:
                        self.on_error(exc)
                    except Exception:
                        logger.exception("on_error callback failed after %s", key)
                return
        self.volumes += 1
        for listener in self.listeners:
            try:
                listener(vol)
            except Exception:
                logger.exception("volume listener %r failed on %s", listener, key)

    @property
    def incomplete(self) -> list[tuple[int, int, int]]:
        """Volumes that received some but not all of their planes."""
        return sorted(self._partial)
