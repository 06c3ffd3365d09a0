"""Stitching throughput and peak memory versus the number of tiles.

Writes synthetic tiling datasets (tiles of Z×Y×X uint16 cut from one textured
specimen, with a random stage error per tile) to disk, then times registration
(pairwise overlaps + global solution) and fusion (blended level 0 + pyramid) with
``stitch_dataset`` on Dask's threaded scheduler. Peak memory is measured with
tracemalloc (numpy buffers included) in a second, identical run, so that tracing
does not slow the timed one.

    python benchmarks/bench_stitching.py --grids 3 10
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

from rcanlive.acquisition.plans import serpentine
from rcanlive.stitching import use_scheduler
from rcanlive.stitching.stitch import stitch_dataset
from rcanlive.storage import DatasetWriter, Geometry, Volume

PX = 0.0555


def _tile(spots: np.ndarray, y0: int, x0: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Render the spots of the specimen that fall in a tile (plus a blur margin)."""
    z, h, w = shape
    m = 12
    inside = (
        (spots[:, 1] >= y0 - m)
        & (spots[:, 1] < y0 + h + m)
        & (spots[:, 2] >= x0 - m)
        & (spots[:, 2] < x0 + w + m)
    )
    vol = np.zeros((z, h + 2 * m, w + 2 * m), np.float32)
    s = spots[inside]
    np.add.at(vol, (s[:, 0], s[:, 1] - y0 + m, s[:, 2] - x0 + m), 1.0)
    vol = ndimage.gaussian_filter(vol, (0.5, 3, 3))[:, m:-m, m:-m]
    return vol


def make_dataset(
    root: Path, n: int, shape: tuple[int, int, int], overlap: float, error_px: float, seed: int
) -> Path:
    """An n×n tiling dataset on disk with a stage error of σ ``error_px``."""
    z, h, w = shape
    step = round(w * (1 - overlap))
    rng = np.random.default_rng(seed)
    extent = (n - 1) * step + w + 8 * error_px
    n_spots = int(0.0005 * z * extent * extent)
    spots = np.column_stack(
        [
            rng.integers(0, z, n_spots),
            rng.integers(-4 * error_px, extent, n_spots),
            rng.integers(-4 * error_px, extent, n_spots),
        ]
    ).astype(int)
    manifest = [
        {
            "index": i,
            "row": r,
            "col": c,
            "x_um": (c * step + w / 2) * PX,
            "y_um": (r * step + h / 2) * PX,
        }
        for i, (r, c) in enumerate(serpentine(n, n))
    ]
    g = Geometry(planes=z, height=h, width=w, pixel_size_um=PX, z_step_um=0.25, n_p=n * n)
    path = root / f"tiles-{n}x{n}.ome.zarr"
    writer = DatasetWriter(path, "tile", g, plan={}, rig={}, tiles=manifest, overwrite=True)
    noise = np.random.default_rng(seed + 1)
    peak = None
    for t in manifest:
        err = np.clip(rng.normal(0, error_px, 2), -3 * error_px, 3 * error_px).round()
        y0 = t["row"] * step + int(err[0])
        x0 = t["col"] * step + int(err[1])
        vol = _tile(spots, y0, x0, shape)
        peak = peak or float(vol.max()) or 1.0
        counts = 100 + 2000 * vol / peak + noise.normal(0, 4, vol.shape)
        data = np.clip(counts, 0, 65535).astype(np.uint16)
        writer.write(Volume.from_array(data, 0, t["index"], 0, "ch", (0.0,) * z, (0.0, 0.0), 0.0))
    writer.finish("completed")
    return path


def run(path: Path, n: int, traced: bool) -> dict[str, float]:
    """Stitch once; timings, and tracemalloc peaks when ``traced``."""
    peaks: dict[str, float] = {}
    stages: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        # the first call of the fusion stage ends registration: record its peak
        if traced and stage not in stages:
            stages.append(stage)
            if stage == "fusing":
                peaks["registration"] = tracemalloc.get_traced_memory()[1] / 1e6
                tracemalloc.reset_peak()

    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    with use_scheduler("threads"):
        result = stitch_dataset(path, overwrite=True, progress=progress)
    wall = time.perf_counter() - t0
    if traced:
        peaks["fusion"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return {
        "tiles": n * n,
        "registration_s": result.registration_s,
        "fusion_s": result.fusion_s,
        "wall_s": wall,
        "registered": result.count("registered"),
        "pairs": len(result.pairs),
        "accepted": sum(p.accepted for p in result.pairs),
        **{f"peak_{k}_mb": v for k, v in peaks.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[3, 10])
    parser.add_argument(
        "--shape", type=int, nargs=3, default=[16, 512, 512], metavar=("Z", "Y", "X")
    )
    parser.add_argument("--overlap", type=float, default=0.22)
    parser.add_argument("--error-px", type=float, default=18.0, help="stage error σ, pixels")
    parser.add_argument("--dir", type=Path, default=None, help="where datasets are written")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-stitch-"))
    rows = []
    try:
        for n in args.grids:
            path = make_dataset(root, n, tuple(args.shape), args.overlap, args.error_px, seed=n)
            timed = run(path, n, traced=False)
            traced = run(path, n, traced=True)
            rows.append({**timed, **{k: v for k, v in traced.items() if k.startswith("peak")}})
            shutil.rmtree(path)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    z, h, w = args.shape
    tile_mb = z * h * w * 2 / 1e6
    print(
        f"tiles {z}×{h}×{w} uint16 ({tile_mb:.1f} MB), overlap {args.overlap:.0%}, "
        f"stage error σ {args.error_px:g} px; threaded scheduler"
    )
    print(
        "| grid | tiles | pairs accepted | registration tiles/s | fusion tiles/s "
        "| peak MB registration | peak MB fusion | peak / tile MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = round(r["tiles"] ** 0.5)
        peak = max(r["peak_registration_mb"], r["peak_fusion_mb"])
        print(
            f"| {n}×{n} | {r['tiles']} | {r['accepted']}/{r['pairs']} "
            f"| {r['tiles'] / r['registration_s']:.1f} | {r['tiles'] / r['fusion_s']:.1f} "
            f"| {r['peak_registration_mb']:.0f} | {r['peak_fusion_mb']:.0f} "
            f"| {peak / tile_mb:.1f} |"
        )


if __name__ == "__main__":
    main()
