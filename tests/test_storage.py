"""Reading back gives exactly what was acquired; an independent reader validates it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image

from rcanlive.acquisition import prepare, run_plan
from rcanlive.config.experiment import load_plan
from rcanlive.storage import open_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _acquire(open_sim_rig, sim_rig_config, plan, tmp_path):
    rig_cfg = sim_rig_config
    if plan.simulation is not None:
        rig_cfg = rig_cfg.replace(simulation={**plan.simulation.model_dump(), "realtime": False})
    seen: list = []
    rig = open_sim_rig(rig_cfg)
    result = run_plan(
        rig, prepare(plan, rig_cfg), out=tmp_path, listeners=[lambda v: seen.append(v)]
    )
    return result, seen


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_live_readback_is_exact(open_sim_rig, sim_rig_config, tmp_path, compression):
    plan = load_plan(CONFIGS / "live-4d.toml", "live").replace(
        volumes=2,
        interval_s=0.0,
        zstack={"planes": 3, "step_um": 0.4},
        camera_roi_px=(48, 40),
        storage={"name": "exact", "compression": compression},
    )
    result, seen = _acquire(open_sim_rig, sim_rig_config, plan, tmp_path)
    ds = open_dataset(result.dataset)
    assert len(seen) == 2
    for v in seen:
        np.testing.assert_array_equal(ds.volume(v.t, c=v.c), v.data)
    img = Image.from_zarr(zarr.open_group(result.dataset / "raw", mode="r"))
    ms = img.attributes.ome.multiscales[0]
    assert [a.name for a in ms.axes] == ["t", "c", "z", "y", "x"]
    scale = ms.datasets[0].coordinateTransformations[0].scale
    assert scale[2:] == pytest.approx([0.4, 0.0555, 0.0555])
    assert ds.image("raw").shape == (2, 1, 3, 40, 48)
    assert ds.meta["summary"]["frames"] == 6


def test_pairs_and_tiles_validate(open_sim_rig, sim_rig_config, tmp_path):
    pairs = load_plan(CONFIGS / "training-pairs.toml", "pairs").replace(
        volumes_per_position=1,
        zstack={"planes": 2, "step_um": 0.5},
        camera_roi_px=(32, 32),
    )
    result, seen = _acquire(open_sim_rig, sim_rig_config, pairs, tmp_path)
    for name in ("pairs/low", "pairs/high"):
        Image.from_zarr(zarr.open_group(result.dataset / name, mode="r"))
    ds = open_dataset(result.dataset)
    for v in seen:
        np.testing.assert_array_equal(ds.volume(v.t, p=v.p, c=v.c), v.data)

    tiles = load_plan(CONFIGS / "gel-tiling.toml", "tile").replace(
        rows=2,
        columns=2,
        step_um=1.0,
        zstack={"planes": 2, "step_um": 0.5},
        camera_roi_px=(32, 32),
        storage={"name": "tiles"},
        simulation={"sample": "phantoms"},
    )
    result, seen = _acquire(open_sim_rig, sim_rig_config, tiles, tmp_path)
    ds = open_dataset(result.dataset)
    for tile in ds.tile_manifest():
        group = zarr.open_group(result.dataset / "tiles" / f"{tile['index']:04d}", mode="r")
        img = Image.from_zarr(group)
        tr = img.attributes.ome.multiscales[0].datasets[0].coordinateTransformations[1]
        # the tile's NGFF translation places its centre at the stage position
        assert tr.translation[3] + 16 * 0.0555 == pytest.approx(tile["x_um"])
        assert tr.translation[2] + 16 * 0.0555 == pytest.approx(tile["y_um"])
        np.testing.assert_array_equal(ds.volume(0, p=tile["index"]), seen[tile["index"]].data)


def test_refuses_to_overwrite(tmp_path):
    from rcanlive.storage import DatasetWriter, Geometry

    g = Geometry(planes=1, height=4, width=4, pixel_size_um=0.1, z_step_um=0.2)
    DatasetWriter(tmp_path / "a.ome.zarr", "live", g, plan={}, rig={}).finish("completed")
    with pytest.raises(FileExistsError, match="already exists"):
        DatasetWriter(tmp_path / "a.ome.zarr", "live", g, plan={}, rig={})


def test_volume_is_its_frames_read_only_and_stacks_on_demand():
    from rcanlive.storage.volume import Volume

    frames = [np.full((4, 5), z, np.uint16) for z in range(3)]
    vol = Volume(tuple(frames), 0, 0, 0, "488", (0.0, 0.5, 1.0), (0.0, 0.0), 0.0)
    assert vol.shape == (3, 4, 5) and "data" not in vol.__dict__  # nothing stacked yet
    assert vol.planes[1] is frames[1] and not frames[1].flags.writeable
    np.testing.assert_array_equal(vol.data[:, 0, 0], [0, 1, 2])
    assert not vol.data.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        vol.planes[0][0, 0] = 7
    array = np.zeros((2, 4, 5), np.uint16)
    from_array = Volume.from_array(array, 1, 0, 0, "488", (0.0, 0.5), (0.0, 0.0), 0.0)
    assert from_array.data is array and np.shares_memory(from_array.planes[1], array)
    assert not array.flags.writeable  # the volume owns it now
    with pytest.raises(ValueError, match="Z, Y, X"):
        Volume.from_array(array[0], 1, 0, 0, "488", (0.0,), (0.0, 0.0), 0.0)


def _small_writer(path, *, overwrite: bool = False, n_t: int = 3):
    from rcanlive.storage import DatasetWriter, Geometry

    g = Geometry(planes=2, height=4, width=4, pixel_size_um=0.1, z_step_um=0.2, n_t=n_t)
    return DatasetWriter(path, "live", g, plan={}, rig={}, overwrite=overwrite)


def _vol(t: int):
    from rcanlive.storage.volume import Volume

    data = np.full((2, 4, 4), 100 + t, np.uint16)
    return Volume.from_array(data, t, 0, 0, "488", (0.0, 0.2), (0.0, 0.0), float(t))


def test_refuses_to_overwrite_with_a_clear_error(tmp_path):
    from rcanlive.cli.app import user_error_message
    from rcanlive.storage import DatasetError, DatasetExists

    _small_writer(tmp_path / "a.ome.zarr").finish("completed")
    with pytest.raises(DatasetExists, match="already exists; replace it") as info:
        _small_writer(tmp_path / "a.ome.zarr")
    assert isinstance(info.value, DatasetError) and isinstance(info.value, FileExistsError)
    # the library's remedy is said in options on the command line
    assert "pass --overwrite to replace it" in (user_error_message(info.value) or "")
    assert (tmp_path / "a.ome.zarr" / "zarr.json").is_file()  # nothing was deleted


@pytest.mark.parametrize("overwrite", [False, True])
def test_second_writer_is_refused_and_the_first_completes(tmp_path, overwrite):
    from rcanlive.cli.app import user_error_message
    from rcanlive.storage import DatasetLocked, locked_by

    path = tmp_path / "run.ome.zarr"
    first = _small_writer(path)
    first.write(_vol(0))
    with pytest.raises(DatasetLocked) as info:
        _small_writer(path, overwrite=overwrite)
    message = " ".join(str(info.value).split())
    assert f"{path} is being written by process {os.getpid()} (rcanlive" in message
    assert "wait for it to finish or write to another path" in message
    assert "choose another --out" in (user_error_message(info.value) or "")
    assert info.value.pid == os.getpid()
    assert locked_by(path) is not None and locked_by(path)[0] == os.getpid()
    first.write(_vol(1))  # the refused writer deleted nothing
    first.write(_vol(2))
    first.finish("completed")
    assert locked_by(path) is None  # released by finish()
    ds = open_dataset(path)
    assert ds.status == "completed" and [r["t"] for r in ds.volumes] == [0, 1, 2]
    for t in range(3):
        assert (ds.volume(t) == 100 + t).all()
    # once released, --overwrite replaces it
    again = _small_writer(path, overwrite=True)
    assert open_dataset(path).volumes == []
    again.finish("completed")


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    from rcanlive.storage import DatasetLocked, lock_dataset, locked_by

    path = tmp_path / "run.ome.zarr"
    script = (
        "import sys, time\n"
        "from rcanlive.storage import DatasetLock\n"
        "lock = DatasetLock(sys.argv[1], 'rcanlive acquire live').acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(DatasetLocked, match=f"process {proc.pid} \\(rcanlive acquire live\\)"):
            _small_writer(path, overwrite=True)
        assert locked_by(path) == (proc.pid, "rcanlive acquire live")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert locked_by(path) is None  # the kernel released it with the process
    with lock_dataset(path, "rcanlive restore") as lock:
        assert lock.held and locked_by(path) == (os.getpid(), "rcanlive restore")
    _small_writer(path).finish("completed")  # only the lock file was there: not "exists"


def test_lock_can_be_handed_over_past_finish(tmp_path):
    """Live restoration keeps writing after the raw writer finished: it takes the lock."""
    from rcanlive.storage import DatasetLocked, locked_by

    path = tmp_path / "run.ome.zarr"
    writer = _small_writer(path)
    lock = writer.detach_lock()
    writer.finish("completed")
    assert lock is not None and locked_by(path) is not None
    with pytest.raises(DatasetLocked):
        _small_writer(path, overwrite=True)
    lock.release()
    assert locked_by(path) is None
