"""Run a prepared plan on a rig: sequence → engine → assembler → dataset.

Order of duties for each volume: the raw store first (always), then listeners
(live restorer queue, dashboard, CLI progress). The lasers are made safe on every
way out; a failure leaves everything written so far readable and is reported with
the dataset's path. A storage failure (disk full, permissions, I/O error) cancels
the acquisition at once, from the thread that found it: the camera and the lasers
stop within one volume instead of running on with nowhere to put the frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymmcore_plus.mda import FinishReason, mda_listeners_connected

from ..log import logger
from ..microscope.engine import ISIMEngine
from ..microscope.safety import lasers_guarded
from ..storage.dataset import DatasetWriter, Geometry
from .assembler import VolumeAssembler
from .illumination_loop import IlluminationRecorder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pymmcore_plus import CMMCorePlus
    from useq import MDAEvent, MDASequence

    from ..microscope.rig import Rig
    from ..storage.volume import Volume
    from .plans import PreparedPlan


class AcquisitionError(RuntimeError):
    """The acquisition stopped early; data written so far is in ``dataset``."""

    def __init__(self, message: str, dataset: Path) -> None:
        super().__init__(f"{message}\n  data acquired so far is readable in {dataset}")
        self.dataset = dataset


class RunStatus(StrEnum):
    """How a run ended (also the dataset's ``status`` attribute)."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class RunResult:
    """What a run produced."""

    dataset: Path
    status: RunStatus
    frames: int
    volumes: int
    expected_frames: int
    seconds: float
    incomplete_volumes: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def frames_lost(self) -> int:
        return self.expected_frames - self.frames if self.status is RunStatus.COMPLETED else 0


def _finish(writer: DatasetWriter, status: str, summary: dict[str, Any]) -> Exception | None:
    """``writer.finish``; an error (a full disk cannot take the final attributes) is
    returned, not raised, so that it cannot hide the run's own outcome."""
    try:
        writer.finish(status, **summary)
    except Exception as exc:
        logger.error("could not record the final status in %s: %s", writer.path, exc)
        return exc
    return None


def _storage_message(error: BaseException, assembler: VolumeAssembler, rig: Rig) -> str:
    """What happened when the raw store failed, and what was done about it."""
    key = assembler.failed_volume
    where = f" at volume t={key[0]} p={key[1]} c={key[2]}" if key is not None else ""
    return (
        f"writing the raw data failed{where}: {type(error).__name__}: {error}\n"
        "  the acquisition was cancelled at once and the lasers were made safe (AOTF at 0, "
        f"{rig.config.shutter_device} closed); the {assembler.volumes} volume(s) completed "
        "before the failure are intact (check the disk: space, permissions, errors)"
    )


def dataset_path(prepared: PreparedPlan, out_dir: Path | None = None) -> Path:
    storage = prepared.plan.storage
    return Path(out_dir or storage.out_dir) / f"{storage.name}.ome.zarr"


def run_plan(
    rig: Rig,
    prepared: PreparedPlan,
    *,
    out: Path | None = None,
    listeners: list[Callable[[Volume], None]] | None = None,
    on_frame: Callable[[int], None] | None = None,
    overwrite: bool = False,
    writer_hook: Callable[[DatasetWriter], None] | None = None,
) -> RunResult:
    """Acquire ``prepared`` on ``rig`` into a new dataset and return the result.

    Raises
    ------
    AcquisitionError
        If the run failed (device error, write error); lasers are off, the data so
        far is on disk. A write error cancels the acquisition within one volume.
    DatasetLocked, DatasetExists
        Before anything moves: another process is writing the dataset, or it exists
        and ``overwrite`` is false (see :class:`~rcanlive.storage.DatasetWriter`).
    KeyboardInterrupt
        Re-raised after a clean, safe stop (dataset status ``cancelled``).
    """
    path = dataset_path(prepared, out)
    writer = _open_dataset(rig, prepared, path, overwrite, writer_hook)
    try:  # illumination.jsonl: every volume's light, SNR and (adaptive) decision
        recorder = IlluminationRecorder(rig, prepared, writer)
    except BaseException:
        _finish(writer, "failed", {"error": "could not open illumination.jsonl"})
        raise
    assembler, engine = _pipeline(rig, prepared, recorder.store, listeners, on_frame)
    status, error = RunStatus.COMPLETED, None
    t0 = time.perf_counter()
    try:
        status = _acquire(rig, prepared, assembler, recorder)
    except KeyboardInterrupt:
        status = RunStatus.CANCELLED
        raise
    except Exception as exc:
        status, error = RunStatus.FAILED, exc
    finally:
        seconds = time.perf_counter() - t0
        recorder.close()
        summary = _summary(prepared, assembler, engine, seconds, error)
        summary["illumination"] = recorder.summary()
        finish_error = _finish(writer, status, summary)
        logger.info("acquisition %s: %s", status, summary)
    if error is not None or finish_error is not None:
        message = _failure_message(error, finish_error, assembler, engine, rig, prepared)
        raise AcquisitionError(message, path) from (error or finish_error)
    return RunResult(
        path,
        status,
        assembler.frames,
        assembler.volumes,
        prepared.n_frames,
        seconds,
        assembler.incomplete,
    )


def _open_dataset(
    rig: Rig,
    prepared: PreparedPlan,
    path: Path,
    overwrite: bool,
    writer_hook: Callable[[DatasetWriter], None] | None,
) -> DatasetWriter:
    """Presets and the camera ROI on the rig, then the new dataset (locked) for them."""
    core, plan = rig.core, prepared.plan
    for p in prepared.presets:
        rig.define_illumination(p.name, {p.line_nm: p.power_mw})
    w, h = plan.camera_roi_px
    core.clearROI()  # the full sensor, to centre the ROI on it (sensors differ by rig)
    sensor_w, sensor_h = core.getImageWidth(), core.getImageHeight()
    core.setROI((sensor_w - w) // 2, (sensor_h - h) // 2, w, h)
    geometry = Geometry(
        planes=prepared.planes,
        height=h,
        width=w,
        pixel_size_um=rig.config.pixel_size_um,
        z_step_um=plan.zstack.step_um,
        n_t=prepared.n_t,
        n_p=prepared.n_p,
        n_c=prepared.n_c,
        interval_s=getattr(plan, "interval_s", 1.0),
        channels=tuple(p.name for p in prepared.presets),
    )
    writer = DatasetWriter(
        path,
        plan.kind,
        geometry,
        plan=plan.model_dump(mode="json"),
        rig=rig.config.model_dump(mode="json"),
        compression=plan.storage.compression,
        tiles=prepared.tiles or None,
        overwrite=overwrite,
    )
    if writer_hook is not None:
        try:
            writer_hook(writer)
        except BaseException:
            _finish(writer, "failed", {"error": "the writer hook failed before acquiring"})
            raise
    return writer


def _pipeline(
    rig: Rig,
    prepared: PreparedPlan,
    sink: Callable[[Volume], None],
    listeners: list[Callable[[Volume], None]] | None,
    on_frame: Callable[[int], None] | None,
) -> tuple[VolumeAssembler, ISIMEngine]:
    """Frames → volumes → the raw store first, then the listeners; the engine that
    throttles the camera when frames wait too long for the store."""
    core, plan = rig.core, prepared.plan

    def storage_failed(exc: BaseException) -> None:  # on the relay thread
        logger.error("storage failed (%s): cancelling the acquisition", exc)
        core.mda.cancel()

    assembler = VolumeAssembler(
        prepared.planes,
        [p.name for p in prepared.presets],
        sink=sink,
        listeners=listeners,
        on_frame=on_frame,
        on_error=storage_failed,
        volume_metadata=rig.volume_metadata,
    )
    w, h = plan.camera_roi_px
    engine = ISIMEngine(
        core,
        rig.config,
        consumed=lambda: assembler.frames,
        max_backlog=max(1, int(plan.storage.max_backlog_gb * 1e9 // (w * h * 2))),
    )
    core.mda.set_engine(engine)
    return assembler, engine


def _run_mda(
    core: CMMCorePlus, sequence: MDASequence | Iterator[MDAEvent], listener: VolumeAssembler
) -> None:
    """``core.mda.run(sequence, output=[listener])``, whose relay an interrupt stops.

    Frames reach ``listener`` on pymmcore-plus's relay thread (its public
    ``mda_listeners_connected``, which ``output=`` uses too). pymmcore-plus stops that
    thread on ``sequenceFinished``, which a ``KeyboardInterrupt`` never emits: holding
    the relay lets us stop it, or the non-daemon thread would keep the process alive.
    """
    error: Exception | None = None
    with mda_listeners_connected(listener, mda_events=core.mda.events) as relay:
        try:
            core.mda.run(sequence)
        except KeyboardInterrupt:
            relay.stop()
            raise
        except Exception as exc:  # the frames already relayed are delivered first
            error = exc
    if error is not None:
        raise error


def _acquire(
    rig: Rig, prepared: PreparedPlan, assembler: VolumeAssembler, recorder: IlluminationRecorder
) -> RunStatus:
    """Run the MDA with the lasers guarded; completed or cancelled, else raise.

    An adaptive run is one queue-driven MDA whose volumes the recorder builds from the
    previous volume's decision (see :mod:`.illumination_control`)."""
    core = rig.core
    events = recorder.events(core) if recorder.adaptive else prepared.sequence
    with lasers_guarded(core, rig.config, on_interrupt=core.mda.cancel):
        _run_mda(core, events, assembler)
        if assembler.errors:
            raise assembler.errors[0]
        if core.mda.status.finish_reason == FinishReason.CANCELED:
            return RunStatus.CANCELLED
        if assembler.frames != prepared.n_frames:
            # e.g. the camera's acquisition thread died: the MDA ends quietly
            raise RuntimeError(
                f"the camera delivered {assembler.frames} of {prepared.n_frames} frames; "
                f"incomplete volumes (t, p, c): {assembler.incomplete or 'none'}"
            )
    return RunStatus.COMPLETED


def _summary(
    prepared: PreparedPlan,
    assembler: VolumeAssembler,
    engine: ISIMEngine,
    seconds: float,
    error: BaseException | None,
) -> dict[str, Any]:
    """The run's summary, as recorded in the dataset's root attributes."""
    summary: dict[str, Any] = {
        "frames": assembler.frames,
        "volumes": assembler.volumes,
        "expected_frames": prepared.n_frames,
        "seconds": round(seconds, 3),
        "incomplete_volumes": [list(k) for k in assembler.incomplete],
        "writer_wait_s": round(engine.throttled_s, 3),
    }
    if error is not None:
        summary["error"] = f"{type(error).__name__}: {error}"
    if assembler.failed_volume is not None:
        summary["failed_volume"] = list(assembler.failed_volume)
    return summary


def _failure_message(
    error: BaseException | None,
    finish_error: BaseException | None,
    assembler: VolumeAssembler,
    engine: ISIMEngine,
    rig: Rig,
    prepared: PreparedPlan,
) -> str:
    """What went wrong, what was done about it, and what the user can do."""
    if error is None:
        return (
            f"the acquisition ended ({assembler.volumes} volumes) but its final status could "
            f"not be recorded in the dataset: {type(finish_error).__name__}: {finish_error}"
        )
    if assembler.errors and error is assembler.errors[0]:
        message = _storage_message(error, assembler, rig)
    else:
        message = f"acquisition failed: {type(error).__name__}: {error}"
    if finish_error is not None:
        message += (
            f"\n  the dataset's final status could not be recorded either "
            f"({type(finish_error).__name__}: {finish_error})"
        )
    if engine.throttled_s > 0:
        message += (
            f"\n  storage could not keep up: frames waited {engine.throttled_s:.1f} s for "
            f"the writer with {prepared.plan.storage.max_backlog_gb:g} GB of frames in RAM; "
            "lower the frame rate or the ROI, raise storage.max_backlog_gb, or write to a "
            "faster disk"
        )
    return message
