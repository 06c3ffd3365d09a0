"""Open an rcanlive dataset in napari: every image it holds, at its physical place.

Each NGFF image of the dataset becomes layers (one per channel) with the scale and
translation rcanlive wrote in its ``multiscales`` metadata, read lazily (Dask over
Zarr). Raw data is magenta and restored data green, both blended additively: where they
agree the overlay is white, and what restoration added or removed shows in one colour.

========  =====================================================================
kind      layers
========  =====================================================================
live      ``raw``, ``restored`` (t, z, y, x per channel)
pairs     ``low``, ``high`` (volume, z, y, x)
tile      ``tile NNNN`` and ``restored tile NNNN`` at their stage positions,
          ``stitched`` and ``stitched restored`` as multiscale pyramids
========  =====================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: a napari layer: (data, keyword arguments, layer type)
LayerData = tuple[Any, dict[str, Any], str]

#: colour of each role: raw and restored are complementary under additive blending
COLORMAPS = {"raw": "magenta", "restored": "green"}

#: tiles above this count are hidden when a stitched image exists (napari stays fast)
VISIBLE_TILES = 64


@dataclass(frozen=True, slots=True)
class NgffImage:
    """What a layer needs of one NGFF image: its levels, axes and level-0 placement."""

    levels: list[Any]
    axes: list[str]
    units: list[str | None]
    scale: list[float]
    translate: list[float]


def get_reader(path: str | list[str]) -> Any:
    """The npe2 reader hook: a reader for an rcanlive dataset, None for anything else."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_dataset if dataset_kind(Path(path)) is not None else None


def dataset_kind(path: Path) -> str | None:
    """``live``, ``pairs`` or ``tile`` for an rcanlive dataset; None otherwise."""
    try:
        meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = meta.get("attributes", {}).get("rcanlive") if isinstance(meta, dict) else None
    kind = info.get("kind") if isinstance(info, dict) else None
    return kind if isinstance(kind, str) else None


def read_dataset(path: str | list[str]) -> list[LayerData]:
    """The layers of the rcanlive dataset at ``path`` (see the module doc)."""
    root = Path(path[0] if isinstance(path, list) else path)
    kind = dataset_kind(root)
    stem = root.name.removesuffix(".zarr").removesuffix(".ome")
    if kind == "live":
        return _layers(root, [("raw", "raw", "raw"), ("restored", "restored", "restored")], stem)
    if kind == "pairs":
        return _layers(
            root, [("pairs/low", "low", "raw"), ("pairs/high", "high", "restored")], stem
        )
    if kind == "tile":
        return _tile_layers(root, stem)
    raise ValueError(f"{root} is not an rcanlive dataset (no rcanlive kind in its zarr.json)")


def _layers(root: Path, images: list[tuple[str, str, str]], stem: str) -> list[LayerData]:
    """Layers of the images present among ``(group, name, role)``."""
    layers: list[LayerData] = []
    for group, name, role in images:
        if (root / group / "zarr.json").is_file():
            layers += image_layers(root / group, f"{stem} {name}", COLORMAPS[role])
    return layers


def _tile_layers(root: Path, stem: str) -> list[LayerData]:
    """Stitched pyramids first (when present), then every tile at its stage position."""
    stitched = _layers(
        root,
        [("stitched", "stitched", "raw"), ("stitched_restored", "stitched restored", "restored")],
        stem,
    )
    layers = list(stitched)
    for group, label, role in (
        ("tiles", "tile", "raw"),
        ("restored_tiles", "restored tile", "restored"),
    ):
        folder = root / group
        tiles = (
            sorted(p for p in folder.iterdir() if (p / "zarr.json").is_file())
            if folder.is_dir()
            else []
        )
        hide = bool(stitched) and len(tiles) > VISIBLE_TILES
        for tile in tiles:
            for data, kwargs, kind in image_layers(
                tile, f"{stem} {label} {tile.name}", COLORMAPS[role]
            ):
                layers.append((data, {**kwargs, "visible": not hide}, kind))
    return layers


def read_ngff_image(group: Path) -> NgffImage:
    """Levels (lazy Dask arrays), axes and level-0 scale/translation of an NGFF image."""
    import dask.array as da
    import zarr

    node = zarr.open_group(group, mode="r")
    ome: Any = node.attrs["ome"]
    multiscale = ome["multiscales"][0]
    axes = [a["name"] for a in multiscale["axes"]]
    units = [a.get("unit") for a in multiscale["axes"]]
    scale = [1.0] * len(axes)
    translate = [0.0] * len(axes)
    for transform in multiscale["datasets"][0].get("coordinateTransformations", []):
        if transform["type"] == "scale":
            scale = [float(s) for s in transform["scale"]]
        elif transform["type"] == "translation":
            translate = [float(t) for t in transform["translation"]]
    levels = [da.from_zarr(node[d["path"]]) for d in multiscale["datasets"]]
    return NgffImage(levels, axes, units, scale, translate)


def image_layers(group: Path, name: str, colormap: str) -> list[LayerData]:
    """One image layer per channel of the NGFF image ``group``."""
    image = read_ngff_image(group)
    c = image.axes.index("c") if "c" in image.axes else None
    keep = [i for i in range(len(image.axes)) if i != c]
    n_c = 1 if c is None else int(image.levels[0].shape[c])
    layers: list[LayerData] = []
    for channel in range(n_c):
        data = [_channel(level, c, channel) for level in image.levels]
        kwargs = {
            "name": name if n_c == 1 else f"{name} c{channel}",
            "scale": [image.scale[i] for i in keep],
            "translate": [image.translate[i] for i in keep],
            "axis_labels": [image.axes[i] for i in keep],
            "units": [image.units[i] or "pixel" for i in keep],
            "colormap": colormap,
            "blending": "additive",
            "multiscale": len(data) > 1,
            "metadata": {"rcanlive_group": str(group), "channel": channel},
        }
        layers.append((data if len(data) > 1 else data[0], kwargs, "image"))
    return layers


def _channel(level: Any, axis: int | None, channel: int) -> Any:
    """``level`` without its channel axis (the one channel kept)."""
    if axis is None:
        return level
    index: list[Any] = [slice(None)] * level.ndim
    index[axis] = channel
    return level[tuple(index)]
