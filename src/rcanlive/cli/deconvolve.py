"""``rcanlive deconvolve``: Richardson–Lucy deconvolution of TIFF stacks or a dataset.

IN is a TIFF (``(Z, Y, X)``, or ``(T, Z, Y, X)`` deconvolved volume by volume), a
folder of TIFFs, or an rcanlive OME-Zarr dataset. TIFFs become float32 TIFFs with the
same axes; a dataset's volumes (every volume it logs: raw volumes, tiles, or both
members of each training pair) become one float32 TIFF each in the folder OUT, named
``t0000_p000_c0.tif``; the dataset is not changed.

The PSF is ``--psf`` (a centred bead stack), or the rig's: the simulator's iSIM PSF
(NA 1.42, Gibson–Lanni, excitation × emission) at the data's voxel size. The camera
offset (a dataset's rig, else 100 counts: the paper's camera) is subtracted first.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import UserError, app, console
from .options import parse_zyx
from .progress import counted_progress

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

    from ..training.ground_truth import Progress, PsfForChannel


def _device(name: str) -> str:
    from ..analysis.deconvolution import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise UserError(f"--device: {exc}") from None


def _load_psf(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from ..analysis.deconvolution import load_psf

    try:
        return load_psf(path)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _voxel(
    measured: np.ndarray | None, pixel_size: float | None, z_step: float | None
) -> tuple[float, float] | None:
    """The TIFFs' voxel size (z step, pixel size), needed without --psf."""
    if measured is not None:
        return None
    if pixel_size is None or z_step is None:
        raise UserError(
            "without --psf the rig's iSIM PSF is used, at the TIFF's voxel size: give "
            "--pixel-size and --z-step (µm)"
        )
    if pixel_size <= 0 or z_step <= 0:
        raise UserError(f"--pixel-size and --z-step must be > 0 µm, got {pixel_size}, {z_step}")
    return z_step, pixel_size


def _psf(
    measured: np.ndarray | None, default_nm: float | None = None
) -> np.ndarray | PsfForChannel:
    """The measured PSF, or the rig's per channel (at ``default_nm`` where a channel's
    name gives no laser line: TIFFs have none)."""
    from ..simulation.optics import channel_psf

    if measured is not None:
        return measured
    return channel_psf if default_nm is None else partial(channel_psf, default_nm=default_nm)


@contextmanager
def _reported() -> Iterator[Progress]:
    """A progress bar with one row per output file; library errors as user errors."""
    from ..inference.stacks import StackError

    tasks: dict[str, Any] = {}
    with counted_progress("iterations") as bar:

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            yield update
        except (StackError, FileExistsError) as exc:
            message = str(exc).replace("replace it (overwrite)", "pass --overwrite to replace it")
            raise UserError(message) from None
        except ValueError as exc:
            raise UserError(str(exc)) from None


@app.command(
    "deconvolve",
    help=(
        "Deconvolve volumes by Richardson–Lucy, as the paper made its ground truth "
        "(15 iterations).\n\n"
        "IN is a ZYX TIFF (leading T axes are done volume by volume), a folder of TIFFs, "
        "or an OME-Zarr dataset (.zarr; every volume it logs becomes a TIFF "
        "tNNNN_pNNN_cN.tif in the folder OUT). Outputs are float32, offset-subtracted. "
        "The PSF is --psf (a centred bead stack) or the rig's iSIM PSF at the voxel size "
        "(a dataset's own, or --pixel-size/--z-step). The camera offset (--background; "
        "default: the dataset rig's, else 100 counts) is subtracted first. --chunk bounds "
        "memory for large volumes; a GPU is used when torch sees one.\n\n"
        "Example: rcanlive deconvolve high/cell01.tif gt/cell01.tif --psf bead.tif\n\n"
        "Example: rcanlive deconvolve data/gel.ome.zarr gt/ --chunk 32,512,512 --device cuda"
    ),
)
# (long by its Typer option declarations; the work is in the functions it calls)
def deconvolve_command(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="TIFF, folder of TIFFs, or .zarr dataset.")
    ],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output TIFF or folder.")],
    psf: Annotated[
        Path | None, typer.Option("--psf", help="Measured PSF: a centred bead Z stack (TIFF).")
    ] = None,
    iterations: Annotated[
        int, typer.Option("--iterations", "-n", min=1, help="RL iterations (paper: 15).")
    ] = 15,
    chunk: Annotated[
        str | None,
        typer.Option("--chunk", help="Deconvolve in chunks Z,Y,X (with a halo) to bound memory."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto (GPU if torch sees one), cpu, cuda, cuda:N.")
    ] = "auto",
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", help="TIFF without --psf: pixel size, µm."),
    ] = None,
    z_step: Annotated[
        float | None, typer.Option("--z-step", help="TIFF without --psf: z step, µm.")
    ] = None,
    wavelength: Annotated[
        float,
        typer.Option("--wavelength", help="TIFF without --psf: excitation line, nm."),
    ] = 488.0,
    background: Annotated[
        float | None,
        typer.Option("--background", help="Subtracted first (default: camera offset)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files.")
    ] = False,
) -> None:
    """Deconvolve IN into OUT."""
    from ..inference.stacks import tiff_jobs
    from ..training.ground_truth import DeconvolutionSettings, deconvolve_dataset, deconvolve_tiffs

    if not source.exists():
        raise UserError(f"input not found: {source}")
    where = _device(device)
    settings = DeconvolutionSettings(iterations, parse_zyx(chunk, "--chunk"), where, background)
    measured = _load_psf(psf)
    with _reported() as progress:
        if source.is_dir() and source.suffix.lower() == ".zarr":
            kernel = _psf(measured)
            done = deconvolve_dataset(
                source, out, kernel, settings, overwrite=overwrite, progress=progress
            )
        else:
            jobs = tiff_jobs(source, out, overwrite=overwrite)
            voxel, kernel = _voxel(measured, pixel_size, z_step), _psf(measured, wavelength)
            done = deconvolve_tiffs(jobs, kernel, settings, voxel_um=voxel, progress=progress)
    console.print(
        f"deconvolved {len(done.targets)} input(s) into {out}: Richardson–Lucy, {iterations} "
        f"iterations, {done.psf}, offset {done.background:g} counts subtracted, on {where} "
        "(float32)",
        highlight=False,
    )
