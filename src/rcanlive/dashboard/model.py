"""The dashboard's state: plain Python, thread-safe, tested without Qt.

Acquisition and restoration threads *write* (through :class:`LiveFeed`, which does
the analysis on its own thread so that neither ever waits for it); the GUI *reads*
immutable :class:`Snapshot` objects on a timer. Every change bumps
:attr:`DashboardModel.version`, so a view redraws only when something changed and
at most as often as its timer fires, however fast volumes arrive.

A finished dataset is replayed into the same model by :func:`replay`, so the live
dashboard, ``rcanlive dashboard --replay`` and the static report show the same
numbers.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..analysis.bleaching import (
    BleachFit,
    fit_bleaching,
    normalise,
    restored_background,
    volume_signal,
)
from ..analysis.snr import SNR_WARNING, Camera, snr_map, volume_snr
from ..log import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from numpy.typing import NDArray

    from ..inference.events import RestorationEvent

RAW, RESTORED = "raw", "restored"
IMAGES = (RAW, RESTORED)


class VolumeLike(Protocol):
    """What the model needs of a volume (``rcanlive.storage.Volume`` has it)."""

    @property
    def data(self) -> np.ndarray: ...
    @property
    def t(self) -> int: ...
    @property
    def p(self) -> int: ...
    @property
    def c(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def elapsed_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Point:
    """One volume's numbers."""

    t: int
    elapsed_s: float
    signal_e: float
    snr_median: float = math.nan
    snr_p10: float = math.nan
    #: the light the volume was taken with (raw volumes of runs that record it)
    power_mw: float = math.nan
    dose_j_cm2: float = math.nan


@dataclass(frozen=True, slots=True)
class Series:
    """One curve (a channel's raw or restored volumes), ordered by volume number."""

    t: NDArray[np.int64]
    elapsed_s: NDArray[np.float64]
    signal_e: NDArray[np.float64]
    normalised: NDArray[np.float64]
    snr_median: NDArray[np.float64]
    snr_p10: NDArray[np.float64]
    fit: BleachFit | None
    #: power at the objective and cumulative dose at the sample (NaN where unknown)
    power_mw: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    dose_j_cm2: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))

    def __len__(self) -> int:
        return int(self.t.size)


@dataclass(frozen=True, slots=True)
class LatestImage:
    """The newest volume of a channel/image: a reference to it and its max projection."""

    t: int
    volume: np.ndarray = field(repr=False)
    mip: np.ndarray = field(repr=False)

    def plane(self, index: int | None = None) -> np.ndarray:
        """Plane ``index`` (default: the middle plane), clipped to the stack."""
        nz = self.volume.shape[0]
        i = nz // 2 if index is None else min(max(int(index), 0), nz - 1)
        return self.volume[i]


@dataclass(frozen=True, slots=True)
class Health:
    """Pipeline health: is acquisition keeping pace, is restoration keeping up."""

    frames: int = 0
    frames_per_s: float = math.nan
    volumes: int = 0
    restored: int = 0
    skipped: int = 0
    latency_s: float = math.nan
    mean_latency_s: float = math.nan
    queue_depth: int = 0
    max_queue_depth: int = 0
    analysis_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of the model at one version."""

    version: int
    camera: Camera
    snr_threshold: float
    channels: tuple[str, ...]
    series: Mapping[tuple[str, str], Series]
    images: Mapping[tuple[str, str], LatestImage]
    snr: Mapping[str, float]
    health: Health
    title: str = ""

    def low_snr_channels(self) -> list[str]:
        """Channels whose newest raw volume has a median SNR below the threshold."""
        return [ch for ch, v in self.snr.items() if v < self.snr_threshold]

    def warning(self) -> str | None:
        """A sentence for the user when the input SNR is too low to trust restoration."""
        low = self.low_snr_channels()
        if not low:
            return None
        parts = ", ".join(f"{ch} {self.snr[ch]:.1f}" for ch in low)
        return (
            f"LOW INPUT SNR ({parts} < {self.snr_threshold:g}): restorations may show "
            "artifacts; raise the illumination or the exposure"
        )

    def snr_map(self, channel: str, plane: int | None = None) -> np.ndarray | None:
        """Per-pixel SNR of the current plane of ``channel``'s newest raw volume."""
        latest = self.images.get((channel, RAW))
        return None if latest is None else snr_map(latest.plane(plane), self.camera)


class DashboardModel:
    """The series and latest images behind the dashboard and the report.

    Parameters
    ----------
    camera
        The rig's camera parameters (offset, gain, read noise): SNR and signal use them.
    snr_threshold
        Input SNR (foreground median) below which the dashboard warns.
    """

    def __init__(
        self, camera: Camera | None = None, snr_threshold: float = SNR_WARNING, title: str = ""
    ) -> None:
        self.camera = camera or Camera()
        self.snr_threshold = snr_threshold
        self.title = title
        self._lock = threading.Lock()
        self._version = 0
        self._channels: list[str] = []
        self._points: dict[tuple[str, str], dict[int, Point]] = {}
        self._images: dict[tuple[str, str], LatestImage] = {}
        self._snr: dict[str, float] = {}
        self._frames = 0
        self._frame_times: deque[tuple[float, int]] = deque(maxlen=256)
        self._fixed_fps: float | None = None
        self._skipped: set[tuple[int, int]] = set()
        self._latencies: list[float] = []
        self._queue_depth = 0
        self._max_queue_depth = 0
        self._analysis_dropped = 0
        self._cache: Snapshot | None = None

    @property
    def version(self) -> int:
        """Bumped on every change; a view redraws when it differs from its last one."""
        return self._version

    # -- writers (any thread) --------------------------------------------------
    def _channel(self, name: str) -> None:
        if name not in self._channels:
            self._channels.append(name)

    def _changed(self) -> None:
        self._version += 1
        self._cache = None

    def add_raw(self, volume: VolumeLike) -> Point:
        """Analyse a raw volume (signal, SNR, projection) and add it. Returns its point."""
        data = np.asarray(volume.data)
        stats = volume_snr(data, self.camera)
        light = getattr(volume, "meta", None) or {}  # set by the run's illumination log
        point = Point(
            t=int(volume.t),
            elapsed_s=float(volume.elapsed_s),
            signal_e=volume_signal(data, self.camera),
            snr_median=stats.median,
            snr_p10=stats.p10,
            power_mw=float(light.get("power_mw", math.nan)),
            dose_j_cm2=float(light.get("dose_j_cm2", math.nan)),
        )
        image = LatestImage(int(volume.t), data, data.max(axis=0))
        with self._lock:
            self._channel(volume.channel)
            self._points.setdefault((volume.channel, RAW), {})[point.t] = point
            if self._is_newest(volume.channel, RAW, point.t):
                self._images[(volume.channel, RAW)] = image
                self._snr[volume.channel] = stats.median
            self._changed()
        return point

    def add_restored(
        self,
        volume: VolumeLike,
        data: np.ndarray,
        latency_s: float | None = None,
        queue_depth: int | None = None,
    ) -> Point:
        """Add the restoration of ``volume`` (``data`` in the raw intensity scale)."""
        data = np.asarray(data)
        point = Point(
            t=int(volume.t),
            elapsed_s=float(volume.elapsed_s),
            signal_e=volume_signal(data, self.camera, restored_background(data)),
        )
        image = LatestImage(int(volume.t), data, data.max(axis=0))
        with self._lock:
            self._channel(volume.channel)
            self._points.setdefault((volume.channel, RESTORED), {})[point.t] = point
            if self._is_newest(volume.channel, RESTORED, point.t):
                self._images[(volume.channel, RESTORED)] = image
            self._skipped.discard((point.t, int(volume.c)))
            if latency_s is not None:
                self._latencies.append(float(latency_s))
            self._set_queue_depth(queue_depth)
            self._changed()
        return point

    def add_skipped(self, volume: VolumeLike, queue_depth: int | None = None) -> None:
        """Record that a volume was not restored live."""
        with self._lock:
            self._channel(volume.channel)
            self._skipped.add((int(volume.t), int(volume.c)))
            self._set_queue_depth(queue_depth)
            self._changed()

    def set_frames(self, frames: int, at: float | None = None) -> None:
        """Frames acquired so far (the rate is taken over the last few seconds)."""
        now = time.monotonic() if at is None else at
        with self._lock:
            self._frames = int(frames)
            self._frame_times.append((now, int(frames)))
            self._changed()

    def set_throughput(self, frames: int, seconds: float) -> None:
        """A finished run's frame count and duration (replay)."""
        with self._lock:
            self._frames = int(frames)
            self._fixed_fps = frames / seconds if seconds > 0 else None
            self._changed()

    def set_queue_depth(self, depth: int, max_depth: int | None = None) -> None:
        """The live restorer's queue depth now (and its maximum so far, if known)."""
        with self._lock:
            self._set_queue_depth(depth)
            if max_depth is not None:
                self._max_queue_depth = max(self._max_queue_depth, int(max_depth))
            self._changed()

    def count_dropped(self) -> None:
        """A volume the analysis could not keep up with (its numbers are missing)."""
        with self._lock:
            self._analysis_dropped += 1
            self._changed()

    def _set_queue_depth(self, depth: int | None) -> None:
        if depth is not None:
            self._queue_depth = int(depth)
            self._max_queue_depth = max(self._max_queue_depth, int(depth))

    def _is_newest(self, channel: str, image: str, t: int) -> bool:
        current = self._images.get((channel, image))
        return current is None or t >= current.t

    # -- reader (GUI thread, report) --------------------------------------------
    def snapshot(self) -> Snapshot:
        """An immutable view; cached until the next change."""
        with self._lock:
            cached = self._cache
            if cached is not None:
                return cached
            version = self._version
            points = {k: sorted(v.values(), key=lambda p: p.t) for k, v in self._points.items()}
            images = dict(self._images)
            snr = dict(self._snr)
            channels = tuple(self._channels)
            health = self._health()
        # fits run outside the lock: writers never wait for a reader
        series = {key: _series(pts) for key, pts in points.items() if pts}
        snap = Snapshot(
            version=version,
            camera=self.camera,
            snr_threshold=self.snr_threshold,
            channels=channels,
            series=series,
            images=images,
            snr=snr,
            health=health,
            title=self.title,
        )
        with self._lock:
            if self._version == version:
                self._cache = snap
        return snap

    def _health(self) -> Health:
        volumes = sum(len(v) for (_, img), v in self._points.items() if img == RAW)
        restored = sum(len(v) for (_, img), v in self._points.items() if img == RESTORED)
        lat = self._latencies
        return Health(
            frames=self._frames,
            frames_per_s=self._fixed_fps if self._fixed_fps is not None else self._rate(),
            volumes=volumes,
            restored=restored,
            skipped=len(self._skipped),
            latency_s=lat[-1] if lat else math.nan,
            mean_latency_s=float(np.mean(lat)) if lat else math.nan,
            queue_depth=self._queue_depth,
            max_queue_depth=self._max_queue_depth,
            analysis_dropped=self._analysis_dropped,
        )

    def _rate(self, window_s: float = 5.0) -> float:
        times = self._frame_times
        if len(times) < 2:
            return math.nan
        t_end, n_end = times[-1]
        t0, n0 = times[0]
        for t, n in times:
            if t >= t_end - window_s:
                t0, n0 = t, n
                break
        return (n_end - n0) / (t_end - t0) if t_end > t0 else math.nan


def _series(points: list[Point]) -> Series:
    t = np.array([p.t for p in points], np.int64)
    elapsed = np.array([p.elapsed_s for p in points], np.float64)
    signal = np.array([p.signal_e for p in points], np.float64)
    return Series(
        t=t,
        elapsed_s=elapsed,
        signal_e=signal,
        normalised=normalise(signal),
        snr_median=np.array([p.snr_median for p in points], np.float64),
        snr_p10=np.array([p.snr_p10 for p in points], np.float64),
        fit=fit_bleaching(t, signal, elapsed),
        power_mw=np.array([p.power_mw for p in points], np.float64),
        dose_j_cm2=np.array([p.dose_j_cm2 for p in points], np.float64),
    )


class LiveFeed:
    """Connects a live run to a :class:`DashboardModel` without ever blocking it.

    ``on_volume`` is a volume listener of :func:`rcanlive.acquisition.run_plan` (relay
    thread), ``on_restoration`` a listener of the live restoration (restorer thread),
    ``on_frame`` the frame counter. They only enqueue; a worker thread analyses. If
    the analysis falls more than ``max_pending`` volumes behind, further raw volumes
    are counted as dropped (their data is on disk; the report reads them back) rather
    than piling up in memory.
    """

    def __init__(
        self,
        model: DashboardModel,
        queue_depth: Callable[[], int] | None = None,
        max_pending: int = 16,
    ) -> None:
        self.model = model
        self.queue_depth = queue_depth
        self.max_pending = max_pending
        self._queue: queue.Queue[tuple[str, Any, Any] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="rcanlive-dashboard", daemon=True)
        self._worker.start()

    def on_frame(self, frames: int) -> None:
        self.model.set_frames(frames)

    def on_volume(self, volume: VolumeLike) -> None:
        if self._queue.qsize() >= self.max_pending:
            self.model.count_dropped()
            return
        self._queue.put(("raw", volume, None))

    def on_restoration(self, event: RestorationEvent) -> None:
        """A restoration event (restored volumes are read back from the dataset)."""
        self._queue.put((str(event.status), event.volume, event))

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the pending analysis and stop the worker."""
        self._queue.put(None)
        self._worker.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            event, volume, info = item
            try:
                self._handle(event, volume, info)
            except Exception:  # a broken volume must not stop the dashboard
                logger.exception("dashboard: could not analyse %s volume t=%s", event, volume.t)

    def _handle(self, event: str, volume: VolumeLike, info: Any) -> None:
        depth = self.queue_depth() if self.queue_depth is not None else None
        if event == "raw":
            self.model.add_raw(volume)
            if depth is not None:
                self.model.set_queue_depth(depth)
        elif event == "restored":
            from ..storage.restored import restored_volume

            data = restored_volume(info.dataset, (volume.t, volume.p, volume.c))
            self.model.add_restored(volume, data, info.latency_s, depth)
        else:  # skipped or failed: not restored live
            self.model.add_skipped(volume, depth)


@dataclass(frozen=True, slots=True)
class _StoredVolume:
    data: np.ndarray
    t: int
    c: int
    channel: str
    elapsed_s: float
    p: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def replay(
    model: DashboardModel,
    path: str | Path,
    stop: threading.Event | None = None,
) -> DashboardModel:
    """Feed a finished (or interrupted) live dataset into ``model``, volume by volume.

    Safe to run on a worker thread while a dashboard shows ``model``; ``stop`` ends
    it early. A damaged volume (a chunk missing, a checksum mismatch) is left out,
    raw or restored, and reported as an :class:`~rcanlive.storage.IntegrityWarning`:
    the dashboard never shows zeros that were not acquired.
    """
    from ..storage import DamagedVolume, open_dataset
    from ..storage.illumination_log import read_illumination

    ds = open_dataset(path)
    if ds.kind != "live":
        raise ValueError(f"{ds.path} is a {ds.kind} dataset; the dashboard shows live time-lapses")
    records = ds.restoration_records()
    light = {(r["t"], r["p"], r["c"]): r for r in read_illumination(ds.path)}
    summary = ds.meta.get("summary") or {}
    if summary.get("seconds"):
        model.set_throughput(int(summary.get("frames", 0)), float(summary["seconds"]))
    for rec in ds.volumes:
        if stop is not None and stop.is_set():
            break
        t, p, c = int(rec["t"]), int(rec["p"]), int(rec["c"])
        try:
            raw = ds.volume(t, p=p, c=c)
        except DamagedVolume:  # warned by the reader
            continue
        channel = str(rec.get("channel", c))
        meta = light.get((t, p, c), rec)  # power and dose, from illumination.jsonl
        vol = _StoredVolume(raw, t, c, channel, float(rec["elapsed_s"]), p, meta)
        model.add_raw(vol)
        r = records.get((t, p, c))
        if r is None:
            continue
        if r.get("status") == "restored":
            try:
                restored = ds.volume(t, p=p, c=c, image="restored")
            except KeyError:  # damaged (warned by the reader) or not restored after all
                continue
            model.add_restored(vol, restored, r.get("latency_s"))
        elif r.get("status") == "skipped":
            model.add_skipped(vol)
    restoration = ds.meta.get("restoration") or {}
    if "max_queue_depth" in restoration:
        model.set_queue_depth(0, int(restoration["max_queue_depth"]))
    return model


def model_for_dataset(path: str | Path) -> DashboardModel:
    """An empty model with the camera parameters and title of a dataset's rig."""
    from ..storage import open_dataset

    ds = open_dataset(path)
    rig = ds.meta.get("rig") or {}
    camera = Camera.from_rig(rig) if "camera" in rig else Camera()
    return DashboardModel(camera, title=ds.path.name)
