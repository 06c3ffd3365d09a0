"""The unit that flows from acquisition to storage, restoration and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class Volume:
    """One z-stack of one channel at one time point and position.

    Attributes
    ----------
    data
        ``(Z, Y, X)`` camera counts (uint16).
    t, p, c
        Time, position (or tile) and channel indices in the plan.
    channel
        Illumination preset name (e.g. ``"488nm@4.2W/cm2"`` or ``"low"``).
    z_um
        Piezo position of each plane, µm.
    xy_um
        Commanded stage position, µm.
    elapsed_s
        Time of the first plane since the start of the acquisition, s.
    meta
        Extra per-volume metadata (intensity, camera metadata, ...).
    """

    data: np.ndarray
    t: int
    p: int
    c: int
    channel: str
    z_um: tuple[float, ...]
    xy_um: tuple[float, float]
    elapsed_s: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, int]:
        """``(t, p, c)``: identifies the volume within its dataset."""
        return (self.t, self.p, self.c)
