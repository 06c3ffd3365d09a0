"""Minimal OME-NGFF 0.5 image groups on zarr v3 (one resolution level, or a pyramid).

We write the metadata ourselves (it is a small, fully specified dict) and the tests
validate it with the independent ``ome-zarr-models`` reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import zarr
    from zarr.core.group import Group

NGFF_VERSION = "0.5"
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_AXIS_UNITS = {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}


def _compressors(compression: str) -> Any:
    if compression == "none":
        return None
    from zarr.codecs import BloscCodec, ZstdCodec

    if compression == "zstd":
        return ZstdCodec(level=3)
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def create_image(
    parent: Group,
    name: str,
    *,
    axes: str,
    shape: Sequence[int],
    dtype: np.dtype | str,
    scale: Sequence[float],
    translation: Sequence[float] | None = None,
    chunks: Sequence[int] | None = None,
    compression: str = "none",
    attrs: dict[str, Any] | None = None,
) -> zarr.Array:
    """Create an NGFF 0.5 image group ``parent/name`` holding array ``0``.

    Parameters
    ----------
    axes
        Axis names in order, e.g. ``"tczyx"``.
    scale, translation
        Physical pixel size / origin per axis (seconds, µm; 1 for ``c``).
    """
    if len(axes) != len(shape) or len(scale) != len(shape):
        raise ValueError("axes, shape and scale must have the same length")
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [float(s) for s in scale]}]
    if translation is not None:
        transforms.append({"type": "translation", "translation": [float(v) for v in translation]})
    ome = {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {
                        "name": a,
                        "type": _AXIS_TYPES[a],
                        **({"unit": _AXIS_UNITS[a]} if a in _AXIS_UNITS else {}),
                    }
                    for a in axes
                ],
                "datasets": [{"path": "0", "coordinateTransformations": transforms}],
            }
        ],
    }
    group = parent.create_group(name, overwrite=True, attributes={"ome": ome, **(attrs or {})})
    return group.create_array(
        "0",
        shape=tuple(int(s) for s in shape),
        dtype=dtype,
        chunks=tuple(chunks) if chunks is not None else None,
        fill_value=0,
        compressors=_compressors(compression),
        dimension_names=list(axes),
        overwrite=True,
    )


def image_scale(group: Group) -> dict[str, float]:
    """Axis name → scale of level 0 of an NGFF image group."""
    ms = group.attrs["ome"]["multiscales"][0]
    names = [a["name"] for a in ms["axes"]]
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    return dict(zip(names, scale, strict=True))
