"""Restored volumes next to the raw ones: same indices, float32, with a log.

Live datasets: ``restored`` is an NGFF image shaped like ``raw`` (t, c, z, y, x),
float32 in the raw intensity scale. Tiling datasets: ``restored_tiles/NNNN`` is one
NGFF image (c, z, y, x) per tile, float32, with the raw tile's scale and translation
(so restored tiles stitch exactly like raw ones). ``restored.jsonl`` records, per
volume, whether it was restored (latency, backend, precision, means) or skipped and
why; the last record for a volume wins, so restoring a skipped volume afterwards simply appends.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from .dataset import Dataset
from .integrity import CHECKSUM_FIELD, plane_checksums
from .layout import (
    RAW_TILES,
    RESTORED_TILES,
    restored_image,
    tile_image,
    tile_name,
    volume_location,
)
from .ngff import create_image, image_scale

LOG_NAME = "restored.jsonl"


def restoration_records(path: str | Path) -> dict[tuple[int, int, int], dict[str, Any]]:
    """Latest restoration record per ``(t, p, c)``."""
    return Dataset(path).restoration_records()


def missing_restorations(path: str | Path) -> list[tuple[int, int, int]]:
    """Complete raw volumes not (yet) restored: skipped, failed, never tried, or whose
    restored chunks are gone."""
    ds = Dataset(path)
    done = set(ds.restored_keys())
    return [k for k in ds.keys() if k not in done]


def _restored_tiles(root: zarr.Group) -> dict[int, Any]:
    """The ``restored_tiles/NNNN`` arrays of a tiling dataset, created if absent."""
    tiles_meta: Any = root[RAW_TILES].attrs["rcanlive"]
    group = root.require_group(RESTORED_TILES)
    arrays: dict[int, Any] = {}
    for tile in tiles_meta["manifest"]:
        name = tile_name(tile["index"])
        if name in group:
            arrays[tile["index"]] = _every_chunk(group[f"{name}/0"])
            continue
        raw_group: Any = root[tile_image(tile["index"])]
        raw = raw_group["0"]
        datasets = raw_group.attrs["ome"]["multiscales"][0]["datasets"][0]
        transforms = datasets["coordinateTransformations"]
        arrays[tile["index"]] = create_image(
            group,
            name,
            axes="czyx",
            shape=raw.shape,
            dtype="float32",
            scale=transforms[0]["scale"],
            translation=transforms[1]["translation"] if len(transforms) > 1 else None,
            chunks=[1, 1, *raw.shape[2:]],
            attrs={"rcanlive": {"tile": tile, "restored": True}},
        )
        arrays[tile["index"]] = _every_chunk(arrays[tile["index"]])
    return arrays


def _every_chunk(array: Any) -> zarr.Array:
    """``array`` writing every chunk, even one equal to the fill value: a missing chunk
    then always means damage, never "all zeros"."""
    return cast("zarr.Array", array.with_config({"write_empty_chunks": True}))


class RestoredWriter:
    """Writes restored volumes and their records into a live or tiling dataset
    (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        root = zarr.open_group(self.path, mode="r+")
        meta: Any = root.attrs.get("rcanlive", {})
        self.kind = meta.get("kind")
        self.tiles: dict[int, Any] = {}
        self.array: zarr.Array
        if self.kind == "tile":
            self.tiles = _restored_tiles(root)
        elif self.kind != "live":
            raise ValueError(
                f"{self.path}: restored volumes are stored for live and tiling datasets only"
            )
        elif "restored" in root:
            self.array = _every_chunk(root[f"{restored_image('live')}/0"])
        else:
            raw = cast("zarr.Array", root["raw/0"])
            scale = image_scale(cast("zarr.Group", root["raw"]))
            self.array = create_image(
                root,
                "restored",
                axes="tczyx",
                shape=raw.shape,
                dtype="float32",
                scale=[scale[a] for a in "tczyx"],
                chunks=[1, 1, 1, *raw.shape[3:]],
            )
            self.array = _every_chunk(self.array)
        self._lock = threading.Lock()
        self._log = open(self.path / LOG_NAME, "a", encoding="utf-8")

    def _append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
            os.fsync(self._log.fileno())

    def write(self, key: tuple[int, int, int], data: np.ndarray, **info: Any) -> None:
        """Store a restored volume, then record it (latency, backend, ...)."""
        t, p, c = key
        data32 = data.astype(np.float32, copy=False)
        if self.kind == "tile":
            self.tiles[p][c] = data32
        else:
            self.array[t, c] = data32
        self._append(
            {
                "t": t,
                "p": p,
                "c": c,
                "status": "restored",
                "mean": float(data32.mean()),
                CHECKSUM_FIELD: plane_checksums(data32),
                **info,
            }
        )

    def skip(self, key: tuple[int, int, int], reason: str, status: str = "skipped") -> None:
        """Record that a volume was not restored (``skipped`` or ``failed``), and why."""
        t, p, c = key
        self._append({"t": t, "p": p, "c": c, "status": status, "reason": reason})

    def close(self) -> None:
        if not self._log.closed:
            self._log.close()


def read_restored(ds: Dataset, t: int, c: int = 0) -> np.ndarray:
    """A restored volume, verified; ``KeyError`` if it was not restored (or is damaged)."""
    return ds.volume(t, c=c, image="restored")


def restored_volume(path: str | Path, key: tuple[int, int, int]) -> np.ndarray:
    """The restored volume ``key`` of a live or tiling dataset, read as stored (for the
    dashboard, just after a worker wrote it; readers that must verify use
    :meth:`Dataset.volume` with ``image="restored"``)."""
    root = zarr.open_group(Path(path), mode="r")
    kind = root.attrs["rcanlive"]["kind"]  # type: ignore[index,call-overload]
    name, index = volume_location(str(kind), key, "restored")
    return np.asarray(root[name][index])  # type: ignore[index]
