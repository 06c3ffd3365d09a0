"""Restore TIFF stacks: read one as ``(..., Z, Y, X)``, restore volume by volume, write
it back with its own axes and shape (float32, raw intensity scale by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .backends import Backend
    from .recipe import BackendRecipe

#: file name suffixes read as TIFF stacks
TIFF_SUFFIXES = (".tif", ".tiff")


class StackError(ValueError):
    """A file that is not a stack rcanlive can restore; the message says why."""


@dataclass(frozen=True, slots=True)
class Stack:
    """A TIFF's image data as volumes.

    Attributes
    ----------
    data
        ``(..., Z, Y, X)``: leading axes (time, channel, ...) are restored volume by volume.
    axes
        The axes of ``data`` as tifffile names them (``"TZYX"``).
    shape
        The image's shape as stored (a 2D image is ``(Y, X)`` on disk, ``(1, Y, X)`` here).
    """

    data: np.ndarray
    axes: str
    shape: tuple[int, ...]

    @property
    def volumes(self) -> np.ndarray:
        """``(N, Z, Y, X)``: every volume of the stack."""
        return self.data.reshape(-1, *self.data.shape[-3:])


def read_stack(path: Path) -> Stack:
    """Read a TIFF's first series as a :class:`Stack` (Z moved next to Y, X)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = str(series.axes)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise StackError(f"cannot read {path}: {exc}") from None
    if data.ndim < 2 or len(axes) != data.ndim:
        raise StackError(f"{path}: expected an image stack, got shape {data.shape}")
    if axes.endswith("S") or not axes.endswith("YX"):
        raise StackError(
            f"{path}: axes {axes!r} do not end in Y, X (RGB or unusual layout); save "
            "one channel as a Z, Y, X stack"
        )
    stored = (tuple(data.shape), axes)
    if data.ndim == 2:
        return Stack(data[None], "ZYX", stored[0])
    if "Z" in axes[:-2] and axes[-3] != "Z":
        z = axes.index("Z")
        data = np.moveaxis(data, z, -3)
        axes = axes[:z] + axes[z + 1 : -2] + "ZYX"
    return Stack(data, axes, tuple(data.shape))


def restore_stack(
    stack: Stack,
    backend: Backend,
    *,
    tile_shape: tuple[int, int, int] | None = None,
    overlap: tuple[int, int, int] | None = None,
    batch_size: int = 1,
    output: Literal["intensity", "normalized"] = "intensity",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Restore every volume of ``stack``; float32 of ``stack.data``'s shape.

    ``progress(done, total)`` counts tiles over the whole stack.
    """
    from .tiling import predict_volume

    volumes = stack.volumes
    restored = np.empty(volumes.shape, dtype=np.float32)
    for v, volume in enumerate(volumes):

        def update(done: int, total: int, v: int = v) -> None:
            if progress is not None:
                progress(v * total + done, len(volumes) * total)

        try:
            restored[v] = predict_volume(
                volume,
                backend,
                tile_shape=None if backend.tile_shape else tile_shape,
                overlap=overlap,
                batch_size=batch_size,
                progress=update,
                output=output,
            )
        except ValueError as exc:
            raise StackError(f"volume {v}: {exc}") from None
    return restored.reshape(stack.data.shape)


def write_stack(path: Path, restored: np.ndarray, stack: Stack) -> None:
    """Write ``restored`` in the stack's stored shape and axes (a 2D image stays 2D)."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    out = restored.reshape(stack.shape)
    axes = stack.axes if out.ndim == len(stack.axes) else stack.axes[-out.ndim :]
    # minisblack: a stack of 3 or 4 planes must not be stored as RGB
    tifffile.imwrite(path, out, photometric="minisblack", metadata={"axes": axes})


@dataclass(frozen=True, slots=True)
class TiffJob:
    """One TIFF to restore and where its restored stack goes."""

    source: Path
    target: Path


def tiff_jobs(source: Path, out: Path, *, overwrite: bool = False) -> list[TiffJob]:
    """The jobs restoring a TIFF file, or every TIFF of a folder, into ``out``.

    ``out`` is a file (or a folder) for one TIFF, a folder for a folder.

    Raises
    ------
    StackError
        If ``source`` holds no TIFF, ``out`` cannot be made, a target exists and
        ``overwrite`` is false, or a target would replace an input (the same file or a
        link to it; resolved paths are compared): never even with ``overwrite``.
    """
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise StackError(f"{out} cannot be created: {parent} is a file, not a folder")
    if source.is_file():
        if source.suffix.lower() not in TIFF_SUFFIXES:
            raise StackError(f"{source} is not a TIFF file (.tif/.tiff) or an OME-Zarr (.zarr)")
        jobs = [TiffJob(source, out / source.name if out.is_dir() else out)]
    else:
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
        if not files:
            raise StackError(f"no .tif/.tiff files in {source}")
        if out.exists() and not out.is_dir():
            raise StackError(
                f"{source} is a folder, so the output must be a folder; {out} is a file"
            )
        jobs = [TiffJob(f, out / f.name) for f in files]
    inputs = {job.source.resolve() for job in jobs}
    for job in jobs:
        if job.target.resolve() in inputs:
            raise StackError(
                f"{job.target} is the input {job.source} (or a link to it): writing it would "
                "replace the raw data; write elsewhere (overwriting never replaces an input)"
            )
        if job.target.exists() and not overwrite:
            raise StackError(f"{job.target} exists; replace it (overwrite) or write elsewhere")
    return jobs


def restore_tiffs(
    jobs: list[TiffJob],
    recipe: BackendRecipe,
    *,
    overlap: tuple[int, int, int] | None = None,
    output: Literal["intensity", "normalized"] = "intensity",
    on_open: Callable[[Backend], None] | None = None,
    progress: Callable[[TiffJob, int, int], None] | None = None,
) -> None:
    """Restore each job's stack with one backend, opened from ``recipe``.

    With no tile in ``recipe``, the tile is chosen from the first stack's volume shape
    (static backends need one), so that ``auto`` measures the candidates on that tile.
    ``on_open(backend)`` is called once the backend is open; ``progress(job, done,
    total)`` counts the tiles of a job's stack.
    """
    from .backends import is_artifact
    from .tiling import choose_tile_shape

    first = read_stack(jobs[0].source)
    if recipe.tile_shape is None and not is_artifact(recipe.model):
        z, y, x = first.data.shape[-3:]
        recipe = recipe.replace(tile_shape=choose_tile_shape((z, y, x)))
    backend = recipe()
    try:
        if on_open is not None:
            on_open(backend)
        for number, job in enumerate(jobs):
            stack = first if number == 0 else read_stack(job.source)

            def update(done: int, total: int, job: TiffJob = job) -> None:
                if progress is not None:
                    progress(job, done, total)

            try:
                restored = restore_stack(
                    stack,
                    backend,
                    tile_shape=recipe.tile_shape,
                    overlap=overlap,
                    batch_size=recipe.batch_size,
                    output=output,
                    progress=update,
                )
            except StackError as exc:
                raise StackError(f"{job.source}: {exc}") from None
            write_stack(job.target, restored, stack)
    finally:
        backend.close()
