"""Which device to run on, and a stable name for it (engines are built per device)."""

from __future__ import annotations

import contextlib
import platform
from functools import cache
from pathlib import Path

from .base import BackendUnavailable


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a concrete device.

    ``"auto"`` is the first GPU when torch sees one, else the CPU.

    Raises
    ------
    BackendUnavailable
        If a GPU is asked for and torch sees none (or not that many).
    ValueError
        If ``device`` is not one of the forms above.
    """
    import torch

    text = device.strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device {device!r} asked for, but torch sees no CUDA GPU here "
                f"(torch {torch.__version__}); use the cpu device"
            )
        if ":" in text:
            index = text.split(":", 1)[1]
            if not index.isdigit():
                raise ValueError(f"bad device {device!r}; use cpu, cuda or cuda:N")
            if int(index) >= torch.cuda.device_count():
                raise BackendUnavailable(
                    f"device {device!r} asked for, but only "
                    f"{torch.cuda.device_count()} GPU(s) are visible"
                )
        return text
    raise ValueError(f"bad device {device!r}; use auto, cpu, cuda or cuda:N")


def device_type(device: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a resolved device string."""
    return device.split(":", 1)[0]


def device_index(device: str) -> int:
    """CUDA ordinal of ``"cuda"``/``"cuda:N"`` (0 for plain ``"cuda"``)."""
    return int(device.split(":", 1)[1]) if ":" in device else 0


def device_name(device: str) -> str:
    """Human-readable hardware name: the GPU's name, or the CPU model.

    Compiled artifacts are specific to it (instruction set, SM architecture), so it is
    part of every cache key.
    """
    if device_type(device) == "cuda":
        import torch

        return str(torch.cuda.get_device_name(device_index(device)))
    return _cpu_model()


@cache
def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def strict_fp32(device: str, precision: str) -> contextlib.AbstractContextManager[object]:
    """Context in which fp32 really is fp32: no TF32 cuDNN convolutions on CUDA.

    cuDNN uses TF32 (10-bit mantissa) for fp32 convolutions by default on Ampere
    and newer, which is a reduced precision in all but name.
    """
    if device_type(device) == "cuda" and precision == "fp32":
        import torch

        return torch.backends.cudnn.flags(
            enabled=True, benchmark=True, deterministic=False, allow_tf32=False
        )
    return contextlib.nullcontext()
