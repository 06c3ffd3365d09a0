"""``rcanlive check``: every volume of a dataset against its log, chunks and checksums."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - typer reads the annotations at runtime
from typing import TYPE_CHECKING, Annotated

import typer

from .app import UserError, app

if TYPE_CHECKING:
    from rich.console import Console

    from ..storage.audit import CheckReport


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


def print_report(report: CheckReport, out: Console) -> None:
    """The summary table, then every problem and note, one per line (never wrapped)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=escape(f"{report.path} ({report.kind}, {report.status})"), title_justify="left"
    )
    for name in ("volumes", "expected", "listed", "intact", "verified", "damaged", "unlisted"):
        table.add_column(name, justify="left" if name == "volumes" else "right")
    table.add_row(
        "raw",
        _count(report.expected),
        str(report.logged),
        str(report.intact),
        str(report.verified),
        str(report.damaged),
        str(len(report.unlogged)),
    )
    if report.restored_listed or any(p.kind.startswith("restored") for p in report.problems):
        table.add_row(
            "restored",
            "–",
            str(report.restored_listed),
            str(report.restored_intact),
            "–",
            str(report.restored_damaged),
            "–",
        )
    out.print(table)
    for problem in report.problems:
        text = escape(f"[{problem.kind}] {problem.message}")
        out.print(f"[bold red]problem[/] {text}", soft_wrap=True)
    for note in report.notes:
        out.print(f"[yellow]note[/] {escape(f'[{note.kind}] {note.message}')}", soft_wrap=True)
    where = escape(str(report.path))
    if report.ok:
        out.print(f"[green]clean[/]: no problem found in {where}", soft_wrap=True)
    else:
        out.print(
            f"[bold red]{len(report.problems)} problem(s)[/] found in {where}", soft_wrap=True
        )


def run_check(
    dataset: Path, *, repair: bool = False, verify: bool = True, out: Console | None = None
) -> CheckReport:
    """Check ``dataset``, print the report and, with ``repair``, rebuild its log and
    check again; return the last report. Errors the user can fix are
    :class:`UserError`."""
    from rich.console import Console
    from rich.markup import escape

    from ..storage import DatasetError
    from ..storage.audit import check_dataset, repair_log

    out = out or Console(highlight=False)
    if not dataset.exists():
        raise UserError(f"dataset not found: {dataset}")
    report = check_dataset(dataset, verify=verify)
    print_report(report, out)
    if not repair:
        return report
    if report.ok:
        out.print("nothing to repair", soft_wrap=True)
        return report
    try:
        result = repair_log(dataset)
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    out.print(f"[green]repaired[/]: {escape(result.summary())}", soft_wrap=True)
    if result.backup is not None:
        out.print(escape(f"the old log is kept as {result.backup}"), soft_wrap=True)
    report = check_dataset(dataset, verify=verify)
    out.print("after the repair:", soft_wrap=True)
    print_report(report, out)
    return report


@app.command(
    "check",
    help=(
        "Check a dataset: every volume against volumes.jsonl, its chunks and its checksums.\n\n"
        "Reports every problem: chunks missing (zarr would read them as zeros), planes that "
        "do not match the checksums recorded when they were written, volumes.jsonl missing or "
        "shorter than the run recorded, damaged log lines, complete volumes the log does not "
        "list, restored volumes listed but missing or altered. Prints a summary table; exits "
        "1 if there is any problem, 0 if the dataset is clean.\n\n"
        "--repair rewrites volumes.jsonl from the volumes whose chunks are complete (the old "
        "log is kept as volumes.jsonl.bak): a volume whose log line survived is verified "
        "against its checksums; one whose line was lost can only be found complete, not "
        "verified.\n\n"
        "Example: rcanlive check data/live-4d.ome.zarr\n\n"
        "Example: rcanlive check data/live-4d.ome.zarr --repair"
    ),
)
def check_command(
    dataset: Annotated[Path, typer.Argument(help="Dataset (.ome.zarr) to check.")],
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Rebuild volumes.jsonl from the complete chunks."),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Read every volume and compare its checksums, or only look for missing chunks.",
        ),
    ] = True,
) -> None:
    """Check DATASET."""
    report = run_check(dataset, repair=repair, verify=verify)
    raise typer.Exit(0 if report.ok else 1)
