"""Command-line options shared by several commands (model, backend, precision, devices)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .app import UserError


class BackendChoice(StrEnum):
    """Backend names the CLI accepts (``auto`` measures the others and picks).

    The names of :data:`rcanlive.inference.backends.table.BACKENDS`, spelled out so that
    ``--help`` does not import torch; a test keeps the two equal.
    """

    auto = "auto"
    eager = "eager"
    compiled = "compiled"
    onnx = "onnx"
    tensorrt = "tensorrt"


class PrecisionChoice(StrEnum):
    """Precisions the CLI accepts."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        help="Checkpoint (.pt), exported artifact (.pt2/.onnx/.engine), bioimage.io "
        "package (.zip or folder), or bundled:NAME (bundled:phantom-2x: the phantom "
        "deblurring model); default: the bundled live model (bundled:isim-sim).",
    ),
]
BackendOpt = Annotated[
    BackendChoice,
    typer.Option(
        "--backend",
        "-b",
        help="Inference backend; auto times the ones that run here on the real tile "
        "(once per machine and model, cached) and takes the fastest accurate one.",
    ),
]
PrecisionOpt = Annotated[
    PrecisionChoice, typer.Option("--precision", "-p", help="auto: measured with --backend auto.")
]
DevicesOpt = Annotated[
    str | None,
    typer.Option(
        "--devices",
        help="Restoration workers, one per device, comma separated: auto, cpu, cuda:0,... "
        "(default: the config's [restoration] devices).",
    ),
]


def parse_devices(text: str | None) -> tuple[str, ...]:
    """``"cuda:0,cuda:1"`` → ``("cuda:0", "cuda:1")``; None or empty → ``()``."""
    if not text:
        return ()
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    for device in devices:
        if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
            raise UserError(f"--devices: {device!r} is not a device; use auto, cpu, cuda or cuda:N")
    return devices


def parse_zyx(text: str | None, what: str = "--tile") -> tuple[int, int, int] | None:
    """Parse ``"16,256,256"`` or ``"16x256x256"`` into ``(Z, Y, X)``; None stays None.

    Raises
    ------
    UserError
        If the text is not three positive integers.
    """
    if text is None:
        return None
    parts = [p for p in re.split(r"[,x×\s]+", text.strip().lower()) if p]
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(
            f"{what} must be three positive integers Z,Y,X (e.g. 16,256,256), got {text!r}"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def _check_bioimageio(model: Path) -> None:
    """Refuse, before anything starts, a bioimage.io package rcanlive cannot run."""
    from ..inference.bioimageio import is_foreign_package

    if not is_foreign_package(model):
        return  # a checkpoint, an artifact, or a package rcanlive exported
    from ..inference.bioimageio import PackageError, check_package

    try:
        check_package(model)
    except (PackageError, ImportError) as exc:
        raise UserError(f"--model: {exc}") from None


#: ``--model bundled:NAME`` names a model shipped with rcanlive
BUNDLED_PREFIX = "bundled:"


def _bundled(name: str) -> Path:
    """The bundled model ``name`` (``--model bundled:phantom-2x``)."""
    from ..model import bundled_model_path

    try:
        path = bundled_model_path(name)
    except ValueError as exc:
        raise UserError(f"--model: {exc}") from None
    if path is None:
        raise UserError(f"--model: this install lacks the bundled model {name!r}; reinstall")
    return path


def resolve_model_path(model: Path | None) -> Path:
    """The model to use: ``--model`` if given (``bundled:NAME`` for a model shipped with
    rcanlive), else the bundled live model.

    Raises
    ------
    UserError
        If no model was given and this install bundles none.
    """
    if model is not None and str(model).startswith(BUNDLED_PREFIX):
        return _bundled(str(model).removeprefix(BUNDLED_PREFIX))
    if model is not None:
        if not model.exists():
            raise UserError(f"model not found: {model}")
        _check_bioimageio(model)
        return model
    from .. import model as model_pkg

    bundled = getattr(model_pkg, "bundled_model_path", None)
    path = bundled() if callable(bundled) else None
    if path is None or not Path(path).exists():
        raise UserError(
            "no --model given and this install has no bundled model; pass a checkpoint "
            "from `rcanlive train` or an artifact from `rcanlive export` with --model"
        )
    return Path(path)
