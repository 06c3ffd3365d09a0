"""``rcanlive acquire live|pairs|tile``: run an experiment config on a rig."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, console
from .options import (
    BackendChoice,
    BackendOpt,
    DevicesOpt,
    ModelOpt,
    PrecisionChoice,
    PrecisionOpt,
    parse_devices,
)
from .running import RestoreOptions, run_with_progress

acquire_app = typer.Typer(
    help=(
        "Acquire with a plan from a config file (live 4D, training pairs, gel tiling).\n\n"
        "Example: rcanlive acquire live --config configs/live-4d.toml --simulate"
    ),
    no_args_is_help=True,
)
app.add_typer(acquire_app, name="acquire")

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Experiment config (TOML/YAML/JSON).")
]
SimulateOpt = Annotated[
    bool, typer.Option("--simulate", help="Run on the simulated iSIM, whatever the config's rig.")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder (overrides storage.out_dir).")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing dataset of the same name.")
]


@acquire_app.command("live")
def live(
    config: ConfigOpt,
    simulate: SimulateOpt = False,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    model: ModelOpt = None,
    backend: BackendOpt = BackendChoice.auto,
    precision: PrecisionOpt = PrecisionChoice.auto,
    devices: DevicesOpt = None,
    restore: Annotated[
        bool, typer.Option("--restore/--no-restore", help="Restore each volume as it arrives.")
    ] = True,
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="Show the live dashboard (bleaching, SNR, raw vs restored). Closing it "
            "stops the run cleanly; needs a display (or QT_QPA_PLATFORM=offscreen).",
        ),
    ] = False,
) -> None:
    """Live 4D time-lapse: a z-stack per channel every interval, restored as it arrives.

    Writes DATASET/report.html (bleaching curves and input SNR) at the end.

    Example: rcanlive acquire live --config configs/live-4d.toml --simulate --backend auto

    Example: rcanlive acquire live --config configs/live-4d.toml --simulate --dashboard

    Example: rcanlive acquire live -c configs/live-4d.toml --devices cuda:0,cuda:1

    With an \\[illumination.adaptive] table the power of each volume is set from the
    previous volume's input SNR (the least light that keeps it at the target); every
    run records each volume's power, dose and SNR in DATASET/illumination.jsonl.

    Example: rcanlive acquire live --config configs/live-adaptive.toml --simulate
    """
    options = RestoreOptions(model, backend, precision, parse_devices(devices)) if restore else None
    result = run_with_progress(
        "live", config, simulate, out, overwrite, options, dashboard=dashboard, report=True
    )
    _print_illumination(result.dataset)


def _print_illumination(dataset: Path) -> None:
    """The run's light in one line (power range, dose, volumes at the target SNR)."""
    from ..storage.illumination_log import read_illumination, summarize_illumination

    summary = summarize_illumination(read_illumination(dataset))
    if summary is not None:
        console.print(summary.describe(), highlight=False)


@acquire_app.command("pairs")
def pairs(
    config: ConfigOpt,
    simulate: SimulateOpt = False,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Matched low/high intensity training pairs at every plane or volume.

    Example: rcanlive acquire pairs --config configs/training-pairs.toml --simulate
    """
    run_with_progress("pairs", config, simulate, out, overwrite)


@acquire_app.command("tile")
def tile(
    config: ConfigOpt,
    simulate: SimulateOpt = False,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="Restore every tile with this model as it arrives (a \\[restoration] "
            "table in the config does the same with the bundled model).",
        ),
    ] = None,
    backend: BackendOpt = BackendChoice.auto,
    precision: PrecisionOpt = PrecisionChoice.auto,
    devices: DevicesOpt = None,
    stitch: Annotated[
        bool,
        typer.Option("--stitch/--no-stitch", help="Stitch the tiles when the scan is done."),
    ] = True,
    scheduler: Annotated[
        str,
        typer.Option(
            "--scheduler", help="Stitching on: threads, local (Dask LocalCluster) or an address."
        ),
    ] = "threads",
) -> None:
    """Zigzag tiling of a large sample, a z-stack at every tile, then stitching.

    Tile positions come from the stage, refined by registering the overlaps; the
    result is DATASET/stitched (and DATASET/stitched_restored with --model).

    Example: rcanlive acquire tile --config configs/gel-tiling.toml --simulate

    Example: rcanlive acquire tile -c configs/gel-tiling.toml --simulate -m runs/gel/best.pt
    """
    options = RestoreOptions(model, backend, precision, parse_devices(devices))
    result = run_with_progress("tile", config, simulate, out, overwrite, options)
    restored = _restoration_ran(result.dataset)
    if restored:
        _restore_skipped_tiles(result.dataset, options)
    if not stitch:
        return
    from .stitch_progress import run_stitch

    run_stitch(result.dataset, image="tiles", scheduler=scheduler, overwrite=True)
    if restored:
        run_stitch(result.dataset, image="restored", scheduler=scheduler, overwrite=True)


def _restoration_ran(dataset: Path) -> bool:
    from ..storage import open_dataset

    return "restoration" in open_dataset(dataset).meta


def _restore_skipped_tiles(dataset: Path, options: RestoreOptions) -> None:
    """Restore the tiles the live queue dropped, so that the restored mosaic is whole."""
    from ..inference.offline import restore_skipped_tiles
    from .options import resolve_model_path

    model = resolve_model_path(options.model)
    done = restore_skipped_tiles(dataset, model, str(options.backend), str(options.precision))
    if done is not None:
        console.print(
            f"restored {done.restored} tile(s) skipped during the scan ({done.backend} "
            f"{done.precision})",
            highlight=False,
        )
