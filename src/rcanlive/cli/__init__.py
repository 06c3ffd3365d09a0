"""The ``rcanlive`` command: one Typer app, one module per subcommand group.

Each subcommand module registers itself on :data:`app` when imported; heavy
libraries (torch, Qt, MMCore) are imported inside the commands so that
``rcanlive --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

from .app import app, run_cli

# Subcommand modules, imported for their registration side effect.
_COMMAND_MODULES = (
    "acquire",
    "train",
    "simulate",
    "restore",
    "export",
    "bench",
    "dashboard",
    "stitch",
    "check",
    "resolution",
    "deconvolve",
    "evaluate",
)


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rcanlive`` console script."""
    _register()
    return run_cli(argv if argv is not None else sys.argv[1:])


__all__ = ["app", "main"]
