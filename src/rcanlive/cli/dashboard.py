"""``rcanlive dashboard`` and ``rcanlive report``: bleaching and SNR of a live dataset."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  (typer resolves annotations at runtime)
from typing import Annotated

import typer

from .app import UserError, app, console, require_dataset


def live_dataset(path: Path) -> Path:
    """``path`` if it is a live rcanlive dataset; a :class:`UserError` saying why not."""
    require_dataset(
        path,
        "live",
        "the dashboard and the report show live time-lapses (rcanlive acquire live)",
    )
    return path


def require_qt() -> None:
    """Refuse (exit 2, with the reason) when no dashboard window can be opened here."""
    from ..dashboard.app import QtUnavailable, check_qt

    try:
        check_qt()
    except QtUnavailable as exc:
        raise UserError(str(exc)) from None


@app.command(
    "dashboard",
    help=(
        "Show the photobleaching and SNR dashboard of a finished live dataset.\n\n"
        "Panels: raw beside restored (plane or max projection), normalised bleaching "
        "curves with an exponential fit and half-life, input SNR (median and 10th "
        "percentile over the foreground, SNR map, warning below SNR 3), pipeline health. "
        "During an acquisition use `rcanlive acquire live --dashboard` instead.\n\n"
        "Example: rcanlive dashboard --replay data/live-4d.ome.zarr\n\n"
        "Example (no display): QT_QPA_PLATFORM=offscreen rcanlive dashboard "
        "--replay data/live-4d.ome.zarr --screenshot dashboard.png"
    ),
)
def dashboard_command(
    replay: Annotated[
        Path, typer.Option("--replay", "-r", help="Live dataset (.ome.zarr) to show.")
    ],
    screenshot: Annotated[
        Path | None,
        typer.Option(
            "--screenshot", help="Save the window as a PNG once the dataset is loaded, and exit."
        ),
    ] = None,
) -> None:
    """Replay a live dataset into the dashboard."""
    path = live_dataset(replay)
    if screenshot is not None and screenshot.suffix.lower() != ".png":
        raise UserError(f"--screenshot {screenshot}: give a .png path")
    require_qt()
    from ..dashboard import model as dm
    from ..dashboard.app import application, replay_session, save_screenshot

    model = dm.model_for_dataset(path)
    session = replay_session(
        model, lambda stop: dm.replay(model, path, stop), keep_open=screenshot is None
    )
    if screenshot is None:
        session.exec()
        return
    app_ = application()
    session.start()
    session.result()
    app_.processEvents()
    session.window.refresh(force=True)
    session.window.set_status(f"replay of {path}")
    save_screenshot(session.window, screenshot)
    session.window.close()
    console.print(f"dashboard screenshot → {screenshot}", highlight=False)


@app.command(
    "report",
    help=(
        "Write the dashboard's plots for a live dataset as a .png or a self-contained "
        ".html page (no display needed).\n\n"
        "Example: rcanlive report data/live-4d.ome.zarr -o report.html\n\n"
        "Example: rcanlive report data/live-4d.ome.zarr -o bleaching.png"
    ),
)
def report_command(
    dataset: Annotated[Path, typer.Argument(help="Live dataset (.ome.zarr).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="report.html or report.png (default: DATASET/report.html)."
        ),
    ] = None,
) -> None:
    """Write the report of DATASET."""
    from ..dashboard.report import REPORT_SUFFIXES, report_for_dataset

    path = live_dataset(dataset)
    if out is not None:
        if out.suffix.lower() not in REPORT_SUFFIXES:
            raise UserError(f"-o {out}: the report is written as .html or .png")
        if out.is_dir():
            raise UserError(
                f"-o {out}: is a folder; give a file name such as {out / 'report.html'}"
            )
        if not out.parent.is_dir():
            raise UserError(f"-o {out}: folder {out.parent} does not exist")
    written = report_for_dataset(path, out)
    console.print(f"report → {written}", highlight=False)
