"""The static report: the dashboard's plots as a PNG or a self-contained HTML page.

Drawn with matplotlib's Agg canvas from a model :class:`~.model.Snapshot` (no Qt, no
display), for headless runs and for the end of every live demo.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import os
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .colors import FIT_COLOR, P10_COLOR, THRESHOLD_COLOR, curve_color, hex_color
from .model import RAW, RESTORED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpec

    from .model import Snapshot

REPORT_SUFFIXES = (".html", ".htm", ".png")


def _color(image: str, index: int) -> str:
    return hex_color(curve_color(image, index))


def _levels(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(np.asarray(image, np.float32), (0.5, 99.8))
    return float(lo), float(max(hi, lo + 1.0))


def figure(snap: Snapshot) -> Figure:
    """The report figure: images, bleaching (time and volume), SNR curves and map."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 10), dpi=100, layout="constrained")
    grid = fig.add_gridspec(3, 4)
    channel = snap.channels[0] if snap.channels else None
    title = snap.title or "rcanlive"
    fig.suptitle(f"{title}: photobleaching and input SNR", fontsize=14)
    _draw_images(fig, grid, snap, channel)
    _draw_snr_map(fig, grid, snap, channel)
    _draw_health(fig, grid, snap)
    _draw_bleaching(fig, grid, snap)
    _draw_snr_curves(fig, grid, snap)
    _draw_illumination(fig, grid, snap)
    return fig


def _draw_images(fig: Figure, grid: GridSpec, snap: Snapshot, channel: str | None) -> None:
    """Newest raw and restored max projections with the same display range."""
    raw = snap.images.get((channel, RAW)) if channel else None
    levels = _levels(raw.mip) if raw is not None else (0.0, 1.0)
    for col, image in enumerate((RAW, RESTORED)):
        ax = fig.add_subplot(grid[0, col])
        latest = snap.images.get((channel, image)) if channel else None
        if latest is not None:
            ax.imshow(latest.mip, cmap="gray", vmin=levels[0], vmax=levels[1])
            ax.set_title(f"{image}, volume {latest.t} (max projection)")
        else:
            ax.text(0.5, 0.5, f"no {image} volume", ha="center", va="center")
            ax.set_title(image)
        ax.set_axis_off()


def _draw_snr_map(fig: Figure, grid: GridSpec, snap: Snapshot, channel: str | None) -> None:
    """SNR map of the middle plane of the newest raw volume."""
    ax = fig.add_subplot(grid[0, 2])
    snr = snap.snr_map(channel) if channel else None
    if snr is not None:
        top = max(2 * snap.snr_threshold, float(np.percentile(snr, 99.5)))
        shown = ax.imshow(snr, cmap="viridis", vmin=0, vmax=top)
        fig.colorbar(shown, ax=ax, shrink=0.8, label="SNR")
    ax.set_title(f"SNR map, {channel or '–'}, middle plane")
    ax.set_axis_off()


def _draw_health(fig: Figure, grid: GridSpec, snap: Snapshot) -> None:
    """Pipeline health and warnings as text."""
    ax = fig.add_subplot(grid[0, 3])
    ax.set_axis_off()
    h = snap.health
    lines = [
        "pipeline health",
        f"frames:     {h.frames}",
        f"frames/s:   {_num(h.frames_per_s, '.1f')}",
        f"volumes:    {h.volumes}",
        f"restored:   {h.restored}",
        f"skipped:    {h.skipped}",
        f"latency:    {_num(h.mean_latency_s, '.2f')} s (mean)",
        f"max queue:  {h.max_queue_depth}",
    ]
    if h.analysis_dropped:
        lines.append(f"not analysed: {h.analysis_dropped}")
    ax.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=10)
    warning = snap.warning()
    if warning:
        ax.text(
            0,
            0.3,
            _wrap(warning, 26),
            va="top",
            color="white",
            fontsize=10,
            fontweight="bold",
            bbox={"facecolor": "#c00000", "edgecolor": "none"},
        )


def _draw_bleaching(fig: Figure, grid: GridSpec, snap: Snapshot) -> None:
    """Bleaching against time and against volume number, with fits."""
    by_time = fig.add_subplot(grid[1, :2])
    by_volume = fig.add_subplot(grid[1, 2:])
    fit_lines = []
    for (ch, image), series in sorted(snap.series.items()):
        index = snap.channels.index(ch) if ch in snap.channels else 0
        color = _color(image, index)
        label = f"{ch} {image}"
        by_time.plot(series.elapsed_s, series.normalised, "o-", color=color, ms=3, label=label)
        by_volume.plot(series.t, series.normalised, "o-", color=color, ms=3, label=label)
        if series.fit is not None:
            x = np.linspace(float(series.t[0]), float(series.t[-1]), 200)
            xs = np.interp(x, series.t, series.elapsed_s)
            by_time.plot(xs, series.fit.curve(x), "--", color=hex_color(FIT_COLOR), lw=1)
            by_volume.plot(x, series.fit.curve(x), "--", color=hex_color(FIT_COLOR), lw=1)
            fit_lines.append(f"{label}: {series.fit.label()}")
    by_time.set_xlabel("time (s)")
    by_volume.set_xlabel("volume")
    for ax in (by_time, by_volume):
        ax.set_ylabel("signal / first volume")
        ax.grid(alpha=0.3)
    by_time.set_title("bleaching: background-corrected mean signal, normalised")
    by_volume.set_title("\n".join(fit_lines) or "fit: needs three volumes", fontsize=9)
    if snap.series:
        by_volume.legend(fontsize=8)


def _draw_snr_curves(fig: Figure, grid: GridSpec, snap: Snapshot) -> None:
    """SNR per volume of the raw images, with the restoration threshold."""
    ax = fig.add_subplot(grid[2, :2])
    for (ch, image), series in sorted(snap.series.items()):
        if image != RAW:
            continue
        index = snap.channels.index(ch) if ch in snap.channels else 0
        ax.plot(
            series.t, series.snr_median, "o-", color=_color(RAW, index), ms=3, label=f"{ch} median"
        )
        ax.plot(
            series.t,
            series.snr_p10,
            "s--",
            color=hex_color(P10_COLOR),
            ms=3,
            label=f"{ch} 10th pct",
        )
    ax.axhline(
        snap.snr_threshold,
        color=hex_color(THRESHOLD_COLOR),
        ls="--",
        lw=1,
        label=f"SNR {snap.snr_threshold:g}: restoration artifacts below",
    )
    ax.set_xlabel("volume")
    ax.set_ylabel("SNR = S/√(S + Nr²)")
    ax.set_title("input SNR over the foreground")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _draw_illumination(fig: Figure, grid: GridSpec, snap: Snapshot) -> None:
    """Power per volume (left axis) and cumulative dose at the sample (right axis)."""
    ax = fig.add_subplot(grid[2, 2:])
    dose_ax = ax.twinx()
    drawn = False
    for (ch, image), series in sorted(snap.series.items()):
        if image != RAW or not np.isfinite(series.power_mw).any():
            continue
        index = snap.channels.index(ch) if ch in snap.channels else 0
        color = _color(RAW, index)
        ax.plot(series.t, series.power_mw, "o-", color=color, ms=3, label=f"{ch} power")
        dose_ax.plot(series.t, series.dose_j_cm2, "--", color=color, lw=1, label=f"{ch} dose")
        drawn = True
    ax.set_xlabel("volume")
    ax.set_ylabel("power at the objective (mW)")
    dose_ax.set_ylabel("cumulative dose (J/cm²), dashed")
    ax.set_title("illumination: power and dose at the sample")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no illumination record", ha="center", va="center")


def _num(value: float, spec: str) -> str:
    return "–" if math.isnan(value) else f"{value:{spec}}"


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def render_png(snap: Snapshot) -> bytes:
    """The report figure as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure(snap)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _summary_rows(snap: Snapshot) -> list[tuple[str, str]]:
    rows = []
    for (ch, image), series in sorted(snap.series.items()):
        fit = series.fit
        rows.append((f"{ch} {image}: bleaching", fit.label() if fit else "fit: too few volumes"))
        if image == RAW and len(series):
            rows.append(
                (
                    f"{ch}: input SNR (last volume)",
                    f"median {series.snr_median[-1]:.2f}, 10th percentile {series.snr_p10[-1]:.2f}",
                )
            )
        if image == RAW and np.isfinite(series.power_mw).any():
            rows.append(
                (
                    f"{ch}: illumination",
                    f"{np.nanmin(series.power_mw):.3g}–{np.nanmax(series.power_mw):.3g} mW, "
                    f"cumulative dose {np.nanmax(series.dose_j_cm2):.4g} J/cm²",
                )
            )
    cam = snap.camera
    rows.append(
        (
            "camera",
            f"offset {cam.offset_counts:g} counts, {cam.electrons_per_count:g} e⁻/count, "
            f"read noise {cam.read_noise_e:g} e⁻",
        )
    )
    return rows


def render_html(snap: Snapshot, notes: Sequence[str] = ()) -> str:
    """A self-contained HTML page: summary table, warning and the embedded figure.

    ``notes``: further warnings shown under the title (e.g. damaged volumes left out).
    """
    png = base64.b64encode(render_png(snap)).decode("ascii")
    title = html.escape(snap.title or "rcanlive report")
    rows = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in _summary_rows(snap)
    )
    warning = snap.warning()
    banner = f'<p class="warning">{html.escape(warning)}</p>' if warning else ""
    banner += "".join(f'<p class="warning">{html.escape(n)}</p>' for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
th {{ text-align: left; padding-right: 1em; }}
.warning {{ background: #c00000; color: white; font-weight: bold; padding: 0.5em; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
{banner}
<table>
{rows}
</table>
<img alt="bleaching and SNR plots" src="data:image/png;base64,{png}">
</body></html>
"""


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written.

    The bytes go to a hidden temporary file in the same folder, which is flushed to disk
    and then renamed over ``path`` (:func:`os.replace`, atomic on one file system). If
    anything fails (a full disk, an interrupt) the temporary file is removed and ``path``
    keeps its previous contents, if any.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno is not None:
            # name the report, not the temporary file (same errno, same OSError subclass)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def write_report(snap: Snapshot, path: str | Path, notes: Sequence[str] = ()) -> Path:
    """Write the report to ``path``: ``.png`` (the figure) or ``.html`` (page + figure).

    The report is rendered in memory and replaces ``path`` only once it is completely
    on disk: a failure (e.g. a full disk) leaves no truncated report behind. ``notes``
    are shown as warnings at the top of an HTML report.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise ValueError(f"{path}: the report is written as .html or .png, not {suffix!r}")
    data = render_png(snap) if suffix == ".png" else render_html(snap, notes).encode("utf-8")
    _write_atomically(path, data)
    return path


def report_for_dataset(dataset: str | Path, out: str | Path | None = None) -> Path:
    """Replay a live dataset and write its report (default ``DATASET/report.html``).

    Damaged volumes are left out of the plots; the warnings naming them are issued
    again here and listed at the top of an HTML report.
    """
    from ..storage import IntegrityWarning
    from .model import model_for_dataset, replay

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IntegrityWarning)
        model = replay(model_for_dataset(dataset), dataset)
    notes: list[str] = []
    for w in caught:
        if issubclass(w.category, IntegrityWarning):
            if str(w.message) not in notes:
                notes.append(str(w.message))
                warnings.warn(str(w.message), IntegrityWarning, stacklevel=2)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    target = out if out is not None else Path(dataset) / "report.html"
    return write_report(model.snapshot(), target, notes)
