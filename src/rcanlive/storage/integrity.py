"""Checksums of planes and the chunks each volume must have on disk.

zarr fills a chunk that is not on disk with the array's fill value, so a reader
that trusts the array alone turns a lost chunk into zeros. Every volume's record
in ``volumes.jsonl`` therefore carries a CRC-32 per plane (``crc32``), computed by
the writer on the frames it stores, and readers check, for each volume, that the
chunks holding it exist and that its planes still match their checksums.

The checksum of a plane is ``zlib.crc32`` of its little-endian, C-order bytes
(``zlib`` releases the GIL for large buffers: about 2 ms for a 2048×2048 uint16
plane on one core).
"""

from __future__ import annotations

import functools
import itertools
import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import zarr

CHECKSUM_FIELD = "crc32"


def plane_checksum(plane: np.ndarray) -> int:
    """CRC-32 of one plane's little-endian C-order bytes."""
    a = np.asarray(plane)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not _LITTLE):
        a = a.astype(a.dtype.newbyteorder("<"))
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)


def plane_checksums(planes: Iterable[np.ndarray]) -> list[int]:
    """:func:`plane_checksum` of each plane of a volume (e.g. ``volume.planes`` or a
    ``(Z, Y, X)`` array), as stored in a record's ``crc32`` field."""
    return [plane_checksum(p) for p in planes]


_LITTLE = np.little_endian


@functools.lru_cache(maxsize=32)
def fill_checksum(shape: tuple[int, ...], dtype: str, fill_value: float) -> int:
    """Checksum of a plane holding only the fill value (what zarr returns for a chunk
    that is not on disk; a plane the writer legitimately left out matches it)."""
    return plane_checksum(np.full(shape, fill_value, dtype=np.dtype(dtype)))


def volume_chunks(array: zarr.Array, index: Sequence[int]) -> list[tuple[str, ...]]:
    """The chunks holding the volume ``array[index]``, plane by plane.

    Parameters
    ----------
    array
        A zarr v3 array opened from the dataset's root group (its ``path`` is relative
        to the dataset).
    index
        Leading integer indices selecting the volume, e.g. ``(t, c)`` of a
        ``(t, c, z, y, x)`` array; the next axis is z.

    Returns
    -------
    list of tuple of str
        For each plane, the paths (relative to the dataset) of the chunks (or shards)
        holding it.
    """
    shape = array.shape
    grid = tuple(array.shards or array.chunks)
    n = len(index)
    lead = tuple(int(i) // grid[d] for d, i in enumerate(index))
    rest = [range(math.ceil(shape[d] / grid[d])) for d in range(n + 1, len(shape))]
    encode = array.metadata.encode_chunk_key
    by_zchunk: dict[int, tuple[str, ...]] = {}
    out = []
    for z in range(shape[n]):
        zc = z // grid[n]
        if zc not in by_zchunk:
            by_zchunk[zc] = tuple(
                f"{array.path}/{encode((*lead, zc, *r))}" for r in itertools.product(*rest)
            )
        out.append(by_zchunk[zc])
    return out


def fill_plane_checksum(array: zarr.Array, index: Sequence[int]) -> int:
    """:func:`fill_checksum` for a plane of ``array`` below ``index``."""
    plane_shape = tuple(int(s) for s in array.shape[len(index) + 1 :])
    fill: Any = array.fill_value
    return fill_checksum(plane_shape, str(array.dtype), float(fill if fill is not None else 0))


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem (or note) found in a dataset.

    Attributes
    ----------
    kind
        ``missing-chunk``, ``checksum``, ``unreadable-chunk``, ``log-missing``,
        ``log-truncated``, ``log-damaged``, ``unlogged-volume``, ``restored-missing``,
        ``restored-checksum``, ``restored-unreadable``, ``restored-log``, ``record`` (a
        log record that does not fit the dataset), or for notes ``in-use``,
        ``interrupted``, ``unverified``, ``repaired``.
    message
        A sentence for the user.
    key
        ``(t, p, c)`` of the volume concerned, if any.
    chunk
        The chunk concerned (path relative to the dataset), if any.
    """

    kind: str
    message: str
    key: tuple[int, int, int] | None = None
    chunk: str | None = None
