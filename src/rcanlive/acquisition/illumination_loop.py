"""The illumination loop of a run: measure each stored volume, decide, record, feed.

:class:`IlluminationRecorder` is the raw store's first stage for every run. For each
volume it writes the raw data (always first), measures the input SNR, and appends the
volume's line to ``illumination.jsonl`` (power, intensity, AOTF value, dose, SNR,
decision). In an adaptive run it also hands the decision to :meth:`~IlluminationRecorder.events`,
the event source of the run's single queue-driven MDA, which builds the next volume
as one hardware sequence at the decided power (why this design: see
:mod:`~rcanlive.acquisition.illumination_control`).

Threads: :meth:`~IlluminationRecorder.store` runs on pymmcore-plus's relay thread,
:meth:`~IlluminationRecorder.events` on the acquisition thread; they meet only through
a queue of decisions.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.core import iter_sequenced_events
from pymmcore_plus.mda import RunState

from ..analysis.snr import Camera, volume_snr
from ..log import logger
from ..microscope.illumination import aotf_value, power_to_intensity_w_cm2
from ..storage.illumination_log import IlluminationLog
from .illumination_control import IlluminationController, Statistic

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from pymmcore_plus import CMMCorePlus
    from useq import MDAEvent

    from ..microscope.rig import Rig
    from ..storage.dataset import DatasetWriter
    from ..storage.volume import Volume
    from .plans import PreparedPlan

#: Voxels the SNR is measured on: evenly spaced whole planes (the foreground mask is
#: per plane, so the kept planes are measured exactly as in the full volume), strided
#: laterally only when one plane is larger. 25×512² takes 0.23 s in full, 2²¹ voxels
#: about 0.07 s: small next to the camera's time, on the relay thread that stores frames.
MEASURE_VOXELS = 2**21
#: How long the next volume waits for the previous one's decision before holding the
#: power (frames stuck in the store or a volume that never completed).
DECISION_TIMEOUT_S = 60.0
_POLL_S = 0.02


def measurement_planes(
    planes: Sequence[np.ndarray], max_voxels: int = MEASURE_VOXELS
) -> np.ndarray:
    """The part of a volume the SNR is measured on (at most ``max_voxels`` voxels)."""
    h, w = planes[0].shape
    stride = 1
    while -(-h // stride) * -(-w // stride) > max_voxels:
        stride *= 2
    per_plane = -(-h // stride) * -(-w // stride)
    keep = max(1, min(len(planes), max_voxels // per_plane))
    index = np.unique(np.linspace(0, len(planes) - 1, keep).round().astype(int))
    return np.stack([planes[i][::stride, ::stride] for i in index])


def measure_snr(
    planes: Sequence[np.ndarray],
    camera: Camera,
    statistic: Statistic = "p10",
    max_voxels: int = MEASURE_VOXELS,
) -> float:
    """The volume's input SNR statistic (``p10`` or ``median`` of the foreground)."""
    stats = volume_snr(measurement_planes(planes, max_voxels), camera)
    return stats.p10 if statistic == "p10" else stats.median


@dataclass
class _Tally:
    """Running totals for the dataset's summary (no per-volume list: runs are long)."""

    volumes: int = 0
    measured: int = 0
    at_target: int = 0
    dose_j_cm2: float = 0.0
    power_min_mw: float = math.inf
    power_max_mw: float = 0.0


class IlluminationRecorder:
    """Raw store, SNR, decision and ``illumination.jsonl`` line for every volume.

    Parameters
    ----------
    rig, prepared
        The opened rig and the plan being run (``prepared.adaptive`` turns control on).
    writer
        The dataset's writer: :meth:`store` calls its ``write`` first.
    """

    def __init__(self, rig: Rig, prepared: PreparedPlan, writer: DatasetWriter) -> None:
        self.rig = rig
        self.prepared = prepared
        self.writer = writer
        self.camera = Camera.from_rig(rig.config)
        self.statistic: Statistic = prepared.adaptive[0].statistic if prepared.adaptive else "p10"
        read_noise = rig.config.camera.read_noise_e
        self.controllers = [
            IlluminationController(s, p.power_mw, read_noise)
            for s, p in zip(prepared.adaptive, prepared.presets, strict=False)
        ]
        self.log = IlluminationLog(writer.path)
        self.tally = _Tally()
        self._lock = threading.Lock()
        #: (t, p, c) → (power mW, AOTF value) the events of that volume carry
        self._planned: dict[tuple[int, int, int], tuple[float, float]] = {}
        self._decisions: queue.Queue[tuple[int, int, float]] = queue.Queue()

    @property
    def adaptive(self) -> bool:
        """Whether the power is steered (else every volume gets its preset's power)."""
        return bool(self.controllers)

    # -- relay thread ----------------------------------------------------------
    def store(self, volume: Volume) -> None:
        """The sink: raw store first, then SNR, decision and the volume's log line.

        The volume's power, intensity and cumulative dose are added to its metadata
        before it is stored, so ``volumes.jsonl`` and every listener see them. Once the
        volume is stored the next one is released, at a held power if the measurement
        failed; a failed store releases nothing (the run is being cancelled).
        """
        key = (volume.t, volume.p, volume.c)
        power, aotf = self._light(key)
        intensity = power_to_intensity_w_cm2(self.rig.config, power)
        plan = self.prepared.plan
        volume_dose = intensity * plan.exposure_ms * 1e-3 * len(volume.planes)
        with self._lock:
            self.tally.dose_j_cm2 += volume_dose
            dose = self.tally.dose_j_cm2
        volume.meta.update(
            power_mw=round(power, 6), intensity_w_cm2=round(intensity, 4), dose_j_cm2=round(dose, 4)
        )
        # a failed raw write raises before any release: the runner cancels the run, and
        # the event source, waiting for this decision, sees the cancel and stops
        self.writer.write(volume)
        next_power = power
        try:
            snr = self._measure(volume)
            reason, next_power = self._decide(volume, snr, power)
        finally:
            if self.adaptive:  # release the next volume, held if deciding failed
                self._decisions.put((volume.t, volume.c, next_power))
        record = {
            "t": volume.t,
            "p": volume.p,
            "c": volume.c,
            "channel": volume.channel,
            "line_nm": self.prepared.presets[volume.c].line_nm,
            "elapsed_s": round(volume.elapsed_s, 4),
            "power_mw": round(power, 6),
            "intensity_w_cm2": round(intensity, 4),
            "aotf": round(aotf, 4),
            "exposure_ms": plan.exposure_ms,
            "planes": len(volume.planes),
            "volume_dose_j_cm2": round(volume_dose, 6),
            "dose_j_cm2": round(dose, 6),
            "snr": round(snr, 4) if snr is not None else None,
            "snr_statistic": self.statistic,
            "mode": "adaptive" if self.adaptive else "fixed",
            "reason": reason,
            "next_power_mw": round(next_power, 6),
        }
        if self.adaptive:
            record["target_snr"] = self.controllers[volume.c].settings.target_snr
        self._count(record)
        self.log.append(record)

    def _light(self, key: tuple[int, int, int]) -> tuple[float, float]:
        """Power and AOTF value volume ``key`` was taken with."""
        planned = self._planned.pop(key, None)
        if planned is not None:
            return planned
        preset = self.prepared.presets[key[2]]
        return preset.power_mw, preset.aotf_value

    def _measure(self, volume: Volume) -> float | None:
        """The volume's SNR statistic; None (logged) when it cannot be measured."""
        try:
            snr = measure_snr(volume.planes, self.camera, self.statistic)
        except Exception as exc:  # the decision holds; the run goes on
            logger.warning("SNR of volume %s could not be measured: %s", volume.key, exc)
            return None
        return snr if math.isfinite(snr) else None

    def _decide(self, volume: Volume, snr: float | None, power: float) -> tuple[str, float]:
        """Reason and next power (a fixed run keeps its preset's)."""
        if not self.adaptive:
            return "fixed", power
        decision = self.controllers[volume.c].update(volume.t, snr, power)
        return decision.reason, decision.power_mw

    def _count(self, record: dict[str, Any]) -> None:
        tally, snr = self.tally, record["snr"]
        with self._lock:
            tally.volumes += 1
            tally.power_min_mw = min(tally.power_min_mw, record["power_mw"])
            tally.power_max_mw = max(tally.power_max_mw, record["power_mw"])
            if snr is not None:
                tally.measured += 1
                target = record.get("target_snr")
                tally.at_target += int(target is not None and snr >= target)

    # -- acquisition thread ------------------------------------------------------
    def events(self, core: CMMCorePlus) -> Iterator[MDAEvent]:
        """The adaptive run's events: one hardware sequence per time point, each built
        at the powers decided from the previous one (pass to ``core.mda.run``)."""
        prepared = self.prepared
        template = list(itertools.takewhile(lambda e: e.index.get("t", 0) == 0, prepared.sequence))
        interval = float(getattr(prepared.plan, "interval_s", 0.0))
        powers = [c.power_mw for c in self.controllers]
        for t in range(prepared.n_t):
            if t:
                powers = self._await_decisions(core, t - 1, powers)
            volume = [self._event(e, t, interval, powers) for e in template]
            yield from iter_sequenced_events(core, volume)

    def _event(self, event: MDAEvent, t: int, interval: float, powers: list[float]) -> MDAEvent:
        """``event`` of the first time point moved to time point ``t`` at its power."""
        idx = event.index
        c, p = idx.get("c", 0), idx.get("p", 0)
        line = self.rig.config.laser(self.prepared.presets[c].line_nm)
        value = aotf_value(line, powers[c])
        self._planned[(t, p, c)] = (powers[c], value)
        return event.replace(
            index={**idx, "t": t},
            min_start_time=t * interval,
            reset_event_timer=event.reset_event_timer and t == 0,
            properties=[(line.device, line.property, f"{value:.4f}")],
        )

    def _await_decisions(self, core: CMMCorePlus, t: int, powers: list[float]) -> list[float]:
        """The powers decided from time point ``t`` (held ones where none came)."""
        powers = list(powers)
        needed = set(range(len(powers)))
        deadline = time.monotonic() + DECISION_TIMEOUT_S
        while needed:
            try:
                tt, c, power = self._decisions.get(timeout=_POLL_S)
            except queue.Empty:
                status = core.mda.status
                if status.phase is RunState.FINISHING or status.cancel_requested:
                    return powers  # cancelled: the runner stops before this volume
                if time.monotonic() > deadline:
                    logger.warning(
                        "no SNR decision for time point %d after %.0f s: holding the power",
                        t,
                        DECISION_TIMEOUT_S,
                    )
                    return powers
                continue
            if tt == t and c in needed:
                powers[c] = power
                needed.discard(c)
        return powers

    # -- end of run ----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Totals for the dataset's summary attributes."""
        tally = self.tally
        out: dict[str, Any] = {
            "mode": "adaptive" if self.adaptive else "fixed",
            "volumes": tally.volumes,
            "dose_j_cm2": round(tally.dose_j_cm2, 4),
            "snr_statistic": self.statistic,
            "snr_measured": tally.measured,
        }
        if tally.volumes:
            out["power_mw"] = [round(tally.power_min_mw, 6), round(tally.power_max_mw, 6)]
        if self.adaptive:
            out["target_snr"] = self.controllers[0].settings.target_snr
            out["volumes_at_target"] = tally.at_target
        return out

    def close(self) -> None:
        self.log.close()
