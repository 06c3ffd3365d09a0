"""ONNX export of the network, and ONNX Runtime to run it (CPU or CUDA provider).

The graph is exported with torch's ``torch.export``-based exporter (``dynamo=True``,
which needs ``onnxscript``). Precision is baked into the graph: an fp16 graph casts
its float32 input to fp16, runs fp16 convolutions and casts back, so the same file
serves ONNX Runtime and TensorRT's strongly typed builder. bf16 graphs use opset 22
(the first whose Conv takes bfloat16); ONNX Runtime has no bf16 Conv kernel, so they
are only for TensorRT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .artifacts import build_manifest, read_manifest, write_manifest
from .base import BackendBase, BackendError, BackendOutOfMemory, BackendUnavailable
from .devices import device_index, device_type
from .network import prepare_network, quiet_toolchain

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rcanlive.model import LoadedModel

    from .base import Precision, TileShape

INPUT_NAME = "volume"
OUTPUT_NAME = "restored"

# Largest value torch.export accepts for a symbolic dimension's bound.
_MAX_DIM = 1 << 20


def check_onnx_export() -> None:
    """Raise :class:`BackendUnavailable` if the ONNX exporter cannot run here."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(
            f"ONNX export needs the onnx and onnxscript packages ({exc}); "
            "pip install onnx onnxscript"
        ) from None


def export_onnx(
    loaded: LoadedModel,
    path: str | os.PathLike[str],
    *,
    precision: Precision = "fp32",
    tile_shape: TileShape | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    fingerprint: str | None = None,
) -> Path:
    """Export ``loaded`` to an ONNX graph at ``path`` (with manifest ``<path>.json``).

    Parameters
    ----------
    loaded
        Model and normalisation.
    path
        Destination ``.onnx`` file (weights embedded).
    precision
        Arithmetic inside the graph; input and output are float32.
    tile_shape, batch_size
        Static input shape; ``None`` leaves that part dynamic (ONNX Runtime runs any
        shape; TensorRT needs both static).
    device
        Device the manifest records as the intended target (the graph itself is
        portable).
    fingerprint
        Model hash if already computed.
    """
    check_onnx_export()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The graph is traced on CPU: fp16/bf16 convolutions trace fine there.
    net = prepare_network(loaded.model, precision, "cpu", channels_last=False)
    example, dims = _example_input(tile_shape, batch_size)
    opset = 22 if precision == "bf16" else 18
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    _export_program(net, example, dims, opset, tmp)
    os.replace(tmp, path)
    import onnx

    write_manifest(
        path,
        build_manifest(
            loaded,
            "onnx",
            precision,
            device,
            tile_shape=tile_shape,
            batch_size=batch_size,
            versions={"torch": torch.__version__, "onnx": onnx.__version__, "opset": str(opset)},
            fingerprint=fingerprint,
        ),
    )
    return path


def _example_input(
    tile_shape: TileShape | None, batch_size: int | None
) -> tuple[torch.Tensor, dict[int, torch.export.Dim]]:
    """A zero input to trace with, and a dynamic dimension for each part left ``None``."""
    example_tile = tile_shape or (4, 8, 8)
    example = torch.zeros((batch_size or 2, 1, *example_tile), dtype=torch.float32)
    dims: dict[int, torch.export.Dim] = {}
    if batch_size is None:
        dims[0] = torch.export.Dim("batch", min=1, max=_MAX_DIM)
    if tile_shape is None:
        for axis, name in zip((2, 3, 4), ("z", "y", "x"), strict=True):
            dims[axis] = torch.export.Dim(name, min=1, max=_MAX_DIM)
    return example, dims


def _export_program(
    net: torch.nn.Module,
    example: torch.Tensor,
    dims: dict[int, torch.export.Dim],
    opset: int,
    tmp: Path,
) -> None:
    """Trace ``net`` on ``example`` with the dynamo exporter and save the graph to ``tmp``."""
    with quiet_toolchain(), torch.no_grad():
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({**dims},) if dims else None,
            opset_version=opset,
            verbose=False,
            optimize=True,
        )
        if program is None:  # pragma: no cover - dynamo=True always returns one
            raise BackendError("torch.onnx.export returned no program")
        program.save(str(tmp), external_data=False)


def _providers(device: str) -> list[str | tuple[str, dict[str, str]]]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device_type(device) == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailable(
            f"ONNX Runtime here has no CUDAExecutionProvider (it has: "
            f"{', '.join(available)}); install onnxruntime-gpu or restore on the CPU"
        )
    return [
        ("CUDAExecutionProvider", {"device_id": str(device_index(device))}),
        "CPUExecutionProvider",
    ]


def _is_out_of_memory(exc: Exception) -> bool:
    text = str(exc).lower()
    return "failed to allocate memory" in text or "out of memory" in text


class OnnxRuntimeBackend(BackendBase):
    """Run an exported ONNX graph with ONNX Runtime.

    Parameters
    ----------
    path
        ``.onnx`` file written by :func:`export_onnx` (with its manifest).
    device
        ``"cpu"`` (CPUExecutionProvider) or ``"cuda[:N]"`` (CUDAExecutionProvider,
        fed with torch CUDA tensors through I/O binding, no host copies inside).
    threads
        Intra-op threads on CPU; ``None`` lets ONNX Runtime use every physical core.
    """

    name = "onnx"

    def __init__(
        self, path: str | os.PathLike[str], device: str = "cpu", threads: int | None = None
    ):
        import onnxruntime as ort

        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest.backend != "onnx":
            raise BackendError(
                f"{self.path} is not an ONNX graph (manifest says {manifest.backend!r})"
            )
        if manifest.precision == "bf16":
            raise BackendUnavailable(
                f"{self.path} computes in bf16, which ONNX Runtime cannot run (no bf16 "
                "Conv kernel); export it in fp32 or fp16, or use the tensorrt backend"
            )
        self.precision = manifest.precision
        self.device = device
        self.tile_shape = manifest.tile_shape
        self.batch_size = manifest.batch_size
        self.normalizer = manifest.percentile_normalizer()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no per-node placement notes
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session: ort.InferenceSession | None = ort.InferenceSession(
                str(self.path), options, providers=_providers(device)
            )
        except BackendUnavailable:
            raise
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise BackendUnavailable(
                f"ONNX Runtime cannot load {self.path.name} ({self.precision} on "
                f"{device}): {str(exc).splitlines()[0]}"
            ) from None
        self.providers = tuple(self._session.get_providers())

    def predict(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Restore a batch ``(N, 1, Z, Y, X)``; see :class:`~.base.Backend`."""
        if self._session is None:
            raise RuntimeError("onnx backend is closed")
        arr = self.check_batch(batch)
        try:
            if device_type(self.device) == "cuda":
                return self._predict_cuda(arr)
            out = self._session.run([OUTPUT_NAME], {INPUT_NAME: arr})[0]
        except BackendError:
            raise
        except Exception as exc:
            if _is_out_of_memory(exc):
                raise BackendOutOfMemory(
                    f"ONNX Runtime ran out of memory on tiles of {arr.shape[2:]} in "
                    f"batches of {arr.shape[0]}"
                ) from exc
            raise
        return np.ascontiguousarray(out, dtype=np.float32)

    def _predict_cuda(self, arr: NDArray[np.float32]) -> NDArray[np.float32]:
        assert self._session is not None
        index = device_index(self.device)
        x = torch.from_numpy(arr).to(f"cuda:{index}")
        y = torch.empty_like(x)
        torch.cuda.current_stream(index).synchronize()  # x is on the device
        binding = self._session.io_binding()
        binding.bind_input(
            name=INPUT_NAME,
            device_type="cuda",
            device_id=index,
            element_type=np.float32,
            shape=tuple(x.shape),
            buffer_ptr=x.data_ptr(),
        )
        binding.bind_output(
            name=OUTPUT_NAME,
            device_type="cuda",
            device_id=index,
            element_type=np.float32,
            shape=tuple(y.shape),
            buffer_ptr=y.data_ptr(),
        )
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return np.ascontiguousarray(y.cpu().numpy())

    def close(self) -> None:
        """Release the ONNX Runtime session."""
        self._session = None
