"""What this CPU can do fast, read from its flags rather than guessed.

oneDNN's own test (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) is True on every
AVX-512 CPU, yet without AVX512-BF16 or AMX bf16 is emulated there and ran 2.6x slower
than fp32 (measured on a 2-core Xeon). So the flags decide.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

#: flags that decide bf16/int8 convolution speed
SPEED_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx2")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (from ``/proc/cpuinfo``; empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name and the flags of :data:`SPEED_FLAGS` it has."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    have = ",".join(f for f in SPEED_FLAGS if f in cpu_flags())
    return f"{name} [{have}]"


def has_native_bf16() -> bool:
    """Whether bf16 convolutions run natively (AVX512-BF16 or AMX-BF16), not emulated.

    Where the flags cannot be read (not Linux), oneDNN's own answer is used.
    """
    flags = cpu_flags()
    if flags:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    try:
        import torch

        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError, ImportError):  # private op missing in some builds
        return False
