"""``rcanlive restore``: restore TIFF volumes (or an OME-Zarr dataset) offline."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import UserError, app, console
from .options import (
    BackendChoice,
    BackendOpt,
    ModelOpt,
    PrecisionChoice,
    PrecisionOpt,
    parse_zyx,
    resolve_model_path,
)
from .progress import counted_progress

if TYPE_CHECKING:
    from ..inference import Backend, BackendRecipe
    from ..inference.stacks import TiffJob


class OutputChoice(StrEnum):
    """What restored volumes hold."""

    intensity = "intensity"
    normalized = "normalized"


def restore_tiffs(
    source: Path,
    out: Path | None,
    recipe: BackendRecipe,
    *,
    overlap: tuple[int, int, int] | None,
    output: str,
    overwrite: bool,
) -> None:
    """Restore a TIFF, or a folder of TIFFs, into OUT with a progress bar per file."""

    from ..inference import BackendError
    from ..inference.stacks import StackError, restore_tiffs, tiff_jobs
    from ..model import CheckpointError

    if out is None:
        raise UserError("give an output path: rcanlive restore IN OUT")
    what = "opening" if recipe.backend != "auto" else "measuring the backends (cached)"
    console.print(f"{recipe.backend} backend for {recipe.model.name}: {what} ...")
    tasks: dict[Path, Any] = {}
    with counted_progress("tiles") as bar:

        def opened(backend: Backend) -> None:
            console.print(
                f"restoring {len(jobs)} file(s) with {backend.name} {backend.precision} on "
                f"{backend.device}",
                highlight=False,
            )

        def progress(job: TiffJob, done: int, total: int) -> None:
            if job.source not in tasks:
                tasks[job.source] = bar.add_task(job.source.name, total=total)
            bar.update(tasks[job.source], completed=done, total=total)

        try:
            jobs = tiff_jobs(source, out, overwrite=overwrite)
            restore_tiffs(
                jobs,
                recipe,
                overlap=overlap,
                output=output,  # type: ignore[arg-type]
                on_open=opened,
                progress=progress,
            )
        except StackError as exc:
            message = str(exc).replace("replace it (overwrite)", "pass --overwrite to replace it")
            raise UserError(message) from None
        except (BackendError, CheckpointError, ValueError) as exc:
            raise UserError(str(exc)) from None
    console.print(f"wrote {len(jobs)} restored file(s) (float32)", highlight=False)


def restore_dataset(
    source: Path,
    out: Path | None,
    recipe: BackendRecipe,
    *,
    only_missing: bool,
    overlap: tuple[int, int, int] | None,
    scheduler: str | None,
) -> None:
    """Restore a live (or tiling) dataset's raw volumes into its ``restored`` image
    (``restored_tiles``), in place, here or on Dask workers."""
    from rich.progress import Progress

    from ..inference import BackendError
    from ..inference.offline import restore_dataset as restore_in_place
    from ..inference.offline import volumes_to_restore
    from ..model import CheckpointError

    if out is not None:
        raise UserError("an OME-Zarr dataset is restored in place; drop OUT")
    try:
        todo = volumes_to_restore(source, only_missing)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if not todo:
        console.print(f"nothing to restore in {source}", highlight=False)
        return
    with Progress(console=console) as bar:
        task = bar.add_task("restoring", total=len(todo))
        try:
            done = restore_in_place(
                source,
                recipe,
                todo,
                overlap=overlap,
                scheduler=scheduler,
                on_done=lambda: bar.advance(task),
            )
        except (BackendError, CheckpointError) as exc:
            raise UserError(f"{source}: {exc}") from None
    console.print(
        f"restored {done.restored} volume(s) into {source}/{done.where} with {done.backend} "
        f"{done.precision} ({done.scheduler})",
        highlight=False,
    )
    _check_model_card(recipe.model, source)


def _check_model_card(model: Path, dataset: Path) -> None:
    """The model's reliable input SNR (its card), and a warning when the dataset's raw
    volumes lie outside it; nothing for a model without a card."""
    from .running import card_warning, model_card_of

    card = model_card_of(model)
    if card is not None:
        console.print(f"model {card.describe_range()}", highlight=False)
        card_warning(card, dataset=dataset)


@app.command(
    "restore",
    help=(
        "Restore raw volumes offline with a trained RCAN.\n\n"
        "IN is a TIFF stack (Z, Y, X; extra leading axes such as T are restored volume by "
        "volume), a folder of TIFFs, or an OME-Zarr dataset (.zarr). Restored TIFFs are "
        "float32 in the raw intensity scale. Without --model the bundled model is used.\n\n"
        "Example: rcanlive restore raw/cell01.tif restored/cell01.tif --model runs/isim/best.pt "
        "--backend compiled --precision bf16 --tile 16,256,256\n\n"
        "Example: rcanlive restore data/gel.ome.zarr --only-missing --scheduler local"
    ),
)
# (long by its Typer option declarations; the work is in the functions it calls)
def restore_command(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="TIFF file, folder of TIFFs, or .zarr dataset.")
    ],
    out: Annotated[
        Path | None,
        typer.Argument(
            metavar="[OUT]", help="Output TIFF or folder (optional for a .zarr dataset)."
        ),
    ] = None,
    model: ModelOpt = None,
    backend: BackendOpt = BackendChoice.auto,
    precision: PrecisionOpt = PrecisionChoice.auto,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    tile: Annotated[
        str | None,
        typer.Option("--tile", help="Tile Z,Y,X (default: the volume, capped at 32,256,256)."),
    ] = None,
    overlap: Annotated[
        str | None, typer.Option("--overlap", help="Tile overlap Z,Y,X (default 4,32,32).")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Tiles per backend call.")
    ] = 1,
    output: Annotated[
        OutputChoice,
        typer.Option("--output", help="intensity (raw scale) or normalized (network output)."),
    ] = OutputChoice.intensity,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files.")
    ] = False,
    only_missing: Annotated[
        bool,
        typer.Option("--only-missing", help="Dataset only: restore just the volumes skipped live."),
    ] = False,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Where built engines are cached.")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dataset only: spread the volumes over Dask workers, each with one backend: "
            "local (a LocalCluster on this machine) or a scheduler's address.",
        ),
    ] = None,
) -> None:
    """Restore IN into OUT."""
    if not source.exists():
        raise UserError(f"input not found: {source}")
    tile_shape = parse_zyx(tile, "--tile")
    overlap_zyx = parse_zyx(overlap, "--overlap") if overlap else None
    model_path = resolve_model_path(model)
    is_dataset = source.is_dir() and source.suffix.lower() == ".zarr"
    if only_missing and not is_dataset:
        raise UserError("--only-missing applies to OME-Zarr datasets (.zarr) only")

    if scheduler is not None and not is_dataset:
        raise UserError("--scheduler applies to OME-Zarr datasets (.zarr) only")
    from ..inference import BackendRecipe

    recipe = BackendRecipe(
        model_path, backend.value, precision.value, device, tile_shape, batch_size, cache_dir
    )
    if not is_dataset:
        restore_tiffs(
            source, out, recipe, overlap=overlap_zyx, output=output.value, overwrite=overwrite
        )
        return
    if tile_shape is None:
        from ..inference.recipe import live_tile_shape
        from ..storage import open_dataset

        g = open_dataset(source).meta.get("geometry", {})
        if g:
            recipe = recipe.replace(
                tile_shape=live_tile_shape((g["planes"], g["height"], g["width"]))
            )
    restore_dataset(
        source, out, recipe, only_missing=only_missing, overlap=overlap_zyx, scheduler=scheduler
    )
