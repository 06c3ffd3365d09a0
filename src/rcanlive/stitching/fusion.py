"""Blended fusion of placed tiles into an NGFF multiscale image, one output chunk per task.

Each output chunk is fused from the tiles that overlap it, and only from the parts
of them that fall inside it; a task therefore holds at most a few tile regions, and
the memory of fusing a 100 × 100 grid is the memory of fusing one chunk. Tiles are
weighted by a cosine ramp that falls towards their edges (over ``blend_px``), so
seams fade across the overlap; the weights are normalised per pixel.

Placement is at whole pixels (positions are rounded): no interpolation blurs the
data, and the registration is only good to a fraction of a pixel anyway.

The pyramid is built level by level, each chunk of level ``k+1`` from the 2 × 2
chunks of level ``k`` below it (mean of 2 × 2 pixels in y, x; z untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr
from skimage.transform import downscale_local_mean

from .layout import iter_boxes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .layout import TileReader


@dataclass(frozen=True, slots=True)
class Contribution:
    """The part of one tile that lands in one output chunk."""

    index: int
    tile_y: slice
    tile_x: slice
    #: where it lands, relative to the chunk's corner
    out_y: slice
    out_x: slice


@dataclass(frozen=True, slots=True)
class ChunkJob:
    """One output chunk of level 0: its box and the tile regions that fill it."""

    c: int
    z: slice
    y: slice
    x: slice
    contributions: tuple[Contribution, ...]


@dataclass(frozen=True)
class FusionGeometry:
    """Where the stitched image lies and where each tile goes in it.

    Attributes
    ----------
    origin_px
        Global-frame ``(y, x)`` of the stitched image's pixel ``(0, 0)``.
    shape
        ``(c, z, y, x)`` of level 0.
    offsets
        Tile index → ``(y, x)`` of its top-left pixel in the stitched image.
    tile_yx
        Tile height and width.
    chunks
        Output chunk ``(c, z, y, x)``; one fusion task per chunk.
    """

    origin_px: tuple[int, int]
    shape: tuple[int, int, int, int]
    offsets: dict[int, tuple[int, int]]
    tile_yx: tuple[int, int]
    chunks: tuple[int, int, int, int]


def plan_fusion(
    positions_px: dict[int, tuple[float, float]],
    tile_shape: tuple[int, int, int, int],
    *,
    chunk_px: int = 256,
    chunk_z: int = 16,
) -> FusionGeometry:
    """Bounding box of the placed tiles and the output chunking."""
    n_c, n_z, h, w = tile_shape
    rounded = {i: (round(p[0]), round(p[1])) for i, p in positions_px.items()}
    y0 = min(p[0] for p in rounded.values())
    x0 = min(p[1] for p in rounded.values())
    y1 = max(p[0] for p in rounded.values()) + h
    x1 = max(p[1] for p in rounded.values()) + w
    return FusionGeometry(
        origin_px=(y0, x0),
        shape=(n_c, n_z, y1 - y0, x1 - x0),
        offsets={i: (p[0] - y0, p[1] - x0) for i, p in rounded.items()},
        tile_yx=(h, w),
        chunks=(1, min(n_z, chunk_z), chunk_px, chunk_px),
    )


def chunk_jobs(geometry: FusionGeometry) -> Iterator[ChunkJob]:
    """Every level-0 output chunk with the tile regions overlapping it.

    Tiles are binned by the chunks they touch first, so this is linear in the
    number of tiles and chunks, not their product.
    """
    h, w = geometry.tile_yx
    _, _, cy, cx = geometry.chunks
    touching: dict[tuple[int, int], list[int]] = {}
    for index, (ty, tx) in geometry.offsets.items():
        for by in range(ty // cy, (ty + h - 1) // cy + 1):
            for bx in range(tx // cx, (tx + w - 1) // cx + 1):
                touching.setdefault((by, bx), []).append(index)
    for c, z, y, x in iter_boxes(geometry.shape, geometry.chunks):
        contributions = []
        for index in sorted(touching.get((y.start // cy, x.start // cx), [])):
            ty, tx = geometry.offsets[index]
            ys = slice(max(y.start, ty), min(y.stop, ty + h))
            xs = slice(max(x.start, tx), min(x.stop, tx + w))
            if ys.stop <= ys.start or xs.stop <= xs.start:
                continue
            contributions.append(
                Contribution(
                    index,
                    slice(ys.start - ty, ys.stop - ty),
                    slice(xs.start - tx, xs.stop - tx),
                    slice(ys.start - y.start, ys.stop - y.start),
                    slice(xs.start - x.start, xs.stop - x.start),
                )
            )
        yield ChunkJob(c.start, z, y, x, tuple(contributions))


def blend_profile(n: int, blend_px: int) -> np.ndarray:
    """Weights along one tile axis: a cosine ramp from ~0 at the edges to 1 inside.

    Never exactly 0, so that a pixel covered by a single tile keeps its value.
    """
    i = np.arange(n, dtype=np.float64)
    distance = np.minimum(i + 0.5, n - i - 0.5)
    ramp = np.clip(distance / max(blend_px, 1), 0.0, 1.0)
    return np.maximum(0.5 - 0.5 * np.cos(np.pi * ramp), 1e-6).astype(np.float32)


def _cast(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(dtype, copy=False)


def _level_array(dataset: str | Path, name: str, level: int) -> zarr.Array:
    return zarr.open_array(Path(dataset) / name / str(level), mode="r+")


def fuse_chunk(
    reader: TileReader,
    dataset: str | Path,
    name: str,
    job: ChunkJob,
    tile_yx: tuple[int, int],
    blend_px: int,
) -> int:
    """Fuse one level-0 chunk and write it; returns the number of tile regions read."""
    out = _level_array(dataset, name, 0)
    nz = job.z.stop - job.z.start
    ny, nx = job.y.stop - job.y.start, job.x.stop - job.x.start
    acc = np.zeros((nz, ny, nx), np.float32)
    weight = np.zeros((ny, nx), np.float32)
    wy = blend_profile(tile_yx[0], blend_px)
    wx = blend_profile(tile_yx[1], blend_px)
    for con in job.contributions:
        data = reader.read(con.index, job.c, job.z, con.tile_y, con.tile_x)
        w2 = wy[con.tile_y, None] * wx[None, con.tile_x]
        acc[:, con.out_y, con.out_x] += data * w2
        weight[con.out_y, con.out_x] += w2
    fused = np.divide(acc, weight, out=np.zeros_like(acc), where=weight > 0)
    out[job.c, job.z, job.y, job.x] = _cast(fused, out.dtype)
    return len(job.contributions)


def downsample_chunk(
    dataset: str | Path, name: str, level: int, box: tuple[slice, slice, slice, slice]
) -> None:
    """Write chunk ``box`` of ``level`` as the 2 × 2 (y, x) mean of ``level − 1``."""
    src = _level_array(dataset, name, level - 1)
    dst = _level_array(dataset, name, level)
    c, z, y, x = box
    ys = slice(2 * y.start, min(2 * y.stop, src.shape[2]))
    xs = slice(2 * x.start, min(2 * x.stop, src.shape[3]))
    data = np.asarray(src[c, z, ys, xs], dtype=np.float32)
    # odd edges: repeat the last row/column rather than averaging with zeros
    pad = (
        (0, 0),
        (0, 0),
        (0, 2 * (y.stop - y.start) - data.shape[2]),
        (0, 2 * (x.stop - x.start) - data.shape[3]),
    )
    if any(p[1] for p in pad):
        data = np.pad(data, pad, mode="edge")
    dst[c, z, y, x] = _cast(downscale_local_mean(data, (1, 1, 2, 2)), dst.dtype)
