"""Live restoration during acquisition: never slows or loses raw data."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from rcanlive.acquisition import prepare, run_plan
from rcanlive.cli.live_restoration import LiveRestoration
from rcanlive.config.experiment import Restoration, load_plan
from rcanlive.inference import create_backend
from rcanlive.storage import missing_restorations, open_dataset, read_restored, restoration_records

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class SlowBackend:
    """The real eager backend, made deliberately slow (a GPU-less rig, say)."""

    def __init__(self, inner, delay_s: float, fail_on_call: int | None = None) -> None:
        self.inner, self.delay_s, self.fail_on_call = inner, delay_s, fail_on_call
        self.calls = 0
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, batch):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        self.release.wait(self.delay_s)
        return self.inner.predict(batch)

    def close(self):
        self.inner.close()


def _live(open_sim_rig, sim_rig_config, tmp_path, backend, settings, volumes=6):
    plan = load_plan(CONFIGS / "live-4d.toml", "live").replace(
        volumes=volumes,
        interval_s=0.05,
        zstack={"planes": 4, "step_um": 0.5},
        camera_roi_px=(32, 32),
    )
    prepared = prepare(plan, sim_rig_config)
    rig = open_sim_rig()
    live = LiveRestoration(backend, settings)
    events: list[str] = []
    live.listeners.append(lambda kind, v, info: events.append(kind))
    result = run_plan(rig, prepared, out=tmp_path, listeners=[live.submit], writer_hook=live.attach)
    assert rig.world.lasers_off()
    return result, live, events, prepared


def test_slow_backend_skips_but_loses_no_raw_frame(
    open_sim_rig, sim_rig_config, tmp_path, tiny_checkpoint
):
    backend = SlowBackend(create_backend("eager", tiny_checkpoint, "fp32"), delay_s=5.0)
    result, live, events, prepared = _live(
        open_sim_rig, sim_rig_config, tmp_path, backend, Restoration(policy="latest", max_queue=1)
    )
    # acquisition finished while restoration was stuck on its first volume
    assert live.restorer.queue_depth <= 1
    assert result.frames == prepared.n_frames and result.frames_lost == 0
    backend.release.set()  # let the restorer finish what it kept
    summary = live.finish(result.dataset)
    ds = open_dataset(result.dataset)
    assert len(ds.volumes) == 6  # every raw volume is on disk
    skipped = [tuple(s["key"]) for s in summary["skipped"]]
    assert summary["restored"] + len(skipped) == 6
    assert len(skipped) >= 3  # it could only keep up with the first and the latest
    assert ds.meta["restoration"]["skipped"] == summary["skipped"]  # listed in metadata
    assert sorted(missing_restorations(result.dataset)) == sorted(skipped)
    assert events.count("skipped") == len(skipped)
    # restored volumes sit next to the raw ones with their latency and backend
    recs = restoration_records(result.dataset)
    for key, rec in recs.items():
        if rec["status"] == "restored":
            assert rec["backend"] == "eager" and rec["latency_s"] > 0
            assert read_restored(ds, key[0]).shape == (4, 32, 32)

    # and `restore --only-missing` fills in the rest afterwards, with the same model
    from rcanlive.cli import main

    assert (
        main(
            [
                "restore",
                str(result.dataset),
                "--only-missing",
                "--model",
                str(tiny_checkpoint),
                "--backend",
                "eager",
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    assert missing_restorations(result.dataset) == []
    reference = create_backend("eager", tiny_checkpoint, "fp32")
    from rcanlive.inference import predict_volume

    for key in skipped:
        np.testing.assert_allclose(
            read_restored(open_dataset(result.dataset), key[0]),
            predict_volume(ds.volume(key[0]), reference),
            rtol=1e-5,
            atol=1e-3,
        )


def test_fifo_policy_keeps_the_first_volumes(
    open_sim_rig, sim_rig_config, tmp_path, tiny_checkpoint
):
    backend = SlowBackend(create_backend("eager", tiny_checkpoint, "fp32"), delay_s=5.0)
    result, live, _, _ = _live(
        open_sim_rig, sim_rig_config, tmp_path, backend, Restoration(policy="fifo", max_queue=2)
    )
    backend.release.set()
    summary = live.finish(result.dataset)
    restored = sorted(
        k for k, r in restoration_records(result.dataset).items() if r["status"] == "restored"
    )
    assert [k[0] for k in restored] == [0, 1, 2]  # the one in flight + a queue of two
    assert summary["restored"] == 3 and len(summary["skipped"]) == 3


def test_backend_crash_mid_run(open_sim_rig, sim_rig_config, tmp_path, tiny_checkpoint):
    backend = SlowBackend(
        create_backend("eager", tiny_checkpoint, "fp32"), delay_s=0.0, fail_on_call=2
    )
    result, live, _, prepared = _live(
        open_sim_rig,
        sim_rig_config,
        tmp_path,
        backend,
        Restoration(policy="fifo", max_queue=100),
        volumes=5,
    )
    summary = live.finish(result.dataset)
    assert result.status == "completed" and result.frames == prepared.n_frames
    assert len(open_dataset(result.dataset).volumes) == 5  # raw complete
    assert "illegal memory access" in summary["error"]  # the error is reported
    assert summary["restored"] == 1 and len(summary["skipped"]) == 4


def test_submit_never_blocks(tiny_checkpoint):
    """Even with a stuck backend, submit returns at once."""
    from rcanlive.inference import LiveRestorer
    from rcanlive.storage.volume import Volume

    backend = SlowBackend(create_backend("eager", tiny_checkpoint, "fp32"), delay_s=30.0)
    restorer = LiveRestorer(backend, policy="latest", max_queue=1)
    vol = np.random.default_rng(0).integers(100, 200, (2, 16, 16)).astype(np.uint16)
    t0 = time.perf_counter()
    for t in range(50):
        restorer.submit(Volume.from_array(vol, t, 0, 0, "x", (0.0, 0.0), (0.0, 0.0), 0.0))
    assert time.perf_counter() - t0 < 0.5
    backend.release.set()
    stats = restorer.close(timeout=30)
    assert len(stats.restored) + len(stats.skipped) == 50
    assert stats.restored[-1] == (49, 0, 0)  # policy latest: the newest is restored
