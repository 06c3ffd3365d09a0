"""The rig description: which Micro-Manager config, which devices do what, optics,
camera parameters and the AOTF calibration that turns physical units into values."""

from __future__ import annotations

import builtins
import itertools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from .loading import FrozenModel, load_config

#: The paper's field of view at the sample, µm (used for W/cm²).
PAPER_FOV_UM = (106.0, 68.0)

_Positive = Annotated[StrictFloat, Field(gt=0)]
#: an AOTF value (DAQ volts, percent...) or a power (mW) of a calibration table
_CalibrationNumber = Annotated[StrictFloat, Field(ge=-1e6, le=1e6)]
#: smallest step between calibration points, in both columns
CALIBRATION_RESOLUTION = 1e-6
_GelFields = Annotated[StrictInt, Field(ge=1, le=10)]


class CameraParams(FrozenModel):
    """sCMOS conversion parameters (paper: 100 counts, 0.46 e⁻/count, 1.3 e⁻)."""

    offset_counts: StrictFloat = Field(default=100.0, ge=0, le=65_535)
    electrons_per_count: StrictFloat = Field(default=0.46, gt=0)
    read_noise_e: StrictFloat = Field(default=1.3, ge=0)


class LaserLine(FrozenModel):
    """One laser line behind the AOTF.

    ``calibration`` is a table of ``[aotf_value, power_mw]`` points measured with a
    power meter just before the objective, strictly increasing in both columns, with
    steps of at least :data:`CALIBRATION_RESOLUTION` (finer steps are measurement noise,
    and make the interpolation that turns powers into AOTF values overflow).
    """

    wavelength_nm: StrictInt = Field(gt=300, lt=1100)
    device: str = "AOTF"
    property: str
    calibration: list[tuple[_CalibrationNumber, _CalibrationNumber]] = Field(
        min_length=2, max_length=10_000
    )

    @field_validator("calibration")
    @classmethod
    def _monotonic(cls, table: list[tuple[float, float]]) -> list[tuple[float, float]]:
        values = [v for v, _ in table]
        powers = [p for _, p in table]
        if any(b <= a for a, b in itertools.pairwise(values)) or any(
            b <= a for a, b in itertools.pairwise(powers)
        ):
            raise ValueError(
                "calibration rows [aotf_value, power_mw] must increase strictly in both "
                "columns (sort them; remove duplicate points)"
            )
        if table[0][1] < 0:
            raise ValueError("calibration powers must be ≥ 0 mW")
        steps = [b - a for col in (values, powers) for a, b in itertools.pairwise(col)]
        if min(steps) < CALIBRATION_RESOLUTION:
            raise ValueError(
                "calibration rows [aotf_value, power_mw] must differ by at least "
                f"{CALIBRATION_RESOLUTION:g} in both columns (merge points closer than that)"
            )
        return table

    @builtins.property  # `property` is a field of this model
    def max_power_mw(self) -> float:
        """Highest calibrated power, mW."""
        return self.calibration[-1][1]


#: ``[simulation] brightness`` at which simulated mitochondria have the input SNR of the
#: paper's at 4.2 W/cm² (≥ 5.1: Fig. 1c adds noise to its raw input to reach 5.1 and 2.1);
#: measured with ``benchmarks/bench_quality.py``'s test fields (1009–1072).
PAPER_BRIGHTNESS = 1000.0


class SimulationSettings(FrozenModel):
    """Simulated-rig only: what sits on the stage and how the hardware misbehaves."""

    sample: Literal["mitochondria", "er", "filaments", "puncta", "sheets", "phantoms", "gel"] = (
        "mitochondria"
    )
    seed: StrictInt = Field(default=0, ge=0, lt=2**32)
    #: photoelectrons per voxel of density 1 per W/cm² and second: how bright the label
    #: is. 120 (default): a dim label, median input SNR ≈ 1.4 on mitochondria at the
    #: paper's 4.2 W/cm²; ``PAPER_BRIGHTNESS`` (1000): the paper's mitochondria (SNR ≈ 5)
    brightness: StrictFloat = Field(default=120.0, gt=0, le=100_000)
    stage_error_um: StrictFloat = Field(default=0.0, ge=0, le=50)
    realtime: StrictBool = True
    fast_mode: StrictBool = False
    #: size of the expanded gel (rows, columns) in fields of view
    gel_fields: tuple[_GelFields, _GelFields] = (3, 3)


class RigConfig(FrozenModel):
    """Everything rcanlive needs to know about a microscope beyond its ``.cfg``."""

    name: str
    mm_config: Path
    simulated: StrictBool = False
    pixel_size_um: StrictFloat = Field(gt=0, le=1000)
    fov_um: tuple[_Positive, _Positive] = PAPER_FOV_UM
    camera_device: str = "Camera"
    focus_device: str = "Piezo"
    xy_device: str = "XYStage"
    shutter_device: str = "Blanking"
    focus_range_um: tuple[StrictFloat, StrictFloat] = (0.0, 100.0)
    xy_limits_um: tuple[StrictFloat, StrictFloat, StrictFloat, StrictFloat] = (
        -25000,
        25000,
        -25000,
        25000,
    )
    camera: CameraParams = Field(default_factory=CameraParams)
    lasers: list[LaserLine] = Field(min_length=1)
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)

    @model_validator(mode="after")
    def _consistent(self) -> RigConfig:
        lines = [ln.wavelength_nm for ln in self.lasers]
        if len(set(lines)) != len(lines):
            raise ValueError(f"laser lines must be unique, got {lines}")
        lo, hi = self.focus_range_um
        if not lo < hi:
            raise ValueError(
                f"focus_range_um {self.focus_range_um} must be [low, high], low < high"
            )
        xmin, xmax, ymin, ymax = self.xy_limits_um
        if not (xmin < xmax and ymin < ymax):
            raise ValueError(
                f"xy_limits_um {self.xy_limits_um} must be [xmin, xmax, ymin, ymax] with "
                "xmin < xmax and ymin < ymax"
            )
        return self

    def laser(self, wavelength_nm: int) -> LaserLine:
        """The laser line at ``wavelength_nm``; error lists the available lines."""
        for ln in self.lasers:
            if ln.wavelength_nm == wavelength_nm:
                return ln
        have = [ln.wavelength_nm for ln in self.lasers]
        raise ValueError(f"rig {self.name!r} has no {wavelength_nm} nm line; it has {have}")


def load_rig(path: str | Path) -> RigConfig:
    """Load a rig file; ``mm_config`` is resolved relative to the rig file."""
    path = Path(path)
    rig = load_config(path, RigConfig)
    if not rig.mm_config.is_absolute():
        rig = rig.model_copy(update={"mm_config": (path.parent / rig.mm_config).resolve()})
    return rig
