"""Where each volume lives inside a dataset: the one place that spells array paths.

=========  ============================  ===================================  ==========
kind       image                         array                                index
=========  ============================  ===================================  ==========
live       ``raw`` / ``restored``        ``raw/0``, ``restored/0``            ``(t, c)``
tile       ``raw`` / ``restored``        ``tiles/NNNN/0``,                    ``(c,)``
                                         ``restored_tiles/NNNN/0``
pairs      ``raw`` (low c=0, high c=1)   ``pairs/low/0``, ``pairs/high/0``    ``(t·P + p, 0)``
=========  ============================  ===================================  ==========
"""

from __future__ import annotations

from typing import NamedTuple


class VolumeKey(NamedTuple):
    """A volume of a dataset: time point, position (the tile of a tiling dataset),
    channel (for pairs: 0 low, 1 high)."""

    t: int
    p: int
    c: int


#: the NGFF group holding each image's tiles in a tiling dataset
TILE_GROUPS: dict[str, str] = {"raw": "tiles", "tiles": "tiles", "restored": "restored_tiles"}
RAW_TILES = TILE_GROUPS["raw"]
RESTORED_TILES = TILE_GROUPS["restored"]


def tile_name(index: int) -> str:
    """The name of tile ``index`` in its group (``"0007"``)."""
    return f"{index:04d}"


def tile_image(index: int, image: str = "raw") -> str:
    """The NGFF image of tile ``index`` (``"tiles/0007"``, ``"restored_tiles/0007"``)."""
    return f"{TILE_GROUPS[image]}/{tile_name(index)}"


def restored_image(kind: str) -> str:
    """Where a dataset of ``kind`` keeps its restored volumes (an image or a group)."""
    return "restored" if kind == "live" else RESTORED_TILES


def volume_location(
    kind: str, key: tuple[int, int, int], image: str = "raw", n_p: int = 1
) -> tuple[str, tuple[int, ...]]:
    """``(array path, leading index)`` of volume ``key`` of ``image`` in a ``kind`` dataset.

    Raises
    ------
    KeyError
        If a dataset of that kind has no such image.
    """
    t, p, c = key
    if kind == "live":
        return f"{image}/0", (t, c)
    if kind == "tile":
        if image not in TILE_GROUPS:
            raise KeyError(f"a tiling dataset has no {image!r} volumes")
        return f"{tile_image(p, image)}/0", (c,)
    if image not in ("raw", "pairs"):
        raise KeyError(f"a pairs dataset has no {image!r} volumes")
    return f"pairs/{'low' if c == 0 else 'high'}/0", (t * n_p + p, 0)


def raw_images(kind: str, tile_indices: list[int]) -> list[str]:
    """The NGFF images holding a dataset's raw volumes."""
    if kind == "live":
        return ["raw"]
    if kind == "pairs":
        return ["pairs/low", "pairs/high"]
    return [tile_image(i) for i in tile_indices]
