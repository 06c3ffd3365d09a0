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

import re
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import UserError, app, console
from .options import parse_zyx

if TYPE_CHECKING:
    import numpy as np

    from ..config.training import TrainingConfig

TIFF_SUFFIXES = (".tif", ".tiff")
#: Extent of the rig PSF, µm (axial, lateral): the simulator blurs with the same
#: (``simulation/world.py``), so simulated data are deconvolved by the PSF that blurred them.
RIG_PSF_EXTENT_UM = (2.0, 1.2)
#: The camera offset of the paper's sCMOS (and of a rig config that sets none), counts.
DEFAULT_OFFSET = 100.0


def rig_psf(z_step_um: float, pixel_size_um: float, excitation_nm: float = 488.0) -> np.ndarray:
    """The rig's iSIM PSF at this voxel size (normalised, centred, odd sizes)."""
    from ..simulation.optics import isim_psf

    dz_extent, dxy_extent = RIG_PSF_EXTENT_UM
    planes = max(1, int(dz_extent / z_step_um))
    side = max(1, int(dxy_extent / pixel_size_um))
    return isim_psf((planes, side), (z_step_um, pixel_size_um), excitation_nm=excitation_nm)


def _wavelength(channel: str, default: float = 488.0) -> float:
    """The laser line in a channel's name (``"488nm 33 mW"`` → 488)."""
    found = re.search(r"(\d{3,4})\s*nm", channel)
    return float(found.group(1)) if found else default


def _dataset_psf(meta: dict[str, Any], channel: int) -> tuple[np.ndarray, str]:
    """The rig PSF for channel ``channel`` of a dataset, and a description of it."""
    geometry = meta.get("geometry") or {}
    dz, dxy = float(geometry["z_step_um"]), float(geometry["pixel_size_um"])
    names = list(meta.get("channels") or [])
    line = _wavelength(names[channel]) if channel < len(names) else 488.0
    return rig_psf(dz, dxy, line), f"rig iSIM PSF, {line:g} nm, {dz:g}×{dxy:g} µm voxels"


def _dataset_offset(meta: dict[str, Any]) -> float:
    rig = meta.get("rig") or {}
    return float((rig.get("camera") or {}).get("offset_counts", DEFAULT_OFFSET))


def training_psf(config: TrainingConfig) -> np.ndarray | None:
    """The rig PSF for ``[data] deconvolve_target`` of a pairs dataset (its ground-truth
    channel, at its voxel size); None when not needed or not known (the trainer then
    uses ``[data] psf`` or says what is missing)."""
    from ..storage import open_dataset

    data = config.data
    if not data.deconvolve_target or data.psf is not None or data.pairs is None:
        return None
    try:
        meta = open_dataset(data.pairs).meta
        return _dataset_psf(meta, channel=1)[0]  # c=1: the high-SNR volume of a pair
    except (FileNotFoundError, KeyError):
        return None


def _progress_bar() -> Any:
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
        TextColumn("iterations"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _tiff_jobs(source: Path, out: Path, overwrite: bool) -> list[tuple[Path, Path]]:
    """Pairs (input TIFF, output TIFF) for a TIFF or a folder of TIFFs."""
    if source.is_file():
        if source.suffix.lower() not in TIFF_SUFFIXES:
            raise UserError(f"{source} is not a TIFF (.tif/.tiff) or an OME-Zarr dataset (.zarr)")
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
            raise UserError(f"{target} is the input {src}: choose another OUT")
        if target.exists() and not overwrite:
            raise UserError(f"{target} exists; pass --overwrite to replace it")
    return jobs


def _deconvolve_tiffs(
    jobs: list[tuple[Path, Path]], psf: np.ndarray, options: dict[str, Any]
) -> None:
    from ..analysis.deconvolution import deconvolve_tiff

    with _progress_bar() as bar:
        for source, target in jobs:
            task = bar.add_task(source.name, total=None)

            def update(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                deconvolve_tiff(source, target, psf, progress=update, **options)
            except ValueError as exc:
                raise UserError(f"{source}: {exc}") from None


def _deconvolve_dataset(
    source: Path,
    out: Path,
    psf: np.ndarray | None,
    options: dict[str, Any],
    overwrite: bool,
) -> tuple[int, str, float]:
    """One TIFF per logged volume of the dataset; returns (count, PSF description,
    offset subtracted)."""
    import numpy as np
    import tifffile

    from ..analysis.deconvolution import richardson_lucy
    from ..storage import open_dataset

    if out.exists() and not out.is_dir():
        raise UserError(f"a dataset is deconvolved into a folder of TIFFs; {out} is a file")
    ds = open_dataset(source)
    if options["background"] is None:
        options = {**options, "background": _dataset_offset(ds.meta)}
    keys = [(r["t"], r["p"], r["c"]) for r in ds.volumes]
    targets = [out / f"t{t:04d}_p{p:03d}_c{c}.tif" for t, p, c in keys]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    described = "measured PSF"
    with _progress_bar() as bar:
        for key, target in zip(keys, targets, strict=True):
            kernel = psf
            if kernel is None:
                kernel, described = _dataset_psf(ds.meta, channel=key[2])
            task = bar.add_task(target.stem, total=None)

            def update(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            volume = ds.volume(key[0], p=key[1], c=key[2])
            result = richardson_lucy(volume, kernel, progress=update, **options)
            tifffile.imwrite(
                target,
                result.astype(np.float32),
                photometric="minisblack",
                metadata={"axes": "ZYX"},
            )
    return len(keys), described, float(options["background"])


def _tiff_psf(
    psf: np.ndarray | None, pixel_size: float | None, z_step: float | None, wavelength: float
) -> tuple[np.ndarray, str]:
    if psf is not None:
        return psf, "measured PSF"
    if pixel_size is None or z_step is None:
        raise UserError(
            "without --psf the rig's iSIM PSF is used, at the TIFF's voxel size: give "
            "--pixel-size and --z-step (µm)"
        )
    if pixel_size <= 0 or z_step <= 0:
        raise UserError(f"--pixel-size and --z-step must be > 0 µm, got {pixel_size}, {z_step}")
    return (
        rig_psf(z_step, pixel_size, wavelength),
        f"rig iSIM PSF, {wavelength:g} nm, {z_step:g}×{pixel_size:g} µm voxels",
    )


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
    if not source.exists():
        raise UserError(f"input not found: {source}")
    where = _device(device)
    chunk_shape = parse_zyx(chunk, "--chunk")
    options: dict[str, Any] = {"iterations": iterations, "chunk_shape": chunk_shape}
    options.update(device=where, background=background)
    measured = _load_psf(psf)
    if source.is_dir() and source.suffix.lower() == ".zarr":
        count, described, offset = _deconvolve_dataset(source, out, measured, options, overwrite)
    else:
        jobs = _tiff_jobs(source, out, overwrite)
        kernel, described = _tiff_psf(measured, pixel_size, z_step, wavelength)
        options["background"] = DEFAULT_OFFSET if background is None else background
        _deconvolve_tiffs(jobs, kernel, options)
        count, offset = len(jobs), options["background"]
    console.print(
        f"deconvolved {count} input(s) into {out}: Richardson–Lucy, {iterations} iterations, "
        f"{described}, offset {offset:g} counts subtracted, on {where} (float32)",
        highlight=False,
    )
