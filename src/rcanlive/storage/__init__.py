"""OME-Zarr (NGFF 0.5, zarr v3) datasets: raw, restored, training pairs, tiles."""

from __future__ import annotations

from .dataset import Dataset, DatasetWriter, Geometry, annotate, open_dataset, read_log
from .pairs import read_pairs
from .restored import (
    RestoredWriter,
    missing_restorations,
    read_restored,
    restoration_records,
)
from .volume import Volume

__all__ = [
    "Dataset",
    "DatasetWriter",
    "Geometry",
    "RestoredWriter",
    "Volume",
    "annotate",
    "missing_restorations",
    "open_dataset",
    "read_log",
    "read_pairs",
    "read_restored",
    "restoration_records",
]
