"""Choose, build and open backends by name: the one entry point callers need."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .artifacts import (
    ARTIFACT_SUFFIXES,
    cache_path,
    default_cache_dir,
    read_manifest,
)
from .base import BACKEND_NAMES, Backend, BackendError, BackendUnavailable
from .devices import device_name, device_type, resolve_device
from .precision import SUPPORTED, resolve_precision

if TYPE_CHECKING:
    from rcanlive.model import LoadedModel

    from .base import BackendName, Precision, TileShape

DEFAULT_STATIC_TILE: TileShape = (16, 256, 256)
"""Tile used to build static-shape backends (compiled, TensorRT) when none is given."""


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """Whether a backend works on this machine, and if not, why.

    Attributes
    ----------
    name
        Registry name.
    available
        True when it can run here on at least one device.
    detail
        Why it is unavailable, or what it runs on (providers, compiler, version).
    devices
        Device types it can use here (``"cpu"``, ``"cuda"``).
    precisions
        Precisions it supports per device type.
    """

    name: str
    available: bool
    detail: str
    devices: tuple[str, ...]
    precisions: dict[str, tuple[str, ...]]


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _probe(name: str) -> tuple[tuple[str, ...], str]:
    """Device types ``name`` works on here, and a one-line detail (or reason)."""
    cuda = _cuda_available()
    if name == "eager":
        import torch

        return (("cpu", "cuda") if cuda else ("cpu",)), f"torch {torch.__version__}"
    if name == "compiled":
        from .compiled import check_compilable, cpp_compiler

        devices: list[str] = []
        reasons: list[str] = []
        for dev in ("cpu", "cuda") if cuda else ("cpu",):
            try:
                check_compilable(dev)
                devices.append(dev)
            except BackendUnavailable as exc:
                reasons.append(str(exc))
        detail = "; ".join(reasons) if not devices else f"Inductor, C++ compiler {cpp_compiler()}"
        return tuple(devices), detail
    if name == "onnx":
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
    if name == "tensorrt":
        from .tensorrt_engine import import_tensorrt

        try:
            trt = import_tensorrt()
        except BackendUnavailable as exc:
            return (), str(exc)
        if not cuda:
            return (), f"tensorrt {trt.__version__} imports, but there is no CUDA GPU"
        return ("cuda",), f"tensorrt {trt.__version__}"
    raise ValueError(name)


def available_backends() -> list[BackendInfo]:
    """Report every backend: does it import and run here, on what, and why not."""
    infos = []
    for name in BACKEND_NAMES[1:]:
        devices, detail = _probe(name)
        infos.append(
            BackendInfo(
                name=name,
                available=bool(devices),
                detail=detail,
                devices=devices,
                precisions={d: SUPPORTED[name][d] for d in devices},
            )
        )
    return infos


def auto_backend(device: str) -> str:
    """The backend ``"auto"`` stands for on ``device``.

    TensorRT whenever it imports and the device is a GPU; otherwise the compiled
    backend if Inductor can compile here (fastest on CPU: AOTInductor in bf16 ran
    about 10x eager fp32 on a 2-core AMX Xeon, see ``benchmarks/RESULTS.md``), then
    ONNX Runtime, then eager.
    """
    kind = device_type(device)
    for name in ("tensorrt", "compiled", "onnx"):
        devices, _ = _probe(name)
        if kind in devices:
            return name
    return "eager"


def _check_name(name: str) -> None:
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")


def _as_path(model: object) -> Path | None:
    return Path(model) if isinstance(model, (str, os.PathLike)) else None


def create_backend(
    name: BackendName | str = "auto",
    model: LoadedModel | str | os.PathLike[str] | None = None,
    precision: Precision | Literal["auto"] | str = "auto",
    device: str = "auto",
    tile_shape: TileShape | None = None,
    *,
    batch_size: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    compile_mode: Literal["aoti", "jit"] = "aoti",
) -> Backend:
    """Build (or load from cache) a backend ready to :meth:`~.base.Backend.predict`.

    Parameters
    ----------
    name
        ``"auto"``, ``"eager"``, ``"compiled"``, ``"onnx"`` or ``"tensorrt"``.
        ``auto`` is :func:`auto_backend` (TensorRT on a GPU when it imports).
    model
        A :class:`~rcanlive.model.LoadedModel`, a checkpoint path, or an artifact
        written by :func:`export_artifact` (``.pt2``, ``.onnx``, ``.engine`` with its
        ``.json`` manifest), which is opened without building anything.
    precision
        ``"auto"`` (best the backend supports here, see
        :func:`~.precision.resolve_precision`), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    tile_shape
        Static ``(Z, Y, X)`` tile for compiled and TensorRT backends (default
        :data:`DEFAULT_STATIC_TILE`); for ONNX a given tile makes the graph static,
        ``None`` keeps it dynamic; eager ignores it.
    batch_size
        Static batch size of compiled, TensorRT and static ONNX graphs.
    cache_dir
        Where built artifacts are cached (default
        :func:`~.artifacts.default_cache_dir`).
    compile_mode
        For ``compiled``: ``"aoti"`` builds (once, cached) an AOTInductor package and
        loads it; ``"jit"`` runs ``torch.compile`` in this process, uncached.

    Raises
    ------
    BackendUnavailable
        If the backend, precision or device does not work here (message says why).
    ValueError
        For unknown names or precisions.
    """
    _check_name(name)
    if model is None:
        raise ValueError("create_backend needs a model (LoadedModel or path)")
    path = _as_path(model)
    if path is not None and path.suffix in ARTIFACT_SUFFIXES.values():
        return open_artifact(path, name, precision, device, tile_shape)

    from .network import as_loaded_model, model_hash

    loaded = as_loaded_model(model)
    dev = resolve_device(device)
    backend = auto_backend(dev) if name == "auto" else name
    devices, detail = _probe(backend)
    if device_type(dev) not in devices:
        raise BackendUnavailable(f"the {backend} backend cannot run on {dev} here: {detail}")
    prec = resolve_precision(str(precision), backend, dev)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if backend == "eager":
        from .eager import EagerBackend

        return EagerBackend(loaded, prec, dev)

    if backend == "compiled":
        from .compiled import CompiledBackend, build_aoti_package

        tile = tile_shape or DEFAULT_STATIC_TILE
        if compile_mode == "jit":
            return CompiledBackend.jit(
                loaded, precision=prec, device=dev, tile_shape=tile, batch_size=batch_size
            )
        import torch

        fingerprint = model_hash(loaded)
        target = cache_path(
            cache,
            "compiled",
            model_hash=fingerprint,
            precision=prec,
            device=device_name(dev),
            device_type=device_type(dev),
            tile_shape=tile,
            batch_size=batch_size,
            torch=torch.__version__,
        )
        built = not _cached(target, fingerprint)
        if built:
            build_aoti_package(
                loaded,
                target,
                precision=prec,
                device=dev,
                tile_shape=tile,
                batch_size=batch_size,
                fingerprint=fingerprint,
            )
        compiled = CompiledBackend.from_package(target, dev)
        compiled.compiled_here = built
        return compiled

    if backend == "onnx":
        import torch

        from .onnx_runtime import OnnxRuntimeBackend, export_onnx

        fingerprint = model_hash(loaded)
        static_batch = batch_size if tile_shape is not None else None
        target = cache_path(
            cache,
            "onnx",
            model_hash=fingerprint,
            precision=prec,
            tile_shape=tile_shape,
            batch_size=static_batch,
            torch=torch.__version__,
        )
        if not _cached(target, fingerprint):
            export_onnx(
                loaded,
                target,
                precision=prec,
                tile_shape=tile_shape,
                batch_size=static_batch,
                device=dev,
                fingerprint=fingerprint,
            )
        return OnnxRuntimeBackend(target, dev)

    if backend == "tensorrt":
        from .tensorrt_engine import TensorRTBackend, build_engine, engine_key

        tile = tile_shape or DEFAULT_STATIC_TILE
        fingerprint = model_hash(loaded)
        target = cache_path(
            cache, "tensorrt", **engine_key(fingerprint, prec, dev, tile, batch_size)
        )
        if not _cached(target, fingerprint):
            build_engine(
                loaded,
                target,
                precision=prec,
                device=dev,
                tile_shape=tile,
                batch_size=batch_size,
                fingerprint=fingerprint,
            )
        return TensorRTBackend(target, dev)

    raise AssertionError(backend)  # pragma: no cover - names are checked above


def _cached(target: Path, fingerprint: str) -> bool:
    """Whether ``target`` holds a complete artifact built from this model."""
    if not target.is_file():
        return False
    try:
        return read_manifest(target).model_hash == fingerprint
    except (FileNotFoundError, ValueError):
        return False


def open_artifact(
    path: str | os.PathLike[str],
    name: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    tile_shape: TileShape | None = None,
) -> Backend:
    """Open an artifact written by :func:`export_artifact` without building anything.

    ``name``, ``precision`` and ``tile_shape`` are checked against its manifest
    (``"auto"``/``None`` accept whatever it holds).
    """
    path = Path(path)
    manifest = read_manifest(path)
    if name not in ("auto", manifest.backend):
        raise BackendError(
            f"{path.name} is a {manifest.backend} artifact; use --backend "
            f"{manifest.backend} (or auto) with it, or pass the checkpoint instead"
        )
    if precision not in ("auto", manifest.precision):
        raise BackendError(
            f"{path.name} was built for {manifest.precision}, not {precision}; export "
            "it again with the precision you want"
        )
    if tile_shape is not None and manifest.tile_shape not in (None, tuple(tile_shape)):
        raise BackendError(
            f"{path.name} was built for tiles of {manifest.tile_shape}, not "
            f"{tuple(tile_shape)}; leave --tile out or export it again"
        )
    dev = resolve_device(manifest.device if device == "auto" else device)
    if manifest.backend == "compiled":
        from .compiled import CompiledBackend

        return CompiledBackend.from_package(path, dev)
    if manifest.backend == "onnx":
        from .onnx_runtime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, dev)
    from .tensorrt_engine import TensorRTBackend

    return TensorRTBackend(path, dev)


def export_artifact(
    name: BackendName | str,
    model: LoadedModel | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    precision: Precision | Literal["auto"] | str = "auto",
    device: str = "auto",
    tile_shape: TileShape | None = None,
    batch_size: int = 1,
) -> Path:
    """Build a backend's artifact from a model and save it (with manifest) at ``out``.

    Parameters
    ----------
    name
        ``"compiled"`` (AOTInductor ``.pt2``), ``"onnx"`` (``.onnx``), ``"tensorrt"``
        (``.engine``) or ``"auto"`` (the one :func:`auto_backend` picks).
    model
        Model or checkpoint path.
    out
        Destination; the backend's suffix is appended when missing.
    precision, device, tile_shape, batch_size
        As in :func:`create_backend`; ONNX with ``tile_shape=None`` is dynamic.

    Returns
    -------
    Path
        The artifact written.
    """
    _check_name(name)
    from .network import as_loaded_model

    loaded = as_loaded_model(model)
    dev = resolve_device(device)
    backend = auto_backend(dev) if name == "auto" else name
    if backend == "eager":
        raise BackendUnavailable(
            "the eager backend runs the checkpoint itself; there is nothing to export "
            "(choose compiled, onnx or tensorrt)"
        )
    devices, detail = _probe(backend)
    if device_type(dev) not in devices:
        raise BackendUnavailable(f"the {backend} backend cannot run on {dev} here: {detail}")
    prec = resolve_precision(str(precision), backend, dev)
    target = Path(out)
    suffix = ARTIFACT_SUFFIXES[backend]
    if target.suffix != suffix:
        target = target.with_name(target.name + suffix)
    if backend == "compiled":
        from .compiled import build_aoti_package

        return build_aoti_package(
            loaded,
            target,
            precision=prec,
            device=dev,
            tile_shape=tile_shape or DEFAULT_STATIC_TILE,
            batch_size=batch_size,
        )
    if backend == "onnx":
        from .onnx_runtime import export_onnx

        return export_onnx(
            loaded,
            target,
            precision=prec,
            tile_shape=tile_shape,
            batch_size=batch_size if tile_shape is not None else None,
            device=dev,
        )
    from .tensorrt_engine import build_engine

    return build_engine(
        loaded,
        target,
        precision=prec,
        device=dev,
        tile_shape=tile_shape or DEFAULT_STATIC_TILE,
        batch_size=batch_size,
    )
