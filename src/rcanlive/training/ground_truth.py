"""Ground truth by Richardson–Lucy deconvolution, as the paper made it (15 iterations).

:func:`deconvolve_tiffs` deconvolves TIFF stacks into float32 TIFFs of the same axes;
:func:`deconvolve_dataset` deconvolves every volume a dataset logs (raw volumes, tiles,
or both members of each training pair) into one float32 TIFF each, named
``t0000_p000_c0.tif``, leaving the dataset as it is. :func:`pairs_target_psf` is the
PSF a pairs dataset's ground truth is deconvolved with in training.

The PSF is a measured one (an array), or computed for the data's voxel size and
channel by a :data:`PsfForChannel` (the rig's iSIM PSF:
:func:`rcanlive.simulation.optics.channel_psf`; passed in, since training does not
import the simulator). The camera offset (a dataset's rig, else
:data:`~rcanlive.storage.imaging.DEFAULT_OFFSET_COUNTS`) is subtracted first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

from ..analysis.deconvolution import PAPER_ITERATIONS
from ..storage.imaging import DEFAULT_OFFSET_COUNTS, MissingVoxelSize, dataset_imaging

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..config.training import TrainingDataConfig
    from ..storage.imaging import Imaging

#: ``(z step µm, pixel size µm, channel name)`` → ``(PSF at that voxel size, a line
#: describing it)``; e.g. :func:`rcanlive.simulation.optics.channel_psf`.
PsfForChannel: TypeAlias = Callable[[float, float, str], tuple[np.ndarray, str]]
#: ``progress(name, done, total)``: RL iterations done of one output file.
Progress: TypeAlias = Callable[[str, int, int], None]
MEASURED = "measured PSF"


class FileJob(Protocol):
    """One input file and the file its result goes to (e.g. ``inference.stacks.TiffJob``)."""

    @property
    def source(self) -> Path: ...

    @property
    def target(self) -> Path: ...


@dataclass(frozen=True, slots=True)
class DeconvolutionSettings:
    """How volumes are deconvolved.

    Attributes
    ----------
    iterations
        Richardson–Lucy iterations (the paper: 15).
    chunk_shape
        Deconvolve in chunks of this ``(Z, Y, X)`` shape (with a halo) to bound memory.
    device
        Where the FFTs run: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    background
        Subtracted first; None: the camera offset (a dataset's rig's, else
        :data:`~rcanlive.storage.imaging.DEFAULT_OFFSET_COUNTS`).
    """

    iterations: int = PAPER_ITERATIONS
    chunk_shape: tuple[int, int, int] | None = None
    device: str = "auto"
    background: float | None = None


@dataclass(frozen=True, slots=True)
class Deconvolved:
    """What :func:`deconvolve_tiffs` or :func:`deconvolve_dataset` wrote.

    Attributes
    ----------
    targets
        The TIFFs written.
    psf
        The PSF used, described (``"measured PSF"``, ``"rig iSIM PSF, 488 nm, …"``).
    background
        The level subtracted first, counts.
    """

    targets: tuple[Path, ...]
    psf: str
    background: float


def _tiff_psf(
    psf: np.ndarray | PsfForChannel, voxel_um: tuple[float, float] | None
) -> tuple[np.ndarray, str]:
    """The PSF for TIFFs: a measured one, or computed at the TIFFs' voxel size."""
    if isinstance(psf, np.ndarray):
        return psf, MEASURED
    if voxel_um is None:
        raise MissingVoxelSize(
            "the PSF is computed at the TIFFs' voxel size, which TIFFs do not record: give "
            "the voxel size (z step and pixel size, µm) or a measured PSF",
            ("pixel_size", "z_step"),
        )
    if min(voxel_um) <= 0:
        raise ValueError(f"the voxel size must be > 0 µm, got {voxel_um}")
    z_step, pixel_size = voxel_um
    return psf(z_step, pixel_size, "")


def deconvolve_tiffs(
    jobs: Sequence[FileJob],
    psf: np.ndarray | PsfForChannel,
    settings: DeconvolutionSettings,
    *,
    voxel_um: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> Deconvolved:
    """Deconvolve each job's TIFF (``(Z, Y, X)``, or ``(T, Z, Y, X)`` volume by volume).

    Parameters
    ----------
    jobs
        Input and output TIFFs (``rcanlive.inference.stacks.tiff_jobs`` plans them).
    psf
        A measured PSF, or a :data:`PsfForChannel` called at ``voxel_um``.
    settings
        Iterations, chunks, device, background (default
        :data:`~rcanlive.storage.imaging.DEFAULT_OFFSET_COUNTS`).
    voxel_um
        ``(z step, pixel size)`` of the TIFFs, µm: needed to compute the PSF.
    progress
        ``progress(input file name, done, total)``.

    Raises
    ------
    MissingVoxelSize
        If the PSF is to be computed and ``voxel_um`` is not given.
    ValueError
        If the voxel size is not positive, or a TIFF cannot be read or deconvolved (the
        message names it).
    """
    from ..analysis.deconvolution import deconvolve_tiff

    kernel, described = _tiff_psf(psf, voxel_um)
    background = DEFAULT_OFFSET_COUNTS if settings.background is None else settings.background
    for job in jobs:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            deconvolve_tiff(
                job.source,
                job.target,
                kernel,
                settings.iterations,
                progress=_named(progress, job.source.name),
                chunk_shape=settings.chunk_shape,
                device=settings.device,
                background=background,
            )
        except ValueError as exc:
            raise ValueError(f"{job.source}: {exc}") from None
    return Deconvolved(tuple(job.target for job in jobs), described, float(background))


def _named(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _dataset_targets(
    out: Path, records: Sequence[Mapping[str, Any]], overwrite: bool
) -> list[Path]:
    """One TIFF in ``out`` per logged volume, checked not to replace one unasked."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"a dataset is deconvolved into a folder of TIFFs; {out} is a file")
    targets = [out / f"t{r['t']:04d}_p{r['p']:03d}_c{r['c']}.tif" for r in records]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; replace it (overwrite) or write elsewhere")
    return targets


def deconvolve_dataset(
    source: str | Path,
    out: str | Path,
    psf: np.ndarray | PsfForChannel,
    settings: DeconvolutionSettings,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Deconvolved:
    """Deconvolve every volume a dataset logs into one float32 ZYX TIFF each in ``out``.

    Parameters
    ----------
    source
        An rcanlive dataset; it is not changed.
    out
        The folder of TIFFs (``t0000_p000_c0.tif``), made if needed.
    psf
        A measured PSF, or a :data:`PsfForChannel` called with the dataset's voxel size
        and each volume's channel name.
    settings
        Iterations, chunks, device, background (default: the camera offset of the
        dataset's rig).
    overwrite
        Replace TIFFs already in ``out``.
    progress
        ``progress(output file stem, done, total)``.

    Raises
    ------
    FileExistsError
        If a TIFF exists and ``overwrite`` is false.
    ValueError
        If ``out`` is a file, or the PSF is to be computed and the dataset records no
        voxel size (:class:`~rcanlive.storage.imaging.MissingVoxelSize`).
    """
    from ..storage import VolumeKey, open_dataset

    ds = open_dataset(source)
    records = ds.volumes
    targets = _dataset_targets(Path(out), records, overwrite)
    imaging = dataset_imaging(ds.meta)
    if settings.background is None:
        settings = replace(settings, background=imaging.offset_counts)
    Path(out).mkdir(parents=True, exist_ok=True)
    described: dict[str, None] = {}  # in order, once each
    for record, target in zip(records, targets, strict=True):
        key = VolumeKey(int(record["t"]), int(record["p"]), int(record["c"]))
        kernel, description = _volume_psf(psf, imaging, key.c)
        described[description] = None
        volume = ds.volume(key)
        _deconvolve_into(volume, target, kernel, settings, _named(progress, target.stem))
    psf_text = "; ".join(described) or (MEASURED if isinstance(psf, np.ndarray) else "rig PSF")
    return Deconvolved(tuple(targets), psf_text, float(settings.background or 0.0))


def _deconvolve_into(
    volume: np.ndarray,
    target: Path,
    psf: np.ndarray,
    settings: DeconvolutionSettings,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Deconvolve one ZYX volume into a float32 TIFF."""
    import tifffile

    from ..analysis.deconvolution import richardson_lucy

    result = richardson_lucy(
        volume,
        psf,
        settings.iterations,
        chunk_shape=settings.chunk_shape,
        device=settings.device,
        background=settings.background or 0.0,
        progress=progress,
    )
    tifffile.imwrite(
        target, result.astype(np.float32), photometric="minisblack", metadata={"axes": "ZYX"}
    )


def _volume_psf(
    psf: np.ndarray | PsfForChannel, imaging: Imaging, channel: int
) -> tuple[np.ndarray, str]:
    """The PSF for channel ``channel`` of a dataset, and a description of it."""
    if isinstance(psf, np.ndarray):
        return psf, MEASURED
    z_step, pixel_size = imaging.voxel_um()
    return psf(z_step, pixel_size, imaging.channel(channel))


def pairs_target_psf(data: TrainingDataConfig, psf_for: PsfForChannel) -> np.ndarray | None:
    """The PSF for ``[data] deconvolve_target`` of a pairs dataset.

    ``psf_for`` at the dataset's voxel size, for its ground-truth channel (c = 1, the
    high-SNR volume of each pair). None when not needed (no deconvolution, a measured
    ``psf``, TIFF folders) or not known (no dataset there, no voxel size recorded); the
    trainer then uses ``[data] psf`` or says what is missing.
    """
    from ..storage import open_dataset

    if not data.deconvolve_target or data.psf is not None or data.pairs is None:
        return None
    try:
        imaging = dataset_imaging(open_dataset(data.pairs).meta)
        kernel, _ = _volume_psf(psf_for, imaging, channel=1)
    except (FileNotFoundError, KeyError, MissingVoxelSize):
        return None
    return kernel
