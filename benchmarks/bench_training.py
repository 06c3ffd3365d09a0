"""Training throughput of the paper's 3D RCAN: fp32 against mixed precision.

CPU (default): voxels/s for fp32 and bf16 autocast on a small patch, a few steps, and
the ratio to fp32 measured in the same run::

    python benchmarks/bench_training.py
    python benchmarks/bench_training.py --patch 16 64 64 --steps 6

The default CPU patches are 8×64×64 and 16×64×64: for fp32, PyTorch's CPU heuristic
sends a 3D convolution whose ``N·C·D·H`` is at most 20480 to its slow native kernel
instead of oneDNN, which 8×64×64 patches hit and 16×64×64 patches do not; bf16 always
goes to oneDNN. The two rows show both regimes.

CUDA: seconds per step on the paper's 16×256×256 patch for fp32, bf16 and fp16, and the
extrapolated time of the paper's schedule (300 epochs × 256 steps)::

    python benchmarks/bench_training.py --device cuda

Each step is the trainer's own :func:`rcanlive.training.train_step` (Adam, MAE loss,
autocast forward, fp32 loss), on random data with the default (≈1.0 M parameter) model.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from rcanlive.cpu import has_native_bf16
from rcanlive.model import RCAN3D, count_parameters
from rcanlive.training import train_step

PAPER_EPOCHS, PAPER_STEPS = 300, 256


def measure(
    device: torch.device,
    amp_dtype: torch.dtype | None,
    patch: tuple[int, int, int],
    batch: int,
    steps: int,
    warmup: int,
) -> float:
    """Mean seconds per training step after ``warmup`` steps."""
    torch.manual_seed(0)
    model = RCAN3D().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    loss_fn = nn.L1Loss()
    low = torch.rand(batch, 1, *patch, device=device)
    high = torch.rand(batch, 1, *patch, device=device)
    for _ in range(warmup):
        train_step(model, optimizer, scaler, loss_fn, low, high, amp_dtype)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, scaler, loss_fn, low, high, amp_dtype)
    _sync(device)
    return (time.perf_counter() - t0) / steps


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--patch", type=int, nargs=3, action="append", default=None, metavar=("Z", "Y", "X")
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    patches = (
        [tuple(p) for p in args.patch]
        if args.patch
        else ([(16, 256, 256)] if cuda else [(8, 64, 64), (16, 64, 64)])
    )
    steps = args.steps or (20 if cuda else 5)
    modes: list[tuple[str, torch.dtype | None]] = [("fp32", None), ("bf16", torch.bfloat16)]
    if cuda:
        modes.append(("fp16", torch.float16))
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{_cpu_name()}, {torch.get_num_threads()} threads"
    print(
        f"RCAN3D ({count_parameters(RCAN3D()):,} parameters), torch {torch.__version__}, "
        f"{name}; native CPU bf16: {has_native_bf16()}"
    )
    print(f"batch {args.batch}, {steps} timed steps after {args.warmup} warm-up\n")
    header = "| patch | precision | s/step | voxels/s | vs fp32 |"
    if cuda:
        header += f" {PAPER_EPOCHS}×{PAPER_STEPS} steps |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for patch in patches:
        voxels = args.batch * patch[0] * patch[1] * patch[2]
        base = None
        for label, dtype in modes:
            sec = measure(device, dtype, patch, args.batch, steps, args.warmup)
            base = base or sec
            row = (
                f"| {'×'.join(map(str, patch))} | {label} | {sec:.3f} | {voxels / sec:,.0f} "
                f"| {base / sec:.2f}× |"
            )
            if cuda:
                row += f" {sec * PAPER_EPOCHS * PAPER_STEPS / 3600:.2f} h |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
