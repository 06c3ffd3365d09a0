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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TimeElapsedColumn,
    )

    from ..stitching import (
        OUTPUT_NAMES,
        StitchError,
        StitchWarning,
        stitch_dataset,
        use_scheduler,
    )

    require_dataset(
        dataset, "tile", "only tiling datasets (from `rcanlive acquire tile`) are stitched"
    )
    if (dataset / OUTPUT_NAMES[image]).exists() and not overwrite:
        raise UserError(
            f"{dataset / OUTPUT_NAMES[image]} already exists; pass --overwrite to replace it"
        )
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with ExitStack() as stack:
        try:
            where = stack.enter_context(use_scheduler(scheduler, workers=workers))
        except (OSError, ValueError) as exc:  # no scheduler at that address, or no address
            raise UserError(
                f"--scheduler {scheduler!r}: {exc}; use threads, local, sync or the address "
                "of a running Dask scheduler (tcp://host:8786)"
            ) from None
        bar = stack.enter_context(Progress(*columns, console=console))
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always", StitchWarning)
        console.print(f"stitching {escape(str(dataset))} ({image}) on the {where}", highlight=False)
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            result = stitch_dataset(
                dataset,
                image=image,  # type: ignore[arg-type]
                overwrite=overwrite,
                register=register,
                search_um=search_um,
                min_correlation=min_correlation,
                chunk_px=chunk_px,
                progress=progress,
            )
        except StitchError as exc:
            raise UserError(str(exc)) from None
    for w in caught:
        if not issubclass(w.category, StitchWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in result.warnings:
        console.print(f"[yellow]warning[/]: {escape(message)}", highlight=False)
    console.print(f"[green]done[/]: {escape(result.summary())}", highlight=False)
    return result


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
