"""The table of inference backends: one entry per backend, everything about it in one place.

An entry names the backend and says on which devices and in which precisions it runs,
how to tell whether it works here (``probe``), and, for backends that run a built
artifact, its file suffix, its cache key, how to build it and how to open it. The
registry (:mod:`.registry`), ``auto``'s candidates, the CLI's choices and artifact
detection all read this table: adding a backend means adding one entry.

Importing this module imports neither torch nor any runtime: entries call into their
backend's module only when used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from rcanlive.model import LoadedModel

    from .base import Backend, Precision, TileShape


@dataclass(frozen=True, slots=True)
class Build:
    """What a backend is asked to build or open: model, precision, device, shapes."""

    loaded: LoadedModel
    precision: Precision
    device: str
    tile_shape: TileShape | None
    batch_size: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """One backend.

    Attributes
    ----------
    name
        Its name on the command line and in manifests.
    precisions
        Precisions it runs, per device type (``"cpu"``, ``"cuda"``).
    probe
        ``probe(cuda_available) -> (device types it works on here, detail or reason)``.
    suffix
        Suffix of its exported artifact; ``None`` for a backend that runs the checkpoint.
    static_tile
        Built for one tile shape (``DEFAULT_STATIC_TILE`` when none is given).
    open_model
        Opens it on a model (backends without artifacts).
    cache_key
        What its cached artifact depends on besides the model (versions, GPU, shapes).
    build
        Writes its artifact (with manifest) at a path and returns the path.
    open_artifact
        Opens an artifact on a device.
    """

    name: str
    precisions: Mapping[str, tuple[Precision, ...]]
    probe: Callable[[bool], tuple[tuple[str, ...], str]]
    suffix: str | None = None
    static_tile: bool = False
    open_model: Callable[[Build], Backend] | None = None
    cache_key: Callable[[Build], dict[str, Any]] | None = None
    build: Callable[[Build, Path], Path] | None = None
    open_artifact: Callable[[Path, str], Backend] | None = None


# -- eager ------------------------------------------------------------------------------
def _eager_probe(cuda: bool) -> tuple[tuple[str, ...], str]:
    import torch

    return (("cpu", "cuda") if cuda else ("cpu",)), f"torch {torch.__version__}"


def _eager_open(b: Build) -> Backend:
    from .eager import EagerBackend

    return EagerBackend(b.loaded, b.precision, b.device)


# -- compiled (AOTInductor) ---------------------------------------------------------------
def _compiled_probe(cuda: bool) -> tuple[tuple[str, ...], str]:
    from .base import BackendUnavailable
    from .compiled import check_compilable, cpp_compiler

    devices, reasons = [], []
    for dev in ("cpu", "cuda") if cuda else ("cpu",):
        try:
            check_compilable(dev)
            devices.append(dev)
        except BackendUnavailable as exc:
            reasons.append(str(exc))
    detail = "; ".join(reasons) if not devices else f"Inductor, C++ compiler {cpp_compiler()}"
    return tuple(devices), detail


def _compiled_key(b: Build) -> dict[str, Any]:
    import torch

    from .devices import device_name, device_type

    return {
        "model_hash": b.fingerprint,
        "precision": b.precision,
        "device": device_name(b.device),
        "device_type": device_type(b.device),
        "tile_shape": b.tile_shape,
        "batch_size": b.batch_size,
        "torch": torch.__version__,
    }


def _static_build(module: str, function: str) -> Callable[[Build, Path], Path]:
    """A ``build`` for a static-shape artifact made by ``module.function`` (imported
    when it is called): AOTInductor packages and TensorRT engines take the same arguments."""

    def build(b: Build, target: Path) -> Path:
        make = getattr(importlib.import_module(module, __package__), function)
        assert b.tile_shape is not None
        return make(  # type: ignore[no-any-return]
            b.loaded,
            target,
            precision=b.precision,
            device=b.device,
            tile_shape=b.tile_shape,
            batch_size=b.batch_size,
            fingerprint=b.fingerprint,
        )

    return build


def _compiled_open(path: Path, device: str) -> Backend:
    from .compiled import CompiledBackend

    return CompiledBackend.from_package(path, device)


# -- ONNX Runtime -----------------------------------------------------------------------
def _onnx_probe(cuda: bool) -> tuple[tuple[str, ...], str]:
    from .base import BackendUnavailable
    from .onnx_runtime import check_onnx_export

    try:
        check_onnx_export()
        import onnxruntime as ort
    except (BackendUnavailable, ImportError) as exc:
        return (), str(exc)
    providers = ort.get_available_providers()
    devices = ["cpu"]
    if cuda and "CUDAExecutionProvider" in providers:
        devices.append("cuda")
    return tuple(devices), f"onnxruntime {ort.__version__} ({', '.join(providers)})"


def _onnx_static_batch(b: Build) -> int | None:
    return b.batch_size if b.tile_shape is not None else None  # no tile: dynamic graph


def _onnx_key(b: Build) -> dict[str, Any]:
    import torch

    return {
        "model_hash": b.fingerprint,
        "precision": b.precision,
        "tile_shape": b.tile_shape,
        "batch_size": _onnx_static_batch(b),
        "torch": torch.__version__,
    }


def _onnx_build(b: Build, target: Path) -> Path:
    from .onnx_runtime import export_onnx

    return export_onnx(
        b.loaded,
        target,
        precision=b.precision,
        tile_shape=b.tile_shape,
        batch_size=_onnx_static_batch(b),
        device=b.device,
        fingerprint=b.fingerprint,
    )


def _onnx_open(path: Path, device: str) -> Backend:
    from .onnx_runtime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, device)


# -- TensorRT ---------------------------------------------------------------------------
def _tensorrt_probe(cuda: bool) -> tuple[tuple[str, ...], str]:
    from .base import BackendUnavailable
    from .tensorrt_engine import import_tensorrt

    try:
        trt = import_tensorrt()
    except BackendUnavailable as exc:
        return (), str(exc)
    if not cuda:
        return (), f"tensorrt {trt.__version__} imports, but there is no CUDA GPU"
    return ("cuda",), f"tensorrt {trt.__version__}"


def _tensorrt_key(b: Build) -> dict[str, Any]:
    from .tensorrt_engine import engine_key

    assert b.tile_shape is not None
    return engine_key(b.fingerprint, b.precision, b.device, b.tile_shape, b.batch_size)


def _tensorrt_open(path: Path, device: str) -> Backend:
    from .tensorrt_engine import TensorRTBackend

    return TensorRTBackend(path, device)


_ALL3: tuple[Precision, ...] = ("fp32", "bf16", "fp16")

#: every backend, in the order ``auto``'s rule falls back through them
BACKENDS: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry(
            "eager",
            {"cpu": _ALL3, "cuda": _ALL3},
            _eager_probe,
            open_model=_eager_open,
        ),
        BackendEntry(
            "compiled",
            {"cpu": _ALL3, "cuda": _ALL3},
            _compiled_probe,
            suffix=".pt2",
            static_tile=True,
            cache_key=_compiled_key,
            build=_static_build(".compiled", "build_aoti_package"),
            open_artifact=_compiled_open,
        ),
        BackendEntry(
            # ONNX Runtime has no bf16 Conv kernel on CPU or CUDA
            "onnx",
            {"cpu": ("fp32", "fp16"), "cuda": ("fp32", "fp16")},
            _onnx_probe,
            suffix=".onnx",
            cache_key=_onnx_key,
            build=_onnx_build,
            open_artifact=_onnx_open,
        ),
        BackendEntry(
            "tensorrt",
            {"cpu": (), "cuda": _ALL3},
            _tensorrt_probe,
            suffix=".engine",
            static_tile=True,
            cache_key=_tensorrt_key,
            build=_static_build(".tensorrt_engine", "build_engine"),
            open_artifact=_tensorrt_open,
        ),
    )
}

BACKEND_NAMES: tuple[str, ...] = ("auto", *BACKENDS)
"""Names accepted wherever a backend is chosen (``auto`` first)."""

ARTIFACT_SUFFIXES: dict[str, str] = {
    e.name: e.suffix for e in BACKENDS.values() if e.suffix is not None
}
"""Artifact file suffix of each backend that builds one."""


def entry(name: str) -> BackendEntry:
    """The table entry of ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}"
        ) from None


def backend_of_suffix(suffix: str) -> str | None:
    """The backend whose artifacts end in ``suffix``, if any."""
    return next((n for n, s in ARTIFACT_SUFFIXES.items() if s == suffix), None)
