"""Microscope control: open a rig, illumination in physical units, the MDA engine,
laser safety."""

from __future__ import annotations

from .engine import ISIMEngine
from .rig import ILLUMINATION_GROUP, Rig, RigError, open_rig, simulated_rig_path
from .safety import LaserSafetyError, lasers_guarded, make_safe

__all__ = [
    "ILLUMINATION_GROUP",
    "ISIMEngine",
    "LaserSafetyError",
    "Rig",
    "RigError",
    "lasers_guarded",
    "make_safe",
    "open_rig",
    "simulated_rig_path",
]
