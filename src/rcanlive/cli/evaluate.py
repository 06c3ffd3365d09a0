"""``rcanlive evaluate``: PSNR, SSIM and NRMSE of restorations against a ground truth."""

from __future__ import annotations

import json
import math
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
    resolve_model_path,
)

if TYPE_CHECKING:
    from ..analysis.metrics import MetricConvention
    from ..evaluation import Comparison, MethodTable


class RegionChoice(StrEnum):
    """Which voxels count."""

    volume = "volume"
    foreground = "foreground"


class ScalingChoice(StrEnum):
    """How the prediction reaches the truth's scale."""

    percentile = "percentile"
    least_squares = "least-squares"


def _convention(data_range: str, region: RegionChoice, scaling: ScalingChoice) -> MetricConvention:
    from ..analysis.metrics import MetricConvention

    rng: Any = data_range
    if data_range != "target":
        try:
            rng = float(data_range)
        except ValueError:
            raise UserError(
                f"--data-range must be a number or 'target', got {data_range!r}"
            ) from None
    try:
        return MetricConvention(
            data_range=rng,
            region=region.value,  # type: ignore[arg-type]
            scaling="least_squares" if scaling is ScalingChoice.least_squares else "percentile",
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _print_comparison(result: Comparison) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..evaluation.report import summary_cells

    out = Console(highlight=False, soft_wrap=True)
    table = Table(title=escape(f"{result.prediction} against {result.truth}"), title_justify="left")
    for name in ("volume", "PSNR (dB)", "SSIM", "NRMSE"):
        table.add_column(name, justify="left" if name == "volume" else "right")
    for name, s in zip(result.names, result.scores, strict=True):
        table.add_row(escape(name), f"{s.psnr:.2f}", f"{s.ssim:.3f}", f"{s.nrmse:.3f}")
    if len(result.scores) > 1:
        table.add_row("mean ± s.d.", *summary_cells(result.summary), style="bold")
    out.print(table)
    out.print(escape(f"convention: {result.convention.describe()}"))


def _print_methods(result: MethodTable) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..evaluation.report import METHOD_COLUMNS, method_rows

    out = Console(highlight=False, soft_wrap=True)
    table = Table(title=escape(result.title), title_justify="left")
    for name in METHOD_COLUMNS:
        table.add_column(
            name,
            justify="left" if name in ("method", "parameters") else "right",
            no_wrap=name != "parameters",
        )
    for row in method_rows(result):
        table.add_row(*(escape(c) for c in row))
    out.print(table)
    out.print(
        escape(
            f"mean ± s.d. over the held-out volumes {', '.join(result.test_names)}; baselines "
            f"tuned on {', '.join(result.tuning_names)}"
        )
    )
    out.print(escape(f"convention: {result.convention.describe()}"))


def _json_safe(value: Any) -> Any:
    """Non-finite floats as strings (JSON has no inf/nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _run_methods(
    pairs: Path,
    model: Path | None,
    backend: BackendChoice,
    precision: PrecisionChoice,
    tuning_positions: int,
    convention: MetricConvention,
) -> MethodTable:
    from rich.progress import Progress

    from ..evaluation import compare_methods

    path = resolve_model_path(model)
    label = "bundled RCAN" if model is None else f"RCAN ({path.name})"
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("evaluating", total=None)

        def advance(method: str, done: int, total: int) -> None:
            progress.update(task, description=method, completed=done, total=total)

        try:
            return compare_methods(
                pairs,
                [(label, path)],
                tuning_groups=tuning_positions,
                backend=backend.value,
                precision=precision.value,
                convention=convention,
                progress=advance,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None


@app.command(
    "evaluate",
    help=(
        "Score restorations against a ground truth: PSNR, SSIM and NRMSE, per volume and "
        "mean ± s.d., with the convention they were measured under.\n\n"
        "PRED is a restored dataset (its restored volumes) or a TIFF ((Z, Y, X), or "
        "(T, Z, Y, X): one volume per T); TRUTH is a dataset (its raw volumes; a pairs "
        "dataset: its high volumes) or a TIFF of the same shape. By default both are "
        "normalised to their own 2/99.9 percentiles and scored with data_range 1 over "
        "every voxel, as in the paper.\n\n"
        "--methods PAIRS instead compares every method on a pairs dataset (or a folder "
        "with raw/ and gt/ TIFFs): the raw input, a Gaussian filter and Richardson–Lucy "
        "(both tuned on the first --tuning-positions positions), the RCAN (--model, default "
        "the bundled one) and CARE (when CAREamics is installed), tested on the other "
        "positions.\n\n"
        "Example: rcanlive evaluate restored.tif truth.tif --json\n\n"
        "Example: rcanlive evaluate --methods data/bundled-pairs.ome.zarr"
    ),
)
def evaluate_command(
    pred: Annotated[
        Path | None,
        typer.Argument(help="Restored dataset (.ome.zarr) or TIFF.", show_default=False),
    ] = None,
    truth: Annotated[
        Path | None, typer.Argument(help="Ground truth: dataset or TIFF.", show_default=False)
    ] = None,
    methods: Annotated[
        Path | None,
        typer.Option("--methods", help="Compare every method on this pairs dataset instead."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    data_range: Annotated[
        str,
        typer.Option("--data-range", help="PSNR/SSIM data_range: a number, or 'target'."),
    ] = "1",
    region: Annotated[
        RegionChoice, typer.Option("--region", help="Score every voxel or the truth's foreground.")
    ] = RegionChoice.volume,
    scaling: Annotated[
        ScalingChoice,
        typer.Option("--scaling", help="Normalise PRED by its percentiles, or fit it to TRUTH."),
    ] = ScalingChoice.percentile,
    model: ModelOpt = None,
    backend: BackendOpt = BackendChoice.eager,
    precision: PrecisionOpt = PrecisionChoice.fp32,
    tuning_positions: Annotated[
        int, typer.Option("--tuning-positions", min=1, help="With --methods: positions to tune on.")
    ] = 1,
) -> None:
    """Print the scores of PRED against TRUTH, or of every method on a pair set."""
    conv = _convention(data_range, region, scaling)
    if methods is not None:
        if pred is not None or truth is not None:
            raise UserError("give either PRED and TRUTH, or --methods PAIRS, not both")
        result: Any = _run_methods(methods, model, backend, precision, tuning_positions, conv)
        printer: Any = _print_methods
    else:
        if pred is None or truth is None:
            raise UserError("give PRED and TRUTH (or --methods PAIRS); see --help")
        from ..evaluation import compare_volumes

        try:
            result = compare_volumes(pred, truth, conv)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        printer = _print_comparison
    if as_json:
        typer.echo(json.dumps(_json_safe(result.as_dict()), indent=1))
    else:
        printer(result)
