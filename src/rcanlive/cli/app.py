"""The Typer application and the error boundary shared by every subcommand.

Errors the user can fix (a bad config, a wrong path, a full disk...) are printed as one
``error: ...`` line and the command exits with status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
import json
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..config import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

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

#: Messages go to stderr without hard line breaks (the terminal wraps them), so that an
#: error stays one line and a path in it can be copied whatever the terminal width.
console = Console(stderr=True, soft_wrap=True)

#: Exit status of a command stopped by a user error.
USER_ERROR_EXIT = 2


class UserError(Exception):
    """An error caused by input the user can fix; printed without a traceback."""


# Errors whose message is the whole story for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, UserError, FileNotFoundError)

#: OSErrors about a path the user gave (its message, or the path and the hint below, is
#: the whole story), whatever their errno
PATH_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)

#: What to do about an OSError, by errno.
_OS_HINTS: dict[int, str] = {
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a part of this path is a file, not a folder; check the path",
    errno.EISDIR: "is a folder; give the path of a file",
    errno.EACCES: "permission denied; choose a location you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose another location, or fix its permissions",
    errno.EEXIST: "already exists; pass --overwrite or choose another name",
    errno.ENOSPC: "no space left on the device; free some space or choose another --out",
    errno.EFBIG: "file too large for this file system (or a file size limit); choose another --out",
    errno.EROFS: "read-only file system; choose another location",
    errno.ENAMETOOLONG: "file name too long; choose a shorter path",
    errno.ELOOP: "too many levels of symbolic links; check the path",
    errno.ENOTEMPTY: "folder not empty; empty it or choose another",
}
if hasattr(errno, "EDQUOT"):
    _OS_HINTS[errno.EDQUOT] = "disk quota exceeded; free some space or choose another --out"


def _os_error_message(exc: OSError) -> str | None:
    """One line for an OSError the user can fix (naming the path); None for a bug."""
    hint = _OS_HINTS.get(exc.errno) if exc.errno is not None else None
    if hint is None:
        if isinstance(exc, PATH_ERRORS):
            # raised by our own code with a sentence as the message, or an errno we do
            # not know: the message is still about a path the user gave
            return str(exc)
        return None
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " → ".join(paths)
    return f"{where}: {hint}" if where else f"{exc.strerror or exc}: {hint}"


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix; None for a bug.

    User errors are :class:`~rcanlive.config.ConfigError`, :class:`UserError`, the
    dataset errors of :mod:`rcanlive.storage.errors`, and OSErrors about a path (not
    found, not a folder, a folder, permission denied, disk full, read-only...).
    """
    # the storage errors (some are OSErrors too): loaded if and only if something could
    # raise them
    storage_errors = sys.modules.get("rcanlive.storage.errors")
    dataset_error = getattr(storage_errors, "DatasetError", None)
    if dataset_error is not None and isinstance(exc, dataset_error):
        return _with_flags(exc, storage_errors)
    if isinstance(exc, OSError):
        return _os_error_message(exc)
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    return None


def _with_flags(exc: BaseException, storage_errors: Any) -> str:
    """A dataset error's message, its remedy said in the command line's options.

    The library says "replace it (overwrite) or write to another path"; here the user
    reads which option does that.
    """
    if isinstance(exc, storage_errors.DatasetExists):
        return (
            f"{exc.path} already exists; pass --overwrite to replace it, or choose another "
            "--out (or storage.name in the config)"
        )
    if isinstance(exc, storage_errors.DatasetLocked):
        return str(exc).replace("write to another path", "choose another --out")
    return str(exc)


#: what each kind of rcanlive dataset holds and which command writes it
DATASET_KINDS = {
    "live": "a live time-lapse from `rcanlive acquire live`",
    "pairs": "training pairs from `rcanlive acquire pairs`",
    "tile": "a tiling from `rcanlive acquire tile`",
}


def require_dataset(path: Path, kind: str, refusal: str) -> None:
    """Refuse (:class:`UserError`) anything but an rcanlive dataset of ``kind``.

    The message says what ``path`` is instead (missing, a file, not an rcanlive
    dataset, a dataset of another kind), followed by ``refusal`` (what the command
    accepts, e.g. "only tiling datasets are stitched"). Reads only the dataset's
    ``zarr.json``.
    """
    if not path.exists():
        raise UserError(f"dataset not found: {path}")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not an rcanlive dataset (.ome.zarr folder); {refusal}")
    meta_path = path / "zarr.json"
    if not meta_path.is_file():
        raise UserError(
            f"{path} is not an rcanlive dataset (no zarr.json in it); give the .ome.zarr "
            f"folder of a run: {refusal}"
        )
    try:
        meta: Any = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable rcanlive dataset ({exc}); {refusal}") from None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    info = attrs.get("rcanlive") if isinstance(attrs, dict) else None
    found = info.get("kind") if isinstance(info, dict) else None
    if not isinstance(found, str):
        raise UserError(f"{path} is a Zarr group but not an rcanlive dataset; {refusal}")
    if found != kind:
        what = DATASET_KINDS.get(found, f"of unknown kind {found!r}")
        raise UserError(f"{path} is a {found} dataset ({what}); {refusal}")


def run_cli(argv: list[str]) -> int:
    """Run the app; user errors print one message and exit 2, never a traceback."""
    try:
        app(args=argv, prog_name="rcanlive", standalone_mode=True)
    except SystemExit as exc:  # typer exits here in standalone mode
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        return USER_ERROR_EXIT
    return 0
