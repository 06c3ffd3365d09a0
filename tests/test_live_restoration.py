"""Live restoration in worker processes: no backend, CPU load or crash stalls acquisition.

The stand-in backends (tests/stand_in_backends.py) have the property under test: one
holds the GIL for longer than the MDA's frame timeout on every call (as AOTInductor's
runtime does), one keeps every core busy, one aborts its process. Frame timing is
read from the simulated camera's own timestamps.
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import stand_in_backends as stand_in
from rcanlive.acquisition import prepare, run_plan
from rcanlive.config.experiment import Restoration, load_plan
from rcanlive.inference import BackendRecipe, LiveRestoration, RestorationPool, WorkerDied
from rcanlive.inference.events import RestorationStatus, VolumeRef
from rcanlive.inference.worker import WorkerSpec
from rcanlive.storage import missing_restorations, open_dataset, read_restored, restoration_records

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPOSURE_MS = 10.0


class FrameClock:
    """Camera timestamps of every frame, by volume, and a 5 ms ticker's longest gap."""

    def __init__(self) -> None:
        self.times: dict[tuple[int, int, int], list[float]] = {}
        self.ticker_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def frame(self, img, event, meta) -> None:
        idx = event.index
        key = (idx.get("t", 0), idx.get("p", 0), idx.get("c", 0))
        stamp = float(meta["camera_metadata"]["sim_time_s"])
        self.times.setdefault(key, []).append(stamp)

    def _tick(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(0.005):
            now = time.perf_counter()
            self.ticker_gap = max(self.ticker_gap, now - last)
            last = now

    def __enter__(self) -> FrameClock:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def longest_frame_gap(self) -> float:
        """Longest time between consecutive frames of one volume (one sequence), s."""
        gaps = [np.diff(sorted(ts)).max() for ts in self.times.values() if len(ts) > 1]
        return float(max(gaps))


def _run(open_sim_rig, rig_config, tmp_path, open_backend, settings, volumes=6, interval=0.05):
    plan = load_plan(CONFIGS / "live-4d.toml", "live").replace(
        volumes=volumes,
        interval_s=interval,
        exposure_ms=EXPOSURE_MS,
        zstack={"planes": 4, "step_um": 0.5},
        camera_roi_px=(32, 32),
    )
    prepared = prepare(plan, rig_config)
    live = LiveRestoration(open_backend, settings)
    events = []
    live.listeners.append(events.append)
    live.start(timeout=120)
    rig = open_sim_rig(rig_config)
    clock = FrameClock()
    rig.core.mda.events.frameReady.connect(clock.frame)
    with clock:
        result = run_plan(
            rig, prepared, out=tmp_path, listeners=[live.submit], writer_hook=live.attach
        )
    assert rig.world.lasers_off()
    return result, live, events, prepared, clock


@pytest.fixture
def realtime_rig(sim_rig_config):
    """Frames take their exposure time, so gaps between them mean something."""
    return sim_rig_config.replace(
        simulation={**sim_rig_config.simulation.model_dump(), "realtime": True}
    )


def _assert_acquisition_unharmed(result, prepared, clock) -> None:
    assert result.status == "completed"
    assert result.frames == prepared.n_frames and result.frames_lost == 0
    bound = 2 * EXPOSURE_MS / 1e3 + 0.050
    assert clock.longest_frame_gap <= bound, f"{clock.longest_frame_gap:.3f} s > {bound} s"


def test_gil_holding_backend_cannot_stall_acquisition(
    open_sim_rig, realtime_rig, tmp_path, tiny_checkpoint
):
    # every call holds the worker's GIL for 6 s: longer than the MDA's 5 s frame timeout
    opener = functools.partial(stand_in.holds_gil, tiny_checkpoint, 6)
    result, live, events, prepared, clock = _run(
        open_sim_rig,
        realtime_rig,
        tmp_path,
        opener,
        Restoration(policy="latest", max_queue=1, restarts=0),
        volumes=8,
        interval=0.25,
    )
    _assert_acquisition_unharmed(result, prepared, clock)
    assert clock.ticker_gap < 0.2  # this process's threads never waited for that GIL
    summary = live.finish()
    assert summary["restored"] >= 1  # the first volume, at least, while the run went on
    assert summary["restored"] + len(summary["skipped"]) == 8
    assert all("fell behind" in s["reason"] for s in summary["skipped"])
    assert len(events) == 8


def test_backend_busy_on_every_core_cannot_stall_acquisition(
    open_sim_rig, realtime_rig, tmp_path, tiny_checkpoint
):
    opener = functools.partial(stand_in.busy_cores, tiny_checkpoint, 1.0)
    result, live, _, prepared, clock = _run(
        open_sim_rig,
        realtime_rig,
        tmp_path,
        opener,
        Restoration(policy="latest", max_queue=1, threads=2),
        volumes=8,
        interval=0.25,
    )
    _assert_acquisition_unharmed(result, prepared, clock)
    summary = live.finish()
    assert summary["restored"] >= 2 and summary["error"] is None


@pytest.mark.parametrize("restarts", [0, 1])
def test_worker_abort_mid_run(open_sim_rig, sim_rig_config, tmp_path, tiny_checkpoint, restarts):
    opener = functools.partial(stand_in.aborts, tiny_checkpoint, 3)
    # a slow-ish interval so that each volume reaches the worker on its own
    result, live, events, prepared, _ = _run(
        open_sim_rig,
        sim_rig_config,
        tmp_path,
        opener,
        Restoration(policy="fifo", max_queue=100, restarts=restarts),
        volumes=6,
        interval=0.4,
    )
    assert result.status == "completed" and result.frames == prepared.n_frames
    summary = live.finish()
    assert len(open_dataset(result.dataset).volumes) == 6  # raw complete
    failed = [e for e in events if e.status is RestorationStatus.FAILED]
    assert [e.volume.t for e in failed][:1] == [2]  # the third volume took the worker down
    assert "SIGABRT" in failed[0].reason
    records = restoration_records(result.dataset)
    assert records[(2, 0, 0)]["status"] == "failed" and "SIGABRT" in records[(2, 0, 0)]["reason"]
    assert summary["restarts"] == restarts
    restored = sorted(k[0] for k, r in records.items() if r["status"] == "restored")
    if restarts == 0:  # no worker left: the rest are skipped, with the cause
        assert restored == [0, 1]
        later = [records[(t, 0, 0)] for t in (3, 4, 5)]
        assert all("no restoration worker left" in r["reason"] for r in later)
        assert all("SIGABRT" in r["reason"] for r in later)
    else:  # a fresh worker carries on (and aborts on its own third volume)
        assert {0, 1, 3, 4} <= set(restored)
    assert sorted(missing_restorations(result.dataset)) == sorted(
        k for k, r in records.items() if r["status"] != "restored"
    )


def test_two_workers_share_the_volumes(open_sim_rig, sim_rig_config, tmp_path, tiny_checkpoint):
    opener = functools.partial(stand_in.waits, tiny_checkpoint, 0.3)
    result, live, events, _, _ = _run(
        open_sim_rig,
        sim_rig_config,
        tmp_path,
        opener,
        Restoration(policy="fifo", max_queue=100, devices=("cpu", "cpu"), threads=1),
        volumes=8,
    )
    summary = live.finish()
    assert summary["restored"] == 8 and summary["skipped"] == []
    lines = (result.dataset / "restored.jsonl").read_text().splitlines()
    assert len(lines) == 8  # each volume restored exactly once
    import json

    records = [json.loads(line) for line in lines]
    assert sorted(r["t"] for r in records) == list(range(8))
    assert len({r["pid"] for r in records}) == 2  # by both workers
    assert len({e.worker for e in events}) == 2


def test_slow_restoration_skips_and_only_missing_fills_in(
    open_sim_rig, sim_rig_config, tmp_path, tiny_checkpoint
):
    release = tmp_path / "release"
    opener = functools.partial(stand_in.waits, tiny_checkpoint, 30.0, release)
    result, live, events, _, _ = _run(
        open_sim_rig,
        sim_rig_config,
        tmp_path,
        opener,
        Restoration(policy="latest", max_queue=1),
    )
    assert live.queue_depth <= 1  # acquisition finished while restoration was stuck
    release.touch()  # let the worker finish what it kept
    summary = live.finish()
    ds = open_dataset(result.dataset)
    assert len(ds.volumes) == 6
    skipped = [tuple(s["key"]) for s in summary["skipped"]]
    assert summary["restored"] + len(skipped) == 6 and len(skipped) >= 3
    assert summary["restored"] == 2  # the one in flight and the latest
    assert ds.meta["restoration"]["skipped"] == summary["skipped"]
    assert sorted(missing_restorations(result.dataset)) == sorted(skipped)
    assert [e.status for e in events].count(RestorationStatus.SKIPPED) == len(skipped)
    for key, rec in restoration_records(result.dataset).items():
        if rec["status"] == "restored":
            assert rec["backend"] == "eager" and rec["latency_s"] > 0
            assert read_restored(ds, key[0]).shape == (4, 32, 32)

    from rcanlive.cli import main

    args = ["restore", str(result.dataset), "--only-missing", "--model", str(tiny_checkpoint)]
    assert main([*args, "--backend", "eager", "--precision", "fp32"]) == 0
    assert missing_restorations(result.dataset) == []
    from rcanlive.inference import create_backend, predict_volume

    reference = create_backend("eager", tiny_checkpoint, "fp32")
    for key in skipped:
        np.testing.assert_allclose(
            read_restored(open_dataset(result.dataset), key[0]),
            predict_volume(ds.volume(key[0]), reference),
            rtol=1e-5,
            atol=1e-3,
        )


def test_fifo_keeps_the_first_volumes(open_sim_rig, sim_rig_config, tmp_path, tiny_checkpoint):
    release = tmp_path / "release"
    opener = functools.partial(stand_in.waits, tiny_checkpoint, 30.0, release)
    result, live, _, _, _ = _run(
        open_sim_rig, sim_rig_config, tmp_path, opener, Restoration(policy="fifo", max_queue=2)
    )
    release.touch()
    summary = live.finish()
    restored = sorted(
        k for k, r in restoration_records(result.dataset).items() if r["status"] == "restored"
    )
    assert [k[0] for k in restored] == [0, 1, 2]  # the one in flight + a queue of two
    assert summary["restored"] == 3 and len(summary["skipped"]) == 3


def test_a_backend_that_cannot_open_is_a_clear_error(tiny_checkpoint):
    pool = RestorationPool([WorkerSpec(functools.partial(stand_in.fails_to_open, tiny_checkpoint))])
    with pytest.raises(WorkerDied, match="no CUDA-capable device"):
        pool.start(timeout=60)


def test_submit_never_waits(tmp_path, tiny_checkpoint):
    """Even with a worker stuck for good, handing over keys returns at once."""
    opener = functools.partial(stand_in.holds_gil, tiny_checkpoint, 30)
    pool = RestorationPool([WorkerSpec(opener)], policy="latest", max_queue=1, restarts=0)
    pool.start(timeout=60)
    t0 = time.perf_counter()
    for t in range(200):
        pool.submit(tmp_path, VolumeRef(t, 0, 0))
    assert time.perf_counter() - t0 < 0.2
    summary = pool.close(timeout=0.5)  # the stuck worker is terminated
    assert len(summary.restored) + len(summary.not_restored) == 200
    assert summary.not_restored[-1][0] == (199, 0, 0)  # in flight when the run ended


def test_recipe_crosses_the_process_boundary(tiny_checkpoint):
    import pickle

    recipe = BackendRecipe(tiny_checkpoint, "eager", "fp32", "cpu", (4, 32, 32))
    assert pickle.loads(pickle.dumps(recipe)) == recipe
