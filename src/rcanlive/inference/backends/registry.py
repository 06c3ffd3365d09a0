"""Choose, build and open backends by name: the one entry point callers need."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ...cache import default_cache_dir
from .artifacts import cache_path, read_manifest
from .base import Backend, BackendError, BackendUnavailable
from .devices import device_type, resolve_device
from .precision import resolve_precision
from .table import ARTIFACT_SUFFIXES, BACKEND_NAMES, BACKENDS, Build, entry

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
    return entry(name).probe(_cuda_available())


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
                precisions={d: BACKENDS[name].precisions[d] for d in devices},
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
    for name in ("tensorrt", "compiled", "onnx"):  # (the rule; --backend auto measures)
        devices, _ = _probe(name)
        if kind in devices:
            return name
    return "eager"


def _check_name(name: str) -> None:
    if name != "auto":
        entry(name)


def _as_path(model: object) -> Path | None:
    return Path(model) if isinstance(model, (str, os.PathLike)) else None


# (long only by its numpy-style docstring: the body is the table lookup and the cache)
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
        A :class:`~rcanlive.model.LoadedModel`, a checkpoint path, an artifact
        written by :func:`export_artifact` (``.pt2``, ``.onnx``, ``.engine`` with its
        ``.json`` manifest), which is opened without building anything, or a
        bioimage.io package (one exported by rcanlive is its checkpoint; any other
        runs as packaged, see :func:`~rcanlive.inference.bioimageio.open_package_backend`).
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
    from ..bioimageio import is_foreign_package

    if path is not None and is_foreign_package(path):  # not from rcanlive: run as packaged
        from ..bioimageio import open_package_backend

        return open_package_backend(path, str(name), str(precision), device, tile_shape)

    from .network import as_loaded_model, model_hash

    loaded = as_loaded_model(model)
    dev = resolve_device(device)
    chosen = entry(auto_backend(dev) if name == "auto" else name)
    devices, detail = chosen.probe(_cuda_available())
    if device_type(dev) not in devices:
        raise BackendUnavailable(f"the {chosen.name} backend cannot run on {dev} here: {detail}")
    prec = resolve_precision(str(precision), chosen.name, dev)
    tile = tile_shape or (DEFAULT_STATIC_TILE if chosen.static_tile else None)
    build = Build(loaded, prec, dev, tile, batch_size, model_hash(loaded))
    if chosen.open_model is not None:
        return chosen.open_model(build)
    if chosen.name == "compiled" and compile_mode == "jit":
        from .compiled import CompiledBackend

        assert tile is not None
        return CompiledBackend.jit(
            loaded, precision=prec, device=dev, tile_shape=tile, batch_size=batch_size
        )
    assert chosen.cache_key and chosen.build and chosen.open_artifact
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_path(cache, chosen.name, **chosen.cache_key(build))  # type: ignore[arg-type]
    built = not _cached(target, build.fingerprint)
    if built:
        chosen.build(build, target)
    backend = chosen.open_artifact(target, dev)
    backend.compiled_here = built  # type: ignore[attr-defined]
    return backend


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
            f"{path.name} is a {manifest.backend} artifact; use the "
            f"{manifest.backend} backend (or auto) with it, or pass the checkpoint instead"
        )
    if precision not in ("auto", manifest.precision):
        raise BackendError(
            f"{path.name} was built for {manifest.precision}, not {precision}; export "
            "it again with the precision you want"
        )
    if tile_shape is not None and manifest.tile_shape not in (None, tuple(tile_shape)):
        raise BackendError(
            f"{path.name} was built for tiles of {manifest.tile_shape}, not "
            f"{tuple(tile_shape)}; give no tile, or export it again"
        )
    dev = resolve_device(manifest.device if device == "auto" else device)
    opener = entry(manifest.backend).open_artifact
    assert opener is not None
    return opener(path, dev)


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
    chosen = entry(auto_backend(dev) if name == "auto" else name)
    if chosen.build is None or chosen.suffix is None:
        raise BackendUnavailable(
            f"the {chosen.name} backend runs the checkpoint itself; there is nothing to "
            f"export (choose {', '.join(ARTIFACT_SUFFIXES)})"
        )
    devices, detail = chosen.probe(_cuda_available())
    if device_type(dev) not in devices:
        raise BackendUnavailable(f"the {chosen.name} backend cannot run on {dev} here: {detail}")
    prec = resolve_precision(str(precision), chosen.name, dev)
    target = Path(out)
    if target.suffix != chosen.suffix:
        target = target.with_name(target.name + chosen.suffix)
    tile = tile_shape or (DEFAULT_STATIC_TILE if chosen.static_tile else None)
    from .network import model_hash

    return chosen.build(Build(loaded, prec, dev, tile, batch_size, model_hash(loaded)), target)
