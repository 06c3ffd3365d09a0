"""Read bioimage.io packages: rcanlive's own back into a checkpoint, others into a plan.

A package written by :func:`~.export.export_bioimageio` is read without bioimageio
tools: its ``config.rcanlive`` block and ``weights.pt`` rebuild the exact
:class:`~rcanlive.model.LoadedModel` (the weights' SHA-256 is checked against the
description). Any other package is validated with ``bioimageio.spec`` and checked for
what rcanlive can run: one single-channel 3D input and output of the same shape,
``pytorch_state_dict`` or ``onnx`` weights, and pre/postprocessing that maps to a
whole-volume linear normalisation and its inverse (:class:`PackagePlan`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import MARKER, rdf_name

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

    from rcanlive.model import LoadedModel

#: weight formats rcanlive runs, in the order ``auto`` prefers them
RUNNABLE_FORMATS = ("pytorch_state_dict", "onnx")


class PackageError(ValueError):
    """A bioimage.io package rcanlive cannot use; the message says why and what to do."""


@contextlib.contextmanager
def spec_io() -> Iterator[None]:
    """Run bioimageio code that leaves files open, and close them before leaving.

    bioimageio.spec 0.5.12 opens every file it hashes or reads (``get_reader``) and
    drops the handle without closing it; collected later, each one warns (a
    ResourceWarning, an error under ``-W error``) wherever that happens to be. Here
    they are collected, quietly, before the block ends.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


def package_root(path: str | os.PathLike[str]) -> Path:
    """The zip file or folder of the package at ``path`` (also given its YAML file)."""
    path = Path(path)
    return path.parent if path.is_file() and not zipfile.is_zipfile(path) else path


def read_package_file(path: str | os.PathLike[str], name: str) -> bytes:
    """The bytes of the file ``name`` inside the package at ``path``."""
    root = package_root(path)
    try:
        if root.is_dir():
            return (root / name).read_bytes()
        with zipfile.ZipFile(root) as zf:
            return zf.read(name)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise PackageError(f"{path}: cannot read {name} from the package ({exc})") from None


def read_rdf(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The package's description as a plain dict (YAML, not validated)."""
    import yaml

    name = rdf_name(path)
    if name is None:
        raise PackageError(
            f"{path} is not a bioimage.io package (no rdf.yaml or bioimageio.yaml in it)"
        )
    try:
        rdf = yaml.safe_load(read_package_file(path, name).decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PackageError(f"{path}: {name} is not valid YAML: {exc}") from None
    if not isinstance(rdf, dict):
        raise PackageError(f"{path}: {name} does not hold a description")
    return rdf


def rcanlive_block(rdf: dict[str, Any]) -> dict[str, Any] | None:
    """What rcanlive keeps in a description it wrote (config, normalisation, checkpoint
    metadata); None for a package rcanlive did not write."""
    block = (rdf.get("config") or {}).get(MARKER)
    return block if isinstance(block, dict) else None


def load_bioimageio(path: str | os.PathLike[str], map_location: str = "cpu") -> LoadedModel:
    """The :class:`~rcanlive.model.LoadedModel` a package written by rcanlive came from.

    Weights, architecture, normalisation and metadata are the checkpoint's, so every
    backend restores with it exactly as with the checkpoint.

    Raises
    ------
    PackageError
        For a package rcanlive did not write (it runs through
        :func:`~.backend.open_package_backend` instead), or a damaged one.
    """
    import torch
    from pydantic import ValidationError

    from rcanlive.model import RCAN3D, LoadedModel, ModelConfig, PercentileNormalizer

    rdf = read_rdf(path)
    block = rcanlive_block(rdf)
    if block is None:
        raise PackageError(
            f"{path} is a bioimage.io model that rcanlive did not export, so it has no "
            "RCAN checkpoint inside: run it as packaged with the eager or onnx backend "
            "(it cannot be compiled, exported again or measured by auto)"
        )
    if block.get("version") != 1:
        raise PackageError(
            f"{path}: rcanlive package format {block.get('version')!r} is not supported by "
            "this rcanlive (reads version 1); update rcanlive"
        )
    weights_name = str(block.get("weights", "weights.pt"))
    data = read_package_file(path, weights_name)
    expected = ((rdf.get("weights") or {}).get("pytorch_state_dict") or {}).get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise PackageError(f"{path}: {weights_name} does not match its SHA-256: damaged package")
    try:
        config = ModelConfig.model_validate(block["model_config"])
        normalizer = PercentileNormalizer.from_dict(block["normalizer"])
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        model = RCAN3D.from_config(config)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, ValidationError, RuntimeError) as exc:
        raise PackageError(f"{path}: damaged rcanlive package: {exc}") from None
    model.to(map_location).eval()
    return LoadedModel(model, config, normalizer, dict(block.get("metadata") or {}))


@dataclass(frozen=True, slots=True)
class AffineStep:
    """One linear preprocessing step, ``x -> gain * x + offset``.

    ``kind`` says where gain and offset come from: ``"linear"`` (fixed values),
    ``"percentile"`` (``scale_range``: the current volume's ``p_low``/``p_high``
    percentiles map to 0 and 1) or ``"mean_std"`` (``zero_mean_unit_variance``).
    """

    kind: Literal["linear", "percentile", "mean_std"]
    gain: float = 1.0
    offset: float = 0.0
    p_low: float = 0.0
    p_high: float = 100.0
    eps: float = 1e-6


@dataclass(frozen=True, slots=True)
class AxisSize:
    """Valid sizes of one input axis: ``min + n * step`` (``step == 0``: only ``min``)."""

    min: int
    step: int

    def fit(self, size: int) -> int:
        """The smallest valid size of at least ``size`` (``min`` if that is larger)."""
        if self.step == 0 or size <= self.min:
            return self.min
        return self.min + -(-(size - self.min) // self.step) * self.step


@dataclass(frozen=True, slots=True)
class PackagePlan:
    """How rcanlive runs a foreign package: what :func:`check_package` found.

    Attributes
    ----------
    name
        The model's name.
    formats
        Its weight formats that rcanlive runs, preferred first.
    input_axes, output_axes
        Axis ids of the input and output tensors, in their order (``batch``,
        ``channel``, ``z``, ``y``, ``x``; batch and channel may be absent).
    sizes
        Valid input sizes along z, y and x.
    halo
        Voxels to crop from each side of the output along z, y and x.
    batch
        The only batch size the model takes, or ``None`` for any.
    preprocessing
        The input's normalisation, as linear steps.
    inverse_postprocessing
        True when the postprocessing undoes the preprocessing (output in intensities);
        False when there is none (output in normalised units).
    """

    name: str
    formats: tuple[str, ...]
    input_axes: tuple[str, ...]
    output_axes: tuple[str, ...]
    sizes: tuple[AxisSize, AxisSize, AxisSize]
    halo: tuple[int, int, int]
    batch: int | None
    preprocessing: tuple[AffineStep, ...]
    inverse_postprocessing: bool


def check_package(path: str | os.PathLike[str]) -> PackagePlan:
    """Validate a bioimage.io package and say how rcanlive runs it.

    Raises
    ------
    PackageError
        If bioimage.io finds the description invalid, or rcanlive cannot run the model:
        the message names the reason (axes, channels, weight format, processing, halo).
    FileNotFoundError
        If there is nothing at ``path``.
    ImportError
        Without the ``bioimageio.spec`` package.
    """
    from .analysis import plan_of

    with opened_description(path) as descr:
        return plan_of(descr, str(path))


@contextlib.contextmanager
def opened_description(path: str | os.PathLike[str]) -> Iterator[Any]:
    """The validated spec-0.5 description of the package at ``path``, for a ``with`` block.

    A zip is extracted to a temporary folder first: bioimageio.spec keeps a zip it
    reads from open for as long as the description lives, and its files are only
    needed while the block runs (weights are read into memory there).

    Raises
    ------
    PackageError
        If there is no description, or bioimage.io finds it invalid (with its reasons).
    FileNotFoundError
        If there is nothing at ``path``.
    """
    from .description import require_spec

    require_spec()
    from bioimageio.spec import InvalidDescr, load_model_description

    if not Path(path).exists():
        raise FileNotFoundError(f"bioimage.io package not found: {path}")
    name = rdf_name(path)
    if name is None:
        raise PackageError(f"{path} is not a bioimage.io package (no rdf.yaml or bioimageio.yaml)")
    root = package_root(path)
    with spec_io(), tempfile.TemporaryDirectory(prefix="rcanlive-package-") as tmp:
        if root.is_file():
            with zipfile.ZipFile(root) as zf:
                zf.extractall(tmp)  # (extractall drops absolute and ".." parts of names)
            root = Path(tmp)
        try:
            descr = load_model_description(
                root / name, format_version="latest", perform_io_checks=True
            )
        except ValueError as exc:
            raise PackageError(f"{path}: not a valid bioimage.io model: {exc}") from None
        if isinstance(descr, InvalidDescr):
            raise PackageError(f"{path}: not a valid bioimage.io model: {_problems(descr)}")
        yield descr


def _problems(descr: Any) -> str:
    """The errors bioimage.io's validation found, on one line."""
    summary = getattr(descr, "validation_summary", None)
    found = [
        f"{'.'.join(map(str, e.loc))}: {e.msg}"
        for d in getattr(summary, "details", ())
        for e in getattr(d, "errors", ())
    ]
    return "; ".join(found[:5]) or "the description does not validate"
