"""The rig description: which Micro-Manager config, which devices do what, optics,
camera parameters and the AOTF calibration that turns physical units into values."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .loading import FrozenModel, load_config

#: The paper's field of view at the sample, µm (used for W/cm²).
PAPER_FOV_UM = (106.0, 68.0)


class CameraParams(FrozenModel):
    """sCMOS conversion parameters (paper: 100 counts, 0.46 e⁻/count, 1.3 e⁻)."""

    offset_counts: float = Field(100.0, ge=0)
    electrons_per_count: float = Field(0.46, gt=0)
    read_noise_e: float = Field(1.3, ge=0)


class LaserLine(FrozenModel):
    """One laser line behind the AOTF.

    ``calibration`` is a table of ``[aotf_value, power_mw]`` points measured with a
    power meter just before the objective, strictly increasing in both columns.
    """

    wavelength_nm: int = Field(gt=300, lt=1100)
    device: str = "AOTF"
    property: str
    calibration: list[tuple[float, float]] = Field(min_length=2)

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
        return table

    @property
    def max_power_mw(self) -> float:
        """Highest calibrated power, mW."""
        return self.calibration[-1][1]


class SimulationSettings(FrozenModel):
    """Simulated-rig only: what sits on the stage and how the hardware misbehaves."""

    sample: Literal["mitochondria", "phantoms", "gel"] = "mitochondria"
    seed: int = 0
    stage_error_um: float = Field(0.0, ge=0, le=50)
    realtime: bool = True
    fast_mode: bool = False
    gel_fields: tuple[int, int] = (3, 3)


class RigConfig(FrozenModel):
    """Everything rcanlive needs to know about a microscope beyond its ``.cfg``."""

    name: str
    mm_config: Path
    simulated: bool = False
    pixel_size_um: float = Field(gt=0)
    fov_um: tuple[float, float] = PAPER_FOV_UM
    camera_device: str = "Camera"
    focus_device: str = "Piezo"
    xy_device: str = "XYStage"
    shutter_device: str = "Blanking"
    focus_range_um: tuple[float, float] = (0.0, 100.0)
    xy_limits_um: tuple[float, float, float, float] = (-25000, 25000, -25000, 25000)
    camera: CameraParams = CameraParams()
    lasers: list[LaserLine] = Field(min_length=1)
    simulation: SimulationSettings = SimulationSettings()

    @model_validator(mode="after")
    def _unique_lines(self) -> RigConfig:
        lines = [ln.wavelength_nm for ln in self.lasers]
        if len(set(lines)) != len(lines):
            raise ValueError(f"laser lines must be unique, got {lines}")
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
