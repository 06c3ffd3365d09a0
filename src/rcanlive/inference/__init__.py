"""Restore volumes with a trained RCAN: backends, tiled prediction, benchmarks.

Typical use::

    from rcanlive.inference import create_backend, predict_volume

    with create_backend("auto", "model.pt") as backend:
        restored = predict_volume(raw_volume, backend)
"""

from __future__ import annotations

from .backends import (
    BACKEND_NAMES,
    DEFAULT_STATIC_TILE,
    PRECISIONS,
    ArtifactManifest,
    Backend,
    BackendError,
    BackendInfo,
    BackendName,
    BackendOutOfMemory,
    BackendUnavailable,
    Precision,
    TileShape,
    auto_backend,
    available_backends,
    create_backend,
    default_cache_dir,
    export_artifact,
    is_artifact,
    open_artifact,
    read_manifest,
)
from .live import LiveRestorer, LiveStats, Restored
from .tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    Tile,
    TileGrid,
    choose_tile_shape,
    predict_volume,
)

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_OVERLAP",
    "DEFAULT_STATIC_TILE",
    "DEFAULT_TILE",
    "PRECISIONS",
    "ArtifactManifest",
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendName",
    "BackendOutOfMemory",
    "BackendUnavailable",
    "LiveRestorer",
    "LiveStats",
    "Precision",
    "Restored",
    "Tile",
    "TileGrid",
    "TileShape",
    "auto_backend",
    "available_backends",
    "choose_tile_shape",
    "create_backend",
    "default_cache_dir",
    "export_artifact",
    "is_artifact",
    "open_artifact",
    "predict_volume",
    "read_manifest",
]
