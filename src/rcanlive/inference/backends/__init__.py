"""Inference backends behind one protocol, chosen by name or by ``auto``.

=============  ==========================================================  ==========
name           what runs the network                                        tile
=============  ==========================================================  ==========
``eager``      PyTorch, CPU or CUDA, fp32/bf16/fp16 (autocast)              any
``compiled``   Inductor: AOTInductor ``.pt2`` package (cached) or           static
               ``torch.compile``
``onnx``       ONNX Runtime, CPU or CUDA provider, fp32/fp16                any/static
``tensorrt``   TensorRT engine from the ONNX graph, fp32/fp16/bf16, cached  static
=============  ==========================================================  ==========

Heavy modules (torch, onnxruntime, tensorrt) are imported by the backend modules,
which are loaded only when a backend is created.
"""

from __future__ import annotations

from ...cache import default_cache_dir
from .artifacts import ArtifactManifest, is_artifact, read_manifest
from .base import (
    PRECISIONS,
    Backend,
    BackendError,
    BackendName,
    BackendOutOfMemory,
    BackendUnavailable,
    Precision,
    TileShape,
)
from .registry import (
    DEFAULT_STATIC_TILE,
    BackendInfo,
    auto_backend,
    available_backends,
    create_backend,
    export_artifact,
    open_artifact,
)
from .table import BACKEND_NAMES, BACKENDS, BackendEntry

__all__ = [
    "BACKENDS",
    "BACKEND_NAMES",
    "DEFAULT_STATIC_TILE",
    "PRECISIONS",
    "ArtifactManifest",
    "Backend",
    "BackendEntry",
    "BackendError",
    "BackendInfo",
    "BackendName",
    "BackendOutOfMemory",
    "BackendUnavailable",
    "Precision",
    "TileShape",
    "auto_backend",
    "available_backends",
    "create_backend",
    "default_cache_dir",
    "export_artifact",
    "is_artifact",
    "open_artifact",
    "read_manifest",
]
