"""Two-stage Ctrl-C (and SIGTERM): the first asks politely, the next insists.

Used by the acquisition (the first cancels the MDA, which stops cleanly at the end of
the current event; the next raises ``KeyboardInterrupt``) and by the dashboard (the
first cancels the run, the next closes the window).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType


@contextlib.contextmanager
def two_stage_interrupt(
    first: Callable[[int], object] | None, then: Callable[[int], object]
) -> Iterator[None]:
    """While the block runs, the first SIGINT/SIGTERM calls ``first(signum)`` and every
    later one (or every one, when ``first`` is None) calls ``then(signum)``.

    Signal handlers can only be set on the main thread: elsewhere this does nothing.
    The previous handlers are restored on the way out.
    """
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        count = {"n": 0}

        def handler(signum: int, frame: object) -> None:
            count["n"] += 1
            if first is not None and count["n"] == 1:
                first(signum)
            else:
                then(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
