"""``rcanlive resolution``: lateral (and axial) resolution by decorrelation analysis."""

from __future__ import annotations

import json
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import UserError, app
from .progress import stage_callback, staged_progress

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..storage.imaging import SampledVolume


class ImageChoice(StrEnum):
    """Which volumes of a dataset to measure."""

    raw = "raw"
    restored = "restored"


def _positive(value: float | None, flag: str) -> float | None:
    if value is not None and not value > 0:
        raise UserError(f"{flag} must be a positive number of nm, got {value:g}")
    return value


#: the options that give each part of the voxel size
_VOXEL_OPTIONS = {"pixel_size": "--pixel-size NM", "z_step": "--z-step NM"}


def _load(
    source: Path,
    key: tuple[int, int, int],
    image: str,
    overrides: tuple[float | None, float | None],
) -> SampledVolume:
    """The volume IN names and its voxel size (nm)."""
    from ..storage.imaging import MissingVolume, MissingVoxelSize, read_sampled_volume

    pixel_size, z_step = overrides
    try:
        return read_sampled_volume(
            source, key, image=image, pixel_size_nm=pixel_size, z_step_nm=z_step
        )
    except MissingVoxelSize as exc:
        flags = " and ".join(_VOXEL_OPTIONS[name] for name in exc.missing)
        raise UserError(f"{exc} with {flags}") from None
    except MissingVolume as exc:
        raise UserError(f"{exc}; choose one with --time/--position/--channel") from None
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A transient progress bar (on stderr) with one row per stage."""
    with staged_progress(transient=True) as bar:
        yield stage_callback(bar, " slices")


def _print_table(result: dict[str, Any], name: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(name), caption="decorrelation analysis")
    table.add_column("direction")
    table.add_column("resolution (nm)", justify="right")
    lateral = result["lateral_nm"]
    table.add_row("lateral (xy)", f"{lateral['mean']:.1f} ± {lateral['sd']:.1f}")
    if result["axial_nm"] is not None:
        table.add_row("axial (xz sector)", f"{result['axial_nm']:.1f}")
    Console(highlight=False).print(table)


@app.command(
    "resolution",
    help=(
        "Measure the resolution of a volume by decorrelation analysis (Descloux et al. "
        "2019, with the 3D RCAN paper's modification).\n\n"
        "Lateral: mean ± s.d. over the xy slices after interpolating the stack to "
        "isotropic voxels. Axial (--axial): sectorial estimate (22.5°) on xz slices. "
        "--limit/--axial-limit set the theoretical resolution limit (e.g. λ/2NA), beyond "
        "which no frequency is analysed; this keeps upsampled data from reporting "
        "resolutions past the optics'.\n\n"
        "IN is an rcanlive dataset (.ome.zarr: its pixel size and z step are used; pick "
        "the volume with --time/--position/--channel, and --image restored for the "
        "restoration) or a YX/ZYX TIFF (then give --pixel-size, and --z-step for a "
        'stack). --json prints {"lateral_nm": {"mean": …, "sd": …}, '
        '"axial_nm": …}.\n\n'
        "Example: rcanlive resolution data/live-4d.ome.zarr --axial --image restored\n\n"
        "Example: rcanlive resolution stack.tif --pixel-size 55 --z-step 250 --axial --json"
    ),
)
def resolution_command(
    source: Annotated[
        Path,
        typer.Argument(metavar="IN", help="An rcanlive dataset (.ome.zarr) or a YX/ZYX TIFF."),
    ],
    axial: Annotated[
        bool, typer.Option("--axial", help="Also measure the axial resolution.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help="Lateral pixel size, nm (TIFF).")
    ] = None,
    z_step: Annotated[
        float | None, typer.Option("--z-step", help="Plane spacing, nm (TIFF stack).")
    ] = None,
    limit: Annotated[
        float | None, typer.Option("--limit", help="Theoretical lateral resolution limit, nm.")
    ] = None,
    axial_limit: Annotated[
        float | None,
        typer.Option("--axial-limit", help="Theoretical axial resolution limit, nm."),
    ] = None,
    time: Annotated[int, typer.Option("--time", min=0, help="Time point (dataset).")] = 0,
    position: Annotated[
        int, typer.Option("--position", min=0, help="Position or tile (dataset).")
    ] = 0,
    channel: Annotated[
        int, typer.Option("--channel", min=0, help="Channel (dataset; pairs: 0 low, 1 high).")
    ] = 0,
    image: Annotated[
        ImageChoice, typer.Option("--image", help="Raw or restored volumes (dataset).")
    ] = ImageChoice.raw,
) -> None:
    """Measure the resolution of IN."""
    from ..analysis.resolution import measure_resolution

    overrides = (_positive(pixel_size, "--pixel-size"), _positive(z_step, "--z-step"))
    _positive(limit, "--limit")
    _positive(axial_limit, "--axial-limit")
    sampled = _load(source, (time, position, channel), image.value, overrides)
    try:
        with _progress() as progress:
            result = measure_resolution(
                sampled.data,
                sampled.pixel_size_nm,
                sampled.z_step_nm,
                axial=axial,
                limit_nm=limit,
                axial_limit_nm=axial_limit,
                progress=progress,
            )
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print_table(result, source.name)
