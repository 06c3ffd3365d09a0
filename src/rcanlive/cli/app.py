"""The Typer application and the error boundary shared by every subcommand."""

from __future__ import annotations

import sys

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
        app(args=argv, prog_name="rcanlive", standalone_mode=False)
    except USER_ERRORS as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: hardware was made safe; data so far is on disk")
        return 130
    except SystemExit as exc:  # typer/click exits
        return int(exc.code or 0)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_cli(sys.argv[1:]))
