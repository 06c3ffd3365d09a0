"""The tile layout of a tiling dataset: tiles, their stage positions in pixels, neighbours.

Coordinates are in level-0 pixels of a global frame whose origin is the stage origin:
a tile whose NGFF translation is ``(…, y0_um, x0_um)`` has its top-left pixel at
``(y0_um / pixel_um, x0_um / pixel_um)``. The stitched image keeps that frame, so it
sits at the same physical place as its tiles in any NGFF viewer.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr

from ..storage.dataset import Dataset
from ..storage.errors import DamagedVolume, IntegrityWarning
from ..storage.integrity import CHECKSUM_FIELD, fill_plane_checksum, volume_chunks
from ..storage.journal import RESTORED_LOG, VOLUMES_LOG, key_of, read_journal
from ..storage.layout import RAW_TILES, TILE_GROUPS, tile_image
from ..storage.ngff import image_scale

if TYPE_CHECKING:
    from collections.abc import Iterator

ImageKind = Literal["tiles", "restored"]
#: NGFF group holding the tiles of each kind of image.
#: the images a tiling dataset stitches (the dataset's layout says where they are)
STITCHABLE = ("tiles", "restored")


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


def _present_keys(path: Path, image: ImageKind, verify: bool = False) -> set[tuple[int, int]]:
    """``(p, c)`` of the volumes that are complete (and restored, for ``restored``):
    logged, with every chunk on disk (and, with ``verify``, matching their checksums).

    Damage found on the way is re-issued as :class:`StitchWarning` (the tile is left
    as a gap).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IntegrityWarning)
        ds = Dataset(path)
        done = {(p, c) for t, p, c in ds.keys() if t == 0}
        if image == "restored":
            done &= {(p, c) for t, p, c in ds.restored_keys() if t == 0}
        if verify:
            for p, c in sorted(done):
                try:
                    ds.volume(0, p=p, c=c, image="raw" if image == "tiles" else "restored")
                except DamagedVolume:
                    done.discard((p, c))
    for w in caught:
        if issubclass(w.category, IntegrityWarning):
            warnings.warn(f"{w.message}; the tile is left as a gap", StitchWarning, stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return done


def load_layout(
    path: str | Path, image: ImageKind = "tiles", *, verify: bool = False
) -> TileLayout:
    """Read the tile layout of a tiling dataset.

    Tiles that were never completed (an interrupted run), whose chunks are not all on
    disk (damage) or, for ``image="restored"``, never restored are marked absent with
    a :class:`StitchWarning`. ``verify`` also reads every tile once and compares it
    with its checksums (a full extra pass over the data; ``rcanlive check`` does the
    same), so that an altered tile is left out too.

    Raises
    ------
    StitchError
        If ``path`` is not a tiling dataset or holds no usable tile.
    """
    path = Path(path)
    root, _ = _open_tiling(path, image)
    tiles_meta: Any = root[RAW_TILES].attrs["rcanlive"]
    manifest: list[dict[str, Any]] = list(tiles_meta["manifest"])
    if not manifest:
        raise StitchError(f"{path}: the tile manifest is empty")
    first: Any = root[tile_image(manifest[0]["index"], image)]
    arr: Any = first["0"]
    scale = image_scale(first)
    ms: Any = first.attrs["ome"]["multiscales"][0]
    translation = ms["datasets"][0]["coordinateTransformations"]
    z0 = float(translation[1]["translation"][1]) if len(translation) > 1 else 0.0
    px = float(scale["x"])
    h, w = arr.shape[2], arr.shape[3]
    n_c = arr.shape[0]
    done = _present_keys(path, image, verify)
    tiles = [_manifest_tile(entry, done, n_c, px, (h, w)) for entry in manifest]
    missing = [t.index for t in tiles if not t.present]
    if missing:
        _warn_missing(missing, len(tiles), image)
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


def _open_tiling(path: Path, image: ImageKind) -> tuple[zarr.Group, str]:
    """The root group of tiling dataset ``path`` and the name of its ``image`` tile group."""
    if not (path / "zarr.json").is_file():
        raise StitchError(f"{path} is not an rcanlive OME-Zarr dataset (no zarr.json)")
    root = zarr.open_group(path, mode="r")
    meta = root.attrs.get("rcanlive")
    if not isinstance(meta, dict) or meta.get("kind") != "tile":
        kind = meta.get("kind") if isinstance(meta, dict) else None
        what = f"a {kind} dataset" if kind else "not an rcanlive dataset"
        raise StitchError(
            f"{path} is {what}; only tiling datasets (from `rcanlive acquire tile`) are stitched"
        )
    if image not in STITCHABLE:
        raise StitchError(f"unknown image {image!r}; choose one of {sorted(STITCHABLE)}")
    group = TILE_GROUPS[image]
    if group not in root:
        hint = (
            " (restore the tiles first, or acquire them with a model)"
            if image == "restored"
            else ""
        )
        raise StitchError(f"{path} has no {group!r} images{hint}")
    return root, group


def _manifest_tile(
    entry: dict[str, Any],
    done: set[tuple[int, int]],
    n_c: int,
    px: float,
    tile_yx: tuple[int, int],
) -> Tile:
    """The tile of one manifest entry: present when all ``n_c`` channels are ``done``."""
    i = int(entry["index"])
    h, w = tile_yx
    present = all((i, c) in done for c in range(n_c))
    stage = (
        float(entry["y_um"]) / px - h / 2,
        float(entry["x_um"]) / px - w / 2,
    )
    return Tile(i, int(entry["row"]), int(entry["col"]), stage, present)


def _warn_missing(missing: list[int], n_tiles: int, image: ImageKind) -> None:
    """Warn (for the caller of :func:`load_layout`) that the ``missing`` tiles are gaps."""
    what = "restored" if image == "restored" else "completely acquired"
    what += " (or are damaged)"
    warnings.warn(
        f"{len(missing)} of {n_tiles} tile(s) were not {what} (index "
        f"{', '.join(map(str, missing[:10]))}{', ...' if len(missing) > 10 else ''}); "
        "they are left as gaps",
        StitchWarning,
        stacklevel=3,
    )


class TileReader:
    """Reads regions of tiles from a dataset; picklable, so it travels to Dask workers.

    Only the requested region is decoded (the tiles are chunked by plane), so a
    task holds at most the tiles that touch its output chunk. The chunks of the planes
    read must be on disk: a missing one raises :class:`~rcanlive.storage.DamagedVolume`
    instead of reading as zeros (unless the writer's checksum says the plane held only
    the fill value, which a writer may leave out).
    """

    def __init__(self, path: str | Path, image: ImageKind = "tiles") -> None:
        self.path = Path(path)
        self.image = image
        self._forget()

    def _forget(self) -> None:
        """Drop what was opened or read (not picklable, or per process)."""
        self._root: zarr.Group | None = None
        self._arrays: dict[int, zarr.Array] = {}
        self._chunks: dict[tuple[int, int], list[tuple[str, ...]]] = {}
        self._checksums: dict[tuple[int, int, int], list[int]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "image": self.image}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.image = state["path"], state["image"]
        self._forget()

    def _array(self, index: int) -> zarr.Array:
        if index not in self._arrays:
            if self._root is None:
                self._root = zarr.open_group(self.path, mode="r")
            name = f"{tile_image(index, self.image)}/0"
            self._arrays[index] = self._root[name]  # type: ignore[assignment]
        return self._arrays[index]

    def _plane_checksums(self, key: tuple[int, int, int]) -> list[int] | None:
        """The checksums logged for a tile, read once per reader (per Dask worker)."""
        if self._checksums is None:
            log = VOLUMES_LOG if self.image == "tiles" else RESTORED_LOG
            self._checksums = {
                key_of(r): r[CHECKSUM_FIELD]
                for r in read_journal(self.path / log)
                if isinstance(r.get(CHECKSUM_FIELD), list)
            }
        return self._checksums.get(key)

    def _check_chunks(self, index: int, c: int, z: slice) -> None:
        array = self._array(index)
        per_plane = self._chunks.get((index, c))
        if per_plane is None:
            per_plane = self._chunks[(index, c)] = volume_chunks(array, (c,))
        root = str(self.path)
        missing: dict[str, None] = {}
        for plane, chunks in zip(range(len(per_plane))[z], per_plane[z], strict=True):
            gone = [ch for ch in chunks if not os.path.isfile(os.path.join(root, ch))]
            if not gone:
                continue
            sums = self._plane_checksums((0, index, c))
            if sums is not None and plane < len(sums):
                if sums[plane] == fill_plane_checksum(array, (c,)):
                    continue
            missing.update(dict.fromkeys(gone))
        if missing:
            image = "raw" if self.image == "tiles" else "restored"
            raise DamagedVolume(self.path, (0, index, c), image, list(missing), "missing")

    def read(self, index: int, c: int, z: slice, y: slice, x: slice) -> np.ndarray:
        """Tile ``index``, channel ``c``, region ``[z, y, x]`` as float32.

        Raises
        ------
        DamagedVolume
            A chunk of the region is not on disk.
        """
        self._check_chunks(index, c, z)
        return np.asarray(self._array(index)[c, z, y, x], dtype=np.float32)


def iter_boxes(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """Every chunk-aligned box of an array of ``shape``, in C order."""
    ranges = [range(0, s, c) for s, c in zip(shape, chunks, strict=True)]
    for starts in np.ndindex(*(len(r) for r in ranges)):
        yield tuple(
            slice(r[i], min(r[i] + c, s))
            for r, i, c, s in zip(ranges, starts, chunks, shape, strict=True)
        )
