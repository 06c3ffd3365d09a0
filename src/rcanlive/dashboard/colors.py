"""Colours shared by the Qt dashboard and the static report (RGB, 0–255)."""

from __future__ import annotations

from .model import RAW

#: Curve colours per channel (cycled), for raw and restored volumes.
RAW_COLORS = ((31, 119, 180), (44, 160, 44), (148, 103, 189), (140, 86, 75))
RESTORED_COLORS = ((255, 127, 14), (214, 39, 40), (227, 119, 194), (188, 189, 34))
FIT_COLOR = (90, 90, 90)
P10_COLOR = (23, 190, 207)
THRESHOLD_COLOR = (220, 0, 0)


def curve_color(image: str, index: int) -> tuple[int, int, int]:
    """The colour of channel ``index``'s raw or restored curve."""
    palette = RAW_COLORS if image == RAW else RESTORED_COLORS
    return palette[index % len(palette)]


def hex_color(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` for matplotlib."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)
