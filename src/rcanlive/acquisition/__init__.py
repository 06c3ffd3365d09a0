"""Acquisition plans (useq sequences), frame→volume assembly, running a plan."""

from __future__ import annotations

from .assembler import VolumeAssembler
from .plans import PlanError, PreparedPlan, prepare, serpentine, tile_positions
from .runner import AcquisitionError, RunResult, RunStatus, run_plan

__all__ = [
    "AcquisitionError",
    "PlanError",
    "PreparedPlan",
    "RunResult",
    "RunStatus",
    "VolumeAssembler",
    "prepare",
    "run_plan",
    "serpentine",
    "tile_positions",
]
