"""Acquisition with live restoration in worker processes, against none at all.

The same live plan (the main job's: 25×512×512 volumes, 50 ms exposure, a volume
every 5.6 s, real-time simulated camera) is run once without restoration (the
baseline, in the same run) and once per restoration case:

- ``real``: the bundled model with ``--backend auto`` (measured choice, e.g. AOTInductor);
- ``gil``: the bundled model behind a backend that holds its process's GIL for
  ``--hold`` seconds per call (as AOTInductor's runtime does), longer than the MDA's
  5 s frame timeout;
- ``slow``: the bundled model behind a backend that waits ``--delay`` s per call.

Reported per case: frame rate and its ratio to the baseline (goal ≥ 0.98), frames
lost (goal 0), the longest gap between consecutive frames of one volume as the camera
timestamped them (bound: 2 × exposure + 50 ms), volumes restored / not restored, and
the CPU seconds the workers used.

    python benchmarks/bench_live_restoration.py [--volumes 6] [--cases real,gil,slow]
"""

from __future__ import annotations

import argparse
import functools
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rcanlive.acquisition import prepare, run_plan
from rcanlive.config.experiment import Restoration, load_plan
from rcanlive.config.rig import load_rig
from rcanlive.inference import BackendRecipe, LiveRestoration
from rcanlive.inference.recipe import live_tile_shape
from rcanlive.microscope import open_rig
from rcanlive.microscope.rig import simulated_rig_path
from rcanlive.model import bundled_model_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import stand_in_backends as stand_in  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(case: str | None, volumes: int, out: Path, hold: int, delay: float) -> dict:
    plan = load_plan(ROOT / "configs" / "live-4d.toml", "live").replace(
        volumes=volumes, storage={"out_dir": out, "name": case or "none"}
    )
    rig_cfg = load_rig(simulated_rig_path())
    prepared = prepare(plan, rig_cfg)
    w, h = plan.camera_roi_px
    model = bundled_model_path()
    live = None
    tile = live_tile_shape((prepared.planes, h, w))  # the whole volume: one call per volume
    if case is not None:
        openers = {
            "real": BackendRecipe(model, tile_shape=tile),
            "gil": functools.partial(stand_in.holds_gil, model, hold),
            "slow": functools.partial(stand_in.waits, model, delay),
        }
        live = LiveRestoration(openers[case], Restoration(policy="latest", max_queue=1, tile=tile))
        live.start()
    stamps: dict[tuple, list[float]] = {}

    def on_frame(img, event, meta) -> None:
        key = (event.index.get("t", 0), event.index.get("c", 0))
        stamps.setdefault(key, []).append(float(meta["camera_metadata"]["sim_time_s"]))

    rig = open_rig(rig_cfg)
    rig.core.mda.events.frameReady.connect(on_frame)
    cpu0 = _children_cpu()
    try:
        t0 = time.perf_counter()
        result = run_plan(
            rig,
            prepared,
            overwrite=True,
            listeners=[live.submit] if live else [],
            writer_hook=live.attach if live else None,
        )
        seconds = time.perf_counter() - t0
    finally:
        rig.close()
        del rig
        gc.collect()
    summary = live.finish(timeout=60) if live else {}
    gap = max(float(np.diff(sorted(ts)).max()) for ts in stamps.values() if len(ts) > 1)
    return {
        "case": case or "none",
        "fps": result.frames / seconds,
        "frames": result.frames,
        "expected": prepared.n_frames,
        "gap_s": gap,
        "restored": summary.get("restored"),
        "not_restored": len(summary.get("skipped", [])) if live else None,
        "backend": f"{summary.get('backend')} {summary.get('precision')}" if live else "–",
        "worker_cpu_s": _children_cpu() - cpu0 if live else None,
        "exposure_s": plan.exposure_ms / 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--volumes", type=int, default=6)
    ap.add_argument("--cases", default="real,gil,slow")
    ap.add_argument("--hold", type=int, default=6, help="GIL hold per call, s")
    ap.add_argument("--delay", type=float, default=8.0, help="slow backend's wait per call, s")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="rcanlive-live-"))
    rows = [run(None, args.volumes, out, args.hold, args.delay)]
    for case in args.cases.split(","):
        rows.append(run(case, args.volumes, out, args.hold, args.delay))
    base = rows[0]["fps"]
    bound = 2 * rows[0]["exposure_s"] + 0.05
    print(
        f"\n{args.volumes} volumes of 25×512×512 every 5.6 s, 50 ms exposure "
        f"(gap bound {bound * 1e3:.0f} ms)\n"
    )
    print(
        "| case | backend | frames/s | × none | frames lost | longest frame gap (ms) |"
        " restored | not restored | worker CPU (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['backend']} | {r['fps']:.2f} | {r['fps'] / base:.3f} | "
            f"{r['expected'] - r['frames']} | {r['gap_s'] * 1e3:.1f} | "
            f"{r['restored'] if r['restored'] is not None else '–'} | "
            f"{r['not_restored'] if r['not_restored'] is not None else '–'} | "
            f"{r['worker_cpu_s']:.1f} |"
            if r["worker_cpu_s"] is not None
            else f"| {r['case']} | – | {r['fps']:.2f} | 1.000 | {r['expected'] - r['frames']} | "
            f"{r['gap_s'] * 1e3:.1f} | – | – | – |"
        )


if __name__ == "__main__":
    main()
