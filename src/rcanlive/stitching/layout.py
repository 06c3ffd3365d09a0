"""The tile layout of a tiling dataset: tiles, their stage positions in pixels, neighbours.

Coordinates are in level-0 pixels of a global frame whose origin is the stage origin:
a tile whose NGFF translation is ``(…, y0_um, x0_um)`` has its top-left pixel at
``(y0_um / pixel_um, x0_um / pixel_um)``. The stitched image keeps that frame, so it
sits at the same physical place as its tiles in any NGFF viewer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr

from ..storage.dataset import read_log
from ..storage.ngff import image_scale
from ..storage.restored import restoration_records

if TYPE_CHECKING:
    from collections.abc import Iterator

ImageKind = Literal["tiles", "restored"]
#: NGFF group holding the tiles of each kind of image.
TILE_GROUPS: dict[str, str] = {"tiles": "tiles", "restored": "restored_tiles"}


class StitchError(ValueError):
    """The dataset cannot be stitched; the message says why and what to do."""


class StitchWarning(UserWarning):
    """Something was stitched less well than asked: a gap, a tile at its stage position."""


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile of the grid.

    Attributes
    ----------
    index
        Acquisition index (``tiles/NNNN``).
    row, col
        Grid position.
    stage_px
        ``(y, x)`` of the tile's top-left pixel from the stage position, level-0 pixels.
    present
        Whether every channel of the tile was completely written (and, for restored
        tiles, restored).
    """

    index: int
    row: int
    col: int
    stage_px: tuple[float, float]
    present: bool


@dataclass(frozen=True)
class TileLayout:
    """Every tile of a tiling dataset, with what stitching needs to know about them."""

    path: Path
    image: ImageKind
    tiles: tuple[Tile, ...]
    #: ``(c, z, y, x)`` of every tile
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    #: level-0 ``(z, y, x)`` voxel size, µm
    voxel_um: tuple[float, float, float]
    #: physical z of the first plane, µm (the same for every tile)
    z0_um: float

    @property
    def tile_yx(self) -> tuple[int, int]:
        """Height and width of a tile, pixels."""
        return self.shape[2], self.shape[3]

    def tile(self, index: int) -> Tile:
        """The tile with acquisition index ``index``."""
        for t in self.tiles:
            if t.index == index:
                return t
        raise KeyError(index)

    def present(self) -> list[Tile]:
        """Tiles that can be used."""
        return [t for t in self.tiles if t.present]

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """Present grid neighbours ``(a, b)`` (right and lower neighbour of ``a``)."""
        by_rc = {(t.row, t.col): t for t in self.tiles if t.present}
        pairs = []
        for (r, c), t in sorted(by_rc.items()):
            for dr, dc in ((0, 1), (1, 0)):
                other = by_rc.get((r + dr, c + dc))
                if other is not None:
                    pairs.append((t.index, other.index))
        return pairs

    def nominal_overlap_px(self) -> int:
        """The smallest overlap between grid neighbours at their stage positions, pixels."""
        h, w = self.tile_yx
        by_rc = {(t.row, t.col): t for t in self.tiles}
        overlaps = []
        for (r, c), t in by_rc.items():
            right, below = by_rc.get((r, c + 1)), by_rc.get((r + 1, c))
            if right is not None:
                overlaps.append(w - abs(right.stage_px[1] - t.stage_px[1]))
            if below is not None:
                overlaps.append(h - abs(below.stage_px[0] - t.stage_px[0]))
        return max(int(min(overlaps)), 0) if overlaps else 0

    def group_path(self, index: int) -> str:
        """Path of a tile's NGFF image inside the dataset."""
        return f"{TILE_GROUPS[self.image]}/{index:04d}"


def _present_keys(path: Path, image: ImageKind) -> set[tuple[int, int]]:
    """``(p, c)`` of the volumes that are complete (and restored, for ``restored``)."""
    done = {(r["p"], r["c"]) for r in read_log(path) if r.get("t", 0) == 0}
    if image == "restored":
        records = restoration_records(path)
        done = {(p, c) for p, c in done if records.get((0, p, c), {}).get("status") == "restored"}
    return done


def load_layout(path: str | Path, image: ImageKind = "tiles") -> TileLayout:
    """Read the tile layout of a tiling dataset.

    Tiles that were never completed (an interrupted run) or, for ``image="restored"``,
    never restored are marked absent with a :class:`StitchWarning`.

    Raises
    ------
    StitchError
        If ``path`` is not a tiling dataset or holds no usable tile.
    """
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StitchError(f"{path} is not an rcanlive OME-Zarr dataset (no zarr.json)")
    root = zarr.open_group(path, mode="r")
    meta = root.attrs.get("rcanlive")
    if not isinstance(meta, dict) or meta.get("kind") != "tile":
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise StitchError(f"{path} is a {kind!r} dataset; only tiling datasets are stitched")
    if image not in TILE_GROUPS:
        raise StitchError(f"unknown image {image!r}; choose one of {sorted(TILE_GROUPS)}")
    group = TILE_GROUPS[image]
    if group not in root:
        hint = (
            " (restore the tiles first: rcanlive restore DATASET, or acquire with --model)"
            if image == "restored"
            else ""
        )
        raise StitchError(f"{path} has no {group!r} images{hint}")
    tiles_meta: Any = root["tiles"].attrs["rcanlive"]
    manifest: list[dict[str, Any]] = list(tiles_meta["manifest"])
    if not manifest:
        raise StitchError(f"{path}: the tile manifest is empty")
    first: Any = root[f"{group}/{manifest[0]['index']:04d}"]
    arr: Any = first["0"]
    scale = image_scale(first)
    ms: Any = first.attrs["ome"]["multiscales"][0]
    translation = ms["datasets"][0]["coordinateTransformations"]
    z0 = float(translation[1]["translation"][1]) if len(translation) > 1 else 0.0
    px = float(scale["x"])
    h, w = arr.shape[2], arr.shape[3]
    n_c = arr.shape[0]
    done = _present_keys(path, image)
    tiles = []
    missing = []
    for entry in manifest:
        i = int(entry["index"])
        present = all((i, c) in done for c in range(n_c))
        if not present:
            missing.append(i)
        stage = (
            float(entry["y_um"]) / px - h / 2,
            float(entry["x_um"]) / px - w / 2,
        )
        tiles.append(Tile(i, int(entry["row"]), int(entry["col"]), stage, present))
    if missing:
        what = "restored" if image == "restored" else "completely acquired"
        warnings.warn(
            f"{len(missing)} of {len(tiles)} tile(s) were not {what} (index "
            f"{', '.join(map(str, missing[:10]))}{', ...' if len(missing) > 10 else ''}); "
            "they are left as gaps",
            StitchWarning,
            stacklevel=2,
        )
    if len(missing) == len(tiles):
        raise StitchError(f"{path}: no tile is complete; nothing to stitch")
    return TileLayout(
        path=path,
        image=image,
        tiles=tuple(tiles),
        shape=(n_c, arr.shape[1], h, w),
        dtype=np.dtype(arr.dtype),
        voxel_um=(float(scale["z"]), float(scale["y"]), px),
        z0_um=z0,
    )


class TileReader:
    """Reads regions of tiles from a dataset; picklable, so it travels to Dask workers.

    Only the requested region is decoded (the tiles are chunked by plane), so a
    task holds at most the tiles that touch its output chunk.
    """

    def __init__(self, path: str | Path, image: ImageKind = "tiles") -> None:
        self.path = Path(path)
        self.image = image
        self._root: zarr.Group | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "image": self.image}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.image, self._root = state["path"], state["image"], None

    def _array(self, index: int) -> zarr.Array:
        if self._root is None:
            self._root = zarr.open_group(self.path, mode="r")
        return self._root[f"{TILE_GROUPS[self.image]}/{index:04d}/0"]  # type: ignore[return-value]

    def read(self, index: int, c: int, z: slice, y: slice, x: slice) -> np.ndarray:
        """Tile ``index``, channel ``c``, region ``[z, y, x]`` as float32."""
        return np.asarray(self._array(index)[c, z, y, x], dtype=np.float32)


def iter_boxes(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """Every chunk-aligned box of an array of ``shape``, in C order."""
    ranges = [range(0, s, c) for s, c in zip(shape, chunks, strict=True)]
    for starts in np.ndindex(*(len(r) for r in ranges)):
        yield tuple(
            slice(r[i], min(r[i] + c, s))
            for r, i, c, s in zip(ranges, starts, chunks, shape, strict=True)
        )
