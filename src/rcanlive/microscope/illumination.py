"""Illumination in physical units: power at the objective (mW) or intensity (W/cm²),
mapped to AOTF values through the rig's calibration table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.interpolate import PchipInterpolator

if TYPE_CHECKING:
    from ..config.rig import LaserLine, RigConfig


def fov_area_cm2(rig: RigConfig) -> float:
    """Area of the rig's field of view in cm² (106 × 68 µm in the paper)."""
    w, h = rig.fov_um
    return (w * 1e-4) * (h * 1e-4)


def intensity_to_power_mw(rig: RigConfig, intensity_w_cm2: float) -> float:
    """Power at the objective (mW) giving ``intensity`` averaged over the FOV."""
    return intensity_w_cm2 * fov_area_cm2(rig) * 1e3


def power_to_intensity_w_cm2(rig: RigConfig, power_mw: float) -> float:
    """Average intensity (W/cm²) over the FOV for a power at the objective."""
    return power_mw * 1e-3 / fov_area_cm2(rig)


def aotf_value(line: LaserLine, power_mw: float) -> float:
    """AOTF value giving ``power_mw`` on ``line`` (monotone interpolation).

    Raises
    ------
    ValueError
        If the power is negative or above the calibrated maximum.
    """
    if power_mw < 0:
        raise ValueError(f"{line.wavelength_nm} nm power must be ≥ 0 mW, got {power_mw}")
    if power_mw > line.max_power_mw:
        raise ValueError(
            f"{line.wavelength_nm} nm: {power_mw:.3g} mW exceeds the calibrated maximum "
            f"of {line.max_power_mw:.3g} mW at the objective"
        )
    if power_mw == 0:
        return 0.0
    table = np.asarray(line.calibration, dtype=float)
    # Interpolate against √P, the optical field amplitude: an AOTF's response is
    # close to linear in it at low power, where P itself is strongly curved.
    inverse = PchipInterpolator(np.sqrt(table[:, 1]), table[:, 0])
    return float(np.clip(inverse(np.sqrt(power_mw)), table[0, 0], table[-1, 0]))


def aotf_power_mw(line: LaserLine, value: float) -> float:
    """Calibrated power (mW) at the objective for an AOTF value."""
    table = np.asarray(line.calibration, dtype=float)
    return float(PchipInterpolator(table[:, 0], np.sqrt(table[:, 1]))(value)) ** 2
