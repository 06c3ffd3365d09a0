"""Stitch a tiling dataset: register overlaps, place tiles globally, fuse into a pyramid.

:func:`stitch_dataset` is the one entry point (the ``stitch`` command and the end of
``acquire tile`` call it). Per-pair registration, per-chunk fusion and per-chunk
pyramid levels are Dask tasks run on the active scheduler (see
:mod:`rcanlive.stitching.scheduling`); only small results come back to this process.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import zarr

from ..scheduling import compute
from ..storage.errors import DatasetExists
from ..storage.layout import TILE_GROUPS
from ..storage.ngff import create_multiscale, pyramid_shapes
from .fusion import chunk_jobs, downsample_chunk, fuse_chunk, plan_fusion
from .layout import (
    ImageKind,
    StitchError,
    StitchWarning,
    TileReader,
    iter_boxes,
    load_layout,
)
from .optimize import Placement, solve_positions
from .registration import PairShift, RegistrationSettings, register_pair

if TYPE_CHECKING:
    from collections.abc import Callable

    from .fusion import FusionGeometry
    from .layout import Tile, TileLayout

#: name of the stitched image for each kind of tile image
OUTPUT_NAMES: dict[str, str] = {"tiles": "stitched", "restored": "stitched_restored"}


@dataclass
class StitchResult:
    """What :func:`stitch_dataset` produced.

    Attributes
    ----------
    dataset, name
        The stitched image is the NGFF multiscale ``dataset/name``.
    shape
        ``(c, z, y, x)`` of level 0; ``levels`` pyramid levels in all.
    positions_px
        Tile index → ``(y, x)`` top-left in the global pixel frame.
    status
        Tile index → ``registered``, ``stage``, ``detached`` or ``missing``.
    pairs
        Every pairwise registration, accepted or not.
    dropped
        Accepted pairs the global solution found inconsistent, with their residual.
    """

    dataset: Path
    name: str
    image: str
    shape: tuple[int, int, int, int]
    levels: int
    positions_px: dict[int, tuple[float, float]]
    status: dict[int, str]
    anchor: int | None
    pairs: list[PairShift]
    dropped: list[tuple[PairShift, float]]
    registration_s: float
    fusion_s: float
    tiles_read: int
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Number of tiles with ``status``."""
        return sum(1 for s in self.status.values() if s == status)

    def summary(self) -> str:
        """One paragraph for the user."""
        accepted = sum(p.accepted for p in self.pairs)
        c, z, y, x = self.shape
        return (
            f"stitched {len(self.status) - self.count('missing')}/{len(self.status)} tiles "
            f"into {self.dataset / self.name} ({c}×{z}×{y}×{x}, {self.levels} levels): "
            f"{self.count('registered')} registered, {self.count('stage')} at stage position, "
            f"{self.count('detached')} detached, {self.count('missing')} missing; "
            f"pairs {accepted}/{len(self.pairs)} accepted, {len(self.dropped)} dropped as "
            f"inconsistent; registration {self.registration_s:.1f} s, "
            f"fusion {self.fusion_s:.1f} s"
        )


def _json_float(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _pair_record(p: PairShift) -> dict[str, Any]:
    return {
        "a": p.a,
        "b": p.b,
        "shift_px": list(p.shift_px),
        "stage_px": list(p.stage_px),
        "correlation": _json_float(p.correlation),
        "overlap_px": p.overlap_px,
        "accepted": p.accepted,
        "reason": p.reason,
    }


def _tile_records(
    layout: TileLayout, placement: Placement | None, pairs: list[PairShift]
) -> list[dict[str, Any]]:
    used = placement.used if placement is not None else []
    records = []
    for t in layout.tiles:
        links = [p for p in used if t.index in (p.a, p.b)]
        rec: dict[str, Any] = {
            "index": t.index,
            "row": t.row,
            "col": t.col,
            "stage_px": [round(v, 3) for v in t.stage_px],
            "status": "missing",
        }
        if placement is not None and t.index in placement.positions_px:
            pos = placement.positions_px[t.index]
            rec.update(
                status=placement.status[t.index],
                position_px=[round(v, 3) for v in pos],
                correction_px=[round(pos[0] - t.stage_px[0], 3), round(pos[1] - t.stage_px[1], 3)],
                links=len(links),
                quality=_json_float(float(np.mean([p.correlation for p in links])))
                if links
                else None,
                rejected=[
                    {"with": p.b if p.a == t.index else p.a, "reason": p.reason}
                    for p in pairs
                    if t.index in (p.a, p.b) and not p.accepted
                ],
            )
        records.append(rec)
    return records


@dataclass(frozen=True)
class _StitchSettings:
    """How one :func:`stitch_dataset` run registers, places and fuses (resolved arguments)."""

    image: ImageKind
    name: str
    register: bool
    registration: RegistrationSettings
    max_residual_px: float
    blend_px: int | None
    chunk_px: int
    progress: Callable[[str, int, int], None] | None

    def ticker(self, stage: str, total: int) -> Callable[[], None]:
        """Report ``stage`` as started; the returned callable reports one more task done."""
        progress = self.progress
        done = [0]
        if progress is not None:
            progress(stage, 0, total)

        def tick() -> None:
            done[0] += 1
            if progress is not None:
                progress(stage, done[0], total)

        return tick


@dataclass(frozen=True)
class _Registration:
    """Pairwise registrations, the global placement solved from them, and the time taken.

    ``positions_from`` names the stitched image whose placement was reused (restored
    tiles take the raw mosaic's), else None.
    """

    pairs: list[PairShift]
    placement: Placement
    seconds: float
    positions_from: str | None = None


@dataclass(frozen=True)
class _Fusion:
    """What fusion wrote: level-0 shape, pyramid levels, tiles read, and the time taken."""

    shape: tuple[int, int, int, int]
    levels: int
    tiles_read: int
    seconds: float


# stays over 60 lines: 49 of them are the public signature and its docstring
def stitch_dataset(
    path: str | Path,
    *,
    image: ImageKind = "tiles",
    name: str | None = None,
    overwrite: bool = False,
    register: bool = True,
    search_um: float = 5.0,
    min_correlation: float = 0.7,
    max_residual_px: float = 1.5,
    blend_px: int | None = None,
    chunk_px: int = 256,
    channel: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> StitchResult:
    """Stitch the tiles of a tiling dataset into the NGFF multiscale ``name``.

    Runs on the active Dask scheduler (wrap the call in
    :func:`~rcanlive.stitching.scheduling.use_scheduler` to choose one).

    Parameters
    ----------
    image
        ``tiles`` (raw) or ``restored`` (``restored_tiles``, float32).
    name
        Output image; default ``stitched`` (raw) or ``stitched_restored``.
    register
        False: place tiles at their stage positions (no registration).
    search_um
        Largest stage error corrected between neighbours, µm.
    min_correlation
        Pairs whose aligned overlap correlates less are not trusted.
    max_residual_px
        Links disagreeing with the global solution by more are dropped.
    blend_px
        Width of the blending ramp at tile edges (default: the nominal overlap).
    chunk_px
        Output chunk (y, x) size: one fusion task per chunk.
    channel
        Channel registered; every channel is fused with the same positions.
    progress
        Called as ``progress(stage, done, total)`` while tasks finish.

    Raises
    ------
    StitchError
        The dataset is not a tiling dataset, has no usable tile, or ``name`` exists
        and ``overwrite`` is False.
    """
    path = Path(path)
    collected: list[str] = []
    layout, messages = _load_layout(path, image)
    _warn(collected, messages)
    name = name or OUTPUT_NAMES[image]
    root = _open_output(path, name, layout, overwrite=overwrite, channel=channel)
    reader = TileReader(path, image)
    settings = _StitchSettings(
        image=image,
        name=name,
        register=register,
        registration=RegistrationSettings(
            channel=channel,
            search_px=max(1, round(search_um / layout.voxel_um[2])),
            min_correlation=min_correlation,
        ),
        max_residual_px=max_residual_px,
        blend_px=blend_px,
        chunk_px=chunk_px,
        progress=progress,
    )
    registration = _reused_placement(path, layout, settings) or _register(reader, layout, settings)
    # links dropped as inconsistent are reported in the summary and the attrs; a
    # warning is kept for tiles that end up less well placed than asked (the raw
    # mosaic's stitching already warned about a placement reused from it)
    if register and registration.positions_from is None:
        _warn(collected, _placement_warnings(layout.present(), registration))
    fusion = _fuse(root, path, reader, layout, registration, settings)
    return _finish(path, settings, layout, registration, fusion, collected)


def _warn(collected: list[str], messages: list[str]) -> None:
    """Keep ``messages`` for the result and issue them for the caller of stitch_dataset."""
    for message in messages:
        collected.append(message)
        warnings.warn(message, StitchWarning, stacklevel=3)


def _load_layout(path: Path, image: ImageKind) -> tuple[TileLayout, list[str]]:
    """The tile layout, and the messages of the warnings issued while reading it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StitchWarning)
        layout = load_layout(path, image)
    return layout, [str(w.message) for w in caught]


def _open_output(
    path: Path, name: str, layout: TileLayout, *, overwrite: bool, channel: int
) -> zarr.Group:
    """The dataset's root group, once output ``name`` and ``channel`` are known to be usable."""
    root = zarr.open_group(path, mode="r+")
    if name in root and not overwrite:
        raise DatasetExists(path / name)
    if not 0 <= channel < layout.shape[0]:
        raise StitchError(f"channel {channel} does not exist (tiles have {layout.shape[0]})")
    return root


# -- registration -------------------------------------------------------------------


def _reused_placement(
    path: Path, layout: TileLayout, settings: _StitchSettings
) -> _Registration | None:
    """The raw mosaic's placement, for restored tiles, when it places every present tile.

    Restoration does not move the sample: the raw registration already measured the
    stage's error, and reusing it gives both mosaics one geometry (they overlay pixel
    for pixel). Registering the restored tiles on their own could place them
    differently.
    """
    raw_name = OUTPUT_NAMES["tiles"]
    if settings.image != "restored" or not settings.register:
        return None
    root = zarr.open_group(path, mode="r")
    if raw_name not in root:
        return None
    attrs: dict[str, Any] = dict(root[raw_name].attrs)
    stitching: dict[str, Any] = attrs.get("rcanlive", {}).get("stitching", {})
    placed = {rec["index"]: rec for rec in stitching.get("tiles", []) if "position_px" in rec}
    present = [t.index for t in layout.present()]
    if not present or any(i not in placed for i in present) or not stitching.get("registered"):
        return None
    placement = Placement(
        positions_px={
            i: (placed[i]["position_px"][0], placed[i]["position_px"][1]) for i in present
        },
        status={i: placed[i]["status"] for i in present},
        anchor=int(stitching.get("anchor", present[0])),
    )
    return _Registration([], placement, 0.0, positions_from=raw_name)


def _register(reader: TileReader, layout: TileLayout, settings: _StitchSettings) -> _Registration:
    """Register neighbouring tiles (if asked) and solve the global placement."""
    t0 = time.perf_counter()
    pairs: list[PairShift] = []
    if settings.register:
        tasks = [
            dask.delayed(register_pair, pure=False)(
                reader, layout.tile(a), layout.tile(b), layout.tile_yx, settings.registration
            )
            for a, b in layout.neighbour_pairs()
        ]
        pairs = compute(tasks, settings.ticker("registering", len(tasks)))
        links = pairs
    else:
        links = []
    placement = solve_positions(layout.present(), links, max_residual_px=settings.max_residual_px)
    return _Registration(pairs, placement, time.perf_counter() - t0)


def _placement_warnings(present: list[Tile], registration: _Registration) -> list[str]:
    """Messages for the tiles left at their stage position and the detached ones."""
    pairs, placement = registration.pairs, registration.placement
    messages = []
    for t in present:
        state = placement.status[t.index]
        if state == "stage":
            reasons = sorted(
                {p.reason for p in pairs if t.index in (p.a, p.b) and not p.accepted}
                | {"inconsistent" for p, _ in placement.dropped if t.index in (p.a, p.b)}
            )
            messages.append(
                f"tile {t.index} (row {t.row}, col {t.col}) could not be registered to "
                f"any neighbour ({'; '.join(reasons) or 'no neighbour'}); it is placed "
                "at its stage position"
            )
    detached = [t.index for t in present if placement.status[t.index] == "detached"]
    if detached:
        messages.append(
            f"tiles {detached} are registered to each other but not to the rest; "
            "they are placed by their mean stage position"
        )
    return messages


# -- fusion -------------------------------------------------------------------------


def _fuse(
    root: zarr.Group,
    path: Path,
    reader: TileReader,
    layout: TileLayout,
    registration: _Registration,
    settings: _StitchSettings,
) -> _Fusion:
    """Blend the placed tiles into the multiscale ``settings.name`` and build its pyramid."""
    t1 = time.perf_counter()
    positions_px = registration.placement.positions_px
    geometry = plan_fusion(positions_px, layout.shape, chunk_px=settings.chunk_px)
    overlap = layout.nominal_overlap_px()
    blend = settings.blend_px if settings.blend_px is not None else max(overlap, 1)
    shapes = pyramid_shapes(geometry.shape, "czyx", min_size=settings.chunk_px)
    scales, translations = _pyramid_transforms(layout, geometry, len(shapes))
    arrays = create_multiscale(
        root,
        settings.name,
        axes="czyx",
        shapes=shapes,
        dtype=layout.dtype,
        scales=scales,
        translations=translations,
        chunks=geometry.chunks,
        attrs=_stitch_attrs(layout, registration, geometry, settings, blend),
    )
    jobs = [job for job in chunk_jobs(geometry) if job.contributions]
    tasks = [
        dask.delayed(fuse_chunk, pure=False)(
            reader, str(path), settings.name, job, geometry.tile_yx, blend
        )
        for job in jobs
    ]
    tiles_read = sum(compute(tasks, settings.ticker("fusing", len(tasks))))
    for level in range(1, len(shapes)):
        boxes = list(iter_boxes(shapes[level], arrays[level].chunks))
        tasks = [
            dask.delayed(downsample_chunk, pure=False)(str(path), settings.name, level, box)
            for box in boxes
        ]
        compute(tasks, settings.ticker(f"pyramid level {level}", len(tasks)))
    return _Fusion(geometry.shape, len(shapes), tiles_read, time.perf_counter() - t1)


def _pyramid_transforms(
    layout: TileLayout, geometry: FusionGeometry, levels: int
) -> tuple[list[list[float]], list[list[float]]]:
    """NGFF scale and translation of each pyramid level, in the tiles' physical frame."""
    dz, _, px = layout.voxel_um
    oy, ox = geometry.origin_px
    scales = [[1.0, dz, px * 2**k, px * 2**k] for k in range(levels)]
    translations = [
        [0.0, layout.z0_um, (oy + (2**k - 1) / 2) * px, (ox + (2**k - 1) / 2) * px]
        for k in range(levels)
    ]
    return scales, translations


def _stitch_attrs(
    layout: TileLayout,
    registration: _Registration,
    geometry: FusionGeometry,
    settings: _StitchSettings,
    blend: int,
) -> dict[str, Any]:
    """The ``rcanlive`` attributes of the stitched image: how it was stitched."""
    pairs, placement = registration.pairs, registration.placement
    oy, ox = geometry.origin_px
    return {
        "rcanlive": {
            "stitching": {
                "source": TILE_GROUPS[settings.image],
                "registered": settings.register,
                "method": "phase_cross_correlation on z max projections (skimage), "
                "global weighted least squares",
                "settings": {
                    "channel": settings.registration.channel,
                    "search_px": settings.registration.search_px,
                    "min_correlation": settings.registration.min_correlation,
                    "max_residual_px": settings.max_residual_px,
                    "blend_px": blend,
                    "chunk_px": settings.chunk_px,
                },
                "anchor": placement.anchor,
                "positions_from": registration.positions_from,
                "origin_px": [oy, ox],
                "tiles": _tile_records(layout, placement, pairs),
                "pairs": [_pair_record(p) for p in pairs],
                "dropped": [
                    {"a": p.a, "b": p.b, "residual_px": round(r, 3)} for p, r in placement.dropped
                ],
            }
        }
    }


def _finish(
    path: Path,
    settings: _StitchSettings,
    layout: TileLayout,
    registration: _Registration,
    fusion: _Fusion,
    collected: list[str],
) -> StitchResult:
    """Record the timings and warnings in the stitched image's attributes; the result."""
    placement = registration.placement
    result = StitchResult(
        dataset=path,
        name=settings.name,
        image=settings.image,
        shape=fusion.shape,
        levels=fusion.levels,
        positions_px=placement.positions_px,
        status={t.index: placement.status.get(t.index, "missing") for t in layout.tiles},
        anchor=placement.anchor,
        pairs=registration.pairs,
        dropped=placement.dropped,
        registration_s=registration.seconds,
        fusion_s=fusion.seconds,
        tiles_read=fusion.tiles_read,
        warnings=collected,
    )
    group = zarr.open_group(path / settings.name, mode="r+")
    meta: dict[str, Any] = dict(group.attrs["rcanlive"])  # type: ignore[arg-type]
    meta["stitching"] = {
        **meta["stitching"],
        "registration_s": round(registration.seconds, 3),
        "fusion_s": round(fusion.seconds, 3),
        "warnings": collected,
    }
    group.attrs["rcanlive"] = meta
    return result
