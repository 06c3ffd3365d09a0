"""Richardson–Lucy time per iteration on a camera-sized volume, whole and in chunks.

A 25×512×512 float32 volume (Poisson noise on a flat background) is deconvolved with
the rig's iSIM PSF at 0.0555 µm pixels and 0.25 µm steps (9×21×21 voxels). The time
per iteration is ``(t(n) − t(0)) / n`` for the whole volume (reading and clipping set
apart; the PSF's and the weights' FFTs, 3 of the 4·n + 3, counted in) and ``t(n) / n``
in chunks. Each setting is run twice and the faster run kept (the CPU may be shared).

    python benchmarks/bench_deconvolution.py --iterations 5 --workers 1 2 --device cpu
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rcanlive.analysis.deconvolution import resolve_device, richardson_lucy
from rcanlive.simulation.optics import rig_psf


def _seconds(volume: np.ndarray, psf: np.ndarray, n: int, **kwargs: object) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        richardson_lucy(volume, psf, n, **kwargs)  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(25, 512, 512))
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk", type=int, nargs=3, default=(25, 256, 256))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    psf = rig_psf(0.25, 0.0555)
    volume = np.random.default_rng(0).poisson(50.0, tuple(args.shape)).astype(np.float32)
    n = args.iterations
    print(f"volume {tuple(args.shape)}, PSF {psf.shape}, {n} iterations, device {device}")
    print("| workers | chunks | s/iteration | setup s | 15 iterations s |")
    print("|---|---|---|---|---|")
    for workers in args.workers if device == "cpu" else [None]:
        for chunk in (None, tuple(args.chunk)):
            kwargs = {"device": device, "workers": workers, "chunk_shape": chunk}
            setup = _seconds(volume, psf, 0, **kwargs) if chunk is None else 0.0
            per = (_seconds(volume, psf, n, **kwargs) - setup) / n
            label = "whole" if chunk is None else "×".join(map(str, chunk))
            print(f"| {workers} | {label} | {per:.3f} | {setup:.2f} | {setup + 15 * per:.1f} |")


if __name__ == "__main__":
    main()
