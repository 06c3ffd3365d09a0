"""TensorRT: an engine built from the ONNX graph for one static tile, run on CUDA.

Written against TensorRT's documented Python API (10.x and 11.x; 8.6/9.x for the
build path). TensorRT 10.12 deprecated, and 11 removed, the weakly typed precision
flags (``BuilderFlag.FP16``/``BF16``): precision now lives in the graph. So when the
``STRONGLY_TYPED`` network flag exists, the engine is built from an ONNX graph that
already computes in fp16/bf16 (see :mod:`.onnx_runtime`) with a strongly typed
network; only older TensorRT gets an fp32 graph plus the FP16/BF16 builder flags,
with the channel-attention reductions pinned to fp32.

Engines are specific to a GPU model and TensorRT version; built engines are cached
on disk under a key of GPU name, TensorRT version, tile and batch shape, precision
and model hash. At run time torch CUDA tensors are the input and output buffers.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifacts import build_manifest, read_manifest, write_manifest
from .base import BackendBase, BackendError, BackendOutOfMemory, BackendUnavailable
from .devices import device_index, device_name, device_type
from .onnx_runtime import INPUT_NAME, OUTPUT_NAME, export_onnx

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rcanlive.model import LoadedModel

    from .base import Precision, TileShape


def import_tensorrt() -> Any:
    """Import ``tensorrt``, or raise :class:`BackendUnavailable` saying why not."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorRT is not installed ({exc}); pip install tensorrt on a machine "
            "with an NVIDIA GPU, or use the compiled or onnx backend"
        ) from None
    return tensorrt


def check_tensorrt(device: str) -> Any:
    """Return the tensorrt module if it imports and ``device`` is a visible GPU."""
    trt = import_tensorrt()
    import torch

    if device_type(device) != "cuda" or not torch.cuda.is_available():
        raise BackendUnavailable(
            f"TensorRT runs on NVIDIA GPUs only (device {device!r}; torch sees "
            f"{torch.cuda.device_count()} GPU(s))"
        )
    return trt


def engine_key(
    fingerprint: str, precision: str, device: str, tile_shape: TileShape, batch_size: int
) -> dict[str, Any]:
    """The cache key of an engine: everything the serialized plan depends on."""
    trt = import_tensorrt()
    return {
        "gpu": device_name(device),
        "tensorrt": trt.__version__,
        "tile_shape": list(tile_shape),
        "batch_size": batch_size,
        "precision": precision,
        "model_hash": fingerprint,
    }


def build_engine(
    loaded: LoadedModel,
    path: str | os.PathLike[str],
    *,
    precision: Precision,
    device: str,
    tile_shape: TileShape,
    batch_size: int = 1,
    workspace_bytes: int | None = None,
    fingerprint: str | None = None,
) -> Path:
    """Build a TensorRT engine for ``loaded`` and serialize it to ``path``.

    Parameters
    ----------
    loaded
        Model and normalisation.
    path
        Destination ``.engine`` (plan) file; its manifest goes to ``<path>.json``.
    precision
        fp32, fp16 or bf16. fp32 disables TF32 so that it matches eager fp32.
    device
        The CUDA device to build for (engines are specific to the GPU model).
    tile_shape, batch_size
        The static input shape ``(batch_size, 1, *tile_shape)``.
    workspace_bytes
        Upper bound of TensorRT's scratch memory (``None``: TensorRT's default,
        the whole device).
    fingerprint
        Model hash if already computed.
    """
    trt = check_tensorrt(device)
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = _EngineSpec(precision, device, tile_shape, batch_size, workspace_bytes, fingerprint)
    flags = trt.NetworkDefinitionCreationFlag
    strongly_typed = hasattr(flags, "STRONGLY_TYPED")
    logger = trt.Logger(trt.Logger.WARNING)
    with torch.cuda.device(device_index(device)), tempfile.TemporaryDirectory() as tmp:
        onnx_path = _export_graph(loaded, Path(tmp), spec, strongly_typed)
        builder = trt.Builder(logger)
        # The parser owns the parsed weights: it stays alive until the engine is built.
        network, _parser = _parse_network(trt, builder, logger, onnx_path, strongly_typed)
        config = _builder_config(trt, builder, network, spec, strongly_typed)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(
                f"TensorRT failed to build an engine for tiles {tile_shape} x "
                f"{batch_size} in {precision} (see the TensorRT log above)"
            )
        tmp_engine = path.with_name(f".{path.name}.tmp")
        with open(tmp_engine, "wb") as fh:
            fh.write(memoryview(serialized))
        os.replace(tmp_engine, path)
    _write_engine_manifest(trt, loaded, path, spec)
    return path


@dataclass(frozen=True, slots=True)
class _EngineSpec:
    """What :func:`build_engine` builds for: precision, GPU, static input shape, model."""

    precision: Precision
    device: str
    tile_shape: TileShape
    batch_size: int
    workspace_bytes: int | None
    fingerprint: str | None


def _export_graph(loaded: LoadedModel, tmp: Path, spec: _EngineSpec, strongly_typed: bool) -> Path:
    """Export the ONNX graph to parse: in ``spec.precision`` if strongly typed, else fp32."""
    graph_precision: Precision = spec.precision if strongly_typed else "fp32"
    return export_onnx(
        loaded,
        tmp / "network.onnx",
        precision=graph_precision,
        tile_shape=spec.tile_shape,
        batch_size=spec.batch_size,
        device=spec.device,
        fingerprint=spec.fingerprint,
    )


def _parse_network(
    trt: Any, builder: Any, logger: Any, onnx_path: Path, strongly_typed: bool
) -> tuple[Any, Any]:
    """The network definition filled from the ONNX graph at ``onnx_path``, and its parser."""
    flags = trt.NetworkDefinitionCreationFlag
    if strongly_typed:
        network = builder.create_network(1 << int(flags.STRONGLY_TYPED))
    elif hasattr(flags, "EXPLICIT_BATCH"):  # TensorRT 8.x needs it for ONNX
        network = builder.create_network(1 << int(flags.EXPLICIT_BATCH))
    else:
        network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse the ONNX graph: {errors}")
    return network, parser


def _builder_config(
    trt: Any, builder: Any, network: Any, spec: _EngineSpec, strongly_typed: bool
) -> Any:
    """The builder config: workspace limit, no TF32 for fp32, weak precision flags."""
    config = builder.create_builder_config()
    if spec.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    if spec.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if not strongly_typed and spec.precision != "fp32":
        _set_weak_precision(trt, network, config, spec.precision)
    return config


def _write_engine_manifest(trt: Any, loaded: LoadedModel, path: Path, spec: _EngineSpec) -> None:
    """Write the manifest ``<path>.json`` of the engine at ``path``."""
    import torch

    write_manifest(
        path,
        build_manifest(
            loaded,
            "tensorrt",
            spec.precision,
            spec.device,
            tile_shape=spec.tile_shape,
            batch_size=spec.batch_size,
            versions={"tensorrt": trt.__version__, "torch": torch.__version__},
            fingerprint=spec.fingerprint,
        ),
    )


def _set_weak_precision(trt: Any, network: Any, config: Any, precision: Precision) -> None:
    """Pre-strong-typing TensorRT: allow fp16/bf16 kernels, keep reductions in fp32."""
    config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.REDUCE:  # the channel-attention mean
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)


class TensorRTBackend(BackendBase):
    """Run a serialized TensorRT engine with torch CUDA tensors as buffers.

    Parameters
    ----------
    path
        ``.engine`` file written by :func:`build_engine` (with its manifest).
    device
        CUDA device; must be the same GPU model the engine was built on.
    """

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], device: str = "cuda"):
        trt = check_tensorrt(device)
        import torch

        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest.backend != "tensorrt" or manifest.tile_shape is None:
            raise BackendError(
                f"{self.path} is not a TensorRT engine (manifest says {manifest.backend!r})"
            )
        built_with = manifest.versions.get("tensorrt")
        if built_with != trt.__version__ or manifest.device_name != device_name(device):
            raise BackendUnavailable(
                f"{self.path} was built for {manifest.device_name} with TensorRT "
                f"{built_with}; this is {device_name(device)} with TensorRT "
                f"{trt.__version__}: export it again here"
            )
        self.precision = manifest.precision
        self.device = device
        self.tile_shape = manifest.tile_shape
        self.batch_size = manifest.batch_size or 1
        self.normalizer = manifest.percentile_normalizer()
        self._index = device_index(device)
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self._index):
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self._engine is None:
                raise BackendError(f"TensorRT could not deserialize {self.path}")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise BackendOutOfMemory(
                    f"TensorRT could not create an execution context for {self.path} "
                    "(not enough GPU memory for its activations)"
                )
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        self._input = INPUT_NAME if INPUT_NAME in inputs else inputs[0]
        self._output = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]
        self._output_shape = tuple(self._engine.get_tensor_shape(self._output))

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Restore a batch ``(batch_size, 1, *tile_shape)``; see :class:`~.base.Backend`."""
        if self._context is None:
            raise RuntimeError("tensorrt backend is closed")
        torch = self._torch
        arr = self.check_batch(batch)
        with torch.cuda.device(self._index):
            x = torch.from_numpy(arr).to(f"cuda:{self._index}")
            y = torch.empty(self._output_shape, dtype=torch.float32, device=x.device)
            stream = torch.cuda.current_stream(self._index)
            self._context.set_tensor_address(self._input, x.data_ptr())
            self._context.set_tensor_address(self._output, y.data_ptr())
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise BackendError("TensorRT execution failed (see the TensorRT log)")
            stream.synchronize()
            return np.ascontiguousarray(y.cpu().numpy())

    def close(self) -> None:
        """Destroy the execution context and the engine."""
        self._context = None
        self._engine = None
