"""``rcanlive stitch``: register and fuse the tiles of a tiling dataset into ``stitched``."""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path  # noqa: TC003 - typer reads the annotations at runtime
from typing import TYPE_CHECKING, Annotated

import typer

from .app import UserError, app, console, require_dataset

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.progress import Progress, TaskID

    from ..stitching import StitchResult


class ImageChoice(StrEnum):
    """Which tiles are stitched."""

    tiles = "tiles"
    restored = "restored"


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
        bar = stack.enter_context(_progress_bar())
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
                progress=_progress_callback(bar),
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


def _progress_bar() -> Progress:
    """A progress display with one bar per stitching stage."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console)


def _progress_callback(bar: Progress) -> Callable[[str, int, int], None]:
    """A ``progress(stage, done, total)`` callback that adds a task to ``bar`` per stage."""
    tasks: dict[str, TaskID] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return progress


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


@app.command(
    "stitch",
    help=(
        "Stitch the tiles of a tiling dataset into one NGFF multiscale image.\n\n"
        "Overlaps of neighbouring tiles are registered (correcting stage errors), all "
        "positions are solved together, and the tiles are blended chunk by chunk into "
        "DATASET/stitched (raw tiles) or DATASET/stitched_restored (restored tiles), with "
        "a pyramid for viewers. A tile that cannot be registered keeps its stage position; "
        "a missing tile leaves a gap; both are reported.\n\n"
        "Example: rcanlive stitch data/gel-tiling.ome.zarr --scheduler local"
    ),
)
def stitch_command(
    dataset: Annotated[Path, typer.Argument(help="Tiling dataset (.ome.zarr).")],
    image: Annotated[
        ImageChoice,
        typer.Option("--image", help="Stitch the raw tiles or the restored tiles."),
    ] = ImageChoice.tiles,
    scheduler: Annotated[
        str,
        typer.Option(
            "--scheduler",
            help="threads (this process), local (a Dask LocalCluster of processes), "
            "sync (debugging), or a Dask scheduler address such as tcp://host:8786.",
        ),
    ] = "threads",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes of a local cluster."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing stitched image.")
    ] = False,
    register: Annotated[
        bool,
        typer.Option("--register/--stage-only", help="Register overlaps, or trust the stage."),
    ] = True,
    search_um: Annotated[
        float,
        typer.Option("--search-um", min=0.1, help="Largest stage error corrected, µm."),
    ] = 5.0,
    min_correlation: Annotated[
        float,
        typer.Option(
            "--min-correlation", min=-1.0, max=1.0, help="Overlaps correlating less are not used."
        ),
    ] = 0.7,
    chunk_px: Annotated[
        int, typer.Option("--chunk", min=16, help="Output chunk size (y, x), pixels.")
    ] = 256,
) -> None:
    """Stitch DATASET."""
    run_stitch(
        dataset,
        image=image.value,
        scheduler=scheduler,
        workers=workers,
        overwrite=overwrite,
        register=register,
        search_um=search_um,
        min_correlation=min_correlation,
        chunk_px=chunk_px,
    )
