"""Running a plan from the command line: validate it, start live restoration, show
progress (and the dashboard), print what happened. Shared by ``acquire`` and
``simulate``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from ..log import logger
from .app import UserError, console

if TYPE_CHECKING:
    from ..acquisition.plans import PreparedPlan
    from ..acquisition.runner import RunResult
    from ..config.experiment import LivePlan, PairsPlan, TilingPlan
    from ..config.rig import RigConfig
    from ..model.card import ModelCard
    from .options import BackendChoice, PrecisionChoice


def load_and_prepare(
    kind: str, config: Path, simulate: bool, out: Path | None, realtime: bool = True
) -> tuple[LivePlan | PairsPlan | TilingPlan, RigConfig, PreparedPlan]:
    """Validate the plan and the rig completely, touching no hardware."""
    from ..acquisition.plans import PlanError, prepare
    from ..config.experiment import load_plan
    from ..config.rig import load_rig
    from ..microscope.rig import simulated_rig_path

    plan = load_plan(config, kind)
    if out is not None:
        plan = plan.replace(storage={**plan.storage.model_dump(), "out_dir": out})
    if simulate or plan.rig == "simulated":
        rig = load_rig(simulated_rig_path())
        if plan.simulation is not None:
            rig = rig.replace(simulation=plan.simulation.model_dump())
        if not realtime:
            rig = rig.replace(simulation={**rig.simulation.model_dump(), "realtime": False})
    else:
        rig_path = Path(plan.rig)
        if not rig_path.is_absolute():
            rig_path = (
                (config.parent / rig_path) if (config.parent / rig_path).exists() else rig_path
            )
        rig = load_rig(rig_path)
    try:
        prepared = prepare(plan, rig)
    except PlanError as exc:
        raise UserError(f"{config}: {exc}") from None
    return plan, rig, prepared


def _live_restoration(prepared: PreparedPlan, restore: RestoreOptions | None) -> Any:
    """Start the restoration workers for this plan, or return None (reason printed)."""
    from ..inference import BackendRecipe, LiveRestoration, WorkerDied
    from ..inference.recipe import live_tile_shape
    from .options import resolve_model_path

    settings = getattr(prepared.plan, "restoration", None)
    if settings is None and restore is not None and restore.model is not None:
        # tiling with --model: every tile matters, so queue rather than drop (the
        # few dropped anyway are restored before stitching)
        from ..config.experiment import Restoration

        settings = Restoration(policy="fifo", max_queue=TILE_QUEUE)
    if restore is None or settings is None or not settings.enabled:
        return None
    try:
        model = resolve_model_path(restore.model)
    except UserError as exc:
        if restore.model is not None:
            raise
        console.print(f"[yellow]live restoration off[/]: {exc}", highlight=False)
        return None
    if restore.devices:
        settings = settings.replace(devices=tuple(restore.devices))
    w, h = prepared.plan.camera_roi_px
    tile = settings.tile or live_tile_shape((prepared.planes, h, w))
    settings = settings.replace(tile=tile)
    recipe = BackendRecipe(model, str(restore.backend), str(restore.precision), tile_shape=tile)
    if recipe.measured:
        console.print(
            "live restoration: measuring the backends for auto (once per machine and "
            "model; cached) ...",
            highlight=False,
        )
    live = LiveRestoration(recipe, settings)
    try:
        workers = live.start()
    except WorkerDied as exc:
        raise UserError(f"live restoration could not start: {exc}") from None
    for ready in workers:
        console.print(
            f"live restoration: {ready.backend} {ready.precision} on {ready.device} "
            f"({ready.threads} thread(s), worker pid {ready.pid}), tile "
            f"{'x'.join(map(str, ready.tile_shape or tile))}, policy {settings.policy} "
            f"(queue {settings.max_queue})",
            highlight=False,
        )
    if workers and workers[0].choice:
        _print_auto_choice(workers[0].choice)
    return live


def _print_auto_choice(trials: Any) -> None:
    from rich.table import Table

    table = Table(title="auto: measured on this machine (cached)", title_justify="left")
    for column in ("backend", "precision", "s/tile", "Mvoxel/s", "vs eager fp32 (dB)", "note"):
        table.add_column(column)
    for t in trials:
        table.add_row(
            t["backend"],
            t["precision"],
            f"{t['seconds_per_tile']:.3f}" if t.get("seconds_per_tile") else "–",
            f"{t['mvoxel_per_s']:.2f}" if t.get("mvoxel_per_s") else "–",
            f"{t['agreement_db']:.1f}" if t.get("agreement_db") else "–",
            t.get("note", ""),
        )
    console.print(table)


def run_with_progress(
    kind: str,
    config: Path,
    simulate: bool,
    out: Path | None,
    overwrite: bool,
    restore: RestoreOptions | None = None,
    realtime: bool = True,
    dashboard: bool = False,
    report: bool = False,
) -> RunResult:
    """Open the rig, run the plan with a progress bar and print the summary.

    ``dashboard``: show the live dashboard; Qt runs on this (main) thread and the
    plan on a worker thread; closing the window cancels the run cleanly (lasers off).
    ``report``: write ``DATASET/report.html`` (bleaching, SNR) at the end.
    """
    from rich.progress import Progress

    from ..acquisition.runner import AcquisitionError, dataset_path
    from ..microscope.rig import RigError, open_rig

    if dashboard:
        from .dashboard import require_qt

        require_qt()  # before anything moves
    _plan, rig_config, prepared = load_and_prepare(kind, config, simulate, out, realtime)
    path = _check_output(dataset_path(prepared), overwrite)
    console.print(prepared.describe(), highlight=False)
    live = _live_restoration(prepared, restore)
    card = model_card_of(getattr(getattr(live, "open_backend", None), "model", None))
    try:
        rig = open_rig(rig_config)
    except RigError as exc:
        if live is not None:
            live.finish()
        raise UserError(str(exc)) from None
    feed = _dashboard_feed(rig_config, path, live) if (dashboard or report) else None
    summary = None
    try:
        # the bars stay up while the workers drain their queue after the run
        with Progress(*_progress_columns(), console=console, transient=False) as bar:
            try:
                result = _acquire_with_progress(
                    bar, rig, prepared, overwrite, live, feed, dashboard
                )
            finally:
                rig.close()
                if live is not None:
                    summary = live.finish()
    except AcquisitionError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        _after_run(summary, feed, path if report else None, card, path)
    _print_result(result)
    return result


def _progress_columns() -> tuple[Any, ...]:
    """Description, bar, N/M and time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    return (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


def _after_run(
    summary: dict[str, Any] | None,
    feed: Any,
    report: Path | None,
    card: ModelCard | None = None,
    dataset: Path | None = None,
) -> None:
    """Say what restoration did and whether the model is reliable at this run's input
    SNR (its model card), stop the dashboard feed, write ``report.html``."""
    if feed is not None:
        feed.close()
    if summary is not None:
        _print_restoration(summary, card)
    warning = None
    if card is not None:
        warning = card_warning(card, feed.model if feed is not None else None, dataset)
    if feed is not None and report is not None and report.exists():
        _write_report(feed.model, report, [warning] if warning else [])


def model_card_of(model: Path | None) -> ModelCard | None:
    """The card of a checkpoint or of a bioimage.io package rcanlive exported; None for
    no card, an artifact without metadata, or a card that cannot be read (logged)."""
    if model is None:
        return None
    from ..inference.bioimageio import is_bioimageio_package
    from ..model.card import model_card, read_model_card

    if not is_bioimageio_package(model):
        return read_model_card(model)
    from ..inference.bioimageio.package import rcanlive_block, read_rdf

    try:
        block = rcanlive_block(read_rdf(model)) or {}
    except ValueError as exc:
        logger.warning("could not read the model card of %s: %s", model, exc)
        return None
    return model_card(block.get("metadata"))


def card_warning(card: ModelCard, model: Any = None, dataset: Path | None = None) -> str | None:
    """Print (and return) the card's warning when the run's median input SNR lies outside
    the model's reliable range; nothing when it is inside or cannot be measured.

    The SNR is the median over the volumes of each raw volume's median foreground SNR:
    from the dashboard ``model`` when the run fed one, else measured on a few of the
    ``dataset``'s raw volumes.
    """
    from ..model.card import snr_reliability

    try:
        snr = _model_snr(model) if model is not None else None
        if snr is None and dataset is not None:
            snr = dataset_input_snr(dataset)
    except Exception as exc:  # the data is safe; only this check is lost
        logger.warning("could not measure the run's input SNR for the model card: %s", exc)
        return None
    warning = snr_reliability(card, snr) if snr is not None else None
    if warning:
        console.print(f"[bold red]warning[/]: {warning}", highlight=False)
    elif snr is not None and math.isfinite(snr) and card.reliable_input_snr is not None:
        console.print(
            f"input SNR {snr:.2f} (median over the foreground): inside the model's reliable range",
            highlight=False,
        )
    return warning


def _model_snr(model: Any) -> float | None:
    """Median of the raw volumes' median foreground SNR in a dashboard model."""
    from ..dashboard.model import RAW

    snap = model.snapshot()
    values = [s.snr_median for (_, image), s in snap.series.items() if image == RAW]
    medians = np.concatenate(values) if values else np.empty(0)
    medians = medians[np.isfinite(medians)]
    return float(np.median(medians)) if medians.size else None


def dataset_input_snr(path: Path, max_volumes: int = 6) -> float | None:
    """Median foreground input SNR of a dataset's raw volumes (up to ``max_volumes``,
    evenly spaced, each subsampled as the live run measures it); None if none read."""
    from ..acquisition.illumination_loop import measurement_planes
    from ..analysis.snr import Camera, volume_snr
    from ..storage import DamagedVolume, open_dataset

    ds = open_dataset(path)
    rig = ds.meta.get("rig") or {}
    camera = Camera.from_rig(rig) if "camera" in rig else Camera()
    records = ds.volumes
    step = max(1, -(-len(records) // max_volumes))
    medians = []
    for rec in records[::step]:
        try:
            raw = ds.volume(int(rec["t"]), p=int(rec["p"]), c=int(rec["c"]))
        except DamagedVolume:  # warned by the reader
            continue
        medians.append(volume_snr(measurement_planes(list(raw), 2**21), camera).median)
    return float(np.median(medians)) if medians else None


def _check_output(path: Path, overwrite: bool) -> Path:
    """``path``, unless another process is writing it, or it exists (and not overwrite)."""
    from ..storage.errors import DatasetLocked
    from ..storage.lock import locked_by

    holder = locked_by(path)
    if holder is not None:
        raise UserError(str(DatasetLocked(path, *holder)))
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite or change storage.name")
    return path


def _acquire_with_progress(
    bar: Any,
    rig: Any,
    prepared: PreparedPlan,
    overwrite: bool,
    live: Any,
    feed: Any,
    dashboard: bool,
) -> RunResult:
    """Run the plan with progress rows (frames, volumes, restored) and, if asked, the
    dashboard; restoration and the dashboard are fed by listeners."""
    from ..acquisition.runner import run_plan

    frames = bar.add_task("frames", total=prepared.n_frames)
    volumes = bar.add_task("volumes", total=prepared.n_volumes)
    listeners: list[Any] = [lambda v: bar.advance(volumes)]
    if live is not None:
        listeners.append(live.submit)
        live.listeners.append(_restoration_progress(bar, prepared.n_volumes))
    if feed is not None:
        listeners.append(feed.on_volume)
        if live is not None:
            live.listeners.append(feed.on_restoration)

    def on_frame(n: int) -> None:
        bar.update(frames, completed=n)
        if feed is not None:
            feed.on_frame(n)

    def acquire() -> RunResult:
        return run_plan(
            rig,
            prepared,
            overwrite=overwrite,
            on_frame=on_frame,
            listeners=listeners,
            writer_hook=live.attach if live is not None else None,
        )

    if not (dashboard and feed is not None):
        return acquire()
    from ..dashboard.app import Session, headless

    # nobody can close an offscreen window: it closes when the run ends
    session = Session(feed.model, acquire, rig.core.mda.cancel, not headless())
    return session.exec()  # type: ignore[no-any-return]


def _print_result(result: RunResult) -> None:
    """Done, or cancelled (exit 130) with what is safe on disk."""
    from ..acquisition.runner import RunStatus

    if result.status is RunStatus.CANCELLED:
        console.print(
            f"[yellow]cancelled[/]: lasers off; {result.volumes} complete volume(s) "
            f"({result.frames} frames) are in {result.dataset}",
            highlight=False,
        )
        raise typer.Exit(130)
    console.print(
        f"[green]done[/]: {result.frames}/{result.expected_frames} frames, "
        f"{result.volumes} volumes in {result.seconds:.1f} s → {result.dataset}",
        highlight=False,
    )


def _restoration_progress(bar: Any, total: int) -> Any:
    """A progress row that counts restored and not-restored volumes honestly."""
    from ..inference import RestorationStatus

    task = bar.add_task("restored", total=total)
    counts = {"skipped": 0}

    def on_event(event: Any) -> None:
        if event.status is RestorationStatus.RESTORED:
            bar.advance(task)
        else:
            counts["skipped"] += 1
            bar.update(task, description=f"restored (skipped {counts['skipped']})")

    return on_event


def _dashboard_feed(rig_config: RigConfig, path: Path, live: Any) -> Any:
    """A dashboard model (camera parameters from the rig) fed from the live run."""
    from ..analysis.snr import Camera
    from ..dashboard.model import DashboardModel, LiveFeed

    model = DashboardModel(Camera.from_rig(rig_config), title=path.name)
    return LiveFeed(model, queue_depth=(lambda: live.queue_depth) if live is not None else None)


def _write_report(model: Any, path: Path, notes: list[str] | None = None) -> None:
    """``DATASET/report.html`` (``notes``: warnings at its top); a failure is reported,
    never fatal (the data is safe)."""
    from ..dashboard.report import write_report

    try:
        written = write_report(model.snapshot(), path / "report.html", notes or ())
    except Exception as exc:
        console.print(f"[yellow]report not written[/]: {exc}", highlight=False)
        return
    console.print(f"report: {written}", highlight=False)


#: tiles waiting for restoration during a tiling run (about 8 MB each at 512²×16)
TILE_QUEUE = 64


@dataclass(frozen=True)
class RestoreOptions:
    """Live-restoration choices from the command line."""

    model: Path | None
    backend: BackendChoice | str
    precision: PrecisionChoice | str
    devices: tuple[str, ...] = ()


def _print_restoration(summary: dict[str, Any], card: ModelCard | None = None) -> None:
    skipped = summary.get("skipped") or []
    line = (
        f"restored live: {summary.get('restored', 0)} of {summary.get('submitted', 0)} "
        f"volume(s) with {summary['backend']} {summary['precision']}; not restored "
        f"{len(skipped)}"
    )
    if card is not None:
        line += f"; model {card.describe_range()}"
    if summary.get("restarts"):
        line += f"; worker restarted {summary['restarts']} time(s)"
    if skipped:
        line += " (restore them afterwards: rcanlive restore DATASET --only-missing)"
    console.print(line, highlight=False)
    if summary.get("error"):
        console.print(
            f"[bold red]restoration worker failed[/]: {summary['error']} "
            "(acquisition carried on; the raw data is complete)",
            highlight=False,
        )
