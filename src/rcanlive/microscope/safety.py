"""Laser safety: AOTF to 0 and blanking closed on every way out.

:func:`make_safe` is idempotent and tries every step even when one fails, so that
one broken device cannot keep another laser line on. :func:`lasers_guarded` wraps a
block so that it runs on normal exit, exceptions, ``KeyboardInterrupt`` and SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING

from ..log import logger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pymmcore_plus import CMMCorePlus

    from ..config.rig import RigConfig


class LaserSafetyError(RuntimeError):
    """The lasers could not be confirmed off: check the hardware by hand."""


def make_safe(core: CMMCorePlus, rig: RigConfig) -> None:
    """Set every AOTF line to 0 and close the blanking shutter; verify both.

    Raises :class:`LaserSafetyError` if any step failed or could not be confirmed.
    """
    failures: list[str] = []
    for line in rig.lasers:
        try:
            if core.isPropertySequenceable(line.device, line.property):
                with contextlib.suppress(Exception):
                    core.stopPropertySequence(line.device, line.property)
            core.setProperty(line.device, line.property, 0)
            if float(core.getProperty(line.device, line.property)) != 0.0:
                failures.append(f"{line.device}.{line.property} did not read back 0")
        except Exception as exc:
            failures.append(f"{line.device}.{line.property}: {exc}")
    try:
        core.setShutterOpen(rig.shutter_device, False)
        if core.getShutterOpen(rig.shutter_device):
            failures.append(f"{rig.shutter_device} still reads open")
    except Exception as exc:
        failures.append(f"{rig.shutter_device}: {exc}")
    if failures:
        msg = "could not confirm the lasers are off: " + "; ".join(failures)
        logger.critical(msg)
        raise LaserSafetyError(msg)
    logger.debug("lasers safe: AOTF 0, %s closed", rig.shutter_device)


@contextlib.contextmanager
def lasers_guarded(core: CMMCorePlus, rig: RigConfig) -> Iterator[None]:
    """Run a block with the guarantee that the lasers are off when it is left.

    SIGTERM is turned into ``KeyboardInterrupt`` while the block runs (main thread
    only), so ``kill`` gets the same clean exit as Ctrl-C.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():

        def _term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        previous = signal.signal(signal.SIGTERM, _term)
    try:
        yield
    finally:
        try:
            make_safe(core, rig)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
