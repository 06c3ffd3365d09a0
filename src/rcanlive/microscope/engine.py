"""The iSIM's MDA engine: blanking open only while frames are taken, lasers off at
the end of every sequence however it ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pymmcore_plus.mda import MDAEngine

from .safety import make_safe

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus
    from useq import MDAEvent, MDASequence

    from ..config.rig import RigConfig


class ISIMEngine(MDAEngine):
    """``MDAEngine`` that drives the blanking shutter and guarantees laser safety.

    Hardware sequencing (piezo z + AOTF values stepped by camera triggers) is used
    wherever the devices report themselves sequenceable; otherwise events run
    software-timed, one frame at a time.
    """

    def __init__(self, mmc: CMMCorePlus, rig: RigConfig, **kwargs: object) -> None:
        super().__init__(mmc, **kwargs)  # type: ignore[arg-type]
        self.rig = rig

    def setup_sequence(self, sequence: MDASequence) -> object:
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
