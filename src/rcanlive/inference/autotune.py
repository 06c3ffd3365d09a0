"""``--backend auto``: time the candidates on the real tile, keep the fastest accurate one.

A CPU's flags say little about its speed: ``_is_mkldnn_bf16_supported()`` is True on
every AVX-512 CPU, yet without AVX512-BF16/AMX bf16 is emulated and 2.6x slower than
fp32. So ``auto`` measures. For each backend and precision that runs on the device it
builds the backend for the real tile shape, times it on a synthetic fluorescence-like
tile, and compares its output with eager fp32's; the fastest candidate whose output
agrees is chosen. The table is cached per (device model, library versions, model
fingerprint, tile, batch, threads), so the measurement runs once per machine and model.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cpu import cpu_model

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .backends import Backend
    from .recipe import BackendRecipe

#: A candidate must reproduce eager fp32 to within this PSNR (dB, data_range of the
#: fp32 output, on the normalised output). 52 dB is a mean squared deviation of
#: 10^-5.2 of the range²; added to the error of a restoration that scores 36 dB against
#: its ground truth (the bundled model on held-out simulated data), it lowers that
#: score by at most 10·log10(1 + 10^((36-52)/10)) = 0.1 dB.
MIN_AGREEMENT_DB = 52.0

CPU_PRECISIONS = ("fp32", "bf16")  # fp16 has no fast CPU kernels
CUDA_PRECISIONS = ("fp16", "bf16", "fp32")


@dataclass(frozen=True, slots=True)
class Trial:
    """One candidate's measurement."""

    backend: str
    precision: str
    seconds_per_tile: float | None = None
    mvoxel_per_s: float | None = None
    agreement_db: float | None = None
    accepted: bool = False
    note: str = ""


def device_model(device: str) -> str:
    """The CPU (with its speed flags) or GPU model name, for the cache key."""
    if device.startswith("cuda"):
        import torch

        return str(torch.cuda.get_device_name(torch.device(device)))
    return cpu_model()


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "onnxruntime", "openvino", "tensorrt"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except Exception:
                continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def sample_tile(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """A normalised, fluorescence-like tile: blurred blobs and tubes over a dim
    background, with shot noise. Deterministic."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    truth = np.zeros(tuple(shape), np.float32)
    n = max(8, truth.size // 4000)
    idx = tuple(rng.integers(0, s, n) for s in truth.shape)
    truth[idx] = rng.uniform(50, 200, n)
    truth = ndimage.gaussian_filter(truth, (1.0, 2.0, 2.0)) * 20 + 5
    noisy = rng.poisson(truth).astype(np.float32)
    lo, hi = np.percentile(noisy, (2, 99.8))
    return ((noisy - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def agreement_db(out: np.ndarray, reference: np.ndarray) -> float:
    """PSNR of ``out`` against ``reference`` with the reference's range (inf if equal)."""
    mse = float(np.mean((out.astype(np.float64) - reference) ** 2))
    span = float(reference.max() - reference.min()) or 1.0
    return math.inf if mse == 0 else 10 * math.log10(span**2 / mse)


def _time(backend: Backend, batch: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Best of ``repeats`` timed calls, after one warm-up call for backends whose first
    call compiles or tunes kernels (eager has nothing to warm up)."""
    out = backend.predict(batch) if backend.name != "eager" else None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = backend.predict(batch)
        times.append(time.perf_counter() - t0)
    assert out is not None
    return min(times), out


def candidates(device: str) -> list[tuple[str, str]]:
    """``(backend, precision)`` pairs that can run on ``device`` here."""
    from .backends import available_backends
    from .backends.devices import device_type

    kind = device_type(device)
    wanted = CUDA_PRECISIONS if kind == "cuda" else CPU_PRECISIONS
    out = []
    for info in available_backends():
        if kind in info.devices:
            out += [(info.name, p) for p in info.precisions[kind] if p in wanted]
    return out


def _cache_file(recipe: BackendRecipe, device: str, threads: int, fingerprint: str) -> Path:
    from .backends import default_cache_dir

    key = {
        "format": 2,  # bump when a Trial's fields change meaning
        "device": device_model(device),
        "versions": _versions(),
        "model": fingerprint,
        "tile": list(recipe.tile_shape or ()),
        "batch": recipe.batch_size,
        "threads": threads,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(recipe.cache_dir or default_cache_dir()) / "autotune" / f"{digest}.json"


def choose(
    recipe: BackendRecipe,
    *,
    only: Sequence[tuple[str, str]] | None = None,
    repeats: int = 1,
    log: Any = None,
) -> tuple[BackendRecipe, list[Trial]]:
    """Measure the candidates for ``recipe`` and return the chosen recipe and the table.

    ``recipe.backend`` and/or ``recipe.precision`` may be ``"auto"``; a fixed one limits
    the candidates. ``only`` limits them further (tests). Cached: see the module doc.
    """
    import torch

    from .backends.devices import resolve_device
    from .backends.network import as_loaded_model, model_hash

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    device = resolve_device(recipe.device)
    loaded = as_loaded_model(recipe.model)
    threads = torch.get_num_threads()
    cache = _cache_file(recipe, device, threads, model_hash(loaded))
    pool = [
        (b, p)
        for b, p in (only or candidates(device))
        if recipe.backend in ("auto", b) and recipe.precision in ("auto", p)
    ]
    trials: list[Trial] = []
    if cache.is_file():
        try:
            cached = [Trial(**t) for t in json.loads(cache.read_text())["trials"]]
            trials = [t for t in cached if (t.backend, t.precision) in pool]
        except (ValueError, TypeError, KeyError):
            trials = []
    if not trials:
        trials = _measure(loaded, recipe, device, pool, repeats, log)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"trials": [asdict(t) for t in trials]}, indent=1))
        tmp.replace(cache)
    accepted = [t for t in trials if t.accepted and t.seconds_per_tile is not None]
    if not accepted:
        notes = "; ".join(f"{t.backend} {t.precision}: {t.note}" for t in trials)
        from .backends import BackendUnavailable

        raise BackendUnavailable(f"no backend passed auto's checks on {device}: {notes}")
    best = min(accepted, key=lambda t: t.seconds_per_tile or math.inf)
    return recipe.replace(backend=best.backend, precision=best.precision, device=device), trials


def _measure(
    loaded: Any,
    recipe: BackendRecipe,
    device: str,
    pool: Sequence[tuple[str, str]],
    repeats: int,
    log: Any,
) -> list[Trial]:
    """Time every candidate in ``pool`` against eager fp32's output on one sample tile."""
    from .backends import create_backend
    from .backends.registry import DEFAULT_STATIC_TILE

    tile = tuple(recipe.tile_shape or DEFAULT_STATIC_TILE)
    batch = np.repeat(sample_tile(tile)[None, None], recipe.batch_size, axis=0)
    with create_backend("eager", loaded, "fp32", device) as eager:
        reference = eager.predict(batch)
    log(f"auto: timing backends for tiles of {'x'.join(map(str, tile))} on {device} ...")
    return [
        _trial(name, precision, loaded, recipe, device, tile, batch, reference, repeats, log)
        for name, precision in pool
    ]


def _trial(
    name: str,
    precision: str,
    loaded: Any,
    recipe: BackendRecipe,
    device: str,
    tile: tuple[int, ...],
    batch: np.ndarray,
    reference: np.ndarray,
    repeats: int,
    log: Any,
) -> Trial:
    """Build, time and check one candidate."""
    from .backends import BackendError, create_backend

    try:
        backend = create_backend(
            name,
            loaded,
            precision,
            device,
            tile,  # type: ignore[arg-type]
            batch_size=recipe.batch_size,
            cache_dir=recipe.cache_dir,
        )
    except (BackendError, ValueError, RuntimeError) as exc:
        return Trial(name, precision, note=f"unavailable: {exc}"[:200])
    try:
        seconds, out = _time(backend, batch, repeats)
    except Exception as exc:
        return Trial(name, precision, note=f"failed: {exc}"[:200])
    finally:
        backend.close()
    agree = agreement_db(out, reference)
    ok = agree >= MIN_AGREEMENT_DB
    reference_itself = (name, precision) == ("eager", "fp32")
    trial = Trial(
        name,
        precision,
        seconds_per_tile=round(seconds, 4),
        mvoxel_per_s=round(batch.size / seconds / 1e6, 3),
        agreement_db=None if reference_itself else round(min(agree, 999.0), 1),
        accepted=ok,
        note="reference"
        if reference_itself
        else ""
        if ok
        else f"output differs from eager fp32 ({agree:.1f} dB < {MIN_AGREEMENT_DB:g} dB)",
    )
    log(
        f"auto: {name:>9} {precision}: {seconds:.3f} s/tile, {trial.mvoxel_per_s} Mvoxel/s, "
        + (
            "reference"
            if reference_itself
            else f"{trial.agreement_db} dB vs eager fp32{'' if ok else ' (rejected)'}"
        )
    )
    return trial
