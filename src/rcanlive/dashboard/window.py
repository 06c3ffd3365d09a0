"""The dashboard window: four panels over one model, redrawn by a timer.

Nothing here is called from another thread. Acquisition and restoration only write to
the :class:`~rcanlive.dashboard.model.DashboardModel`; a ``QTimer`` (20 Hz by default)
takes a snapshot and redraws only when the model's version changed, so any number of
volumes arriving between two ticks costs one redraw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy import QtCore, QtWidgets

from .panels import BleachingPanel, HealthPanel, ImagePanel, SNRPanel

if TYPE_CHECKING:
    from .model import DashboardModel, Snapshot

REFRESH_HZ = 20.0


class DashboardWindow(QtWidgets.QMainWindow):
    """Image, bleaching, SNR and pipeline-health panels for one model.

    Signals
    -------
    closing
        Emitted when the window is closed (the live session cancels the run on it).
    """

    closing = QtCore.Signal()

    def __init__(
        self,
        model: DashboardModel,
        refresh_hz: float = REFRESH_HZ,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.setWindowTitle(f"rcanlive dashboard — {model.title}" if model.title else "rcanlive")
        self.images = ImagePanel()
        self.bleaching = BleachingPanel()
        self.snr = SNRPanel()
        self.health = HealthPanel()
        self.channel = QtWidgets.QComboBox()
        self.channel.setMinimumContentsLength(16)

        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("channel"))
        top.addWidget(self.channel)
        top.addStretch(1)
        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        left.addWidget(self.images)
        left.addWidget(self.bleaching)
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.snr)
        right.addWidget(self.health)
        right.setStretchFactor(0, 3)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.setCentralWidget(central)
        self.resize(1400, 900)

        self.drawn_version = -1
        for changed in (
            self.channel.currentTextChanged,
            self.images.view_mode.currentTextChanged,
            self.images.plane.valueChanged,
            self.images.auto.toggled,
        ):
            changed.connect(self._settings_changed)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(max(1, round(1000 / refresh_hz)))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def _settings_changed(self, *_: object) -> None:
        self.refresh(force=True)

    def current_channel(self) -> str | None:
        text = self.channel.currentText()
        return text or None

    def current_plane(self) -> int | None:
        if self.images.view_mode.currentText() != "plane" or self.images.plane.value() < 0:
            return None
        return self.images.plane.value()

    def refresh(self, force: bool = False) -> bool:
        """Redraw from the model if it changed since the last redraw; True if redrawn."""
        snap = self.model.snapshot()
        if not force and snap.version == self.drawn_version:
            return False
        self._draw(snap)
        self.drawn_version = snap.version
        return True

    def _draw(self, snap: Snapshot) -> None:
        have = [self.channel.itemText(i) for i in range(self.channel.count())]
        if list(snap.channels) != have:
            current = self.channel.currentText()
            self.channel.blockSignals(True)
            self.channel.clear()
            self.channel.addItems(list(snap.channels))
            if current in snap.channels:
                self.channel.setCurrentText(current)
            self.channel.blockSignals(False)
        channel = self.current_channel()
        self.images.update_from(snap, channel)
        self.bleaching.update_from(snap)
        self.snr.update_from(snap, channel, self.current_plane())
        self.health.update_from(snap)

    def set_status(self, text: str) -> None:
        """Show a line in the status bar (run state, errors)."""
        bar = self.statusBar()
        if bar is not None:
            bar.showMessage(text)

    def closeEvent(self, event: object) -> None:
        self.timer.stop()
        self.closing.emit()
        super().closeEvent(event)  # type: ignore[arg-type]
