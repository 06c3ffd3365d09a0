"""Experiment configs, one per use: live 4D, training pairs, gel tiling.

Units are in the field names (``_um``, ``_ms``, ``_s``, ``_mw``, ``_w_cm2``).
Everything here validates without touching hardware; checks that need the rig
(FOV, overlap, stage limits, laser lines) run in :mod:`rcanlive.acquisition.plans`
before anything moves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, model_validator

from .loading import ConfigError, FrozenModel, read_config, validate_config
from .rig import SimulationSettings


class Illumination(FrozenModel):
    """One laser line at a power at the objective (mW) or an intensity (W/cm²)."""

    line_nm: StrictInt = Field(default=488, gt=300, lt=1100)
    power_mw: StrictFloat | None = Field(default=None, ge=0)
    intensity_w_cm2: StrictFloat | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> Illumination:
        if (self.power_mw is None) == (self.intensity_w_cm2 is None):
            raise ValueError("give exactly one of power_mw or intensity_w_cm2")
        return self


class ZStack(FrozenModel):
    """A z-stack centred on the focus: ``planes`` planes ``step_um`` apart."""

    planes: StrictInt = Field(default=25, ge=1, le=1000)
    step_um: StrictFloat = Field(default=0.25, gt=0, le=10)

    @property
    def range_um(self) -> float:
        return (self.planes - 1) * self.step_um


class Storage(FrozenModel):
    """Where and how the dataset is written."""

    out_dir: Path = Path("data")
    name: str = Field(default="run", pattern=r"^[A-Za-z0-9_.-]+$")
    compression: Literal["none", "zstd", "blosc-lz4"] = "none"
    #: RAM that frames may fill while they wait for the disk; beyond it they wait in
    #: the camera's sequence buffer, which stops the run cleanly when it overflows
    max_backlog_gb: StrictFloat = Field(default=2.0, gt=0, le=1024)


PositiveInt = Annotated[StrictInt, Field(ge=1, le=100_000)]


class Restoration(FrozenModel):
    """Live restoration of each volume, in worker processes (needs a model)."""

    enabled: StrictBool = True
    #: latest: a full queue drops its oldest volume; fifo: it drops the new one
    policy: Literal["latest", "fifo"] = "latest"
    max_queue: StrictInt = Field(default=1, ge=1, le=1000)
    #: tile (Z, Y, X) for the network; None = the whole volume when it fits
    tile: tuple[PositiveInt, PositiveInt, PositiveInt] | None = None
    #: one worker process per entry: "auto" (first GPU, else CPU), "cpu", "cuda:N"
    devices: tuple[str, ...] = Field(default=("auto",), min_length=1, max_length=64)
    #: intra-op threads per worker; None = the cores shared out among the CPU workers
    threads: StrictInt | None = Field(default=None, ge=1, le=1024)
    #: how many times a worker that died (abort, out of memory, CUDA error) is restarted
    restarts: StrictInt = Field(default=2, ge=0, le=100)
    #: added to the workers' niceness, so acquisition always gets the CPU first
    nice: StrictInt = Field(default=10, ge=0, le=19)

    @model_validator(mode="after")
    def _devices(self) -> Restoration:
        for device in self.devices:
            if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
                raise ValueError(
                    f"devices: {device!r} is not a device; use auto, cpu, cuda or cuda:N"
                )
        return self


class _PlanBase(FrozenModel):
    rig: str = "simulated"  # "simulated" or a path to a rig file
    exposure_ms: StrictFloat = Field(default=50.0, gt=0, le=10_000)
    camera_roi_px: tuple[StrictInt, StrictInt] = (512, 512)  # (width, height), centred
    zstack: ZStack = Field(default_factory=ZStack)
    focus_um: StrictFloat | None = None  # piezo position of the stack centre; None = current
    storage: Storage = Field(default_factory=Storage)
    #: simulated rigs only: replaces the rig file's [simulation] table
    simulation: SimulationSettings | None = None

    @model_validator(mode="after")
    def _roi(self) -> _PlanBase:
        w, h = self.camera_roi_px
        if not (1 <= w <= 2048 and 1 <= h <= 2048):
            raise ValueError(f"camera_roi_px {self.camera_roi_px} must be within 1–2048")
        return self


class AdaptiveIllumination(FrozenModel):
    """SNR-guided illumination: after each volume, the next volume's power is set from
    its input SNR (see :mod:`rcanlive.acquisition.illumination_control`).

    Bounds are powers at the objective (``min_mw``/``max_mw``) or intensities
    (``min_w_cm2``/``max_w_cm2``), one of each pair; unset, they are the rig's lowest
    and highest calibrated powers.
    """

    enabled: StrictBool = True
    #: the paper sees restoration artifacts below about 3 (Fig. 1c); 4 leaves a margin
    target_snr: StrictFloat = Field(default=4.0, gt=0, le=100)
    #: the SNR statistic over the foreground: 10th percentile (dim parts) or median
    statistic: Literal["p10", "median"] = "p10"
    min_mw: StrictFloat | None = Field(default=None, gt=0, le=1e6)
    max_mw: StrictFloat | None = Field(default=None, gt=0, le=1e6)
    min_w_cm2: StrictFloat | None = Field(default=None, gt=0, le=1e9)
    max_w_cm2: StrictFloat | None = Field(default=None, gt=0, le=1e9)
    #: largest factor by which one decision may raise or lower the power
    max_step_up: StrictFloat = Field(default=1.5, gt=1, le=10)
    max_step_down: StrictFloat = Field(default=0.8, ge=0.1, lt=1)
    #: decide after every N-th volume; the power is held in between
    every: StrictInt = Field(default=1, ge=1, le=100_000)
    #: aim this fraction above target_snr, so that noise and dimming between
    #: decisions keep volumes at or above the target
    headroom: StrictFloat = Field(default=0.10, ge=0, le=1)
    #: hold the power while the SNR is within this fraction of the aim (no chatter);
    #: outside it, each decision corrects fully
    tolerance: StrictFloat = Field(default=0.03, ge=0, lt=0.5)

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveIllumination:
        for a, b in (("min_mw", "min_w_cm2"), ("max_mw", "max_w_cm2")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ValueError(f"give {a} or {b}, not both")
        for lo, hi in (("min_mw", "max_mw"), ("min_w_cm2", "max_w_cm2")):
            low, high = getattr(self, lo), getattr(self, hi)
            if low is not None and high is not None and not low < high:
                raise ValueError(f"{lo} ({low:g}) must be below {hi} ({high:g})")
        return self


class LiveIllumination(FrozenModel):
    """Illumination control of a live run (``[illumination]``)."""

    #: ``[illumination.adaptive]``: SNR-guided power; absent = the channels' fixed power
    adaptive: AdaptiveIllumination | None = None


class LivePlan(_PlanBase):
    """Live 4D time-lapse: a z-stack per channel every ``interval_s``."""

    kind: Literal["live"] = "live"
    volumes: StrictInt = Field(default=20, ge=1, le=1_000_000)
    #: start-to-start time between volumes; at most a day
    interval_s: StrictFloat = Field(default=5.6, ge=0, le=86_400)
    position_um: tuple[StrictFloat, StrictFloat] | None = None  # None = where the stage is
    channels: list[Illumination] = Field(min_length=1)
    restoration: Restoration = Field(default_factory=Restoration)
    illumination: LiveIllumination = Field(default_factory=LiveIllumination)


class PairsPlan(_PlanBase):
    """Matched low/high training pairs: N volumes at each of M positions."""

    kind: Literal["pairs"] = "pairs"
    volumes_per_position: StrictInt = Field(default=5, ge=1, le=10_000)
    positions_um: list[tuple[StrictFloat, StrictFloat]] = Field(min_length=1, max_length=100_000)
    switch: Literal["plane", "volume"] = "plane"
    low: Illumination
    high: Illumination

    @model_validator(mode="after")
    def _same_line(self) -> PairsPlan:
        if self.low.line_nm != self.high.line_nm:
            raise ValueError("low and high must use the same laser line (line_nm)")
        return self


class TilingPlan(_PlanBase):
    """Zigzag (serpentine) tiling of a large sample with a z-stack per tile."""

    kind: Literal["tile"] = "tile"
    center_um: tuple[StrictFloat, StrictFloat] = (0.0, 0.0)
    rows: StrictInt = Field(default=3, ge=1, le=100)
    columns: StrictInt = Field(default=3, ge=1, le=100)
    step_um: StrictFloat = Field(default=70.0, gt=0, le=150)
    min_overlap: StrictFloat = Field(default=0.20, ge=0, lt=1)
    force_overlap: StrictBool = False  # accept overlap below min_overlap
    channel: Illumination
    #: restore every tile as it arrives (needs a model); None = off. Tiles skipped by
    #: a full queue are restored afterwards with ``rcanlive restore DATASET --only-missing``
    restoration: Restoration | None = None


Plan = Annotated[LivePlan | PairsPlan | TilingPlan, Field(discriminator="kind")]
PLAN_TYPES: dict[str, type[_PlanBase]] = {
    "live": LivePlan,
    "pairs": PairsPlan,
    "tile": TilingPlan,
}


def load_plan(
    path: str | Path, kind: str, **overrides: object
) -> LivePlan | PairsPlan | TilingPlan:
    """Load an experiment config of ``kind`` (live, pairs or tile).

    Raises
    ------
    ConfigError
        The file cannot be read, is a config of another kind, or has a bad setting.
    """
    data = read_config(path)
    found = data.get("kind")
    if isinstance(found, str) and found in PLAN_TYPES and found != kind:
        raise ConfigError(
            f"{path}: kind = {found!r} is a {found} config; run `rcanlive acquire {found}` "
            f"with it, or give a {kind} config"
        )
    return validate_config(data, PLAN_TYPES[kind], path, **overrides)  # type: ignore[return-value]
