"""Stitching of tiled acquisitions: overlap registration, global placement, blended
fusion into an NGFF multiscale image, as Dask tasks on any scheduler.

Modules: :mod:`.layout` (tiles, stage → pixels, neighbours, reading tiles),
:mod:`.registration` (pairwise phase correlation with a quality check),
:mod:`.optimize` (global least squares with outlier rejection), :mod:`.fusion`
(chunked blending and pyramid), :mod:`.scheduling` (which Dask scheduler runs the
tasks) and :mod:`.stitch` (the whole chain: :func:`stitch_dataset`).
"""

from __future__ import annotations

from ..scheduling import compute, use_scheduler
from .layout import StitchError, StitchWarning, TileLayout, TileReader, load_layout
from .optimize import Placement, solve_positions
from .registration import PairShift, RegistrationSettings, register_pair
from .stitch import OUTPUT_NAMES, StitchResult, stitch_dataset

__all__ = [
    "OUTPUT_NAMES",
    "PairShift",
    "Placement",
    "RegistrationSettings",
    "StitchError",
    "StitchResult",
    "StitchWarning",
    "TileLayout",
    "TileReader",
    "compute",
    "load_layout",
    "register_pair",
    "solve_positions",
    "stitch_dataset",
    "use_scheduler",
]
