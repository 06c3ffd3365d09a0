"""Precision choices: what ``"auto"`` means on each backend and device."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ...cpu import has_native_bf16
from .base import PRECISIONS, BackendUnavailable, Precision
from .devices import device_index, device_type

if TYPE_CHECKING:
    import torch


def torch_dtype(precision: Precision) -> torch.dtype:
    """The torch dtype of ``precision``."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def resolve_precision(precision: str, backend: str, device: str) -> Precision:
    """Turn ``"auto"`` into the fastest precision ``backend`` supports on ``device``.

    ``auto`` is: on CUDA fp16 for ONNX Runtime and TensorRT, and bf16 for torch
    (fp16 when the GPU has no bf16); on CPU bf16 for torch when the CPU has native
    bf16 (AVX512-BF16/AMX), else fp32. An explicit precision is checked against what
    the backend supports.

    Raises
    ------
    BackendUnavailable
        If the backend cannot run ``precision`` on ``device``.
    ValueError
        If ``precision`` is not auto, fp32, bf16 or fp16.
    """
    from .table import entry

    kind = device_type(device)
    supported = entry(backend).precisions[kind]
    if precision == "auto":
        if kind == "cuda":
            if backend in ("onnx", "tensorrt"):
                return "fp16"
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if backend in ("eager", "compiled") and has_native_bf16():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    if precision not in supported:
        can = ", ".join(supported) or "nothing"
        raise BackendUnavailable(
            f"the {backend} backend cannot run {precision} on {kind} (it runs: {can})"
        )
    if kind == "cuda" and precision == "bf16" and backend != "onnx":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise BackendUnavailable(f"GPU {device_index(device)} has no bf16 support; use fp16")
    return cast("Precision", precision)
