"""Live restoration for any pymmcore-plus acquisition: an MDA output handler.

:class:`LiveRestorationHandler` turns the frames of any ``useq.MDASequence`` into an
rcanlive dataset, exactly as ``rcanlive acquire`` writes one (raw OME-Zarr written
plane by plane, ``volumes.jsonl`` fsynced after each complete volume, the dataset
locked while it is written), and hands each stored volume to the same restoration
worker processes as ``acquire live``
(:class:`~rcanlive.inference.live.LiveRestoration`). The volume structure comes from
the sequence itself (:mod:`.structure`), not from rcanlive's configs, and no rig file
is needed: the camera's conversion parameters, recorded for SNR, come from the
camera's properties or from keyword arguments.

Pass it as ``core.mda.run(sequence, output=[handler])``; when a GUI starts the MDA
on the same core, :meth:`LiveRestorationHandler.connect` it to ``core.mda.events``
instead. Its callbacks never raise and never wait for a restoration: a problem with
the dataset cancels the MDA (nowhere to put the frames) and is reported in
:attr:`LiveRestorationHandler.result`.

Only the torch-free modules of :mod:`rcanlive.inference` are imported here (the pool
and its messages), and only when a model is given: the network runs in the workers.

Frames reach the handler through a relay queue (pymmcore-plus's for ``output=``, the
handler's own when connected), which has no bound: if the disk cannot keep up, frames
wait in RAM. ``rcanlive acquire`` bounds that backlog with its own engine
(:class:`~rcanlive.microscope.engine.ISIMEngine`); under another engine, size the run
for the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.experiment import Restoration
from ..config.rig import CameraParams
from ..log import logger
from ..storage.dataset import DatasetWriter
from ..storage.lock import LOCK_NAME
from .assembler import VolumeAssembler
from .runner import RunStatus
from .structure import VolumeStructure, volume_structure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import useq
    from pymmcore_plus import CMMCorePlus

    from ..inference.events import RestorationEvent, VolumeRef
    from ..inference.live import LiveRestoration
    from ..inference.recipe import BackendRecipe
    from ..storage.volume import Volume

#: camera properties read for the SNR parameters, first one present wins (Micro-Manager
#: adapters name them differently: Hamamatsu DCAM, the demo camera, ...)
CAMERA_PROPERTIES: dict[str, tuple[str, ...]] = {
    "offset_counts": ("CONVERSION FACTOR OFFSET", "Offset"),
    "electrons_per_count": ("CONVERSION FACTOR COEFF", "Photon Conversion Factor"),
    "read_noise_e": ("ReadNoise (electrons)", "Read Noise (electrons)", "ReadNoise"),
}
#: a tiling sequence queues every tile for restoration rather than dropping any (as
#: ``rcanlive acquire tile`` does)
TILE_QUEUE = 64
#: ``model="bundled"``: the small RCAN shipped with rcanlive
BUNDLED = "bundled"


@dataclass(frozen=True)
class HandlerResult:
    """What one sequence produced.

    Attributes
    ----------
    dataset
        The dataset written (``None`` if none could be created).
    kind
        ``"live"`` or ``"tile"`` (see :mod:`rcanlive.acquisition.structure`).
    status
        Completed, cancelled or failed (also the dataset's ``status`` attribute).
    frames, volumes, expected_frames
        Frames placed in volumes, complete volumes stored, frames the sequence has.
    seconds
        From ``sequenceStarted`` to the dataset's final status.
    incomplete_volumes
        ``(t, p, c)`` of volumes that received only some of their planes.
    restoration
        The restoration summary stored in the dataset (``restored``, ``skipped``
        with reasons, backend, ...), ``None`` without a model.
    error
        What went wrong, for a failed run.
    """

    dataset: Path | None
    kind: str | None
    status: RunStatus
    frames: int = 0
    volumes: int = 0
    expected_frames: int = 0
    seconds: float = 0.0
    incomplete_volumes: list[tuple[int, int, int]] = field(default_factory=list)
    restoration: dict[str, Any] | None = None
    error: str | None = None

    @property
    def restored(self) -> int:
        """Volumes restored live."""
        return int((self.restoration or {}).get("restored", 0))


def camera_parameters(
    core: CMMCorePlus,
    *,
    offset_counts: float | None = None,
    electrons_per_count: float | None = None,
    read_noise_e: float | None = None,
) -> tuple[CameraParams, dict[str, str]]:
    """The camera's conversion parameters for SNR, and where each came from.

    Each parameter is the keyword argument if given, else the first of the camera's
    properties named in :data:`CAMERA_PROPERTIES` that holds a number, else the paper's
    sCMOS value (offset 100 counts, 0.46 e⁻/count, read noise 1.3 e⁻).
    """
    given = {
        "offset_counts": offset_counts,
        "electrons_per_count": electrons_per_count,
        "read_noise_e": read_noise_e,
    }
    defaults = CameraParams()
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    camera = _camera_device(core)
    for name, value in given.items():
        if value is not None:
            values[name], sources[name] = float(value), "argument"
            continue
        for prop in CAMERA_PROPERTIES[name]:
            number = _number_property(core, camera, prop)
            if number is not None:
                values[name], sources[name] = number, f"property {camera}.{prop}"
                break
        else:
            values[name], sources[name] = float(getattr(defaults, name)), "default"
    return CameraParams(**values), sources


def _camera_device(core: CMMCorePlus) -> str:
    try:
        return str(core.getCameraDevice())
    except Exception:
        return ""


def _number_property(core: CMMCorePlus, device: str, prop: str) -> float | None:
    """``device.prop`` as a float, or ``None`` if absent or not a number."""
    if not device:
        return None
    try:
        if not core.hasProperty(device, prop):
            return None
        return float(core.getProperty(device, prop))
    except (RuntimeError, ValueError, TypeError):
        return None


def bundled_model() -> Path | None:
    """The small RCAN shipped with rcanlive, found without importing torch."""
    spec = importlib.util.find_spec("rcanlive.model")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "bundled" / "rcan-isim-sim.pt"
        if path.is_file():
            return path
    return None


def next_free_path(path: str | Path) -> Path:
    """``path`` (``NAME.ome.zarr``) if no dataset is there, else ``NAME_1.ome.zarr``, ...

    A name without a ``.zarr`` suffix gets ``.ome.zarr``.
    """
    path = Path(path)
    if not path.name.endswith(".zarr"):
        path = path.with_name(path.name + ".ome.zarr")
    suffix = ".ome.zarr" if path.name.endswith(".ome.zarr") else ".zarr"
    stem = path.name[: -len(suffix)]
    candidate, n = path, 0
    while _taken(candidate):
        n += 1
        candidate = path.with_name(f"{stem}_{n}{suffix}")
    return candidate


def _taken(path: Path) -> bool:
    """Whether something other than an empty (or lock-only) folder is at ``path``."""
    if not path.exists():
        return False
    if not path.is_dir():
        return True
    return any(entry.name != LOCK_NAME for entry in path.iterdir())


class _Restorer:
    """A :class:`LiveRestoration` whose workers start in the background.

    The workers open their backend in a thread of their own, so neither
    ``sequenceStarted`` nor ``frameReady`` waits for them; volumes stored meanwhile
    wait as keys and are handed over, in order, once the workers are ready (the pool's
    policy then decides which are restored). If no worker starts, each volume is
    recorded as failed with the reason, and the dataset's restoration summary says so.
    """

    def __init__(self, live: LiveRestoration, writer: DatasetWriter) -> None:
        live.attach(writer)  # the restored image(s); the lock stays held until finish
        self.live = live
        self.start_error: str | None = None
        self._ready = False
        self._pending: list[VolumeRef] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._start, name="rcanlive-handler-start", daemon=True
        )
        self._thread.start()

    def _start(self) -> None:
        error = None
        try:
            self.live.start()
        except Exception as exc:  # WorkerDied, or a recipe that cannot be opened
            error = f"the restoration workers could not start: {exc}"
            logger.error("%s", error)
        with self._lock:  # hand over what waited before anything newer
            self._ready, self.start_error = error is None, error
            for ref in self._pending:
                self._hand_over(ref)
            self._pending.clear()

    def submit(self, volume: Volume) -> None:
        """Volume listener (never waits for a worker)."""
        from ..inference.events import VolumeRef

        ref = VolumeRef(volume.t, volume.p, volume.c, volume.channel, volume.elapsed_s)
        with self._lock:
            if self._ready or self.start_error is not None:
                self._hand_over(ref)
            else:
                self._pending.append(ref)

    def _hand_over(self, ref: VolumeRef) -> None:
        pool, dataset = self.live.pool, self.live.dataset
        if self.start_error is None and pool is not None and dataset is not None:
            pool.submit(dataset, ref)
            return
        reason = self.start_error or "no restoration pool"
        if self.live.writer is not None:
            self.live.writer.skip(ref.key, reason, status="failed")
        if pool is not None:  # (so that the dataset's restoration summary counts it)
            pool.summary.submitted += 1
            pool.summary.failed.append((ref.key, reason))
            pool.summary.error = reason

    def finish(self, timeout: float | None) -> dict[str, Any]:
        """Wait for the workers to start (or fail), drain the queue (up to ``timeout``
        seconds), record the summary in the dataset, release its lock."""
        self._thread.join()
        return self.live.finish(timeout)


@dataclass
class _Run:
    """One sequence being written."""

    structure: VolumeStructure
    writer: DatasetWriter
    assembler: VolumeAssembler
    restorer: _Restorer | None
    t0: float
    convert: bool = False  # 8-bit frames, stored as uint16
    cancelled: bool = False
    error: str | None = None
    ignored: int = 0


class _EventRelay:
    """MDA signals from whatever thread emits them → the handler, in order, on one
    thread of its own (what pymmcore-plus's relay does for ``output=`` handlers)."""

    def __init__(self, handler: LiveRestorationHandler) -> None:
        self._handler = handler
        self._queue: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rcanlive-handler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            name, args = item
            try:
                getattr(self._handler, name)(*args)
            except Exception:  # (the handler catches its own; this thread must live on)
                logger.exception("the handler failed on %s", name)

    def sequenceStarted(self, *args: Any) -> None:
        self._handler._idle.clear()  # now, on the emitting thread: wait() sees the run
        self._queue.put(("sequenceStarted", args))

    def frameReady(self, *args: Any) -> None:
        self._queue.put(("frameReady", args))

    def sequenceCanceled(self, *args: Any) -> None:
        self._queue.put(("sequenceCanceled", args))

    def sequenceFinished(self, *args: Any) -> None:
        self._queue.put(("sequenceFinished", args))

    def stop(self) -> None:
        """Handle what was emitted so far, then end the thread."""
        self._queue.put(None)
        self._thread.join()


_SIGNALS = ("sequenceStarted", "frameReady", "sequenceCanceled", "sequenceFinished")


def _connect(signal: Any, slot: Callable[..., Any]) -> None:
    """Connect ``slot`` so that it runs on the emitting thread, psygnal or Qt."""
    if "Qt" in type(signal).__module__ or "Shiboken" in type(signal).__module__:
        # a GUI made the core's signals Qt's; a queued connection would route every
        # frame through the GUI's event loop (only then is Qt imported, never otherwise)
        from qtpy.QtCore import Qt

        signal.connect(slot, Qt.ConnectionType.DirectConnection)
    else:
        signal.connect(slot)


class LiveRestorationHandler:
    """Writes any pymmcore-plus MDA into an rcanlive dataset and restores it live.

    Parameters
    ----------
    core
        The core running the MDA (its camera, pixel size and stage are read at the start
        of each sequence).
    path
        The dataset, ``NAME.ome.zarr`` (a name without ``.zarr`` gets ``.ome.zarr``).
        When a dataset is already there and ``overwrite`` is false, the sequence goes to
        the next free name, ``NAME_1.ome.zarr``, ``NAME_2.ome.zarr``, ... (as
        Micro-Manager numbers acquisitions), so a handler connected to a GUI writes one
        dataset per run.
    model
        ``None``: store the raw data only. Else a checkpoint or exported artifact, the
        string ``"bundled"`` (the small RCAN shipped with rcanlive), a
        :class:`~rcanlive.inference.recipe.BackendRecipe`, or any picklable callable
        returning a backend. Each volume is restored, once stored, by worker processes.
    backend, precision
        As for ``rcanlive acquire live --backend/--precision`` (``"auto"`` measures the
        candidates once per machine and model, and caches the choice).
    restoration
        Policy, queue, devices, threads, restarts, tile of the workers, as an
        experiment config's ``[restoration]`` table (default: keep up with the newest
        volume, as ``acquire live``; a tiling sequence queues up to :data:`TILE_QUEUE`
        tiles first-in first-out, as ``acquire tile``).
    offset_counts, electrons_per_count, read_noise_e
        Camera conversion parameters recorded for SNR; see :func:`camera_parameters`.
    pixel_size_um
        Pixel size at the sample; default the core's (1 µm if it has none).
    overwrite
        Replace a dataset at ``path`` instead of numbering a new one.
    compression
        Of the raw chunks, as in an experiment config's ``storage.compression``.
    finish_timeout
        Seconds ``sequenceFinished`` waits for the restorations still queued; the
        rest are recorded as skipped (``rcanlive restore DATASET --only-missing``
        restores them later). ``None``: wait for all.
    cancel_on_error
        Cancel the MDA when its frames cannot be stored (no dataset, full disk).
    volume_metadata
        Camera metadata of a volume's first frame → extra fields of its
        ``volumes.jsonl`` record (e.g. ``Rig.volume_metadata`` on the simulated rig).

    Attributes
    ----------
    listeners
        Called with each stored :class:`~rcanlive.storage.volume.Volume` (on the
        handler's thread; exceptions are logged).
    restoration_listeners
        Called with each :class:`~rcanlive.inference.events.RestorationEvent`.
    results
        One :class:`HandlerResult` per finished sequence.

    Examples
    --------
    >>> handler = LiveRestorationHandler(  # doctest: +SKIP
    ...     core, "data/cells.ome.zarr", model="bundled"
    ... )
    >>> core.mda.run(sequence, output=[handler])  # doctest: +SKIP
    >>> handler.result.dataset, handler.result.restored  # doctest: +SKIP

    With a GUI that starts the MDA itself:

    >>> handler.connect()  # doctest: +SKIP
    >>> ...  # every MDA run on ``core`` now writes (and restores) a dataset
    >>> handler.disconnect()  # doctest: +SKIP
    """

    def __init__(
        self,
        core: CMMCorePlus,
        path: str | Path,
        *,
        model: str | Path | BackendRecipe | Callable[[], Any] | None = None,
        backend: str = "auto",
        precision: str = "auto",
        restoration: Restoration | None = None,
        offset_counts: float | None = None,
        electrons_per_count: float | None = None,
        read_noise_e: float | None = None,
        pixel_size_um: float | None = None,
        overwrite: bool = False,
        compression: str = "none",
        finish_timeout: float | None = None,
        cancel_on_error: bool = True,
        volume_metadata: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.core = core
        self.path = Path(path)
        self.model = _resolve_model(model)
        self.backend, self.precision = backend, precision
        self.restoration = restoration
        self.camera_arguments = {
            "offset_counts": offset_counts,
            "electrons_per_count": electrons_per_count,
            "read_noise_e": read_noise_e,
        }
        if pixel_size_um is not None and pixel_size_um <= 0:
            raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um}")
        self.pixel_size_um = pixel_size_um
        self.overwrite = overwrite
        self.compression = compression
        self.finish_timeout = finish_timeout
        self.cancel_on_error = cancel_on_error
        self.volume_metadata = volume_metadata
        self.listeners: list[Callable[[Volume], None]] = []
        self.restoration_listeners: list[Callable[[RestorationEvent], None]] = []
        self.results: list[HandlerResult] = []
        self._run: _Run | None = None
        self._relay: _EventRelay | None = None
        self._idle = threading.Event()
        self._idle.set()

    @property
    def result(self) -> HandlerResult | None:
        """The last finished sequence's result (``None`` before the first)."""
        return self.results[-1] if self.results else None

    # -- pymmcore-plus's handler protocol -------------------------------------------
    def sequenceStarted(
        self, sequence: useq.MDASequence, meta: Mapping[str, Any] | None = None
    ) -> None:
        """Create the dataset for ``sequence`` and start the restoration workers."""
        self._idle.clear()
        run, self._run = self._run, None
        if run is not None:  # its sequenceFinished never came
            self._close_run(run, "a new sequence started before this one finished")
        try:
            self._run = self._open(sequence, dict(meta or {}))
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            logger.error("cannot record this MDA: %s", message)
            self.results.append(HandlerResult(None, None, RunStatus.FAILED, error=message))
            self._cancel_mda()

    def frameReady(
        self, img: np.ndarray, event: useq.MDAEvent, meta: Mapping[str, Any] | None = None
    ) -> None:
        """Place one frame; a complete volume is stored, then handed to restoration."""
        run = self._run
        if run is None or run.error is not None or run.assembler.errors:
            return
        try:
            if not _belongs(run.structure, event):
                run.ignored += 1
                if run.ignored == 1:
                    logger.warning(
                        "a frame outside the sequence's volumes is ignored: %s", dict(event.index)
                    )
                return
            if run.convert:
                img = img.astype(np.uint16)
            run.assembler.frameReady(img, event, dict(meta or {}))
        except Exception as exc:
            self._fail(run, exc)

    def sequenceCanceled(self, sequence: useq.MDASequence | None = None) -> None:
        """Remember that the run was cancelled (its dataset's status says so)."""
        if self._run is not None:
            self._run.cancelled = True

    def sequenceFinished(self, sequence: useq.MDASequence | None = None) -> None:
        """Record the final status, wait for (or skip) the queued restorations, unlock."""
        run, self._run = self._run, None
        try:
            if run is not None:
                self._close_run(run)
        finally:
            self._idle.set()

    # -- connecting to a core whose MDA a GUI starts -------------------------------
    def connect(self) -> LiveRestorationHandler:
        """Listen to ``core.mda.events``: every MDA run on the core, whoever starts it
        (a GUI such as napari-micromanager or pymmcore-gui), writes a dataset.

        The handler then runs on a thread of its own. Do not also pass it as
        ``output=``: it would see every frame twice.
        """
        if self._relay is None:
            relay = _EventRelay(self)
            for name in _SIGNALS:
                _connect(getattr(self.core.mda.events, name), getattr(relay, name))
            self._relay = relay
        return self

    def disconnect(self) -> None:
        """Stop listening, after handling every event emitted so far. A sequence
        still running is closed as cancelled (what was stored stays readable)."""
        relay, self._relay = self._relay, None
        if relay is None:
            return
        for name in _SIGNALS:
            with contextlib.suppress(Exception):
                getattr(self.core.mda.events, name).disconnect(getattr(relay, name))
        relay.stop()
        if self._run is not None:
            logger.warning("disconnected while an MDA was running: its dataset is closed")
            self._run.cancelled = True
            self.sequenceFinished()

    def wait(self, timeout: float | None = None) -> HandlerResult | None:
        """Block until no sequence is open (its dataset finished, its restorations
        drained); return the last result."""
        self._idle.wait(timeout)
        return self.result

    def __enter__(self) -> LiveRestorationHandler:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- one sequence ---------------------------------------------------------------
    def _open(self, sequence: useq.MDASequence, meta: dict[str, Any]) -> _Run:
        """The dataset (locked), the assembler and the workers for ``sequence``."""
        t0 = time.perf_counter()
        structure = volume_structure(sequence)
        height, width, convert = _frame_format(self.core, meta)
        pixel_size = self._pixel_size(meta)
        camera, sources = camera_parameters(self.core, **self.camera_arguments)
        geometry = structure.geometry(height, width, pixel_size)
        path = _dataset_path(self.path) if self.overwrite else next_free_path(self.path)
        rig = {
            "name": f"pymmcore-plus {type(self.core).__name__}",
            "camera_device": _camera_device(self.core),
            "pixel_size_um": pixel_size,
            "camera": camera.model_dump(),
            "camera_parameters_from": sources,
        }
        writer = DatasetWriter(
            path,
            structure.kind,
            geometry,
            plan=_plan(sequence, structure),
            rig=rig,
            compression=self.compression,
            tiles=structure.tiles(_here_um(self.core, meta)) if structure.kind == "tile" else None,
            overwrite=self.overwrite,
        )
        restoring = self.model is not None and (
            self.restoration is None or self.restoration.enabled
        )
        try:
            restorer = self._restorer(structure, writer) if restoring else None
        except BaseException as exc:
            with contextlib.suppress(Exception):  # (the original error matters more)
                writer.finish(str(RunStatus.FAILED), error=f"live restoration: {exc}")
            raise
        assembler = VolumeAssembler(
            structure.planes,
            list(structure.dataset_channels),
            sink=functools.partial(_store, structure, writer),
            listeners=[*([restorer.submit] if restorer else []), *self.listeners],
            on_error=self._storage_failed,
            volume_metadata=self.volume_metadata,
            key_of=lambda event: structure.key(event.index),
        )
        logger.info(
            "recording %s volumes (%d planes of %d×%d) into %s%s",
            structure.n_volumes,
            structure.planes,
            height,
            width,
            path,
            " with live restoration" if restorer else "",
        )
        return _Run(structure, writer, assembler, restorer, t0, convert)

    def _pixel_size(self, meta: dict[str, Any]) -> float:
        """The argument, else the core's pixel size, else 1 µm (with a warning)."""
        if self.pixel_size_um is not None:
            return self.pixel_size_um
        infos = meta.get("image_infos") or ()
        size = float(infos[0].get("pixel_size_um") or 0.0) if infos else 0.0
        if size <= 0:
            with contextlib.suppress(Exception):
                size = float(self.core.getPixelSizeUm())
        if size > 0:
            return size
        logger.warning("the core has no pixel size: recording 1 µm (pass pixel_size_um)")
        return 1.0

    def _restorer(self, structure: VolumeStructure, writer: DatasetWriter) -> _Restorer:
        """Live restoration of ``writer``'s dataset by worker processes (started in
        the background)."""
        from ..inference.live import LiveRestoration
        from ..inference.recipe import BackendRecipe, live_tile_shape

        g = writer.geometry
        settings = self.restoration or (
            Restoration(policy="fifo", max_queue=TILE_QUEUE)
            if structure.kind == "tile"
            else Restoration()
        )
        tile = settings.tile or live_tile_shape((g.planes, g.height, g.width))
        settings = settings.replace(tile=tile)
        opener: Any = self.model
        if isinstance(opener, Path):
            opener = BackendRecipe(opener, self.backend, self.precision, tile_shape=tile)
        elif isinstance(opener, BackendRecipe) and opener.tile_shape is None:
            opener = opener.replace(tile_shape=tile)
        live = LiveRestoration(opener, settings, listeners=list(self.restoration_listeners))
        return _Restorer(live, writer)

    def _storage_failed(self, exc: BaseException) -> None:
        """The raw store failed (the assembler keeps the error): no later frame has a
        place, so the MDA is cancelled at once."""
        logger.error("writing the raw data failed (%s); cancelling the MDA", exc)
        self._cancel_mda()

    def _fail(self, run: _Run, exc: BaseException) -> None:
        run.error = f"{type(exc).__name__}: {exc}"
        logger.error("recording the MDA failed: %s; cancelling it", run.error)
        self._cancel_mda()

    def _cancel_mda(self) -> None:
        if self.cancel_on_error:
            with contextlib.suppress(Exception):
                self.core.mda.cancel()

    def _close_run(self, run: _Run, error: str | None = None) -> None:
        """Close ``run`` and record its result; never raises (it runs on a relay thread,
        which an exception would end)."""
        try:
            self.results.append(self._finish(run, error))
        except Exception as exc:
            logger.exception("closing the dataset %s failed", run.writer.path)
            self.results.append(
                HandlerResult(run.writer.path, run.structure.kind, RunStatus.FAILED, error=str(exc))
            )

    def _finish(self, run: _Run, error: str | None) -> HandlerResult:
        """Final status and summary into the dataset, then restoration's summary."""
        if error is not None and run.error is None:
            run.error = error
        status, problem = self._outcome(run)
        a = run.assembler
        seconds = time.perf_counter() - run.t0
        summary: dict[str, Any] = {
            "frames": a.frames,
            "volumes": a.volumes,
            "expected_frames": run.structure.expected_frames,
            "seconds": round(seconds, 3),
            "incomplete_volumes": [list(k) for k in a.incomplete],
        }
        if run.ignored:
            summary["ignored_frames"] = run.ignored
        if problem is not None:
            summary["error"] = problem
        if a.failed_volume is not None:
            summary["failed_volume"] = list(a.failed_volume)
        try:
            run.writer.finish(str(status), **summary)
        except Exception as exc:  # a full disk: the data written so far is intact
            problem = problem or f"the final status could not be recorded: {exc}"
            logger.error("could not record the final status in %s: %s", run.writer.path, exc)
        restoration = None
        if run.restorer is not None:
            restoration = run.restorer.finish(self.finish_timeout)
        logger.info("MDA recorded (%s): %s", status, run.writer.path)
        return HandlerResult(
            run.writer.path,
            run.structure.kind,
            status,
            a.frames,
            a.volumes,
            run.structure.expected_frames,
            round(seconds, 3),
            a.incomplete,
            restoration,
            problem,
        )

    def _outcome(self, run: _Run) -> tuple[RunStatus, str | None]:
        """How the run ended, and what went wrong if it failed."""
        if run.error is not None:
            return RunStatus.FAILED, run.error
        a = run.assembler
        if a.errors:
            key = a.failed_volume
            where = f" at volume t={key[0]} p={key[1]} c={key[2]}" if key else ""
            return RunStatus.FAILED, (
                f"writing the raw data failed{where}: {type(a.errors[0]).__name__}: "
                f"{a.errors[0]}; the MDA was cancelled, the {a.volumes} volume(s) stored "
                "before are intact (check the disk: space, permissions, errors)"
            )
        reason = str(getattr(self.core.mda.status, "finish_reason", "") or "")
        if run.cancelled or reason == "canceled":
            return RunStatus.CANCELLED, None
        if reason == "errored":
            return RunStatus.FAILED, "the MDA stopped with an error (see pymmcore-plus's log)"
        frames, expected = a.frames, run.structure.expected_frames
        if frames != expected:
            return RunStatus.FAILED, (
                f"the camera delivered {frames} of {expected} frames; incomplete volumes "
                f"(t, p, c): {a.incomplete or 'none'}"
            )
        return RunStatus.COMPLETED, None


def _resolve_model(model: str | Path | Any) -> Path | Any:
    """A checkpoint path (checked now, before anything moves), a recipe or an opener."""
    if model is None:
        return None
    if isinstance(model, str) and model == BUNDLED:
        path = bundled_model()
        if path is None:
            raise FileNotFoundError(
                "this install of rcanlive has no bundled model; pass a "
                "checkpoint from `rcanlive train` or an exported model"
            )
        return path
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"model not found: {path}")
        return path
    if callable(model):
        return model
    raise TypeError(
        f"model must be a path, 'bundled', a BackendRecipe or a callable; got {model!r}"
    )


def _dataset_path(path: Path) -> Path:
    """``path`` with a ``.zarr`` suffix (``.ome.zarr`` added to a bare name)."""
    return path if path.name.endswith(".zarr") else path.with_name(path.name + ".ome.zarr")


def _belongs(structure: VolumeStructure, event: useq.MDAEvent) -> bool:
    """Whether ``event`` is a plane of one of the sequence's volumes."""
    try:
        structure.key(event.index)
    except KeyError:
        return False
    return 0 <= int(event.index.get("z", 0)) < structure.planes


def _store(structure: VolumeStructure, writer: DatasetWriter, volume: Volume) -> None:
    """The raw store; a volume of a multi-position dataset records its position."""
    if len(structure.positions) > 1:
        pos = structure.position_of(volume.key)
        volume = dataclasses.replace(
            volume, meta={**volume.meta, "position": pos.index, "position_name": pos.name}
        )
    writer.write(volume)


def _frame_format(core: CMMCorePlus, meta: Mapping[str, Any]) -> tuple[int, int, bool]:
    """``(height, width, 8-bit)`` of the frames to come (from the summary metadata,
    else the core).

    Raises
    ------
    ValueError
        Several cameras, colour frames, or more than 16 bits per pixel.
    """
    infos = list(meta.get("image_infos") or ())
    if len(infos) > 1:
        raise ValueError(
            f"{len(infos)} cameras take each frame; rcanlive stores one camera's frames "
            "(make a single camera the core's camera)"
        )
    if infos:
        info = infos[0]
        height, width = int(info["height"]), int(info["width"])
        dtype, shape = str(info.get("dtype", "uint16")), tuple(info.get("plane_shape", ()))
    else:
        height, width = int(core.getImageHeight()), int(core.getImageWidth())
        dtype, shape = f"uint{8 * int(core.getBytesPerPixel())}", ()
    if len(shape) > 2 or dtype not in ("uint8", "uint16"):
        raise ValueError(
            f"the camera gives {dtype} frames of shape {shape or (height, width)}; rcanlive "
            "stores 8- or 16-bit monochrome frames"
        )
    return height, width, dtype == "uint8"


def _here_um(core: CMMCorePlus, meta: Mapping[str, Any]) -> tuple[float, float]:
    """The stage's x, y at the start (for positions that keep the stage where it is)."""
    pos = meta.get("position") or {}
    if "x" in pos and "y" in pos:
        return float(pos["x"]), float(pos["y"])
    with contextlib.suppress(Exception):
        if core.getXYStageDevice():
            x, y = core.getXYPosition()
            return float(x), float(y)
    return 0.0, 0.0


def _plan(sequence: useq.MDASequence, structure: VolumeStructure) -> dict[str, Any]:
    """What the dataset records of the sequence (its ``plan`` attribute)."""
    try:
        described: Any = sequence.model_dump(mode="json")
    except Exception:  # an engine's own sequence type: keep what it says of itself
        described = repr(sequence)
    return {
        "kind": structure.kind,
        "source": "pymmcore-plus MDA (rcanlive LiveRestorationHandler)",
        "axis_order": "".join(str(a) for a in getattr(sequence, "axis_order", ())),
        "positions": [dataclasses.asdict(p) for p in structure.positions],
        "sequence": described,
    }
