"""Speed and memory of each backend × precision × volume shape, measured in one run.

Every case restores the same synthetic volume through :func:`predict_volume` (so
normalisation, tiling and host↔device copies are included) and is compared with
eager fp32 on the same shape in the same process.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .backends import BackendError, create_backend
from .backends.devices import device_type, resolve_device
from .backends.precision import resolve_precision
from .tiling import predict_volume

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import NDArray

    from rcanlive.model import LoadedModel

    from .backends.base import TileShape


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One benchmark case.

    Attributes
    ----------
    backend, precision, shape, device
        What was measured; ``shape`` is the volume ``(Z, Y, X)``.
    tile_shape
        Tile the volume was cut into (equal to ``shape``: one tile).
    setup_s
        Seconds to create the backend (export/compile/build, or load from cache).
    seconds
        Median seconds per volume over the timed repeats; ``None`` when skipped.
    mvoxel_per_s
        Volume voxels per second, in millions.
    speedup
        Eager fp32 seconds on the same shape divided by ``seconds``.
    peak_bytes
        Peak memory above the level before the first run (CUDA: max allocated by
        torch; CPU: resident set size, sampled every few ms).
    note
        Why the case was skipped, or ``""``.
    """

    backend: str
    precision: str
    shape: TileShape
    device: str
    tile_shape: TileShape | None = None
    setup_s: float | None = None
    seconds: float | None = None
    mvoxel_per_s: float | None = None
    speedup: float | None = None
    peak_bytes: int | None = None
    note: str = ""


class PeakMemory:
    """Context manager measuring peak memory growth while its body runs.

    On CUDA it reads torch's allocator peak (memory that ONNX Runtime or TensorRT
    allocate outside torch is not included); on CPU it samples the process's resident
    set size from ``/proc/self/statm`` in a background thread.
    """

    def __init__(self, device: str, interval_s: float = 0.002):
        self.device = device
        self.interval_s = interval_s
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0
        self._peak = 0

    @staticmethod
    def rss_bytes() -> int | None:
        """Current resident set size of this process, or None where unreadable."""
        try:
            with open("/proc/self/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = self.rss_bytes()
            if rss is not None and rss > self._peak:
                self._peak = rss

    def __enter__(self) -> PeakMemory:
        if device_type(self.device) == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        rss = self.rss_bytes()
        if rss is not None:
            self._base = self._peak = rss
            self._thread = threading.Thread(target=self._sample, daemon=True, name="rss")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if device_type(self.device) == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            rss = self.rss_bytes()
            if rss is not None:
                self._peak = max(self._peak, rss)
            self.peak_bytes = self._peak - self._base


def synthetic_volume(shape: Sequence[int], seed: int = 0) -> NDArray[np.uint16]:
    """A camera-like uint16 volume: offset 100, sparse bright blobs, Poisson noise."""
    rng = np.random.default_rng(seed)
    signal = rng.gamma(0.3, 40.0, size=tuple(shape))
    return (100 + rng.poisson(signal)).astype(np.uint16)


def default_precisions(backend: str, device: str) -> list[str]:
    """fp32 plus the precision ``auto`` picks for ``backend`` on ``device``."""
    best = resolve_precision("auto", backend, device)
    return ["fp32"] if best == "fp32" else ["fp32", best]


def run_benchmark(
    model: LoadedModel,
    shapes: Sequence[TileShape],
    backends: Sequence[str],
    precisions: Sequence[str] | None = None,
    *,
    device: str = "auto",
    repeats: int = 3,
    warmup: int = 1,
    tile_shape: TileShape | None = None,
    batch_size: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    on_result: Callable[[BenchResult], None] | None = None,
) -> list[BenchResult]:
    """Measure every backend × precision × shape; eager fp32 always runs first.

    Parameters
    ----------
    model
        The network to run (its weights do not change the speed).
    shapes
        Volume shapes ``(Z, Y, X)``.
    backends
        Backend names (not ``auto``).
    precisions
        Precisions to try on every backend; ``None``: :func:`default_precisions`.
        Combinations a backend does not support are reported as skipped.
    device
        ``auto``, ``cpu``, ``cuda[:N]``.
    repeats, warmup
        Timed and untimed runs per case; the median of the timed runs is reported.
    tile_shape
        Tile to cut volumes into; ``None``: the whole volume as one tile.
    batch_size
        Tiles per backend call.
    cache_dir
        Artifact cache for compiled/ONNX/TensorRT builds.
    on_result
        Called with each result as soon as it is measured.
    """
    dev = resolve_device(device)
    cache = Path(cache_dir) if cache_dir is not None else None
    results: list[BenchResult] = []
    for shape in shapes:
        volume = synthetic_volume(shape)
        settings = _CaseSettings(dev, tile_shape or shape, batch_size, repeats, warmup, cache)
        baseline: float | None = None
        for name, prec in _cases(backends, precisions, dev):
            result = _run_case(model, volume, name, prec, settings)
            if (name, prec) == ("eager", "fp32"):
                baseline = result.seconds
            if baseline and result.seconds:
                speedup = baseline / result.seconds
                result = replace(result, speedup=speedup)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


@dataclass(frozen=True, slots=True)
class _CaseSettings:
    """How every case of one volume shape is run."""

    device: str
    tile: TileShape
    batch_size: int
    repeats: int
    warmup: int
    cache_dir: Path | None


def _cases(
    backends: Sequence[str], precisions: Sequence[str] | None, device: str
) -> list[tuple[str, str]]:
    """``(backend, precision)`` pairs to measure, eager fp32 first, without repeats."""
    cases: list[tuple[str, str]] = [("eager", "fp32")]
    for name in backends:
        for prec in precisions or default_precisions(name, device):
            if (name, prec) not in cases:
                cases.append((name, prec))
    return cases


def _run_case(
    model: LoadedModel,
    volume: NDArray[np.uint16],
    name: str,
    precision: str,
    settings: _CaseSettings,
) -> BenchResult:
    """Create the backend, time ``warmup + repeats`` restorations of ``volume``, close it."""
    device, tile, batch_size = settings.device, settings.tile, settings.batch_size
    shape: TileShape = volume.shape  # type: ignore[assignment]
    base = {"backend": name, "precision": precision, "shape": shape, "device": device}
    start = time.perf_counter()
    try:
        backend = create_backend(
            name,
            model,
            precision,
            device,
            tile,
            batch_size=batch_size,
            cache_dir=settings.cache_dir,
        )
    except (BackendError, ValueError) as exc:
        return BenchResult(**base, note=f"skipped: {exc}")  # type: ignore[arg-type]
    setup = time.perf_counter() - start
    times = []
    try:
        with PeakMemory(device) as memory:
            for i in range(settings.warmup + settings.repeats):
                t0 = time.perf_counter()
                predict_volume(volume, backend, tile_shape=tile, batch_size=batch_size)
                if i >= settings.warmup:
                    times.append(time.perf_counter() - t0)
    except BackendError as exc:
        return BenchResult(**base, setup_s=setup, note=f"failed: {exc}")  # type: ignore[arg-type]
    finally:
        backend.close()
    seconds = statistics.median(times)
    return BenchResult(
        **base,  # type: ignore[arg-type]
        tile_shape=tile,
        setup_s=setup,
        seconds=seconds,
        mvoxel_per_s=volume.size / seconds / 1e6,
        peak_bytes=memory.peak_bytes,
    )


def format_markdown(results: Sequence[BenchResult]) -> str:
    """The results as a GitHub-flavoured markdown table."""
    lines = [
        "| backend | precision | volume (Z×Y×X) | tile | setup s | s / volume | "
        "Mvoxel/s | × eager fp32 | peak memory MiB | note |",
        "|---|---|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        lines.append(
            "| "
            + " | ".join(
                [
                    r.backend,
                    r.precision,
                    "×".join(map(str, r.shape)),
                    "×".join(map(str, r.tile_shape)) if r.tile_shape else "",
                    _num(r.setup_s, "{:.1f}"),
                    _num(r.seconds, "{:.3f}"),
                    _num(r.mvoxel_per_s, "{:.2f}"),
                    _num(r.speedup, "{:.2f}"),
                    _num(None if r.peak_bytes is None else r.peak_bytes / 2**20, "{:.0f}"),
                    r.note.replace("|", "/"),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt.format(value)
