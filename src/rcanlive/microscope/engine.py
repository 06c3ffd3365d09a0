"""The iSIM's MDA engine: blanking open only while frames are taken, lasers off at
the end of every sequence however it ends, and no more frames in RAM than the
storage budget allows."""

from __future__ import annotations

import time
import types
from typing import TYPE_CHECKING, Any

from pymmcore_plus.mda import MDAEngine

from ..log import logger
from .safety import make_safe

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from pymmcore_plus import CMMCorePlus
    from pymmcore_plus.metadata import SummaryMetaV1
    from useq import MDAEvent, MDASequence

    from ..config.rig import RigConfig

#: stop waiting for a consumer that has not taken a frame for this long (it is stuck
#: or dead: let the camera's buffer overflow and the run fail loudly instead)
STALL_S = 10.0


class ISIMEngine(MDAEngine):
    """``MDAEngine`` that drives the blanking shutter and guarantees laser safety.

    Hardware sequencing (piezo z + AOTF values stepped by camera triggers) is used
    wherever the devices report themselves sequenceable; otherwise events run
    software-timed, one frame at a time.
    """

    def __init__(
        self,
        mmc: CMMCorePlus,
        rig: RigConfig,
        *,
        consumed: Callable[[], int] | None = None,
        max_backlog: int | None = None,
        **kwargs: object,
    ) -> None:
        """``consumed`` counts the frames taken by the consumer (the volume assembler,
        on pymmcore-plus's relay thread, whose queue has no bound); when more than
        ``max_backlog`` frames wait there, the engine stops popping frames, so that
        they wait in the camera's fixed-size sequence buffer instead, which overflows
        with a clear error rather than the process running out of memory."""
        super().__init__(mmc, **kwargs)  # type: ignore[arg-type]
        self.rig = rig
        self.consumed = consumed
        self.max_backlog = max_backlog
        self.delivered = 0
        self.throttled_s = 0.0  # time spent waiting for the consumer

    def exec_event(self, event: MDAEvent) -> Iterable[Any]:
        frames = super().exec_event(event)
        if self.consumed is None or self.max_backlog is None or frames is None:
            return frames
        return self._bounded(frames)

    def _bounded(self, frames: Iterable[Any]) -> Iterator[Any]:
        """Relay ``frames`` (and the runner's cancel/pause messages to them), waiting
        after each one while the consumer is ``max_backlog`` frames behind."""
        gen = iter(frames)
        # a generator takes the messages along; a plain iterator just gets next()
        relay = gen if isinstance(gen, types.GeneratorType) else None
        try:
            item = next(gen)
            while True:
                message = yield item
                if item is not None and not isinstance(item, int):
                    self.delivered += 1
                    if message != "cancel":
                        self._wait_for_consumer()
                item = relay.send(message) if relay is not None else next(gen)
        except StopIteration:
            return
        finally:
            if relay is not None:
                relay.close()

    def _wait_for_consumer(self) -> None:
        assert self.consumed is not None and self.max_backlog is not None
        if self.delivered - self.consumed() < self.max_backlog:
            return
        t0 = last_progress = time.perf_counter()
        seen = self.consumed()
        while self.delivered - (done := self.consumed()) >= self.max_backlog:
            now = time.perf_counter()
            if done != seen:
                seen, last_progress = done, now
            elif now - last_progress > STALL_S:
                logger.error("the volume assembler took no frame for %.0f s", STALL_S)
                break
            if self.mmcore.mda.status.cancel_requested:
                break
            time.sleep(0.002)
        self.throttled_s += time.perf_counter() - t0

    def setup_sequence(self, sequence: MDASequence) -> SummaryMetaV1 | None:
        make_safe(self.mmcore, self.rig)  # start from a known-dark state
        return super().setup_sequence(sequence)

    def setup_event(self, event: MDAEvent) -> None:
        super().setup_event(event)
        # open the blanking only once the AOTF values for this event are loaded
        self.mmcore.setShutterOpen(self.rig.shutter_device, True)

    def teardown_event(self, event: MDAEvent) -> None:
        try:
            self.mmcore.setShutterOpen(self.rig.shutter_device, False)
        finally:
            super().teardown_event(event)

    def teardown_sequence(self, sequence: MDASequence) -> None:
        try:
            make_safe(self.mmcore, self.rig)
        finally:
            super().teardown_sequence(sequence)
