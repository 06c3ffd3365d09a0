"""``illumination.jsonl``: the light each volume was taken with, and why.

One JSON line per volume, appended (flushed and fsynced) by the acquisition as soon as
the volume is stored, for fixed-intensity and adaptive runs alike, so that any two runs
can be compared. Fields:

``t``, ``p``, ``c``, ``channel``, ``line_nm``
    The volume.
``power_mw``, ``intensity_w_cm2``, ``aotf``
    Its power at the objective, the intensity over the field of view, the AOTF value
    sent to the hardware.
``volume_dose_j_cm2``, ``dose_j_cm2``
    Its light dose at the sample (intensity × exposure × planes) and the run's
    cumulative dose up to and including it.
``snr``, ``snr_statistic``
    Its input SNR (``p10``: 10th percentile of the foreground, or ``median``);
    ``null`` when the measurement failed.
``mode``, ``reason``, ``next_power_mw``
    ``fixed`` or ``adaptive``; the decision taken from this volume's SNR and the power
    it set for the next volume (``fixed`` runs: the same power).
``target_snr``
    Adaptive runs only.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal import read_journal

ILLUMINATION_LOG = "illumination.jsonl"


class IlluminationLog:
    """Appends records to a dataset's ``illumination.jsonl`` (thread-safe)."""

    def __init__(self, dataset: str | Path) -> None:
        self.path = Path(dataset) / ILLUMINATION_LOG
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line, durable when this returns."""
        line = json.dumps(record, allow_nan=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def read_illumination(dataset: str | Path) -> list[dict[str, Any]]:
    """The records of a dataset's ``illumination.jsonl`` in volume order (``t``, ``c``).

    Returns an empty list for a dataset without one (written before issue 14).
    Damaged lines and a torn last line are skipped.
    """
    records = read_journal(Path(dataset) / ILLUMINATION_LOG)
    return sorted(records, key=lambda r: (int(r["t"]), int(r["p"]), int(r["c"])))


@dataclass(frozen=True, slots=True)
class IlluminationSummary:
    """What a run's illumination came to."""

    mode: str
    volumes: int
    dose_j_cm2: float
    power_min_mw: float
    power_max_mw: float
    intensity_min_w_cm2: float
    intensity_max_w_cm2: float
    snr_statistic: str
    measured: int
    target_snr: float | None = None
    at_target: int = 0

    def describe(self) -> str:
        """One or two lines for the end of a run."""
        text = (
            f"illumination ({self.mode}): {self.volumes} volume(s), "
            f"{self.power_min_mw:.3g}–{self.power_max_mw:.3g} mW "
            f"({self.intensity_min_w_cm2:.3g}–{self.intensity_max_w_cm2:.3g} W/cm²), "
            f"total dose {self.dose_j_cm2:.4g} J/cm²"
        )
        if self.target_snr is not None:
            text += (
                f"; {self.at_target} of {self.volumes} volume(s) at or above SNR "
                f"{self.target_snr:g} ({self.snr_statistic})"
            )
        if self.measured < self.volumes:
            text += f"; SNR not measured for {self.volumes - self.measured}"
        return text


def summarize_illumination(
    records: list[dict[str, Any]], target_snr: float | None = None
) -> IlluminationSummary | None:
    """Summary of ``records`` (from :func:`read_illumination`); None when empty.

    ``target_snr`` defaults to the run's own (adaptive runs).
    """
    if not records:
        return None
    if target_snr is None:
        target_snr = next((r["target_snr"] for r in records if r.get("target_snr")), None)
    snrs = [r.get("snr") for r in records]
    finite = [float(s) for s in snrs if isinstance(s, int | float) and math.isfinite(s)]
    powers = [float(r["power_mw"]) for r in records]
    intensities = [float(r["intensity_w_cm2"]) for r in records]
    return IlluminationSummary(
        mode=str(records[-1].get("mode", "fixed")),
        volumes=len(records),
        dose_j_cm2=max(float(r["dose_j_cm2"]) for r in records),
        power_min_mw=min(powers),
        power_max_mw=max(powers),
        intensity_min_w_cm2=min(intensities),
        intensity_max_w_cm2=max(intensities),
        snr_statistic=str(records[-1].get("snr_statistic", "p10")),
        measured=len(finite),
        target_snr=float(target_snr) if target_snr is not None else None,
        at_target=sum(s >= target_snr for s in finite) if target_snr is not None else 0,
    )
