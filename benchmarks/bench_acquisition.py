"""Acquisition frame rate with and without writing, hardware-sequenced simulated iSIM.

The simulated camera runs in fast mode (replays pre-rendered frames) paced in real
time at the exposure (default 10 ms: a 100 frames/s camera), so the figures measure
the pipeline (MMCore sequence buffer → relay thread → volume assembly → OME-Zarr),
not the renderer. Unpaced, the camera outruns any consumer and overflows the
sequence buffer, as a real camera would.

A second table isolates the writer: the same 2048² volumes written by rcanlive's
``DatasetWriter`` (tensorstore), by zarr-python into an identical array (the previous
writer, the baseline), and as plain files with ``fsync`` (what the disk allows).

    python benchmarks/bench_acquisition.py [--frames 400] [--repeat 3] [--out /tmp/bench]

This VM's frame rates with writing vary by ±30 % from run to run (shared disk and CPU),
so ``--repeat`` alternates no-write and write runs and reports medians, with the range
of the write runs and the frames lost in each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from rcanlive.acquisition import AcquisitionError, VolumeAssembler, prepare, run_plan
from rcanlive.config.experiment import LivePlan
from rcanlive.config.rig import load_rig
from rcanlive.microscope import ISIMEngine, lasers_guarded, open_rig
from rcanlive.microscope.rig import simulated_rig_path
from rcanlive.storage import open_dataset
from rcanlive.storage.dataset import DatasetWriter, Geometry
from rcanlive.storage.volume import Volume

if TYPE_CHECKING:
    from collections.abc import Callable


def _plan(size: int, frames: int, out: Path, compression: str, exposure_ms: float) -> LivePlan:
    planes = 50
    return LivePlan(
        volumes=max(frames // planes, 1),
        interval_s=0.0,
        exposure_ms=exposure_ms,
        camera_roi_px=(size, size),
        zstack={"planes": planes, "step_um": 0.1},
        channels=[{"line_nm": 488, "power_mw": 10.0}],
        storage={"out_dir": out, "name": f"bench-{size}", "compression": compression},
    )


class _Clock:
    """Sustained rate: frames of volumes 2..n over the time from volume 1 out to volume n out.

    The first volume is left out: it carries the set-up and the frame bank's first
    renders, after which the camera's pacing catches up in a burst.
    """

    def __init__(self, planes: int) -> None:
        self.planes = planes
        self.stamps: list[float] = []
        self.cpu: list[float] = []  # process CPU seconds (all threads, kernel included)

    def volume(self, volume: object) -> None:
        self.stamps.append(time.perf_counter())
        now = os.times()
        self.cpu.append(now.user + now.system)

    def cores(self) -> float:
        """CPU cores kept busy over the same span as :meth:`rate`."""
        if len(self.stamps) < 2:
            return 0.0
        return (self.cpu[-1] - self.cpu[0]) / (self.stamps[-1] - self.stamps[0])

    def rate(self) -> float:
        if len(self.stamps) < 2:
            return 0.0
        return (len(self.stamps) - 1) * self.planes / (self.stamps[-1] - self.stamps[0])


def measure(
    size: int, frames: int, out: Path, write: bool, compression: str, exposure_ms: float
) -> tuple[float, int, int, float]:
    """Sustained frames/s to the store (or to the assembler only) and frames delivered."""
    rig_cfg = load_rig(simulated_rig_path())
    rig_cfg = rig_cfg.replace(
        simulation={
            **rig_cfg.simulation.model_dump(),
            "realtime": True,
            "fast_mode": True,
            "sample": "phantoms",
        }
    )
    plan = _plan(size, frames, out, compression, exposure_ms)
    prepared = prepare(plan, rig_cfg)
    rig = open_rig(rig_cfg)
    try:
        # warm the frame bank so rendering is not timed
        rig.core.setROI((2048 - size) // 2, (2048 - size) // 2, size, size)
        rig.core.snapImage()
        clock = _Clock(prepared.planes)
        if write:
            try:
                result = run_plan(
                    rig,
                    prepared,
                    overwrite=True,
                    listeners=[clock.volume],
                )
                got = result.frames
            except AcquisitionError as exc:  # e.g. the sequence buffer overflowed
                print(f"{size}² with writing failed: {exc.__cause__}")
                got = open_dataset(exc.dataset).meta["summary"]["frames"]
            return clock.rate(), got, prepared.n_frames, clock.cores()
        for p in prepared.presets:
            rig.define_illumination(p.name, {p.line_nm: p.power_mw})
        assembler = VolumeAssembler(
            prepared.planes,
            [p.name for p in prepared.presets],
            listeners=[clock.volume],
        )
        rig.core.mda.set_engine(ISIMEngine(rig.core, rig_cfg))
        try:
            with lasers_guarded(rig.core, rig_cfg):
                rig.core.mda.run(prepared.sequence, output=[assembler])
        except MemoryError as exc:  # the sequence buffer overflowed
            print(f"{size}² without writing failed: {exc}")
        return clock.rate(), assembler.frames, prepared.n_frames, clock.cores()
    finally:
        rig.close()


def _timed(fn: Callable[[], None], gb: float) -> tuple[float, float]:
    """(MB/s, CPU seconds per GB) of ``fn``; CPU counts every thread, kernel included."""
    c0, t0 = os.times(), time.perf_counter()
    fn()
    c1, dt = os.times(), time.perf_counter() - t0
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return gb * 1e3 / dt, cpu / gb


def writer_only(
    out: Path, size: int, volumes: int, planes: int = 50
) -> list[tuple[str, float, float]]:
    """Three ways to store the same volumes, each ending with the data on disk."""
    rng = np.random.default_rng(0)
    data = rng.integers(100, 4000, (planes, size, size), dtype=np.uint16)
    data.flags.writeable = False  # as the assembler emits them
    gb = volumes * data.nbytes / 1e9
    geometry = Geometry(
        planes=planes, height=size, width=size, pixel_size_um=0.1, z_step_um=0.1, n_t=volumes
    )
    path = out / "writer-tensorstore.ome.zarr"
    writer = DatasetWriter(path, "live", geometry, plan={}, rig={}, overwrite=True)

    def rcanlive_writer() -> None:
        for t in range(volumes):
            z_um = (0.0,) * planes
            writer.write(Volume.from_array(data, t, 0, 0, "488", z_um, (0.0, 0.0), 0.0))

    arr = zarr.create_array(
        out / "writer-zarr.zarr",
        shape=(volumes, 1, planes, size, size),
        chunks=(1, 1, 1, size, size),
        dtype="uint16",
        compressors=None,
        fill_value=0,
        overwrite=True,
    )

    def zarr_python() -> None:
        for t in range(volumes):
            arr[t, 0] = data
        os.sync()  # zarr-python does not fsync; flush so that all three end on disk

    raw = out / "writer-files"
    raw.mkdir(exist_ok=True)

    def plain_files() -> None:
        for t in range(volumes):
            for z in range(planes):
                with open(raw / f"{t}.{z}", "wb") as fh:
                    fh.write(memoryview(data[z]))
                    os.fsync(fh.fileno())

    results = [
        ("rcanlive DatasetWriter (tensorstore, fsync per chunk)", *_timed(rcanlive_writer, gb)),
        ("zarr-python arr[t, c] = volume, then sync (baseline)", *_timed(zarr_python, gb)),
        ("plain files, fsync per plane (disk ceiling)", *_timed(plain_files, gb)),
    ]
    writer.finish("completed")
    for done in (path, out / "writer-zarr.zarr", raw):
        shutil.rmtree(done)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--exposure-ms", type=float, default=10.0)
    ap.add_argument(
        "--writer-volumes",
        type=int,
        default=8,
        help="2048² volumes (50 planes) for the writer-only table; 0 skips it",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the table shows medians")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rcanlive-bench-"))
    runs: dict[tuple[int, bool], list[tuple[float, int, int, float]]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        for _ in range(args.repeat):  # alternate, so that drifts hit both alike
            for write in (False, True):
                runs.setdefault((size, write), []).append(
                    measure(size, args.frames, out, write, args.compression, args.exposure_ms)
                )
                shutil.rmtree(out / f"bench-{size}.ome.zarr", ignore_errors=True)
    print(
        "\n| frame | no write (frames/s) | write (frames/s) | write / no write "
        "| write MB/s | frames lost | CPU cores busy (no write / write) |"
        "\n|---|---|---|---|---|---|---|"
    )
    for size in sorted({k[0] for k in runs}):
        base, wr = runs[size, False], runs[size, True]
        rate0 = float(np.median([r[0] for r in base]))
        rate1 = float(np.median([r[0] for r in wr]))
        lost = [r[2] - r[1] for r in wr]
        spread = (
            f" ({min(r[0] for r in wr):.0f}–{max(r[0] for r in wr):.0f})" if len(wr) > 1 else ""
        )
        print(
            f"| {size}² | {rate0:.0f} | {rate1:.0f}{spread} | {rate1 / rate0:.2f} "
            f"| {rate1 * size * size * 2 / 1e6:.0f} | {', '.join(map(str, lost))} "
            f"| {np.median([r[3] for r in base]):.2f} / {np.median([r[3] for r in wr]):.2f} |"
        )
    if args.writer_volumes:
        rows_w = writer_only(out, 2048, args.writer_volumes)
        base_mbs = rows_w[1][1]
        print(
            f"\n| writer ({args.writer_volumes} volumes of 50×2048²) | MB/s "
            "| 2048² frames/s | vs zarr-python | CPU s per GB |"
        )
        print("|---|---|---|---|---|")
        for name, mbs, cpu in rows_w:
            print(f"| {name} | {mbs:.0f} | {mbs / 8.39:.0f} | {mbs / base_mbs:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
