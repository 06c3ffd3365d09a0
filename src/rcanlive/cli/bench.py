"""``rcanlive bench``: seconds per volume of each backend, precision and shape."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path  # noqa: TC003  (typer resolves annotations at runtime)
from typing import TYPE_CHECKING, Annotated

import typer

from .app import UserError, app, console
from .options import parse_zyx

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.table import Table

    from ..inference import BackendInfo
    from ..inference.benchmark import BenchResult
    from ..model import LoadedModel

_TABLE_COLUMNS = (
    "backend",
    "precision",
    "volume",
    "setup s",
    "s/volume",
    "Mvoxel/s",
    "× eager fp32",
    "peak MiB",
    "note",
)


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


@app.command(
    "bench",
    help=(
        "Benchmark the inference backends on synthetic volumes.\n\n"
        "Prints a table of backend × precision × volume shape with seconds per volume, "
        "Mvoxel/s, the ratio to eager fp32 measured in the same run, and peak memory. "
        "Each volume is restored as one tile unless --tile is given. Without --model a "
        "default-size RCAN (5 groups × 3 blocks × 32 channels) with random weights is "
        "used; speed does not depend on the weights.\n\n"
        "Example: rcanlive bench --shapes 16x256x256 --backends eager,compiled,onnx "
        "--precisions fp32,bf16 --markdown bench.md"
    ),
)
def bench_command(
    shapes: Annotated[
        str, typer.Option("--shapes", help="Volume shapes ZxYxX, comma separated.")
    ] = "16x256x256",
    backends: Annotated[
        str | None,
        typer.Option("--backends", help="Comma-separated backends (default: all available)."),
    ] = None,
    precisions: Annotated[
        str | None,
        typer.Option(
            "--precisions",
            help="Comma-separated precisions (default: fp32 and each backend's best).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Checkpoint to benchmark.")
    ] = None,
    tile: Annotated[
        str | None, typer.Option("--tile", help="Tile Z,Y,X (default: the whole volume).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per case.")] = 3,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 1,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Also write the table as markdown here.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Artifact cache (default: user cache).")
    ] = None,
) -> None:
    """Run the benchmark and print the table."""
    from ..inference import available_backends
    from ..inference.benchmark import run_benchmark

    shape_list = _shape_list(shapes)
    infos = {i.name: i for i in available_backends()}
    names = _backend_names(backends, infos)
    precision_list = _precision_list(precisions)
    dev = _resolve_device(device)
    loaded = _load_model(model)
    header = _print_header(names, infos, dev)
    results = run_benchmark(
        loaded,
        shape_list,  # type: ignore[arg-type]
        names,
        precision_list,
        device=dev,
        repeats=repeats,
        warmup=warmup,
        tile_shape=parse_zyx(tile, "--tile"),
        batch_size=batch_size,
        cache_dir=cache_dir,
        on_result=_show_result,
    )
    _print_table(_results_table(results))
    if markdown is not None:
        _write_markdown(markdown, header, results)


def _shape_list(shapes: str) -> list[tuple[int, int, int] | None]:
    """The volume shapes of ``--shapes``; at least one."""
    shape_list = [parse_zyx(s, "--shapes") for s in _split(shapes)]
    if not shape_list:
        raise UserError("--shapes needs at least one ZxYxX shape")
    return shape_list


def _backend_names(backends: str | None, infos: dict[str, BackendInfo]) -> list[str]:
    """The backends to run: those named (checked), or every available one."""
    from ..inference import BACKEND_NAMES

    if backends is None:
        return [n for n, i in infos.items() if i.available]
    names = _split(backends)
    bad = [n for n in names if n not in BACKEND_NAMES[1:]]
    if bad:
        raise UserError(
            f"unknown backend(s) {', '.join(bad)}; choose from {', '.join(BACKEND_NAMES[1:])}"
        )
    return names


def _precision_list(precisions: str | None) -> list[str] | None:
    """The precisions named (checked), or ``None`` for each backend's defaults."""
    precision_list = _split(precisions) if precisions else None
    for p in precision_list or []:
        if p not in ("fp32", "bf16", "fp16"):
            raise UserError(f"unknown precision {p!r}; choose from fp32, bf16, fp16")
    return precision_list


def _resolve_device(device: str) -> str:
    """The concrete device ``--device`` names."""
    from ..inference.backends.devices import resolve_device

    try:
        return resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from None


def _load_model(model: Path | None) -> LoadedModel:
    """The checkpoint at ``model``, or a default-size RCAN with seeded random weights."""
    import torch

    from ..model import RCAN3D, LoadedModel, PercentileNormalizer, load_checkpoint

    if model is not None:
        return load_checkpoint(model)
    torch.manual_seed(0)
    net = RCAN3D().eval()
    return LoadedModel(net, net.config, PercentileNormalizer())


def _print_header(names: Sequence[str], infos: dict[str, BackendInfo], dev: str) -> str:
    """Say which named backends are unavailable, then print and return the header line."""
    import platform

    import torch

    from ..inference.backends.devices import device_name

    for name in names:
        info = infos[name]
        if not info.available:
            console.print(f"[yellow]{name}[/]: not available here: {info.detail}")
    header = (
        f"device: {dev} ({device_name(dev)}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads, python {platform.python_version()}"
    )
    console.print(header, highlight=False)
    return header


def _show_result(result: BenchResult) -> None:
    """Print one result as soon as it is measured."""
    if result.seconds is None:
        console.print(f"{result.backend} {result.precision}: {result.note}", highlight=False)
    else:
        console.print(
            f"{result.backend} {result.precision} {'x'.join(map(str, result.shape))}: "
            f"{result.seconds:.3f} s/volume (setup {result.setup_s:.1f} s)",
            highlight=False,
        )


def _results_table(results: Sequence[BenchResult]) -> Table:
    """The results as a rich table."""
    from rich.table import Table

    table = Table(title="rcanlive bench")
    for col in _TABLE_COLUMNS:
        table.add_column(
            col, justify="left" if col in ("backend", "precision", "note") else "right"
        )
    for r in results:
        table.add_row(
            r.backend,
            r.precision,
            "×".join(map(str, r.shape)),
            "" if r.setup_s is None else f"{r.setup_s:.1f}",
            "" if r.seconds is None else f"{r.seconds:.3f}",
            "" if r.mvoxel_per_s is None else f"{r.mvoxel_per_s:.2f}",
            "" if r.speedup is None else f"{r.speedup:.2f}",
            "" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.0f}",
            r.note,
        )
    return table


def _print_table(table: Table) -> None:
    """Print ``table`` to stdout, wide enough for every column."""
    import shutil

    from rich.console import Console

    # Wide enough for every column even when stdout is not a terminal (80 by default).
    Console(width=max(shutil.get_terminal_size().columns, 130)).print(table)


def _write_markdown(markdown: Path, header: str, results: Sequence[BenchResult]) -> None:
    """Write the command line, the header and the results table as markdown."""
    from ..inference.benchmark import format_markdown

    command = "rcanlive " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(f"`{command}`\n\n{header}\n\n{format_markdown(results)}", encoding="utf-8")
    console.print(f"wrote {markdown}", highlight=False)
