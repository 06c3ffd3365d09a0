"""How the frames of any ``useq.MDASequence`` group into volumes, and where each volume
lands in an rcanlive dataset.

A volume is the z-stack of one channel at one time point and one position: the ``z``
axis makes a volume, the ``t``, ``p`` (with ``g``, a grid around a position) and ``c``
axes index volumes, in whatever order the sequence runs them. The dataset kind follows
from the sequence:

==========================  ===========  ==========================================
sequence                    kind         volume key ``(t, p, c)`` in the dataset
==========================  ===========  ==========================================
one position                ``live``     ``(t, 0, c)``: raw ``(t, c, z, y, x)``
several positions, one t    ``tile``     ``(0, position, c)``: one image per position,
                                         at its stage position (stitchable)
several positions and t     ``live``     ``(t, 0, position·C + c)``: each position's
                                         channels are channels of the image, named
                                         ``"<position>/<channel>"``
==========================  ===========  ==========================================

A position is one ``(p, g)`` pair of the sequence, in acquisition order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from ..storage.dataset import Geometry
from ..storage.layout import VolumeKey

if TYPE_CHECKING:
    from collections.abc import Mapping

    import useq

#: the name of the channel of a sequence without channels
DEFAULT_CHANNEL = "default"


@dataclass(frozen=True, slots=True)
class SequencePosition:
    """One position of a sequence: a stage position, or one field of a grid around it.

    Attributes
    ----------
    index
        Acquisition order among the sequence's positions (the tile index).
    p, g
        The sequence's position and grid indices.
    name
        The position's name, else ``p<p>`` (and ``g<g>`` in a grid).
    x_um, y_um
        Commanded stage position (µm); ``None`` where the sequence keeps the stage
        where it is.
    """

    index: int
    p: int
    g: int
    name: str
    x_um: float | None
    y_um: float | None


@dataclass(frozen=True)
class VolumeStructure:
    """The volumes of a sequence and the dataset that holds them.

    Build it with :func:`volume_structure`.
    """

    kind: Literal["live", "tile"]
    planes: int
    n_t: int
    channels: tuple[str, ...]
    positions: tuple[SequencePosition, ...]
    z_step_um: float
    interval_s: float
    expected_frames: int
    _by_pg: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)

    @property
    def folded(self) -> bool:
        """Whether positions are stored as channels (several positions and time points)."""
        return self.kind == "live" and len(self.positions) > 1

    @property
    def dataset_channels(self) -> tuple[str, ...]:
        """Channel names of the dataset, in dataset channel order."""
        if not self.folded:
            return self.channels
        return tuple(f"{pos.name}/{ch}" for pos in self.positions for ch in self.channels)

    @property
    def n_volumes(self) -> int:
        """Volumes the dataset has room for."""
        return self.n_t * len(self.positions) * len(self.channels)

    def key(self, index: Mapping[str, int]) -> VolumeKey:
        """The dataset key of the volume an event's ``index`` belongs to.

        Raises
        ------
        KeyError
            The index names a position, channel or time point the sequence did not
            announce (a frame from a second camera, or a changed sequence).
        """
        t, c = int(index.get("t", 0)), int(index.get("c", 0))
        pos = self._by_pg[(int(index.get("p", 0)), int(index.get("g", 0)))]
        if not (0 <= t < self.n_t and 0 <= c < len(self.channels)):
            raise KeyError(
                f"t={t} c={c} is outside the sequence's {self.n_t} t × {len(self.channels)} c"
            )
        if self.kind == "tile":
            return VolumeKey(0, pos, c)
        if self.folded:
            return VolumeKey(t, 0, pos * len(self.channels) + c)
        return VolumeKey(t, 0, c)

    def position_of(self, key: VolumeKey) -> SequencePosition:
        """The sequence position a dataset key belongs to."""
        if self.kind == "tile":
            return self.positions[key.p]
        if self.folded:
            return self.positions[key.c // len(self.channels)]
        return self.positions[0]

    def geometry(self, height: int, width: int, pixel_size_um: float) -> Geometry:
        """The dataset geometry for frames of ``height × width`` pixels."""
        tile = self.kind == "tile"
        return Geometry(
            planes=self.planes,
            height=height,
            width=width,
            pixel_size_um=pixel_size_um,
            z_step_um=self.z_step_um,
            n_t=1 if tile else self.n_t,
            n_p=len(self.positions) if tile else 1,
            n_c=len(self.dataset_channels),
            interval_s=self.interval_s,
            channels=self.dataset_channels,
        )

    def tiles(self, here_um: tuple[float, float]) -> list[dict[str, Any]]:
        """The tile manifest of a ``tile`` dataset (positions without x/y are ``here_um``).

        Rows and columns are the ranks of the positions' y and x, so that neighbours on
        a grid are neighbours in the manifest (what stitching registers).
        """
        xy = [
            (
                pos.x_um if pos.x_um is not None else here_um[0],
                pos.y_um if pos.y_um is not None else here_um[1],
            )
            for pos in self.positions
        ]
        xs = sorted({round(x, 3) for x, _ in xy})
        ys = sorted({round(y, 3) for _, y in xy})
        return [
            {
                "index": pos.index,
                "row": ys.index(round(y, 3)),
                "col": xs.index(round(x, 3)),
                "x_um": round(x, 4),
                "y_um": round(y, 4),
                "name": pos.name,
            }
            for pos, (x, y) in zip(self.positions, xy, strict=True)
        ]


def volume_structure(sequence: useq.MDASequence) -> VolumeStructure:
    """Infer the volumes of ``sequence`` (see the module's table).

    Call it once the engine has set the sequence up (at ``sequenceStarted``): grid
    plans then know the field of view, and so the positions of their fields.

    Raises
    ------
    ValueError
        The sequence has volumes of different shapes: a channel with
        ``do_stack=False`` in a z-stack, or a position with its own z-plan, channels
        or time plan.
    """
    _check_uniform(sequence)
    sizes = {str(axis): int(n) for axis, n in sequence.sizes.items()}
    n_t = sizes.get("t", 0) or 1
    planes = sizes.get("z", 0) or 1
    channels = tuple(ch.config for ch in sequence.channels) or (DEFAULT_CHANNEL,)
    positions = _positions(sequence)
    per_channel = [math.ceil(n_t / ch.acquire_every) for ch in sequence.channels] or [n_t]
    return VolumeStructure(
        kind="tile" if len(positions) > 1 and n_t == 1 else "live",
        planes=planes,
        n_t=n_t,
        channels=channels,
        positions=positions,
        z_step_um=_z_step_um(sequence),
        interval_s=_interval_s(sequence),
        # (a sequence without any axis has no event at all)
        expected_frames=len(positions) * planes * sum(per_channel) if sequence.used_axes else 0,
        _by_pg={(pos.p, pos.g): pos.index for pos in positions},
    )


def _check_uniform(sequence: useq.MDASequence) -> None:
    """Refuse sequences whose volumes differ in shape (one dataset image holds them all)."""
    if not isinstance(getattr(sequence, "stage_positions", None), tuple):
        raise ValueError(
            f"a {type(sequence).__name__} does not describe its volumes; run a "
            "useq.MDASequence (a plain iterable of events cannot be stored as volumes)"
        )
    if sequence.z_plan is not None and sequence.z_plan.num_positions() > 1:
        flat = [ch.config for ch in sequence.channels if not ch.do_stack]
        if flat:
            raise ValueError(
                f"channel(s) {', '.join(flat)} have do_stack=False: their single plane "
                "cannot share a dataset with z-stacks; set do_stack=True or acquire them "
                "in a sequence of their own"
            )
    for i, pos in enumerate(sequence.stage_positions):
        sub = pos.sequence
        if sub is None:
            continue
        own = [
            name
            for name, value in (
                ("z_plan", sub.z_plan),
                ("channels", sub.channels),
                ("time_plan", sub.time_plan),
            )
            if value
        ]
        if own:
            raise ValueError(
                f"stage position {pos.name or i} has its own {', '.join(own)}: every "
                "volume of a dataset has the same planes, channels and time points; keep "
                "only a grid_plan in a position's sub-sequence"
            )


def _positions(sequence: useq.MDASequence) -> tuple[SequencePosition, ...]:
    """Every ``(p, g)`` of the sequence in acquisition order, with its stage position.

    Iterates the sequence without its time, channel and z axes: one event per position.
    """
    bare = sequence.replace(time_plan=None, channels=(), z_plan=None)
    seen: dict[tuple[int, int], SequencePosition] = {}
    for event in bare:
        p, g = int(event.index.get("p", 0)), int(event.index.get("g", 0))
        if (p, g) in seen:
            continue
        grid = "g" in event.index
        name = event.pos_name or f"p{p}"
        seen[(p, g)] = SequencePosition(
            len(seen), p, g, f"{name}g{g}" if grid else name, event.x_pos, event.y_pos
        )
    return tuple(seen.values()) or (SequencePosition(0, 0, 0, "p0", None, None),)


def _z_step_um(sequence: useq.MDASequence) -> float:
    """Distance between planes (µm); uneven plans give their first step, 2D gives 1."""
    plan = sequence.z_plan
    if plan is None or plan.num_positions() < 2:
        return 1.0
    first, second = list(plan)[:2]
    return abs(float(second) - float(first)) or 1.0


def _interval_s(sequence: useq.MDASequence) -> float:
    """Time between time points (s); a multi-phase plan gives its first phase's."""
    plan: Any = sequence.time_plan
    if plan is None:
        return 0.0
    if hasattr(plan, "phases"):
        plan = plan.phases[0] if plan.phases else None
    interval = getattr(plan, "interval", None)
    if isinstance(interval, timedelta):
        return interval.total_seconds()
    return float(interval or 0.0)
