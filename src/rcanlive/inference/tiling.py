"""Tiled prediction: any volume through a backend with a fixed tile shape.

A volume is normalised once with statistics of the *whole* volume, cut into
overlapping tiles of one shape (padded by reflection where the volume is smaller
than a tile), run through the backend in batches, and blended back with linear
ramps over the overlaps. The blending weights of the tiles covering a voxel sum to
exactly 1 (a partition of unity), built per axis so no division is needed: a tile's
3D weight is the outer product of its three 1D weights.

RCAN's channel attention averages over its whole input, so a tile does not give
exactly the whole-volume result; overlap and blending keep the difference small and
smooth, with no seam at tile borders (checked by the tests).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Literal

import numpy as np

from rcanlive.model import check_volume

from .backends.base import BackendError, BackendOutOfMemory
from .recipe import MAX_TILE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from numpy.typing import ArrayLike, NDArray

    from rcanlive.model import PercentileNormalizer

    from .backends.base import Backend, TileShape

logger = logging.getLogger("rcanlive.inference")

DEFAULT_TILE: TileShape = MAX_TILE
"""Largest tile used for backends that take any shape when no tile is given."""

DEFAULT_OVERLAP: TileShape = (4, 32, 32)
"""Overlap between neighbouring tiles, capped at a quarter of the tile per axis."""

MIN_TILE: TileShape = (4, 16, 16)
"""Out-of-memory retries never shrink a tile below this."""


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` on one axis.

    Tiles overlap by at least ``overlap`` and are spread evenly, the first at 0 and
    the last ending at ``length``. ``length`` must be at least ``tile`` (pad first).
    """
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if length < tile:
        raise ValueError(f"axis of {length} is shorter than the tile {tile}; pad it first")
    if length == tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [round(k * (length - tile) / (n - 1)) for k in range(n)]


def axis_weights(
    length: int, starts: Sequence[int], tile: int, overlap: int, halo: int = 0
) -> list[NDArray[np.float64]]:
    """Per-tile 1D blending weights on one axis; at every position they sum to 1.

    Each tile gets a linear ramp rising over ``overlap`` voxels from each side that
    faces another tile (flat at the volume's own borders); the ramps are divided by
    their sum over the tiles covering each position. A model's ``halo`` (voxels at a
    tile's border it cannot compute well) gets weight 0 on those sides, and the ramp
    rises over the rest of the overlap (which must exceed ``2 * halo``).
    """
    width = max(overlap - 2 * halo, 1)
    i = np.arange(tile, dtype=np.float64) - halo
    j = tile - 1 - halo - np.arange(tile, dtype=np.float64)
    raw = []
    for s in starts:
        up = np.clip((i + 0.5) / width, 0.0, 1.0) if s > 0 else np.ones(tile)
        down = np.clip((j + 0.5) / width, 0.0, 1.0) if s + tile < length else np.ones(tile)
        raw.append(np.minimum(up, down))
    total = np.zeros(length, dtype=np.float64)
    for s, r in zip(starts, raw, strict=True):
        total[s : s + tile] += r
    return [r / total[s : s + tile] for s, r in zip(starts, raw, strict=True)]


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile of a :class:`TileGrid`: its grid index and position (padded coords)."""

    index: tuple[int, int, int]
    start: tuple[int, int, int]
    shape: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Where the tile sits in the padded volume."""
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.shape, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class TileGrid:
    """How a ``(Z, Y, X)`` volume is cut into tiles of one shape.

    Build it with :meth:`plan`. Axes shorter than the tile are padded (by reflection)
    to the tile size, split evenly before and after.

    Attributes
    ----------
    volume_shape
        Shape of the volume being tiled.
    tile_shape
        Shape of every tile.
    overlap
        Minimum overlap between neighbours, per axis.
    padding
        ``(before, after)`` padding per axis.
    starts
        Tile start offsets per axis, in padded coordinates.
    weights
        1D blending weights per axis and tile (see :func:`axis_weights`).
    """

    volume_shape: tuple[int, int, int]
    tile_shape: tuple[int, int, int]
    overlap: tuple[int, int, int]
    padding: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    weights: tuple[tuple[NDArray[np.float64], ...], ...]

    @classmethod
    def plan(
        cls,
        volume_shape: Sequence[int],
        tile_shape: Sequence[int],
        overlap: int | Sequence[int] | None = None,
        halo: Sequence[int] | None = None,
    ) -> TileGrid:
        """Plan the tiles of a volume.

        Parameters
        ----------
        volume_shape
            ``(Z, Y, X)`` of the volume.
        tile_shape
            ``(Z, Y, X)`` of every tile.
        overlap
            Minimum overlap per axis (an int applies to all three). ``None``:
            :data:`DEFAULT_OVERLAP` capped at a quarter of the tile. Capped at
            ``tile - 1``.
        halo
            Voxels at each border of a tile's output that the model cannot compute
            well (a bioimage.io model's halo), per axis: they get no weight where a
            neighbour covers them, and the overlap grows to at least ``2 * halo + 1``.
        """
        vol = _zyx(volume_shape, "volume shape")
        tile = _zyx(tile_shape, "tile shape")
        if overlap is None:
            ov = tuple(min(d, t // 4) for d, t in zip(DEFAULT_OVERLAP, tile, strict=True))
        elif isinstance(overlap, int):
            ov = (overlap,) * 3
        else:
            ov = tuple(int(o) for o in overlap)
        if len(ov) != 3 or min(ov) < 0:
            raise ValueError(f"overlap must be >= 0 for Z, Y and X, got {overlap!r}")
        hz = tuple(int(h) for h in halo) if halo is not None else (0, 0, 0)
        ov = tuple(max(o, 2 * h + 1) if h else o for o, h in zip(ov, hz, strict=True))
        split = (h and n > t and o > t - 1 for n, t, o, h in zip(vol, tile, ov, hz, strict=True))
        if any(split):
            raise ValueError(
                f"tiles of {tile} are too small for the model's halo {hz}: a tile needs "
                "more than 2 * halo + 1 voxels along each axis it splits"
            )
        ov = tuple(min(o, t - 1) for o, t in zip(ov, tile, strict=True))
        padding = tuple(
            ((t - n) // 2, (t - n) - (t - n) // 2) if n < t else (0, 0)
            for n, t in zip(vol, tile, strict=True)
        )
        padded = tuple(max(n, t) for n, t in zip(vol, tile, strict=True))
        starts = tuple(
            tuple(axis_starts(n, t, o)) for n, t, o in zip(padded, tile, ov, strict=True)
        )
        weights = tuple(
            tuple(axis_weights(n, s, t, o, h))
            for n, s, t, o, h in zip(padded, starts, tile, ov, hz, strict=True)
        )
        return cls(vol, tile, ov, padding, starts, weights)  # type: ignore[arg-type]

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        """Shape of the volume after padding short axes up to the tile."""
        return tuple(  # type: ignore[return-value]
            n + a + b for n, (a, b) in zip(self.volume_shape, self.padding, strict=True)
        )

    def __len__(self) -> int:
        return math.prod(len(s) for s in self.starts)

    def __iter__(self) -> Iterator[Tile]:
        for index in product(*(range(len(s)) for s in self.starts)):
            start = tuple(self.starts[a][i] for a, i in enumerate(index))
            yield Tile(index, start, self.tile_shape)  # type: ignore[arg-type]

    def weight(self, tile: Tile) -> NDArray[np.float32]:
        """The 3D blending weight of ``tile`` (outer product of its 1D weights)."""
        wz, wy, wx = (self.weights[a][i] for a, i in enumerate(tile.index))
        return (wz[:, None, None] * wy[None, :, None] * wx[None, None, :]).astype(np.float32)

    def pad(self, volume: NDArray[np.float32]) -> NDArray[np.float32]:
        """Pad ``volume`` to :attr:`padded_shape` by reflection (edge for 1-voxel axes)."""
        if not any(a or b for a, b in self.padding):
            return volume
        out = volume
        for axis, (a, b) in enumerate(self.padding):
            if a or b:
                width = [(0, 0)] * 3
                width[axis] = (a, b)
                if out.shape[axis] > 1:
                    out = np.pad(out, width, mode="reflect")
                else:
                    out = np.pad(out, width, mode="edge")
        return out

    def crop(self, padded: NDArray[np.float32]) -> NDArray[np.float32]:
        """Undo :meth:`pad`."""
        return padded[
            tuple(
                slice(a, a + n) for n, (a, _) in zip(self.volume_shape, self.padding, strict=True)
            )
        ]


def _zyx(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in shape)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{what} must be three positive sizes (Z, Y, X), got {tuple(shape)}")
    return values  # type: ignore[return-value]


def choose_tile_shape(
    volume_shape: Sequence[int], max_tile: Sequence[int] = DEFAULT_TILE
) -> TileShape:
    """A tile for ``volume_shape``: the volume itself, capped at ``max_tile`` per axis."""
    vol = _zyx(volume_shape, "volume shape")
    cap = _zyx(max_tile, "tile shape")
    return tuple(min(n, m) for n, m in zip(vol, cap, strict=True))  # type: ignore[return-value]


def smaller_tiling(
    tile_shape: Sequence[int], batch_size: int, min_tile: Sequence[int] = MIN_TILE
) -> tuple[TileShape, int] | None:
    """The next, smaller tile and batch to try after running out of memory.

    Halve the batch first; at batch 1 halve the largest tile axis (relative to its
    minimum). ``None`` when nothing can shrink any more.
    """
    tile = _zyx(tile_shape, "tile shape")
    if batch_size > 1:
        return tile, batch_size // 2
    floor = _zyx(min_tile, "minimum tile")
    ratios = [t / m for t, m in zip(tile, floor, strict=True)]
    axis = int(np.argmax(ratios))
    if tile[axis] // 2 < floor[axis]:
        return None
    shrunk = list(tile)
    shrunk[axis] = tile[axis] // 2
    return tuple(shrunk), 1  # type: ignore[return-value]


# (long by its numpy-style docstring and the out-of-memory retry loop, one algorithm)
def predict_volume(
    volume: ArrayLike,
    backend: Backend,
    normalizer: PercentileNormalizer | None = None,
    tile_shape: Sequence[int] | None = None,
    overlap: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    output: Literal["intensity", "normalized"] = "intensity",
) -> NDArray[np.float32]:
    """Restore a ``(Z, Y, X)`` volume of any size with ``backend``, tile by tile.

    Parameters
    ----------
    volume
        The raw volume (any real dtype).
    backend
        A :class:`~rcanlive.inference.backends.Backend`.
    normalizer
        Percentile normalisation; ``None`` uses the backend's (the checkpoint's).
        Its statistics come from the whole volume, never per tile.
    tile_shape
        Tile ``(Z, Y, X)``. Backends with a static tile use theirs (a different
        value here is an error); others default to the volume capped at
        :data:`DEFAULT_TILE`.
    overlap
        Minimum overlap between tiles (int or per axis); default
        :data:`DEFAULT_OVERLAP` capped at a quarter of the tile.
    batch_size
        Tiles per backend call; backends with a static batch use theirs.
        Default 1.
    progress
        Called as ``progress(done, total)`` after each batch (tiles).
    output
        ``"intensity"`` maps the result back to the raw intensity scale;
        ``"normalized"`` returns the network output as is.

    Returns
    -------
    numpy.ndarray
        float32 array of the volume's shape.

    Raises
    ------
    ValueError
        For a volume that is not 3D, is empty, non-finite or constant.
    BackendOutOfMemory
        When the device runs out of memory and the tile cannot shrink (static
        backends, or already at :data:`MIN_TILE`).
    """
    if output not in ("intensity", "normalized"):
        raise ValueError(f"output must be 'intensity' or 'normalized', got {output!r}")
    vol = check_volume(volume)
    normalizer = normalizer or backend.normalizer
    lo, hi = normalizer.stats(vol)
    normed = normalizer.normalize(vol, lo, hi)

    static = backend.tile_shape
    if static is not None:
        if tile_shape is not None and tuple(tile_shape) != tuple(static):
            raise ValueError(
                f"the {backend.name} backend was built for tiles of {static}; got "
                f"tile_shape={tuple(tile_shape)} (leave it out, or rebuild the backend)"
            )
        tile = _zyx(static, "tile shape")
    else:
        tile = choose_tile_shape(vol.shape, tile_shape or DEFAULT_TILE)
    batch = backend.batch_size or batch_size or 1

    while True:
        # a bioimage.io model's halo (rcanlive's RCAN has none)
        grid = TileGrid.plan(vol.shape, tile, overlap, getattr(backend, "halo", None))
        try:
            restored = _run_grid(normed, grid, backend, batch, progress)
            break
        except BackendOutOfMemory as exc:
            if static is not None or backend.batch_size is not None:
                raise BackendOutOfMemory(
                    f"{exc}; the {backend.name} backend has a static tile {static} "
                    "and batch, so it cannot retry smaller: rebuild it with a smaller "
                    "tile or use the eager/onnx backend"
                ) from exc
            smaller = smaller_tiling(tile, batch)
            if smaller is None:
                raise
            logger.warning(
                "out of memory with tiles %s x %d; retrying with %s x %d",
                tile,
                batch,
                smaller[0],
                smaller[1],
            )
            tile, batch = smaller
    if output == "intensity":
        return normalizer.denormalize(restored, lo, hi)
    return restored


def _run_grid(
    normed: NDArray[np.float32],
    grid: TileGrid,
    backend: Backend,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> NDArray[np.float32]:
    """Run every tile of ``grid`` through ``backend`` and blend the results."""
    padded = grid.pad(normed)
    out = np.zeros(grid.padded_shape, dtype=np.float32)
    tiles = list(grid)
    total = len(tiles)
    # A static-batch backend always gets full batches; the spare slots are zeros.
    static_batch = backend.batch_size is not None
    buffer = np.zeros((batch_size, 1, *grid.tile_shape), dtype=np.float32)
    done = 0
    for first in range(0, total, batch_size):
        chunk = tiles[first : first + batch_size]
        n = len(chunk)
        for k, tile in enumerate(chunk):
            buffer[k, 0] = padded[tile.slices]
        if static_batch and n < batch_size:
            buffer[n:] = 0.0
        batch = buffer if static_batch else buffer[:n]
        result = backend.predict(batch)
        if result.shape != batch.shape:
            raise BackendError(
                f"the {backend.name} backend returned {result.shape} for a batch of {batch.shape}"
            )
        for k, tile in enumerate(chunk):
            out[tile.slices] += result[k, 0] * grid.weight(tile)
        done += n
        if progress is not None:
            progress(done, total)
    return grid.crop(out)
