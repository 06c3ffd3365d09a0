"""Progress displays shared by the commands: one bar per file or stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .app import console

if TYPE_CHECKING:
    from rich.progress import Progress


def counted_progress(unit: str) -> Progress:
    """A display of bars counting ``unit`` (tiles, iterations...), with times.

    Each task is one row: its description, the bar, done/total ``unit``, the time
    spent and the time left.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
