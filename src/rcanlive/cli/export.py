"""``rcanlive export``: build a backend's compiled artifact, or a bioimage.io package,
from a checkpoint."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path  # noqa: TC003  (typer resolves annotations at runtime)
from typing import TYPE_CHECKING, Annotated

import typer

from .app import UserError, app, console
from .options import BackendChoice, PrecisionChoice, parse_zyx

if TYPE_CHECKING:
    import numpy as np


class ExportFormat(StrEnum):
    """What ``rcanlive export`` writes."""

    artifact = "artifact"
    bioimageio = "bioimageio"


@app.command(
    "export",
    help=(
        "Build and save a compiled model (AOTInductor, ONNX or TensorRT), or a "
        "bioimage.io model package.\n\n"
        "Writes an AOTInductor package (compiled, .pt2), an ONNX graph (onnx, .onnx) or "
        "a TensorRT engine (tensorrt, .engine), each with a .json manifest "
        "beside it. Pass the artifact to `rcanlive restore --model` or `acquire live --model` "
        "to run it without compiling again.\n\n"
        "compiled and tensorrt artifacts have a static tile (default 16,256,256) and are "
        "specific to the machine's CPU/GPU and library versions; an ONNX graph without "
        "--tile accepts any tile.\n\n"
        "--format bioimageio writes a bioimage.io model package (spec 0.5, a .zip or a "
        "folder) instead: pytorch_state_dict and ONNX weights, test tensors made from "
        "--sample (default: a simulated iSIM volume), percentile preprocessing, axes in "
        "µm, cover, README and citation; needs the bioimageio extra.\n\n"
        "Example: rcanlive export runs/isim/best.pt --backend compiled --precision bf16 "
        "--tile 16,256,256 --out models/isim-bf16.pt2\n\n"
        "Example: rcanlive export runs/isim/best.pt --format bioimageio --author 'Ada Lovelace' "
        "--voxel-size 0.2,0.0555,0.0555 -o models/isim-rcan.zip"
    ),
)
# (long by its Typer option declarations; the work is in the functions it calls)
def export_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="Checkpoint written by `rcanlive train` (or a bioimage.io package it exported)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Artifact path (suffix added if missing); bioimageio: a .zip or a folder.",
        ),
    ],
    export_format: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="artifact (for --backend) or bioimageio."),
    ] = ExportFormat.artifact,
    backend: Annotated[
        BackendChoice,
        typer.Option("--backend", "-b", help="compiled, onnx, tensorrt, or auto."),
    ] = BackendChoice.auto,
    precision: Annotated[
        PrecisionChoice,
        typer.Option("--precision", "-p", help="auto: the best the backend runs here."),
    ] = PrecisionChoice.auto,
    device: Annotated[
        str, typer.Option("--device", help="Device it will run on: auto, cpu, cuda[:N].")
    ] = "auto",
    tile: Annotated[str | None, typer.Option("--tile", help="Static tile Z,Y,X.")] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Static batch size (tiles per call).")
    ] = 1,
    sample: Annotated[
        Path | None,
        typer.Option("--sample", help="bioimageio: a small raw (Z,Y,X) TIFF for the test tensors."),
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option("--voxel-size", help="bioimageio: training voxel size Z,Y,X in µm."),
    ] = None,
    author: Annotated[
        list[str] | None,
        typer.Option("--author", help="bioimageio: who trained it (repeat for several)."),
    ] = None,
    license_id: Annotated[
        str, typer.Option("--license", help="bioimageio: SPDX licence of the weights.")
    ] = "CC-BY-4.0",
) -> None:
    """Export MODEL for one backend, or as a bioimage.io package."""
    if not model.exists():
        raise UserError(f"checkpoint not found: {model}")
    if export_format is ExportFormat.bioimageio:
        if backend is not BackendChoice.auto or precision is not PrecisionChoice.auto or tile:
            raise UserError(
                "--format bioimageio writes fp32 pytorch_state_dict and ONNX weights for any "
                "tile; leave out --backend, --precision and --tile"
            )
        _export_bioimageio(model, out, sample, _parse_voxel(voxel_size), author or [], license_id)
        return
    _export_artifact(model, out, backend.value, precision.value, device, tile, batch_size)


def _export_artifact(
    model: Path,
    out: Path,
    backend: str,
    precision: str,
    device: str,
    tile: str | None,
    batch_size: int,
) -> None:
    """Build one backend's artifact and say where it went."""
    import time

    from ..inference import BackendError, export_artifact
    from ..inference.backends.artifacts import manifest_path
    from ..model import CheckpointError

    tile_shape = parse_zyx(tile, "--tile")
    console.print(f"exporting {model.name} for the {backend} backend ...", highlight=False)
    start = time.perf_counter()
    try:
        path = export_artifact(
            backend,
            model,
            out,
            precision=precision,
            device=device,
            tile_shape=tile_shape,
            batch_size=batch_size,
        )
    except (BackendError, CheckpointError, ValueError) as exc:
        raise UserError(str(exc)) from None
    console.print(
        f"wrote {path} and {manifest_path(path).name} in {time.perf_counter() - start:.1f} s",
        highlight=False,
    )


def _parse_voxel(text: str | None) -> tuple[float, float, float] | None:
    """``"0.2,0.0555,0.0555"`` → ``(0.2, 0.0555, 0.0555)`` µm; None stays None."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise UserError(f"--voxel-size must be three positive sizes Z,Y,X in µm, got {text!r}")
    return values  # type: ignore[return-value]


def _sample_volume(sample: Path | None) -> np.ndarray:
    """The raw volume for the package's test tensors: the TIFF given, or a simulated one."""
    if sample is not None:
        import tifffile

        if not sample.is_file():
            raise UserError(f"--sample not found: {sample}")
        return tifffile.imread(sample)
    from ..simulation.phantoms import PhantomSpec, make_phantom_pair

    # a noisy iSIM volume of sub-resolution spheres at the paper's voxel size
    return make_phantom_pair(PhantomSpec(shape=(16, 64, 64), n_spheres=40), seed=0)[0]


def _export_bioimageio(
    model: Path,
    out: Path,
    sample: Path | None,
    voxel_size: tuple[float, float, float] | None,
    authors: list[str],
    license_id: str,
) -> None:
    """Write MODEL as a bioimage.io package at OUT, showing each step."""
    from ..inference.bioimageio import PackageError, export_bioimageio
    from ..model import CheckpointError

    volume = _sample_volume(sample)
    with console.status("exporting to bioimage.io ...") as status:
        try:
            path = export_bioimageio(
                model,
                out,
                sample=volume,
                voxel_size_um=voxel_size,
                authors=authors,
                license=license_id,
                progress=lambda note: status.update(f"bioimage.io: {note} ..."),
            )
        except ImportError as exc:
            raise UserError(str(exc)) from None
        except (CheckpointError, PackageError, ValueError) as exc:
            raise UserError(str(exc)) from None
    console.print(
        f"wrote {path} (check it with: bioimageio test {path})",
        highlight=False,
    )
