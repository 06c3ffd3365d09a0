"""Training's ``precision = "auto"``: measured on this machine, like restoration's.

On a GPU, AMP is reliably faster: bf16 where the GPU has it, else fp16 with loss
scaling. On a CPU, bf16 is a candidate only where it runs natively (AVX512-BF16 or AMX;
emulated bf16 was 1.6x slower than fp32 per step), and then a few timed training steps
of each candidate, at the configured model, patch and batch, decide. The timings are
cached per CPU, thread count, torch version and shape, so that the choice is measured
once per machine.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..cache import default_cache_dir
from ..cpu import cpu_model, has_native_bf16
from ..log import logger
from ..model import ModelConfig, build_network

if TYPE_CHECKING:
    from pathlib import Path

    from ..config.training import TrainingConfig

#: timed steps per candidate, after one untimed warm-up step
TIMED_STEPS = 2


@dataclass(frozen=True, slots=True)
class StepTiming:
    """One candidate's measured training step."""

    precision: str
    seconds_per_step: float


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a fixed ``precision`` (or the GPU's ``auto``); None is fp32.

    Raises
    ------
    ValueError
        For fp16 on CPU, bf16 on a GPU without it, or an unknown name.
    """
    cuda = device.type == "cuda"
    if precision == "fp32":
        return None
    if precision == "auto" and cuda:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "auto":
        return torch.bfloat16 if has_native_bf16() else None  # the rule; see choose_precision
    if precision == "fp16":
        if not cuda:
            raise ValueError("precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        return torch.float16
    if precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU has no bf16; use precision 'fp16' or 'fp32'")
        return torch.bfloat16
    raise ValueError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")


def choose_precision(
    config: TrainingConfig, device: torch.device, cache_dir: Path | None = None
) -> tuple[torch.dtype | None, list[StepTiming]]:
    """The autocast dtype to train with, and the timings it was chosen from.

    Fixed precisions and GPUs follow :func:`resolve_precision` (no timings). ``auto`` on
    a CPU with native bf16 times fp32 and bf16 steps (cached) and keeps the faster.
    """
    if config.precision != "auto" or device.type != "cpu" or not has_native_bf16():
        return resolve_precision(config.precision, device), []
    cache = _cache_file(config, cache_dir)
    timings = _cached(cache)
    if not timings:
        timings = [_time_steps(config, name) for name in ("fp32", "bf16")]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([asdict(t) for t in timings], indent=1))
    best = min(timings, key=lambda t: t.seconds_per_step)
    table = ", ".join(f"{t.precision} {t.seconds_per_step:.2f} s/step" for t in timings)
    logger.info("training precision auto: %s → %s", table, best.precision)
    return (torch.bfloat16 if best.precision == "bf16" else None), timings


def _cache_file(config: TrainingConfig, cache_dir: Path | None) -> Path:
    key = {
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": config.model.model_dump(),
        "patch": list(config.patch_shape),
        "batch": config.batch_size,
        "steps": TIMED_STEPS,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return (cache_dir or default_cache_dir()) / "training-precision" / f"{digest}.json"


def _cached(path: Path) -> list[StepTiming]:
    try:
        return [StepTiming(**t) for t in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _time_steps(config: TrainingConfig, precision: str) -> StepTiming:
    """Seconds per Adam step of the configured model on random patches, on the CPU."""
    torch.manual_seed(0)
    net = build_network(ModelConfig(**config.model.model_dump()))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    shape = (config.batch_size, 1, *config.patch_shape)
    low, high = torch.rand(shape), torch.rand(shape)
    loss_fn = nn.L1Loss()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    seconds = 0.0
    for step in range(TIMED_STEPS + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(net(low).float(), high)
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up (allocations, oneDNN primitives)
            seconds += time.perf_counter() - start
    return StepTiming(precision, seconds / TIMED_STEPS)
