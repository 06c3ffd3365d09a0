"""Backends with the property under test, for the restoration worker tests.

Each is a real eager backend (the tiny test model) wrapped to misbehave the way a real
one can: hold the GIL for seconds (as AOTInductor's runtime does), keep every core busy,
abort the process, or wait. They are opened in a worker process, so they are top-level
functions of an importable module (pickled by reference under ``spawn``).
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcanlive.inference.recipe import BackendRecipe

if TYPE_CHECKING:
    import numpy as np


class _Wrapped:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.misbehave()
        return self.inner.predict(batch)

    def misbehave(self) -> None:
        pass

    def close(self) -> None:
        self.inner.close()


class _HoldsGIL(_Wrapped):
    hold_s = 0

    def misbehave(self) -> None:
        # PyDLL keeps the GIL during the foreign call, like AOTInductor's run():
        # no other thread of this process runs for hold_s seconds
        ctypes.PyDLL(None).sleep(int(self.hold_s))


class _BusyCores(_Wrapped):
    busy_s = 0.0

    def misbehave(self) -> None:
        import torch

        a = torch.randn(512, 512)
        end = time.perf_counter() + self.busy_s
        while time.perf_counter() < end:  # torch's intra-op threads: every core
            a = torch.tanh(a @ a)


class _Aborts(_Wrapped):
    on_call = 3

    def misbehave(self) -> None:
        if self.calls == self.on_call:
            os.abort()


class _Waits(_Wrapped):
    delay_s = 0.0
    release: Path | None = None

    def misbehave(self) -> None:
        end = time.monotonic() + self.delay_s
        while time.monotonic() < end:
            if self.release is not None and self.release.exists():
                return
            time.sleep(0.02)


def _eager(model: Path) -> Any:
    return BackendRecipe(Path(model), "eager", "fp32", "cpu")()


def holds_gil(model: Path, hold_s: int) -> Any:
    backend = _HoldsGIL(_eager(model))
    backend.hold_s = hold_s
    return backend


def busy_cores(model: Path, busy_s: float) -> Any:
    backend = _BusyCores(_eager(model))
    backend.busy_s = busy_s
    return backend


def aborts(model: Path, on_call: int) -> Any:
    backend = _Aborts(_eager(model))
    backend.on_call = on_call
    return backend


def waits(model: Path, delay_s: float, release: Path | None = None) -> Any:
    backend = _Waits(_eager(model))
    backend.delay_s, backend.release = delay_s, release
    return backend


def fails_to_open(model: Path) -> Any:
    raise RuntimeError("CUDA error: no CUDA-capable device is detected")
