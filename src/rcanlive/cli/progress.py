"""Progress displays shared by the commands: one bar per file or stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .app import console

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.progress import Progress, TaskID


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


def staged_progress(*, transient: bool = False) -> Progress:
    """A display with one bar per stage of a piece of work (description, done/total,
    time spent); fill it with :func:`stage_callback`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


def stage_callback(bar: Progress, suffix: str = "") -> Callable[[str, int, int], None]:
    """A ``progress(stage, done, total)`` callback that adds a row to ``bar`` per stage
    (described as the stage's name and ``suffix``)."""
    tasks: dict[str, TaskID] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"{stage}{suffix}", total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return progress
