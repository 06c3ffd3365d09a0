"""The dashboard's panels: thin pyqtgraph views, each redrawn from a model snapshot.

Panels hold no state of the experiment: :meth:`update` receives a
:class:`~rcanlive.dashboard.model.Snapshot` and draws it. They run on the GUI
thread only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtWidgets

from .colors import FIT_COLOR, P10_COLOR, THRESHOLD_COLOR, curve_color
from .model import RAW, RESTORED

if TYPE_CHECKING:
    from .model import LatestImage, Series, Snapshot

#: Contrast: percentiles of the raw image mapped to black and white.
AUTO_LEVELS_PERCENTILES = (0.5, 99.8)


def _pen(color: tuple[int, int, int], width: float = 2.0, dash: bool = False) -> pg.QtGui.QPen:
    style = QtCore.Qt.PenStyle.DashLine if dash else QtCore.Qt.PenStyle.SolidLine
    return pg.mkPen(color=color, width=width, style=style)


def auto_levels(image: np.ndarray) -> tuple[float, float]:
    """Display range of an image from its percentiles (never empty)."""
    finite = np.asarray(image, np.float32)
    lo, hi = np.percentile(finite, AUTO_LEVELS_PERCENTILES)
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


class _Curves:
    """Named curves of one plot, created on first use."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        self.items: dict[str, pg.PlotDataItem] = {}

    def set(self, name: str, x: np.ndarray, y: np.ndarray, pen: pg.QtGui.QPen) -> None:
        item = self.items.get(name)
        if item is None:
            item = self.items[name] = self.plot.plot(pen=pen, name=name)
        keep = np.isfinite(y)
        item.setData(np.asarray(x, np.float64)[keep], np.asarray(y, np.float64)[keep])


class ImagePanel(QtWidgets.QWidget):
    """Raw beside restored: the current plane or the max projection, linked contrast."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.view_mode = QtWidgets.QComboBox()
        self.view_mode.addItems(["max projection", "plane"])
        self.plane = QtWidgets.QSpinBox()
        self.plane.setRange(-1, 9999)
        self.plane.setSpecialValueText("middle")
        self.plane.setValue(-1)
        self.auto = QtWidgets.QCheckBox("auto levels")
        self.auto.setChecked(True)
        controls = QtWidgets.QHBoxLayout()
        for label, w in (("view", self.view_mode), ("plane", self.plane)):
            controls.addWidget(QtWidgets.QLabel(label))
            controls.addWidget(w)
        controls.addWidget(self.auto)
        controls.addStretch(1)

        self.graphics = pg.GraphicsLayoutWidget()
        self.raw = pg.ImageItem(axisOrder="row-major")
        self.restored = pg.ImageItem(axisOrder="row-major")
        self.titles: dict[str, pg.LabelItem] = {}
        for col, (name, item) in enumerate(((RAW, self.raw), (RESTORED, self.restored))):
            self.titles[name] = self.graphics.addLabel(name, row=0, col=col)
            vb = self.graphics.addViewBox(row=1, col=col, lockAspect=True, invertY=True)
            vb.addItem(item)
            vb.setMouseEnabled(False, False)
        # one histogram sets the levels of both images: same contrast, comparable
        self.histogram = pg.HistogramLUTItem(image=self.raw)
        self.graphics.addItem(self.histogram, row=1, col=2)
        self.histogram.sigLevelsChanged.connect(self._link_levels)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.graphics, 1)

    def _link_levels(self) -> None:
        self.restored.setLevels(self.histogram.getLevels())

    def _pick(self, latest: LatestImage | None) -> np.ndarray | None:
        if latest is None:
            return None
        if self.view_mode.currentText() == "plane":
            index = self.plane.value()
            return latest.plane(None if index < 0 else index)
        return latest.mip

    def update_from(self, snap: Snapshot, channel: str | None) -> None:
        if channel is None:
            return
        raw = self._pick(snap.images.get((channel, RAW)))
        restored = self._pick(snap.images.get((channel, RESTORED)))
        if raw is None:
            return
        levels = auto_levels(raw) if self.auto.isChecked() else self.histogram.getLevels()
        self.raw.setImage(raw, autoLevels=False, levels=levels)
        if restored is not None:
            self.restored.setImage(restored, autoLevels=False, levels=levels)
        self.histogram.setLevels(*levels)
        for name in (RAW, RESTORED):
            latest = snap.images.get((channel, name))
            text = f"{name} — volume {latest.t}" if latest is not None else f"{name} — none yet"
            self.titles[name].setText(text)


class BleachingPanel(pg.GraphicsLayoutWidget):
    """Normalised background-corrected signal vs time and volume, with exponential fits."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.by_time = self.addPlot(row=0, col=0, title="bleaching: signal / first volume")
        self.by_time.setLabel("bottom", "time", units="s")
        self.by_volume = self.addPlot(row=0, col=1, title="bleaching vs volume number")
        self.by_volume.setLabel("bottom", "volume")
        for plot in (self.by_time, self.by_volume):
            plot.setLabel("left", "normalised signal")
            plot.showGrid(x=True, y=True, alpha=0.3)
        self.by_volume.addLegend(offset=(-10, 10))
        self.fit_label = pg.LabelItem(justify="left")
        self.addItem(self.fit_label, row=1, col=0, colspan=2)
        self._time = _Curves(self.by_time)
        self._volume = _Curves(self.by_volume)

    def update_from(self, snap: Snapshot) -> None:
        lines = []
        for (channel, image), series in sorted(snap.series.items()):
            index = snap.channels.index(channel) if channel in snap.channels else 0
            pen = _pen(curve_color(image, index))
            name = f"{channel} {image}"
            self._time.set(name, series.elapsed_s, series.normalised, pen)
            self._volume.set(name, series.t.astype(np.float64), series.normalised, pen)
            fit = series.fit
            if fit is not None:
                x = np.linspace(float(series.t[0]), float(series.t[-1]), 100)
                fit_pen = _pen(FIT_COLOR, 1.5, dash=True)
                xs = np.interp(x, series.t, series.elapsed_s)
                self._time.set(f"{name} fit", xs, fit.curve(x), fit_pen)
                self._volume.set(f"{name} fit", x, fit.curve(x), fit_pen)
                lines.append(f"{name}: {fit.label()}")
        self.fit_label.setText("<br>".join(lines) or "fit: needs three volumes")


class SNRPanel(QtWidgets.QWidget):
    """Input SNR per volume (foreground median and 10th percentile), map, warning."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.warning = QtWidgets.QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(
            "QLabel { background: #c00000; color: white; font-weight: bold; padding: 6px; }"
        )
        self.warning.hide()
        self.graphics = pg.GraphicsLayoutWidget()
        self.plot = self.graphics.addPlot(row=0, col=0, title="input SNR = S/√(S + Nr²)")
        self.plot.setLabel("bottom", "volume")
        self.plot.setLabel("left", "SNR")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.addLegend(offset=(-10, 10))
        self.threshold = pg.InfiniteLine(angle=0, pen=_pen(THRESHOLD_COLOR, 1.5, dash=True))
        self.plot.addItem(self.threshold)
        self._curves = _Curves(self.plot)
        self._add_illumination_plot()
        self.map_title = self.graphics.addLabel("SNR map", row=2, col=0)
        vb = self.graphics.addViewBox(row=3, col=0, lockAspect=True, invertY=True)
        vb.setMouseEnabled(False, False)
        self.map = pg.ImageItem(axisOrder="row-major")
        self.map.setColorMap(pg.colormap.get("viridis"))
        vb.addItem(self.map)
        self.map_bar = pg.ColorBarItem(
            values=(0, 10), colorMap=pg.colormap.get("viridis"), interactive=False
        )
        self.map_bar.setImageItem(self.map, insert_in=None)
        self.graphics.addItem(self.map_bar, row=3, col=1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.warning)
        layout.addWidget(self.graphics, 1)

    def _add_illumination_plot(self) -> None:
        """Power per volume (left axis) and cumulative dose (right axis, own view box)."""
        self.light = self.graphics.addPlot(row=1, col=0, title="illumination")
        self.light.setLabel("bottom", "volume")
        self.light.setLabel("left", "power at the objective (mW)")
        self.light.setLabel("right", "cumulative dose (J/cm²), dashed")
        self.light.showGrid(x=True, y=True, alpha=0.3)
        self.dose_view = pg.ViewBox()
        self.light.scene().addItem(self.dose_view)
        self.light.getAxis("right").linkToView(self.dose_view)
        self.dose_view.setXLink(self.light)
        self.light.vb.sigResized.connect(
            lambda: self.dose_view.setGeometry(self.light.vb.sceneBoundingRect())
        )
        self._power = _Curves(self.light)
        self._dose: dict[str, pg.PlotDataItem] = {}

    def _update_illumination(self, ch: str, index: int, series: Series) -> None:
        keep = np.isfinite(series.power_mw)
        if not keep.any():
            return
        x = series.t.astype(np.float64)
        self._power.set(f"{ch} power", x, series.power_mw, _pen(curve_color(RAW, index)))
        dose = self._dose.get(ch)
        if dose is None:
            dose = self._dose[ch] = pg.PlotDataItem(pen=_pen(curve_color(RAW, index), dash=True))
            self.dose_view.addItem(dose)
        dose.setData(x[keep], series.dose_j_cm2[keep])
        self.dose_view.enableAutoRange()

    def update_from(self, snap: Snapshot, channel: str | None, plane: int | None) -> None:
        self.threshold.setValue(snap.snr_threshold)
        for (ch, image), series in sorted(snap.series.items()):
            if image != RAW:
                continue
            index = snap.channels.index(ch) if ch in snap.channels else 0
            x = series.t.astype(np.float64)
            self._curves.set(f"{ch} median", x, series.snr_median, _pen(curve_color(RAW, index)))
            self._curves.set(f"{ch} 10th pct", x, series.snr_p10, _pen(P10_COLOR, dash=True))
            self._update_illumination(ch, index, series)
        text = snap.warning()
        self.warning.setText(text or "")
        self.warning.setVisible(text is not None)
        if channel is not None:
            snr = snap.snr_map(channel, plane)
            if snr is not None:
                top = max(2 * snap.snr_threshold, float(np.percentile(snr, 99.5)))
                self.map.setImage(snr, autoLevels=False, levels=(0.0, top))
                self.map_bar.setLevels((0.0, top))
                where = "middle plane" if plane is None else f"plane {plane}"
                self.map_title.setText(f"SNR map, {channel}, {where}")


def _fmt(value: float, spec: str, unit: str = "") -> str:
    return "–" if math.isnan(value) else f"{value:{spec}}{unit}"


class HealthPanel(QtWidgets.QGroupBox):
    """Is the pipeline keeping up: frames/s, restoration latency, queue, skipped."""

    FIELDS = (
        ("frames", "frames"),
        ("frames_per_s", "frames/s"),
        ("volumes", "volumes"),
        ("restored", "restored"),
        ("skipped", "skipped (not restored live)"),
        ("latency_s", "restoration latency"),
        ("queue_depth", "restoration queue"),
        ("analysis_dropped", "not analysed (dashboard behind)"),
    )

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("pipeline health", parent)
        form = QtWidgets.QFormLayout(self)
        self.values: dict[str, QtWidgets.QLabel] = {}
        for key, label in self.FIELDS:
            self.values[key] = QtWidgets.QLabel("–")
            form.addRow(label, self.values[key])

    def update_from(self, snap: Snapshot) -> None:
        h = snap.health
        texts = {
            "frames": str(h.frames),
            "frames_per_s": _fmt(h.frames_per_s, ".1f"),
            "volumes": str(h.volumes),
            "restored": str(h.restored),
            "skipped": str(h.skipped),
            "latency_s": (
                f"{_fmt(h.latency_s, '.2f', ' s')} (mean {_fmt(h.mean_latency_s, '.2f', ' s')})"
            ),
            "queue_depth": f"{h.queue_depth} (max {h.max_queue_depth})",
            "analysis_dropped": str(h.analysis_dropped),
        }
        for key, text in texts.items():
            self.values[key].setText(text)
