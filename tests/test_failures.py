"""Failures mid-acquisition: lasers off, data so far readable, a clear error."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from rcanlive.acquisition import AcquisitionError, prepare, run_plan
from rcanlive.config.experiment import load_plan
from rcanlive.simulation.devices import SimCamera, SimPiezo
from rcanlive.storage import open_dataset, read_log

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _small_live(volumes: int = 4):
    # interval > 0: each volume is its own hardware sequence (interval 0 merges them)
    return load_plan(CONFIGS / "live-4d.toml", "live").replace(
        volumes=volumes,
        interval_s=0.05,
        zstack={"planes": 4, "step_um": 0.5},
        camera_roi_px=(64, 64),
    )


# The camera's acquisition thread dies with the error (as a real adapter's would);
# pytest reports that thread's exception, which is the point of the test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("failing", ["piezo", "camera"])
def test_device_failure_mid_run(failing, open_sim_rig, sim_rig_config, tmp_path, monkeypatch):
    plan = _small_live()
    prepared = prepare(plan, sim_rig_config)
    rig = open_sim_rig()
    if failing == "piezo":  # the piezo controller dies when the 3rd stack is loaded
        calls = {"n": 0}
        original = SimPiezo.send_sequence

        def broken(self, seq):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError("piezo controller not responding")
            return original(self, seq)

        monkeypatch.setattr(SimPiezo, "send_sequence", broken)
    else:  # the camera's cable is pulled during the 3rd volume
        original = SimCamera._render
        count = {"n": 0}

        def broken(self, z, aotf):
            count["n"] += 1
            if count["n"] == 10:
                raise OSError("camera link lost")
            return original(self, z, aotf)

        monkeypatch.setattr(SimCamera, "_render", broken)
    with pytest.raises(AcquisitionError) as info:
        run_plan(rig, prepared, out=tmp_path, writer_hook=None)
    assert "readable in" in str(info.value)
    # lasers: AOTF at 0 and the blanking closed, in the world and as the core reads them
    assert rig.world.lasers_off()
    assert float(rig.core.getProperty("AOTF", "488nm")) == 0.0
    assert not rig.core.getShutterOpen("Blanking")
    ds = open_dataset(info.value.dataset)
    assert ds.status == "failed" and "Error" in ds.meta["summary"]["error"]
    done = [rec["t"] for rec in ds.volumes]
    if failing == "piezo":  # setting up the 3rd stack fails: the run stops there
        assert done == [0, 1]
    else:  # the 3rd volume loses frames; the camera recovers for the 4th
        assert done == [0, 1, 3]
        assert "delivered 13 of 16 frames" in str(info.value)
        assert "(2, 0, 0)" in str(info.value)
    for rec in ds.volumes:
        vol = ds.volume(rec["t"], c=rec["c"])
        assert vol.shape == (4, 64, 64) and vol.min() > 0  # real frames, not fill value


def test_sigkill_leaves_readable_dataset(tmp_path):
    """Kill -9 mid-run: the dataset opens and holds every volume logged as complete."""
    cfg = tmp_path / "live.toml"
    cfg.write_text(
        (CONFIGS / "live-4d.toml")
        .read_text()
        .replace("volumes = 20", "volumes = 200")
        .replace("interval_s = 5.6", "interval_s = 0.0")
        .replace("planes = 25", "planes = 6")
        .replace("exposure_ms = 50.0", "exposure_ms = 10.0")
        .replace("camera_roi_px = [512, 512]", "camera_roi_px = [128, 128]")
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rcanlive",
            "acquire",
            "live",
            "--config",
            str(cfg),
            "--simulate",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = out / "live-4d.ome.zarr"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if len(read_log(path)) >= 3:
                break
            assert proc.poll() is None, "acquisition ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no volume was completed within 120 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    ds = open_dataset(path)
    assert ds.status == "acquiring"  # never finished: the kill left no summary
    assert len(ds.volumes) >= 3
    for rec in ds.volumes:
        vol = ds.volume(rec["t"], c=rec["c"])
        assert vol.shape == (6, 128, 128)
        assert vol.min() > 0 and np.isfinite(vol).all()
    # the NGFF metadata is intact for an independent reader
    from ome_zarr_models.v05.image import Image

    Image.from_zarr(zarr.open_group(path / "raw", mode="r"))
    # and the log's last line is complete JSON
    lines = (path / "volumes.jsonl").read_text().splitlines()
    json.loads(lines[len(ds.volumes) - 1])


@pytest.mark.parametrize("budget_frames", [3, None])
def test_slow_storage_keeps_frames_out_of_ram(
    budget_frames, open_sim_rig, sim_rig_config, tmp_path
):
    """A writer slower than the camera: at most the budget of frames waits in RAM."""
    plan = load_plan(CONFIGS / "live-4d.toml", "live").replace(
        volumes=4, interval_s=0.0, zstack={"planes": 8, "step_um": 0.5}, camera_roi_px=(64, 64)
    )
    frame_gb = 64 * 64 * 2 / 1e9
    budget = budget_frames if budget_frames is not None else 10_000
    plan = plan.replace(storage={**plan.storage.model_dump(), "max_backlog_gb": budget * frame_gb})
    prepared = prepare(plan, sim_rig_config)
    rig = open_sim_rig()
    backlog: list[int] = []

    def slow_consumer(n: int) -> None:  # on the relay thread, like a slow disk
        backlog.append(rig.core.mda.engine.delivered - n + 1)  # waiting, this one included
        time.sleep(0.01)

    result = run_plan(rig, prepared, out=tmp_path, on_frame=slow_consumer)
    assert result.frames == 32 and result.volumes == 4
    engine = rig.core.mda.engine
    waited = open_dataset(result.dataset).meta["summary"]["writer_wait_s"]
    if budget_frames is None:  # the control: unbounded, frames pile up in RAM
        assert max(backlog) > 3, backlog
        assert waited == 0
    else:
        assert max(backlog) <= budget_frames, backlog
        assert engine.throttled_s > 0 and waited == pytest.approx(engine.throttled_s, abs=1e-3)


def _storage_test_plan(sim_rig_config):
    """12 volumes of 4 planes; at most one frame may wait for the writer, so that the
    camera cannot run ahead of the storage (the bound below is then deterministic)."""
    plan = _small_live(volumes=12)
    storage = {**plan.storage.model_dump(), "max_backlog_gb": 64 * 64 * 2 / 1e9}
    return prepare(plan.replace(storage=storage), sim_rig_config)


def _watch_writes(monkeypatch, rig, fail_at: int | None = None) -> dict:
    """Wrap the raw writer: count calls, fail the ``fail_at``-th, note the frames
    delivered when a write failed."""
    import errno

    from rcanlive.storage import DatasetWriter

    original = DatasetWriter.write
    seen: dict = {"calls": 0, "delivered_at_failure": None}

    def write(self, volume):
        seen["calls"] += 1
        try:
            if seen["calls"] == fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(self, volume)
        except Exception:
            seen["delivered_at_failure"] = rig.core.mda.engine.delivered
            raise

    monkeypatch.setattr(DatasetWriter, "write", write)
    return seen


def _assert_stopped_safely(rig, info, seen: dict, written_before: int, planes: int = 4) -> None:
    """The run stopped within one volume of the failure, lasers off, data so far intact."""
    message = " ".join(str(info.value).split())
    assert "the acquisition was cancelled at once" in message
    assert "lasers were made safe" in message
    assert f"t={written_before} p=0 c=0" in message
    assert rig.world.lasers_off()
    assert float(rig.core.getProperty("AOTF", "488nm")) == 0.0
    assert not rig.core.getShutterOpen("Blanking")
    assert seen["calls"] == written_before + 1  # nothing written after the failure
    # at most the rest of the volume being acquired when the write failed
    delivered = rig.core.mda.engine.delivered
    assert delivered - seen["delivered_at_failure"] <= planes
    assert delivered <= (written_before + 2) * planes  # ≤ 4 volumes for a failure at the 3rd
    ds = open_dataset(info.value.dataset)
    assert [rec["t"] for rec in ds.volumes] == list(range(written_before))
    for rec in ds.volumes:
        vol = ds.volume(rec["t"], c=rec["c"])  # checksums verified
        assert vol.shape == (planes, 64, 64) and vol.min() > 0


def test_storage_failure_cancels_within_one_volume(
    open_sim_rig, sim_rig_config, tmp_path, monkeypatch
):
    """The raw writer fails at the 3rd volume: the MDA is cancelled at once."""
    prepared = _storage_test_plan(sim_rig_config)
    rig = open_sim_rig()
    seen = _watch_writes(monkeypatch, rig, fail_at=3)
    with pytest.raises(AcquisitionError) as info:
        run_plan(rig, prepared, out=tmp_path)
    assert "No space left on device" in str(info.value)
    _assert_stopped_safely(rig, info, seen, written_before=2)
    summary = open_dataset(info.value.dataset).meta["summary"]
    assert summary["failed_volume"] == [2, 0, 0] and summary["frames"] <= 16
    assert open_dataset(info.value.dataset).status == "failed"


def _mount_tmpfs(path: Path, size: str) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


def _fill(path: Path) -> None:
    """Fill the file system of ``path`` to the last byte."""
    with open(path, "wb", buffering=0) as f:
        for block in (1 << 16, 1 << 12, 1 << 8, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * block)


def test_real_disk_full_cancels_within_one_volume(
    open_sim_rig, sim_rig_config, tmp_path, monkeypatch
):
    """A tmpfs runs full after the 2nd volume (root only, skipped otherwise)."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "4m")
    try:
        prepared = _storage_test_plan(sim_rig_config)
        rig = open_sim_rig()
        seen = _watch_writes(monkeypatch, rig)
        ballast = disk / "ballast"

        def fill_after_second(volume) -> None:  # after the raw store, like any listener
            if volume.t == 1:
                _fill(ballast)

        with pytest.raises(AcquisitionError) as info:
            run_plan(rig, prepared, out=disk, listeners=[fill_after_second])
        assert "No space left on device" in str(info.value)
        ballast.unlink()
        _assert_stopped_safely(rig, info, seen, written_before=2)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
