"""Acquisition frame rate with live restoration by a deliberately slow backend.

Same live plan, same run: first without restoration, then with the bundled model
behind a backend that sleeps ``--delay`` seconds per call (standing in for a machine
far too slow to keep up). Restoration must not change the frame rate nor lose a frame.

    python benchmarks/bench_live_restoration.py [--volumes 8] [--delay 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rcanlive.acquisition import prepare, run_plan
from rcanlive.cli.live_restoration import LiveRestoration
from rcanlive.config.experiment import LivePlan, Restoration
from rcanlive.config.rig import load_rig
from rcanlive.inference import create_backend
from rcanlive.microscope import open_rig
from rcanlive.microscope.rig import simulated_rig_path
from rcanlive.model import bundled_model_path


class SlowBackend:
    """A real backend that takes ``delay_s`` longer per call."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, batch):
        time.sleep(self.delay_s)
        return self.inner.predict(batch)


def run(volumes: int, out: Path, name: str, delay: float | None) -> tuple[float, int, int, dict]:
    rig_cfg = load_rig(simulated_rig_path())
    plan = LivePlan(
        volumes=volumes,
        interval_s=0.0,
        exposure_ms=10.0,
        camera_roi_px=(256, 256),
        zstack={"planes": 25, "step_um": 0.25},
        channels=[{"line_nm": 488, "intensity_w_cm2": 4.2}],
        storage={"out_dir": out, "name": name},
    )
    prepared = prepare(plan, rig_cfg)
    rig = open_rig(rig_cfg)
    live = None
    if delay is not None:
        backend = SlowBackend(create_backend("eager", bundled_model_path(), "fp32"), delay)
        live = LiveRestoration(backend, Restoration(policy="latest", max_queue=1))
    try:
        t0 = time.perf_counter()
        result = run_plan(
            rig,
            prepared,
            overwrite=True,
            listeners=[live.submit] if live else [],
            writer_hook=live.attach if live else None,
        )
        fps = result.frames / (time.perf_counter() - t0)
    finally:
        rig.close()
    summary = live.finish(result.dataset) if live else {}
    return fps, result.frames, prepared.n_frames, summary


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--delay", type=float, default=3.0)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="rcanlive-live-"))
    base, n0, e0, _ = run(args.volumes, out, "plain", None)
    slow, n1, e1, summary = run(args.volumes, out, "slow", args.delay)
    print("\n| run | frames/s | frames | lost | restored | skipped |")
    print("|---|---|---|---|---|---|")
    print(f"| no restoration | {base:.1f} | {n0}/{e0} | {e0 - n0} | – | – |")
    print(
        f"| slow backend (+{args.delay:g} s/call) | {slow:.1f} | {n1}/{e1} | {e1 - n1} | "
        f"{summary['restored']} | {len(summary['skipped'])} |"
    )
    print(f"\nframe-rate ratio (slow / none): {slow / base:.3f}")


if __name__ == "__main__":
    main()
