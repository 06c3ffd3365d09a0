"""Tables of evaluation results as rows of text (for Markdown, a terminal or a figure)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..analysis.evaluation import Summary
    from .methods import MethodResult, MethodTable

#: Column headers of :func:`method_rows`.
METHOD_COLUMNS = ("method", "PSNR (dB)", "SSIM", "NRMSE", "s / volume", "parameters")
#: Columns :func:`method_markdown` adds (after NRMSE) when the table measured resolution.
RESOLUTION_COLUMNS = ("lateral nm", "axial nm")


def summary_cells(summary: Summary) -> list[str]:
    """``[PSNR, SSIM, NRMSE]`` as ``mean ± s.d.`` strings."""
    return [summary.psnr.format(2), summary.ssim.format(3), summary.nrmse.format(3)]


def describe_details(details: dict[str, Any]) -> str:
    """A method's parameters in a few words (σ, iterations, architecture...)."""
    parts = []
    if "sigma_zyx" in details:
        z, y, _ = details["sigma_zyx"]
        parts.append(f"σz {z:.2g}, σxy {y:.2g} px")
    if "iterations" in details:
        again = ", re-blurred" if details.get("reblurred") else ""
        parts.append(f"{details['iterations']} iterations{again}")
    if "architecture" in details:
        parts.append(f"{details['architecture']} ({details.get('parameters', 0):,} parameters)")
    if "training" in details:
        parts.append(str(details["training"]))
    if "backend" in details:
        parts.append(f"{details['backend']} {details.get('precision', '')}".strip())
    return "; ".join(parts)


def method_row(result: MethodResult) -> list[str]:
    """One table row: name, metrics, time per volume, parameters (or the skip reason)."""
    if result.summary is None:
        return [result.name, "–", "–", "–", "–", f"skipped: {result.skipped}"]
    seconds = "–" if math.isnan(result.seconds_per_volume) else f"{result.seconds_per_volume:.2f}"
    return [result.name, *summary_cells(result.summary), seconds, describe_details(result.details)]


def method_rows(table: MethodTable) -> list[list[str]]:
    """Every row of ``table`` (see :data:`METHOD_COLUMNS`)."""
    return [method_row(r) for r in table.results]


def markdown(headers: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def resolution_cells(resolution: dict[str, Any] | None) -> list[str]:
    """``[lateral, axial]`` in nm (``–`` where not measured or no peak was found)."""
    if resolution is None:
        return ["–", "–"]
    return [
        "–" if math.isnan(resolution[k]) else f"{resolution[k]:.0f}" for k in ("lateral", "axial")
    ]


def method_markdown(table: MethodTable) -> str:
    """The table in Markdown, its convention and split below it (with the resolution
    columns, the truths' resolution and its convention when the table measured it)."""
    headers, rows = list(METHOD_COLUMNS), method_rows(table)
    notes = ""
    if table.resolution is not None:
        at = METHOD_COLUMNS.index("NRMSE") + 1
        headers[at:at] = RESOLUTION_COLUMNS
        for row, result in zip(rows, table.results, strict=True):
            row[at:at] = resolution_cells(result.details.get("resolution_nm"))
        lateral, axial = resolution_cells(table.truth_resolution_nm)
        notes = (
            f"\n\nGround truth: lateral {lateral} nm, axial {axial} nm. "
            f"Resolution: {table.resolution.describe()}."
        )
    return (
        f"{markdown(headers, rows)}\n\nMean ± s.d. over {len(table.test_names)} held-out "
        f"volume(s); baselines tuned on {len(table.tuning_names)} other volume(s). "
        f"Convention: {table.convention.describe()}.{notes}"
    )
