"""The cover image of an exported package: raw and restored projections side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from numpy.typing import NDArray


def _display(mip: NDArray[np.float32]) -> NDArray[np.float32]:
    """Scale a projection to 0–1 by its 0.5th and 99.8th percentiles, for display."""
    lo, hi = np.percentile(mip, [0.5, 99.8])
    if not hi > lo:
        return np.zeros_like(mip)
    return np.clip((mip - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def write_cover(raw: NDArray[np.floating], restored: NDArray[np.floating], path: Path) -> Path:
    """Write a 2:1 PNG with the maximum projections along z of ``raw`` and ``restored``.

    Parameters
    ----------
    raw, restored
        ``(Z, Y, X)`` volumes of one shape.
    path
        Destination ``.png``; bioimage.io shows covers at a 2:1 aspect ratio.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=100)  # no pyplot: no GUI backend, no global state
    FigureCanvasAgg(figure)
    for index, (volume, title) in enumerate(((raw, "raw"), (restored, "restored (RCAN)"))):
        axes = figure.add_axes((index / 2, 0.0, 0.5, 0.9))
        axes.imshow(_display(np.asarray(volume, np.float32).max(axis=0)), cmap="magma")
        axes.set_title(f"{title}, max projection", fontsize=11)
        axes.set_axis_off()
    figure.savefig(path, format="png", facecolor="white")
    return path
