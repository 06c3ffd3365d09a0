"""Acquisition plans (useq sequences), frame→volume assembly, running a plan, and the
pymmcore-plus output handler that records (and restores) any MDA."""

from __future__ import annotations

from .assembler import VolumeAssembler
from .handler import HandlerResult, LiveRestorationHandler
from .plans import PlanError, PreparedPlan, prepare, serpentine, tile_positions
from .runner import AcquisitionError, RunResult, RunStatus, run_plan

__all__ = [
    "AcquisitionError",
    "HandlerResult",
    "LiveRestorationHandler",
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
