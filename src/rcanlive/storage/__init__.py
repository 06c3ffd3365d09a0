"""OME-Zarr (NGFF 0.5, zarr v3) datasets: raw, restored, training pairs, tiles."""

from __future__ import annotations

from .dataset import Dataset, DatasetWriter, Geometry, annotate, open_dataset, read_log
from .errors import DamagedVolume, DatasetError, DatasetExists, DatasetLocked, IntegrityWarning
from .integrity import Problem, plane_checksum, plane_checksums
from .layout import VolumeKey
from .lock import DatasetLock, lock_dataset, locked_by
from .pairs import read_keyed_pairs, read_pairs
from .restored import (
    RestoredWriter,
    missing_restorations,
    read_restored,
    restoration_records,
)
from .volume import Volume

__all__ = [
    "DamagedVolume",
    "Dataset",
    "DatasetError",
    "DatasetExists",
    "DatasetLock",
    "DatasetLocked",
    "DatasetWriter",
    "Geometry",
    "IntegrityWarning",
    "Problem",
    "RestoredWriter",
    "Volume",
    "VolumeKey",
    "annotate",
    "lock_dataset",
    "locked_by",
    "missing_restorations",
    "open_dataset",
    "plane_checksum",
    "plane_checksums",
    "read_keyed_pairs",
    "read_log",
    "read_pairs",
    "read_restored",
    "restoration_records",
]
