"""Laser safety: AOTF to 0 and blanking closed on every way out.

:func:`make_safe` is idempotent and tries every step even when one fails, so that
one broken device cannot keep another laser line on. :func:`lasers_guarded` wraps a
block so that it runs on normal exit, exceptions, ``KeyboardInterrupt`` and SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any

from ..log import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

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
def lasers_guarded(
    core: CMMCorePlus, rig: RigConfig, on_interrupt: Callable[[], None] | None = None
) -> Iterator[None]:
    """Run a block with the guarantee that the lasers are off when it is left.

    While the block runs (main thread only), the first Ctrl-C or SIGTERM calls
    ``on_interrupt`` (e.g. cancel the MDA, which stops at the end of the current
    event and tears down cleanly); a second one, or any signal when no
    ``on_interrupt`` is given, raises ``KeyboardInterrupt`` at once.
    """
    # the handlers signal.signal returns (typeshed's _HANDLER), to restore on the way out
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        asked = {"n": 0}

        def _handler(signum: int, frame: object) -> None:
            asked["n"] += 1
            if on_interrupt is not None and asked["n"] == 1:
                logger.warning("signal %d: stopping the acquisition cleanly", signum)
                on_interrupt()
                return
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _handler)
    try:
        yield
    finally:
        try:
            make_safe(core, rig)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
