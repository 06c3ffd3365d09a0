"""Restore volumes with a trained RCAN: backends, tiled prediction, the restoration
worker processes, benchmarks.

Typical use::

    from rcanlive.inference import create_backend, predict_volume

    with create_backend("auto", "model.pt") as backend:
        restored = predict_volume(raw_volume, backend)

Names are imported on first use, so that the acquisition process can use the
restoration pool (:mod:`.pool`, :mod:`.events`, :mod:`.recipe`) without importing
torch: the network never runs there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
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
    from .events import RestorationEvent, RestorationStatus, VolumeRef
    from .live import LiveRestoration
    from .pool import PoolSummary, RestorationPool, WorkerDied
    from .recipe import BackendRecipe
    from .tiling import (
        DEFAULT_OVERLAP,
        DEFAULT_TILE,
        Tile,
        TileGrid,
        choose_tile_shape,
        predict_volume,
    )

_WHERE = {
    ".backends": (
        "BACKEND_NAMES",
        "DEFAULT_STATIC_TILE",
        "PRECISIONS",
        "ArtifactManifest",
        "Backend",
        "BackendError",
        "BackendInfo",
        "BackendName",
        "BackendOutOfMemory",
        "BackendUnavailable",
        "Precision",
        "TileShape",
        "auto_backend",
        "available_backends",
        "create_backend",
        "default_cache_dir",
        "export_artifact",
        "is_artifact",
        "open_artifact",
        "read_manifest",
    ),
    ".events": ("RestorationEvent", "RestorationStatus", "VolumeRef"),
    ".live": ("LiveRestoration",),
    ".pool": ("PoolSummary", "RestorationPool", "WorkerDied"),
    ".recipe": ("BackendRecipe",),
    ".tiling": (
        "DEFAULT_OVERLAP",
        "DEFAULT_TILE",
        "Tile",
        "TileGrid",
        "choose_tile_shape",
        "predict_volume",
    ),
}
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
    "BackendRecipe",
    "BackendUnavailable",
    "LiveRestoration",
    "PoolSummary",
    "Precision",
    "RestorationEvent",
    "RestorationPool",
    "RestorationStatus",
    "Tile",
    "TileGrid",
    "TileShape",
    "VolumeRef",
    "WorkerDied",
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


__getattr__ = lazy_attributes(__name__, _WHERE)
