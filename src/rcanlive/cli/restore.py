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

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..inference import Backend, BackendRecipe
    from ..inference.stacks import Stack


class OutputChoice(StrEnum):
    """What restored volumes hold."""

    intensity = "intensity"
    normalized = "normalized"


TIFF_SUFFIXES = (".tif", ".tiff")


def open_backend(
    model: Path,
    backend: str,
    precision: str,
    device: str,
    tile: tuple[int, int, int] | None,
    batch_size: int,
    cache_dir: Path | None,
) -> Backend:
    """Create the backend, turning every failure a user can fix into a UserError."""
    from ..inference import BackendError, create_backend, is_artifact
    from ..model import CheckpointError

    what = (
        "opening"
        if is_artifact(model)
        else "preparing (compiled backends build once, then load from cache)"
    )
    console.print(f"{backend} backend for {model.name}: {what} ...", highlight=False)
    try:
        return create_backend(
            backend,
            model,
            precision,
            device,
            tile,
            batch_size=batch_size,
            cache_dir=cache_dir,
        )
    except (BackendError, CheckpointError, ValueError) as exc:
        raise UserError(str(exc)) from None


def backend_factory(
    model: Path,
    backend: str,
    precision: str,
    device: str = "auto",
    tile: tuple[int, int, int] | None = None,
    batch_size: int = 1,
    cache_dir: Path | None = None,
) -> Callable[[tuple[int, ...]], Backend]:
    """``volume shape → backend``: opened once the volumes' shape is known, with a
    tile chosen from it when none is given (static backends need one)."""

    def make_backend(volume_shape: tuple[int, ...]) -> Backend:
        from ..inference import choose_tile_shape, is_artifact

        chosen = tile
        if chosen is None and not is_artifact(model) and len(volume_shape) == 3:
            chosen = choose_tile_shape(volume_shape)  # static backends need one
        return open_backend(model, backend, precision, device, chosen, batch_size, cache_dir)

    return make_backend


def _tiff_jobs(source: Path, out: Path | None) -> list[tuple[Path, Path]]:
    """Pairs (input TIFF, output TIFF) for a file or a folder of TIFFs.

    Raises
    ------
    UserError
        If an output would replace an input (the same file, the input's own folder,
        or a symlink to either: resolved paths are compared), or OUT cannot be a path.
    """
    if out is None:
        raise UserError("give an output path: rcanlive restore IN OUT")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{out} cannot be created: {parent} is a file, not a folder")
    if source.is_file():
        if source.suffix.lower() not in TIFF_SUFFIXES:
            raise UserError(f"{source} is not a TIFF file (.tif/.tiff) or an OME-Zarr (.zarr)")
        jobs = [(source, out / source.name if out.is_dir() else out)]
    else:
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
        if not files:
            raise UserError(f"no .tif/.tiff files in {source}")
        if out.exists() and not out.is_dir():
            raise UserError(f"{source} is a folder, so OUT must be a folder; {out} is a file")
        jobs = [(f, out / f.name) for f in files]
    inputs = {src.resolve() for src, _ in jobs}
    for src, target in jobs:
        if target.resolve() in inputs:
            raise UserError(
                f"{target} is the input {src} (or a link to it): restoring would replace the "
                "raw data; choose another OUT (--overwrite never replaces an input)"
            )
    return jobs


def _read(path: Path) -> Stack:
    """A TIFF stack, or a one-line user error saying why it cannot be restored."""
    from ..inference.stacks import StackError, read_stack

    try:
        return read_stack(path)
    except StackError as exc:
        raise UserError(str(exc)) from None


def _tile_columns() -> tuple[Any, ...]:
    """Progress columns for a file restored tile by tile."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tiles"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _restore_tiffs(
    jobs: list[tuple[Path, Path]],
    make_backend: Callable[[tuple[int, ...]], Backend],
    *,
    tile: tuple[int, int, int] | None,
    overlap: tuple[int, int, int] | None,
    batch_size: int,
    output: str,
    overwrite: bool,
) -> None:
    from rich.progress import Progress

    from ..inference import BackendError
    from ..inference.stacks import StackError, restore_stack, write_stack

    for _, target in jobs:
        if target.exists() and not overwrite:
            raise UserError(f"{target} exists; pass --overwrite to replace it")
    first = _read(jobs[0][0])
    backend = make_backend(first.data.shape[-3:])
    console.print(
        f"restoring {len(jobs)} file(s) with {backend.name} {backend.precision} on "
        f"{backend.device}",
        highlight=False,
    )
    try:
        with Progress(*_tile_columns(), console=console) as bar:
            for number, (source, target) in enumerate(jobs):
                stack = first if number == 0 else _read(source)
                task = bar.add_task(source.name, total=None)

                def update(done: int, total: int, task: Any = task) -> None:
                    bar.update(task, completed=done, total=total)

                try:
                    restored = restore_stack(
                        stack,
                        backend,
                        tile_shape=tile,
                        overlap=overlap,
                        batch_size=batch_size,
                        output=output,  # type: ignore[arg-type]
                        progress=update,
                    )
                except (StackError, BackendError) as exc:
                    raise UserError(f"{source}: {exc}") from None
                write_stack(target, restored, stack)
    finally:
        backend.close()
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
    if is_dataset:
        from ..inference import BackendRecipe
        from ..inference.recipe import live_tile_shape
        from ..storage import open_dataset

        if tile_shape is None:
            g = open_dataset(source).meta.get("geometry", {})
            if g:
                tile_shape = live_tile_shape((g["planes"], g["height"], g["width"]))
        recipe = BackendRecipe(
            model_path,
            backend.value,
            precision.value,
            device,
            tile_shape,
            batch_size,
            cache_dir,
        )
        restore_dataset(
            source, out, recipe, only_missing=only_missing, overlap=overlap_zyx, scheduler=scheduler
        )
        return
    make_backend = backend_factory(
        model_path, backend.value, precision.value, device, tile_shape, batch_size, cache_dir
    )
    _restore_tiffs(
        _tiff_jobs(source, out),
        make_backend,
        tile=tile_shape,
        overlap=overlap_zyx,
        batch_size=batch_size,
        output=output.value,
        overwrite=overwrite,
    )
