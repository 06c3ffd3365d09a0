"""Laser safety: AOTF to 0 and blanking closed on every way out.

:func:`make_safe` is idempotent and tries every step even when one fails, so that
one broken device cannot keep another laser line on. :func:`lasers_guarded` wraps a
block so that it runs on normal exit, exceptions, ``KeyboardInterrupt`` and SIGTERM.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..interrupts import two_stage_interrupt
from ..log import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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

    def cancel(signum: int) -> None:
        logger.warning("signal %d: stopping the acquisition cleanly", signum)
        assert on_interrupt is not None
        on_interrupt()

    def interrupt(signum: int) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with two_stage_interrupt(cancel if on_interrupt is not None else None, interrupt):
        try:
            yield
        finally:
            make_safe(core, rig)
