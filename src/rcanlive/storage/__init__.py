"""OME-Zarr (NGFF 0.5, zarr v3) datasets: raw, restored, training pairs, tiles."""

from __future__ import annotations

from .dataset import Dataset, DatasetWriter, Geometry, open_dataset, read_log
from .pairs import read_pairs
from .volume import Volume

__all__ = [
    "Dataset",
    "DatasetWriter",
    "Geometry",
    "Volume",
    "open_dataset",
    "read_log",
    "read_pairs",
]
