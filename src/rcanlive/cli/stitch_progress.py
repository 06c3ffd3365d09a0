"""Stitching with a progress display: shared by ``rcanlive stitch`` and ``acquire tile``."""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from typing import TYPE_CHECKING

from .app import UserError, console, require_dataset
from .progress import stage_callback, staged_progress

if TYPE_CHECKING:
    from pathlib import Path

    from ..stitching import StitchResult


def run_stitch(
    dataset: Path,
    *,
    image: str = "tiles",
    scheduler: str = "threads",
    workers: int | None = None,
    overwrite: bool = False,
    register: bool = True,
    search_um: float = 5.0,
    min_correlation: float = 0.7,
    chunk_px: int = 256,
) -> StitchResult:
    """Stitch ``dataset`` with a progress bar and print the summary and any warnings.

    The command-line face of :func:`rcanlive.stitching.stitch_dataset`; errors the
    user can fix (not a tiling dataset, output exists, no scheduler) are
    :class:`UserError`.
    """
    from rich.markup import escape

    from ..stitching import StitchError, StitchWarning, stitch_dataset

    _refuse_dataset(dataset, image, overwrite=overwrite)
    with ExitStack() as stack:
        where = _enter_scheduler(stack, scheduler, workers)
        bar = stack.enter_context(staged_progress())
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always", StitchWarning)
        console.print(f"stitching {escape(str(dataset))} ({image}) on the {where}", highlight=False)
        try:
            result = stitch_dataset(
                dataset,
                image=image,  # type: ignore[arg-type]
                overwrite=overwrite,
                register=register,
                search_um=search_um,
                min_correlation=min_correlation,
                chunk_px=chunk_px,
                progress=stage_callback(bar),
            )
        except StitchError as exc:
            raise UserError(str(exc)) from None
    _print_outcome(result, caught)
    return result


def _refuse_dataset(dataset: Path, image: str, *, overwrite: bool) -> None:
    """Raise :class:`UserError` unless ``dataset`` is a tiling dataset the output may go to."""
    from ..stitching import OUTPUT_NAMES

    require_dataset(
        dataset, "tile", "only tiling datasets (from `rcanlive acquire tile`) are stitched"
    )
    if (dataset / OUTPUT_NAMES[image]).exists() and not overwrite:
        raise UserError(
            f"{dataset / OUTPUT_NAMES[image]} already exists; pass --overwrite to replace it"
        )


def _enter_scheduler(stack: ExitStack, scheduler: str, workers: int | None) -> str:
    """Make ``scheduler`` active until ``stack`` closes; its description for the user."""
    from ..stitching import use_scheduler

    try:
        return stack.enter_context(use_scheduler(scheduler, workers=workers))
    except (OSError, ValueError) as exc:  # no scheduler at that address, or no address
        raise UserError(
            f"--scheduler {scheduler!r}: {exc}; use threads, local, sync or the address "
            "of a running Dask scheduler (tcp://host:8786)"
        ) from None


def _print_outcome(result: StitchResult, caught: list[warnings.WarningMessage]) -> None:
    """Re-issue foreign warnings, then print the stitching warnings and the summary."""
    from rich.markup import escape

    from ..stitching import StitchWarning

    for w in caught:
        if not issubclass(w.category, StitchWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in result.warnings:
        console.print(f"[yellow]warning[/]: {escape(message)}", highlight=False)
    console.print(f"[green]done[/]: {escape(result.summary())}", highlight=False)
