"""Experiment configs → ``useq.MDASequence``, with every rig-dependent check done
before anything moves: laser lines and powers, overlap, stage limits, focus range."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import useq

from ..config.experiment import Illumination, LivePlan, PairsPlan, TilingPlan
from ..microscope.illumination import (
    aotf_value,
    intensity_to_power_mw,
    power_to_intensity_w_cm2,
)
from ..microscope.rig import ILLUMINATION_GROUP
from .illumination_control import AdaptiveSettings, resolve_adaptive

if TYPE_CHECKING:
    from ..config.rig import RigConfig

AnyPlan = LivePlan | PairsPlan | TilingPlan


class PlanError(ValueError):
    """The plan cannot run on this rig; the message says which setting to change."""


@dataclass(frozen=True)
class Preset:
    """An illumination preset resolved against the rig's calibration."""

    name: str
    line_nm: int
    power_mw: float
    intensity_w_cm2: float
    aotf_value: float


@dataclass
class PreparedPlan:
    """A validated plan: the sequence plus what storage and the summary need."""

    plan: AnyPlan
    sequence: useq.MDASequence
    presets: list[Preset]
    focus_um: float
    n_t: int
    n_p: int
    n_c: int
    planes: int
    tiles: list[dict[str, Any]] = field(default_factory=list)
    #: SNR-guided illumination, one entry per channel (empty: fixed powers)
    adaptive: tuple[AdaptiveSettings, ...] = ()

    @property
    def n_frames(self) -> int:
        return self.n_t * self.n_p * self.n_c * self.planes

    @property
    def n_volumes(self) -> int:
        return self.n_t * self.n_p * self.n_c

    def bytes_total(self) -> int:
        w, h = self.plan.camera_roi_px
        return self.n_frames * w * h * 2

    def duration_s(self) -> float:
        """Lower bound on the run time: exposures, intervals between volumes."""
        exposure = self.n_frames * self.plan.exposure_ms / 1e3
        if isinstance(self.plan, LivePlan):
            return max(exposure, (self.n_t - 1) * self.plan.interval_s + exposure / self.n_t)
        return exposure

    def describe(self) -> str:
        gb = self.bytes_total() / 1e9
        lines = [
            f"{self.plan.kind} plan: {self.n_volumes} volumes = {self.n_frames} frames "
            f"({self.planes} planes × {self.n_c} channel(s) × {self.n_p} position(s) "
            f"× {self.n_t} time point(s))",
            f"  expected duration ≥ {_fmt_duration(self.duration_s())}, data {gb:.2f} GB",
        ]
        lines += [
            f"  {p.name}: {p.line_nm} nm, {p.power_mw:.3g} mW = "
            f"{p.intensity_w_cm2:.3g} W/cm² (AOTF {p.aotf_value:.2f})"
            for p in self.presets
        ]
        if self.adaptive:
            a = self.adaptive[0]
            lines.append(
                f"  adaptive illumination: target SNR {a.target_snr:g} ({a.statistic} of the "
                f"foreground), aim {a.aim:.3g}, steps ×{a.max_step_up:g}/×{a.max_step_down:g} "
                f"every {a.every} volume(s), starting at the power above, within "
                + ", ".join(f"{s.min_mw:.3g}–{s.max_mw:.3g} mW" for s in self.adaptive)
            )
        return "\n".join(lines)


def _fmt_duration(s: float) -> str:
    h, rem = divmod(round(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def resolve_illumination(rig: RigConfig, ill: Illumination, name: str, where: str) -> Preset:
    """Turn an :class:`Illumination` into a preset; errors name the config field."""
    try:
        line = rig.laser(ill.line_nm)
    except ValueError as exc:
        raise PlanError(f"{where}.line_nm: {exc}") from None
    power = (
        ill.power_mw
        if ill.power_mw is not None
        else intensity_to_power_mw(rig, ill.intensity_w_cm2 or 0.0)
    )
    try:
        value = aotf_value(line, power)
    except ValueError as exc:
        max_i = power_to_intensity_w_cm2(rig, line.max_power_mw)
        raise PlanError(f"{where}: {exc} (= {max_i:.0f} W/cm²)") from None
    return Preset(name, ill.line_nm, power, power_to_intensity_w_cm2(rig, power), value)


def _preset_name(ill: Illumination) -> str:
    if ill.intensity_w_cm2 is not None:
        return f"{ill.line_nm}nm {ill.intensity_w_cm2:g} W per cm2"
    return f"{ill.line_nm}nm {ill.power_mw:g} mW"


def _check_focus(rig: RigConfig, plan: AnyPlan, focus: float) -> None:
    lo, hi = rig.focus_range_um
    half = plan.zstack.range_um / 2
    if focus - half < lo or focus + half > hi:
        raise PlanError(
            f"zstack: {plan.zstack.planes} planes × {plan.zstack.step_um} µm around "
            f"{focus:g} µm leaves the focus range {lo:g}–{hi:g} µm; reduce zstack.planes/"
            "step_um or set focus_um"
        )


def _check_xy(rig: RigConfig, positions: list[tuple[float, float]], where: str) -> None:
    xmin, xmax, ymin, ymax = rig.xy_limits_um
    bad = [(x, y) for x, y in positions if not (xmin <= x <= xmax and ymin <= y <= ymax)]
    if bad:
        raise PlanError(
            f"{where}: {len(bad)} position(s) outside the stage travel x∈[{xmin:g}, {xmax:g}] "
            f"y∈[{ymin:g}, {ymax:g}] µm, first {bad[0]}; nothing was moved"
        )


def serpentine(rows: int, columns: int) -> list[tuple[int, int]]:
    """Grid indices ``(row, col)`` in zigzag order: odd rows run right to left."""
    return [(r, c if r % 2 == 0 else columns - 1 - c) for r in range(rows) for c in range(columns)]


def tile_positions(plan: TilingPlan) -> list[dict[str, Any]]:
    """The tile manifest: acquisition order, grid indices and stage x, y (µm)."""
    cx, cy = plan.center_um
    out = []
    for i, (r, c) in enumerate(serpentine(plan.rows, plan.columns)):
        x = cx + (c - (plan.columns - 1) / 2) * plan.step_um
        y = cy + (r - (plan.rows - 1) / 2) * plan.step_um
        out.append({"index": i, "row": r, "col": c, "x_um": round(x, 4), "y_um": round(y, 4)})
    return out


def prepare(
    plan: AnyPlan,
    rig: RigConfig,
    current_z_um: float | None = None,
    current_xy_um: tuple[float, float] = (0.0, 0.0),
) -> PreparedPlan:
    """Validate ``plan`` against ``rig`` and build its ``useq.MDASequence``."""
    focus = (
        plan.focus_um
        if plan.focus_um is not None
        else (current_z_um if current_z_um is not None else sum(rig.focus_range_um) / 2)
    )
    _check_focus(rig, plan, focus)
    z_plan = (
        useq.ZRangeAround(range=plan.zstack.range_um, step=plan.zstack.step_um)
        if plan.zstack.planes > 1
        else None
    )
    if isinstance(plan, LivePlan):
        built = _live_sequence(plan, rig, focus, z_plan, current_xy_um)
    elif isinstance(plan, PairsPlan):
        built = _pairs_sequence(plan, rig, focus, z_plan)
    else:
        built = _tiling_sequence(plan, rig, focus, z_plan)
    presets = built.presets
    return PreparedPlan(
        plan,
        built.sequence,
        presets,
        focus,
        built.n_t,
        built.n_p,
        len(presets),
        plan.zstack.planes,
        built.tiles,
        _adaptive(plan, rig, presets) if isinstance(plan, LivePlan) else (),
    )


def _adaptive(
    plan: LivePlan, rig: RigConfig, presets: list[Preset]
) -> tuple[AdaptiveSettings, ...]:
    """``[illumination.adaptive]`` resolved for every channel (empty when off)."""
    config = plan.illumination.adaptive
    if config is None or not config.enabled:
        return ()
    out = []
    for i, preset in enumerate(presets):
        try:
            out.append(resolve_adaptive(config, rig, preset.line_nm, preset.power_mw))
        except ValueError as exc:
            raise PlanError(f"illumination.adaptive (channels[{i}]): {exc}") from None
    return tuple(out)


@dataclass(frozen=True)
class _BuiltSequence:
    """One plan kind's sequence, its presets, time points, positions and tiles."""

    sequence: useq.MDASequence
    presets: list[Preset]
    n_t: int
    n_p: int
    tiles: list[dict[str, Any]] = field(default_factory=list)


def _channels(presets: list[Preset], exposure_ms: float) -> tuple[useq.Channel, ...]:
    """One ``useq.Channel`` per preset, all at ``exposure_ms``."""
    return tuple(
        useq.Channel(group=ILLUMINATION_GROUP, config=p.name, exposure=exposure_ms) for p in presets
    )


def _live_sequence(
    plan: LivePlan,
    rig: RigConfig,
    focus: float,
    z_plan: useq.ZRangeAround | None,
    current_xy_um: tuple[float, float],
) -> _BuiltSequence:
    """Time-lapse at one position (the plan's or the current one), every channel."""
    presets = [
        resolve_illumination(rig, ch, _preset_name(ch), f"channels[{i}]")
        for i, ch in enumerate(plan.channels)
    ]
    xy = plan.position_um or current_xy_um
    _check_xy(rig, [xy], "position_um")
    seq = useq.MDASequence(
        stage_positions=(useq.Position(x=xy[0], y=xy[1], z=focus),),
        z_plan=z_plan,
        channels=_channels(presets, plan.exposure_ms),
        time_plan=useq.TIntervalLoops(
            interval=timedelta(seconds=plan.interval_s), loops=plan.volumes
        ),
        axis_order=tuple("tpcz"),
    )
    return _BuiltSequence(seq, presets, plan.volumes, 1)


def _pairs_sequence(
    plan: PairsPlan, rig: RigConfig, focus: float, z_plan: useq.ZRangeAround | None
) -> _BuiltSequence:
    """Low/high illumination pairs at each position."""
    presets = [
        resolve_illumination(rig, plan.low, "low", "low"),
        resolve_illumination(rig, plan.high, "high", "high"),
    ]
    if presets[0].power_mw >= presets[1].power_mw:
        raise PlanError("low.power must be below high.power")
    _check_xy(rig, list(plan.positions_um), "positions_um")
    seq = useq.MDASequence(
        stage_positions=tuple(useq.Position(x=x, y=y, z=focus) for x, y in plan.positions_um),
        z_plan=z_plan,
        channels=_channels(presets, plan.exposure_ms),
        time_plan=useq.TIntervalLoops(interval=timedelta(0), loops=plan.volumes_per_position),
        axis_order=tuple("tpzc" if plan.switch == "plane" else "tpcz"),
    )
    return _BuiltSequence(seq, presets, plan.volumes_per_position, len(plan.positions_um))


def _check_overlap(rig: RigConfig, plan: TilingPlan) -> None:
    """Refuse a tile step whose overlap is below ``min_overlap`` (unless forced)."""
    fov_w = plan.camera_roi_px[0] * rig.pixel_size_um
    fov_h = plan.camera_roi_px[1] * rig.pixel_size_um
    overlap = 1 - plan.step_um / min(fov_w, fov_h)
    if overlap < plan.min_overlap and not plan.force_overlap:
        raise PlanError(
            f"step_um: {plan.step_um:g} µm over a {min(fov_w, fov_h):.1f} µm field of "
            f"view overlaps neighbours by {overlap:.0%}, below min_overlap "
            f"{plan.min_overlap:.0%}; use step_um ≤ "
            f"{min(fov_w, fov_h) * (1 - plan.min_overlap):.1f}, "
            "or set force_overlap = true to accept it"
        )


def _tiling_sequence(
    plan: TilingPlan, rig: RigConfig, focus: float, z_plan: useq.ZRangeAround | None
) -> _BuiltSequence:
    """One volume per tile of a serpentine grid, after the overlap and stage checks."""
    _check_overlap(rig, plan)
    presets = [resolve_illumination(rig, plan.channel, _preset_name(plan.channel), "channel")]
    tiles = tile_positions(plan)
    _check_xy(
        rig,
        [(t["x_um"], t["y_um"]) for t in tiles],
        "tiles (center_um, rows, columns, step_um)",
    )
    seq = useq.MDASequence(
        stage_positions=tuple(
            useq.Position(x=t["x_um"], y=t["y_um"], z=focus, name=f"r{t['row']}c{t['col']}")
            for t in tiles
        ),
        z_plan=z_plan,
        channels=_channels(presets, plan.exposure_ms),
        axis_order=tuple("pcz"),
    )
    return _BuiltSequence(seq, presets, 1, len(tiles), tiles)
