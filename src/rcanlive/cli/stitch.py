"""``rcanlive stitch``: register and fuse the tiles of a tiling dataset into ``stitched``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path  # noqa: TC003 - typer reads the annotations at runtime
from typing import Annotated

import typer

from .app import app
from .stitch_progress import run_stitch


class ImageChoice(StrEnum):
    """Which tiles are stitched."""

    tiles = "tiles"
    restored = "restored"


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
