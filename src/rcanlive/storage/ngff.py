"""Minimal OME-NGFF 0.5 image groups on zarr v3 (one resolution level, or a pyramid).

We write the metadata ourselves (it is a small, fully specified dict) and the tests
validate it with the independent ``ome-zarr-models`` reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

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


def _axes_meta(axes: str) -> list[dict[str, Any]]:
    return [
        {
            "name": a,
            "type": _AXIS_TYPES[a],
            **({"unit": _AXIS_UNITS[a]} if a in _AXIS_UNITS else {}),
        }
        for a in axes
    ]


def _transforms(
    scale: Sequence[float], translation: Sequence[float] | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "scale", "scale": [float(s) for s in scale]}]
    if translation is not None:
        out.append({"type": "translation", "translation": [float(v) for v in translation]})
    return out


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
    return create_multiscale(
        parent,
        name,
        axes=axes,
        shapes=[shape],
        dtype=dtype,
        scales=[scale],
        translations=None if translation is None else [translation],
        chunks=chunks,
        compression=compression,
        attrs=attrs,
    )[0]


def pyramid_shapes(
    shape: Sequence[int], axes: str, *, min_size: int = 256
) -> list[tuple[int, ...]]:
    """Level shapes of a 2× (y, x) pyramid: halve y and x until both fit ``min_size``."""
    shapes = [tuple(int(s) for s in shape)]
    iy, ix = axes.index("y"), axes.index("x")
    while max(shapes[-1][iy], shapes[-1][ix]) > min_size:
        nxt = list(shapes[-1])
        nxt[iy] = -(-nxt[iy] // 2)
        nxt[ix] = -(-nxt[ix] // 2)
        shapes.append(tuple(nxt))
    return shapes


def create_multiscale(
    parent: Group,
    name: str,
    *,
    axes: str,
    shapes: Sequence[Sequence[int]],
    dtype: np.dtype | str,
    scales: Sequence[Sequence[float]],
    translations: Sequence[Sequence[float]] | None = None,
    chunks: Sequence[int] | None = None,
    compression: str = "none",
    attrs: dict[str, Any] | None = None,
) -> list[zarr.Array]:
    """Create an NGFF 0.5 multiscale image group ``parent/name`` with arrays ``0``, ``1``, ...

    Parameters
    ----------
    shapes, scales, translations
        One entry per resolution level, finest first (``translations`` optional).
    chunks
        Chunk shape of every level (clipped to the level's shape).
    """
    _check_levels(axes, shapes, scales, translations)
    ome = _multiscale_meta(name, axes, scales, translations)
    group = parent.create_group(name, overwrite=True, attributes={"ome": ome, **(attrs or {})})
    return [
        group.create_array(
            str(level),
            shape=tuple(int(s) for s in shape),
            dtype=dtype,
            chunks=_level_chunks(chunks, shape),
            fill_value=0,
            compressors=_compressors(compression),
            dimension_names=list(axes),
            overwrite=True,
        )
        for level, shape in enumerate(shapes)
    ]


def _check_levels(
    axes: str,
    shapes: Sequence[Sequence[int]],
    scales: Sequence[Sequence[float]],
    translations: Sequence[Sequence[float]] | None,
) -> None:
    """Raise ``ValueError`` unless every level has a shape, scale (and translation) per axis."""
    if len(shapes) < 1 or len(scales) != len(shapes):
        raise ValueError("give one scale per level, at least one level")
    if translations is not None and len(translations) != len(shapes):
        raise ValueError("give one translation per level (or none)")
    for shape, scale in zip(shapes, scales, strict=True):
        if len(axes) != len(shape) or len(scale) != len(shape):
            raise ValueError("axes, shape and scale must have the same length")


def _multiscale_meta(
    name: str,
    axes: str,
    scales: Sequence[Sequence[float]],
    translations: Sequence[Sequence[float]] | None,
) -> dict[str, Any]:
    """The ``ome`` attribute of a multiscale image with one dataset per scale."""
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": _axes_meta(axes),
                "datasets": [
                    {
                        "path": str(level),
                        "coordinateTransformations": _transforms(
                            scales[level], None if translations is None else translations[level]
                        ),
                    }
                    for level in range(len(scales))
                ],
            }
        ],
    }


def _level_chunks(
    chunks: Sequence[int] | None, shape: Sequence[int]
) -> tuple[int, ...] | Literal["auto"]:
    """``chunks`` clipped to a level's ``shape``, or zarr's default when not given."""
    if chunks is None:
        return "auto"  # zarr's default; it rejects chunks=None
    return tuple(min(int(c), max(int(s), 1)) for c, s in zip(chunks, shape, strict=True))


def image_scale(group: Group) -> dict[str, float]:
    """Axis name → scale of level 0 of an NGFF image group."""
    ome = cast("dict[str, Any]", group.attrs["ome"])  # attrs are typed as any JSON value
    ms = ome["multiscales"][0]
    names = [a["name"] for a in ms["axes"]]
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    return dict(zip(names, scale, strict=True))
