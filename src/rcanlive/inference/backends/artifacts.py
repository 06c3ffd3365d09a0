"""Built artifacts on disk: their manifest, and the cache that keys them.

Every artifact (AOTInductor ``.pt2`` package, ``.onnx`` graph, TensorRT ``.engine``)
has a JSON manifest next to it, ``<artifact>.json``, holding what is needed to use it
without the checkpoint: normalisation, tile and batch shape, precision, and the hash
of the model it was built from. Artifacts built on the fly are cached under
:func:`rcanlive.cache.default_cache_dir`, one file per key, so a second run never compiles again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from rcanlive.config import ConfigError, FrozenModel
from rcanlive.model import PercentileNormalizer

if TYPE_CHECKING:
    from rcanlive.model import LoadedModel

ArtifactBackend = Literal["compiled", "onnx", "tensorrt"]


MANIFEST_FORMAT = "rcanlive-artifact"


class ArtifactManifest(FrozenModel):
    """What a built artifact is and how to feed it.

    Attributes
    ----------
    backend
        Backend that runs it.
    precision
        Arithmetic inside the artifact (inputs/outputs are float32).
    device
        ``"cpu"`` or ``"cuda"``: where it runs.
    device_name
        CPU model or GPU name it was built on (compiled code is specific to it).
    tile_shape
        Static ``(Z, Y, X)`` tile, or ``None`` when the graph takes any shape.
    batch_size
        Static batch size, or ``None`` for any.
    model_hash
        :func:`~rcanlive.inference.backends.network.model_hash` of the source model.
    architecture
        :class:`~rcanlive.model.ModelConfig` fields of the source model.
    normalization
        :class:`~rcanlive.model.PercentileNormalizer` fields the model expects.
    versions
        Library versions it was built with (torch, onnxruntime, tensorrt, ...).
    """

    format: Literal["rcanlive-artifact"] = "rcanlive-artifact"
    backend: ArtifactBackend
    precision: Literal["fp32", "bf16", "fp16"]
    device: Literal["cpu", "cuda"]
    device_name: str
    tile_shape: tuple[int, int, int] | None = None
    batch_size: int | None = Field(None, ge=1)
    model_hash: str
    architecture: dict[str, Any]
    normalization: dict[str, Any]
    versions: dict[str, str] = Field(default_factory=dict)

    def percentile_normalizer(self) -> PercentileNormalizer:
        """The normalisation as an object."""
        return PercentileNormalizer.from_dict(self.normalization)


def manifest_path(artifact: str | os.PathLike[str]) -> Path:
    """The manifest file of ``artifact``: the same name with ``.json`` appended."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_manifest(artifact: str | os.PathLike[str], manifest: ArtifactManifest) -> Path:
    """Write ``manifest`` next to ``artifact``; return the manifest path."""
    path = manifest_path(artifact)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(artifact: str | os.PathLike[str]) -> ArtifactManifest:
    """Read the manifest of ``artifact``.

    Raises
    ------
    FileNotFoundError
        If the artifact or its manifest is missing.
    ConfigError
        If the manifest is not valid.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise FileNotFoundError(f"model artifact not found: {artifact}")
    path = manifest_path(artifact)
    if not path.is_file():
        raise FileNotFoundError(
            f"{artifact} has no manifest {path.name}; artifacts written by "
            "`rcanlive export` carry one — export the checkpoint again"
        )
    try:
        return ArtifactManifest.model_validate(json.loads(path.read_text("utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a valid rcanlive artifact manifest: {exc}") from None


def is_artifact(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an exported artifact (has a known suffix and a manifest)."""
    path = Path(path)
    from .table import backend_of_suffix

    return backend_of_suffix(path.suffix) is not None and manifest_path(path).is_file()


def cache_path(cache_dir: str | os.PathLike[str], backend: ArtifactBackend, **key: Any) -> Path:
    """Path of the cached artifact for ``key`` (hashed) under ``cache_dir/backend``.

    The key should hold everything the artifact depends on: model hash, precision,
    device name, tile and batch shape, library versions.
    """
    text = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    folder = Path(cache_dir) / backend
    folder.mkdir(parents=True, exist_ok=True)
    from .table import ARTIFACT_SUFFIXES

    return folder / f"{digest}{ARTIFACT_SUFFIXES[backend]}"


def build_manifest(
    loaded: LoadedModel,
    backend: ArtifactBackend,
    precision: str,
    device: str,
    *,
    tile_shape: tuple[int, int, int] | None,
    batch_size: int | None,
    versions: dict[str, str],
    fingerprint: str | None = None,
) -> ArtifactManifest:
    """The manifest of an artifact built from ``loaded``.

    ``fingerprint`` is the model hash when the caller already computed it.
    """
    from .devices import device_name, device_type
    from .network import model_hash

    return ArtifactManifest(
        backend=backend,
        precision=precision,  # type: ignore[arg-type]
        device=device_type(device),  # type: ignore[arg-type]
        device_name=device_name(device),
        tile_shape=tile_shape,
        batch_size=batch_size,
        model_hash=fingerprint or model_hash(loaded),
        architecture=loaded.model_config.model_dump(),
        normalization=loaded.normalizer.to_dict(),
        versions=versions,
    )
