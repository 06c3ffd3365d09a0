"""Running the dashboard: Qt on the main thread, the work (a live run, a replay) beside it.

:func:`check_qt` fails early with a clear message when Qt cannot open a window, so a
command can refuse ``--dashboard`` before anything moves. :class:`Session` runs the
work on a worker thread and shows the window; closing the window (or Ctrl-C) calls the
work's ``cancel`` and waits for it to end cleanly. The work never waits for the GUI:
it only writes to the model, and the one cross-thread signal (``finished``) is
queued to the GUI thread by Qt.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..interrupts import two_stage_interrupt
from ..log import logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from qtpy import QtWidgets

    from .model import DashboardModel
    from .window import DashboardWindow

T = TypeVar("T")
_HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc")
_APP: Any = None


class QtUnavailable(RuntimeError):
    """Qt cannot show the dashboard here (no binding, no display)."""


def check_qt() -> None:
    """Raise :class:`QtUnavailable` unless a Qt window can be created here."""
    try:
        import pyqtgraph  # noqa: F401
        from qtpy import QtWidgets  # noqa: F401
    except Exception as exc:
        raise QtUnavailable(
            f"the dashboard needs PyQt6 and pyqtgraph ({type(exc).__name__}: {exc}); "
            "install them with: pip install 'rcanlive[dashboard]'. Without a GUI, "
            "`rcanlive report DATASET -o report.html` draws the same plots"
        ) from None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if (
        sys.platform.startswith("linux")
        and not platform
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        raise QtUnavailable(
            "no display for the dashboard (DISPLAY and WAYLAND_DISPLAY are unset); run it "
            "on the rig's desktop, or set QT_QPA_PLATFORM=offscreen, or use "
            "`rcanlive report DATASET -o report.html` afterwards"
        )


def headless() -> bool:
    """True on a Qt platform nobody can see (offscreen): windows close on their own."""
    return os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in _HEADLESS_PLATFORMS


def application() -> QtWidgets.QApplication:
    """The QApplication (created once)."""
    import pyqtgraph as pg
    from qtpy import QtWidgets

    global _APP
    app = QtWidgets.QApplication.instance()
    if app is None:
        # kept referenced: PyQt deletes an unreferenced QApplication at once
        app = _APP = QtWidgets.QApplication([sys.argv[0] if sys.argv else "rcanlive"])
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    return app  # type: ignore[return-value]


class Session(Generic[T]):
    """A dashboard window over ``model`` while ``work()`` runs on a worker thread.

    Parameters
    ----------
    model
        The model the work writes to and the window reads.
    work
        The job (e.g. ``run_plan``); its return value is :meth:`result`.
    cancel
        Asks the work to stop early and cleanly (e.g. ``core.mda.cancel``); called
        when the window is closed while the work runs, and on Ctrl-C.
    keep_open
        Keep the window open after the work ends, until the user closes it.
    """

    def __init__(
        self,
        model: DashboardModel,
        work: Callable[[], T],
        cancel: Callable[[], None],
        keep_open: bool = True,
    ) -> None:
        from qtpy import QtCore

        from .window import DashboardWindow

        class _Bridge(QtCore.QObject):
            finished = QtCore.Signal(str)

        application()
        self.work, self.cancel_work, self.keep_open = work, cancel, keep_open
        self.window: DashboardWindow = DashboardWindow(model)
        self._bridge = _Bridge()
        self._bridge.finished.connect(self._on_finished)  # queued: emitted off-thread
        self.window.closing.connect(self.cancel)
        self._result: T | None = None
        self._error: BaseException | None = None
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name="rcanlive-work", daemon=True)

    def start(self) -> None:
        """Show the window and start the work."""
        self.window.show()
        self.window.set_status("running…")
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self) -> None:
        """Stop the work early (idempotent); it still ends cleanly."""
        if self.running and not self.cancelled:
            self.cancelled = True
            logger.warning("dashboard: stopping the run (window closed or Ctrl-C)")
            self.window.set_status("stopping…")
            self.cancel_work()

    def _run(self) -> None:
        message = "finished"
        try:
            self._result = self.work()
        except BaseException as exc:
            self._error = exc
            message = f"failed: {exc}"
        self._bridge.finished.emit(message)

    def _on_finished(self, message: str) -> None:
        self.window.refresh()
        if self.keep_open and not self.cancelled:
            self.window.set_status(f"{message} — close the window to exit")
        else:
            self.window.close()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the work; its result, or its exception re-raised here."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the work did not end after it was cancelled")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def exec(self) -> T:
        """Start, run the Qt event loop until the window closes, return the result.

        Ctrl-C (and SIGTERM) cancel the work like closing the window; a second one
        closes the window at once.
        """
        from qtpy import QtCore

        app = application()

        def first(signum: int) -> None:
            if self.running:
                self.cancel()
            else:
                self.window.close()

        # Python runs signal handlers only between bytecodes: wake it regularly
        wake = QtCore.QTimer()
        wake.timeout.connect(lambda: None)
        wake.start(200)
        try:
            with two_stage_interrupt(first, lambda signum: self.window.close()):
                self.start()
                app.exec()
                if self.running:  # the window is gone: nothing watches the run any more
                    self.cancel()
                    # a cancel that came before the work got going (e.g. the MDA had not
                    # started) is lost: repeat it until the work ends
                    while self.running:
                        self._thread.join(0.2)
                        if self.running:
                            self.cancel_work()
        finally:
            wake.stop()
        return self.result()


def save_screenshot(window: QtWidgets.QWidget, path: str | Path) -> None:
    """Render ``window`` (visible or not) to a PNG."""
    if not window.grab().save(str(path)):
        raise OSError(f"could not write the screenshot {path}")


def replay_session(
    model: DashboardModel, load: Callable[[threading.Event], Any], keep_open: bool = True
) -> Session[Any]:
    """A session whose work loads a dataset into ``model`` (stopped on close)."""
    stop = threading.Event()
    return Session(model, lambda: load(stop), stop.set, keep_open=keep_open)
