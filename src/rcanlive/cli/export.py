"""``rcanlive export``: build a backend's compiled artifact from a checkpoint."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  (typer resolves annotations at runtime)
from typing import Annotated

import typer

from .app import UserError, app, console
from .options import BackendChoice, PrecisionChoice, parse_zyx


@app.command(
    "export",
    help=(
        "Build and save a compiled model (AOTInductor, ONNX or TensorRT).\n\n"
        "Writes an AOTInductor package (compiled, .pt2), an ONNX graph (onnx, .onnx) or "
        "a TensorRT engine (tensorrt, .engine), each with a .json manifest "
        "beside it. Pass the artifact to `rcanlive restore --model` or `acquire live --model` "
        "to run it without compiling again.\n\n"
        "compiled and tensorrt artifacts have a static tile (default 16,256,256) and are "
        "specific to the machine's CPU/GPU and library versions; an ONNX graph without "
        "--tile accepts any tile.\n\n"
        "Example: rcanlive export runs/isim/best.pt --backend compiled --precision bf16 "
        "--tile 16,256,256 --out models/isim-bf16.pt2"
    ),
)
def export_command(
    model: Annotated[Path, typer.Argument(help="Checkpoint written by `rcanlive train`.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Artifact path (suffix added if missing).")
    ],
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
) -> None:
    """Export MODEL for one backend."""
    import time

    from ..inference import BackendError, export_artifact
    from ..inference.backends.artifacts import manifest_path
    from ..model import CheckpointError

    if not model.is_file():
        raise UserError(f"checkpoint not found: {model}")
    tile_shape = parse_zyx(tile, "--tile")
    console.print(f"exporting {model.name} for the {backend.value} backend ...", highlight=False)
    start = time.perf_counter()
    try:
        path = export_artifact(
            backend.value,
            model,
            out,
            precision=precision.value,
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
