"""Acquisition frame rate with and without writing, hardware-sequenced simulated iSIM.

The simulated camera runs in fast mode (replays pre-rendered frames) paced in real
time at the exposure (default 10 ms: a 100 frames/s camera), so the figures measure
the pipeline (MMCore sequence buffer → relay thread → volume assembly → OME-Zarr),
not the renderer. Unpaced, the camera outruns any consumer and overflows the
sequence buffer, as a real camera would.

    python benchmarks/bench_acquisition.py [--frames 400] [--out /tmp/bench]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rcanlive.acquisition import AcquisitionError, VolumeAssembler, prepare, run_plan
from rcanlive.config.experiment import LivePlan
from rcanlive.config.rig import load_rig
from rcanlive.microscope import ISIMEngine, lasers_guarded, open_rig
from rcanlive.microscope.rig import simulated_rig_path
from rcanlive.storage import open_dataset


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

    def volume(self, volume: object) -> None:
        self.stamps.append(time.perf_counter())

    def rate(self) -> float:
        if len(self.stamps) < 2:
            return 0.0
        return (len(self.stamps) - 1) * self.planes / (self.stamps[-1] - self.stamps[0])


def measure(
    size: int, frames: int, out: Path, write: bool, compression: str, exposure_ms: float
) -> tuple[float, int, int]:
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
            return clock.rate(), got, prepared.n_frames
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
        return clock.rate(), assembler.frames, prepared.n_frames
    finally:
        rig.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--exposure-ms", type=float, default=10.0)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rcanlive-bench-"))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        base, n0, e0 = measure(
            size,
            args.frames,
            out,
            write=False,
            compression=args.compression,
            exposure_ms=args.exposure_ms,
        )
        wr, n1, e1 = measure(
            size,
            args.frames,
            out,
            write=True,
            compression=args.compression,
            exposure_ms=args.exposure_ms,
        )
        mb = size * size * 2 / 1e6
        rows.append((size, base, wr, wr / base, wr * mb, e1 - n1 + e0 - n0))
        shutil.rmtree(out / f"bench-{size}.ome.zarr", ignore_errors=True)
    print(
        "\n| frame | no write (frames/s) | write (frames/s) | write / no write "
        "| write MB/s | frames lost |"
    )
    print("|---|---|---|---|---|---|")
    for size, base, wr, ratio, mbs, lost in rows:
        print(f"| {size}² | {base:.0f} | {wr:.0f} | {ratio:.2f} | {mbs:.0f} | {lost} |")


if __name__ == "__main__":
    main()
