"""The unit that flows from acquisition to storage, restoration and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .layout import VolumeKey


@dataclass(frozen=True)
class Volume:
    """One z-stack of one channel at one time point and position.

    A volume is held as the camera's frames, one array per plane, so that storing
    it copies nothing; :attr:`data` stacks them into one ``(Z, Y, X)`` array the
    first time a consumer (restoration, dashboard) asks, on that consumer's thread.
    Volumes are immutable: their planes are read-only.

    Attributes
    ----------
    planes
        ``Z`` arrays of ``(Y, X)`` camera counts (uint16), in z order.
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

    planes: tuple[np.ndarray, ...]
    t: int
    p: int
    c: int
    channel: str
    z_um: tuple[float, ...]
    xy_um: tuple[float, float]
    elapsed_s: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for plane in self.planes:
            plane.flags.writeable = False

    @classmethod
    def from_array(cls, data: np.ndarray, *args: Any, **kwargs: Any) -> Volume:
        """A volume from a ``(Z, Y, X)`` array (the other fields as for the class).

        The volume takes the array over: it becomes read-only.
        """
        data = np.asarray(data)
        if data.ndim != 3:
            raise ValueError(f"a volume is (Z, Y, X); got shape {data.shape}")
        data.flags.writeable = False
        volume = cls(tuple(data), *args, **kwargs)
        volume.__dict__["data"] = data  # already stacked: no copy
        return volume

    @cached_property
    def data(self) -> np.ndarray:
        """``(Z, Y, X)`` counts (read-only), stacked from :attr:`planes` on first use."""
        stacked = np.stack(self.planes)
        stacked.flags.writeable = False
        return stacked

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` without stacking."""
        return (len(self.planes), *self.planes[0].shape)  # type: ignore[return-value]

    @property
    def key(self) -> VolumeKey:
        """``(t, p, c)``: identifies the volume within its dataset."""
        return VolumeKey(self.t, self.p, self.c)
