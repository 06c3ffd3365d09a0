"""Training a 3D RCAN from matched pairs: patches, augmentation, datasets, trainer."""

from __future__ import annotations

from .augment import augment_pair
from .datasets import (
    DatasetError,
    PatchDataset,
    PreparedVolume,
    VolumePair,
    pairs_from_arrays,
    prepare,
    read_tiff_pairs,
    read_zarr_pairs,
    split_pairs,
)
from .patches import BackgroundRule, ForegroundStats, PatchSampler
from .precision import StepTiming, choose_precision, resolve_precision
from .trainer import (
    EpochRecord,
    TrainingResult,
    load_training_pairs,
    plot_history,
    train,
    train_step,
)

__all__ = [
    "BackgroundRule",
    "DatasetError",
    "EpochRecord",
    "ForegroundStats",
    "PatchDataset",
    "PatchSampler",
    "PreparedVolume",
    "StepTiming",
    "TrainingResult",
    "VolumePair",
    "augment_pair",
    "choose_precision",
    "load_training_pairs",
    "pairs_from_arrays",
    "plot_history",
    "prepare",
    "read_tiff_pairs",
    "read_zarr_pairs",
    "resolve_precision",
    "split_pairs",
    "train",
    "train_step",
]
