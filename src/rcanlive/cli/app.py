"""The Typer application and the error boundary shared by every subcommand."""

from __future__ import annotations

import typer
from rich.console import Console

from ..config import ConfigError

app = typer.Typer(
    name="rcanlive",
    help=(
        "Run an iSIM through Micro-Manager and restore every volume with 3D RCAN.\n\n"
        "Example: rcanlive acquire live --config configs/live-4d.toml --simulate"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

console = Console(stderr=True)


class UserError(Exception):
    """An error caused by input the user can fix; printed without a traceback."""


# Errors whose message is the whole story for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, UserError, FileNotFoundError)


def run_cli(argv: list[str]) -> int:
    """Run the app; user errors print one message and exit 2, never a traceback."""
    try:
        app(args=argv, prog_name="rcanlive", standalone_mode=True)
    except USER_ERRORS as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except SystemExit as exc:  # typer exits here in standalone mode
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
