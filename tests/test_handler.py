"""LiveRestorationHandler: any pymmcore-plus MDA → an rcanlive dataset, restored live.

A UniMMCore drives the simulated devices with pymmcore-plus's own engine; the sequences
are plain ``useq.MDASequence``\\ s written here. Every frame the camera delivered is
kept (on the acquisition thread) to compare with what the dataset holds.
"""

from __future__ import annotations

import functools
import gc
import os
import time
from datetime import timedelta

import numpy as np
import pytest
import useq

import stand_in_backends as stand_in
from rcanlive.acquisition import LiveRestorationHandler, RunStatus
from rcanlive.acquisition import handler as handler_module
from rcanlive.acquisition.structure import volume_structure
from rcanlive.config.experiment import Restoration
from rcanlive.config.rig import load_rig
from rcanlive.microscope import open_rig
from rcanlive.microscope.rig import simulated_rig_path
from rcanlive.storage import (
    DatasetLock,
    DatasetWriter,
    locked_by,
    open_dataset,
    read_log,
    restoration_records,
)

ROI = 24  # pixels: small frames, fast runs
PIXEL_UM = 0.0555
FOCUS_UM = 50.0


class Frames:
    """Every frame of a run, by the event's index (kept on the acquisition thread)."""

    def __init__(self, core) -> None:
        self.by_index: dict[tuple[tuple[str, int], ...], np.ndarray] = {}
        self.z_um: dict[tuple[tuple[str, int], ...], float] = {}
        self._signal = core.mda.events.frameReady
        self._signal.connect(self.frame)

    def stop(self) -> None:
        self._signal.disconnect(self.frame)

    def frame(self, img, event, meta) -> None:
        key = tuple(sorted((str(k), int(v)) for k, v in event.index.items()))
        self.by_index[key] = np.array(img, copy=True)
        self.z_um[key] = float(event.z_pos or 0.0)

    def plane(self, **index: int) -> np.ndarray:
        return self.by_index[tuple(sorted(index.items()))]


@pytest.fixture(scope="module")
def rig():
    """One simulated rig for the module (opening one takes seconds); pymmcore-plus's
    own engine runs the MDA."""
    config = load_rig(simulated_rig_path())
    config = config.replace(simulation={**config.simulation.model_dump(), "realtime": False})
    with pytest.MonkeyPatch.context() as mp:  # psygnal even if a QApplication exists
        mp.setenv("PYMM_SIGNALS_BACKEND", "psygnal")
        rig = open_rig(config)
    rig.core.setROI(0, 0, ROI, ROI)
    # a pixel size, as any calibrated set-up has (grids and the dataset's scale use it)
    rig.core.definePixelSizeConfig("sim")
    rig.core.setPixelSizeUm("sim", PIXEL_UM)
    rig.core.setPixelSizeConfig("sim")
    rig.define_illumination("a", {488: 1.0})
    rig.define_illumination("b", {561: 2.0})
    yield rig
    rig.close()
    del rig
    gc.collect()  # (an MMCore collected at interpreter exit can abort it)


def _sequence(
    axis_order: str = "tpcz",
    *,
    loops: int = 2,
    planes: int = 3,
    channels: tuple[str, ...] = ("a", "b"),
    positions: tuple[tuple[float, float], ...] = ((0.0, 0.0),),
    **extra,
) -> useq.MDASequence:
    return useq.MDASequence(
        axis_order=axis_order,
        time_plan=useq.TIntervalLoops(interval=timedelta(0), loops=loops) if loops else None,
        channels=[useq.Channel(group="Illumination", config=c, exposure=2.0) for c in channels],
        z_plan=useq.ZRangeAround(range=0.5 * (planes - 1), step=0.5) if planes > 1 else None,
        stage_positions=[useq.Position(x=x, y=y, z=FOCUS_UM) for x, y in positions],
        **extra,
    )


def _handler(core, path, **kwargs) -> LiveRestorationHandler:
    return LiveRestorationHandler(core, path, **kwargs)


@pytest.mark.parametrize("axis_order", ["tpcz", "tpzc"])
def test_dataset_holds_every_frame_as_acquire_writes_it(rig, tmp_path, axis_order):
    frames = Frames(rig.core)
    handler = _handler(rig.core, tmp_path / "run.ome.zarr")
    rig.core.mda.run(_sequence(axis_order), output=[handler])

    result = handler.result
    assert result.status is RunStatus.COMPLETED and result.error is None
    assert (result.frames, result.expected_frames, result.volumes) == (12, 12, 4)
    ds = open_dataset(result.dataset)
    assert (ds.kind, ds.status) == ("live", "completed")
    assert ds.image("raw").shape == (2, 2, 3, ROI, ROI)
    assert ds.meta["channels"] == ["a", "b"]
    assert ds.meta["geometry"]["z_step_um"] == 0.5
    assert ds.meta["geometry"]["pixel_size_um"] == PIXEL_UM
    records = read_log(result.dataset)
    assert sorted((r["t"], r["p"], r["c"]) for r in records) == [
        (t, 0, c) for t in range(2) for c in range(2)
    ]
    for r in records:
        t, c = r["t"], r["c"]
        raw = ds.volume(t, c=c)  # checksums verified
        planes = [frames.plane(t=t, p=0, c=c, z=z) for z in range(3)]
        np.testing.assert_array_equal(raw, np.stack(planes))
        assert r["channel"] == "ab"[c]
        assert r["z_um"] == [
            frames.z_um[tuple(sorted({"t": t, "p": 0, "c": c, "z": z}.items()))] for z in range(3)
        ]
    assert locked_by(result.dataset) is None
    assert ds.meta["rig"]["camera"] == {
        "offset_counts": 100.0,
        "electrons_per_count": 0.46,
        "read_noise_e": 1.3,
    }
    assert set(ds.meta["rig"]["camera_parameters_from"].values()) == {"default"}


def test_each_volume_is_restored_by_the_workers_without_holding_up_frames(
    rig, tmp_path, tiny_checkpoint
):
    # every restoration takes ≥ 0.5 s: a handler waiting for it would store the
    # 4 volumes at least 1.5 s apart
    opener = functools.partial(stand_in.waits, tiny_checkpoint, 0.5)
    stored: list[float] = []
    events = []
    handler = _handler(
        rig.core,
        tmp_path / "restored",
        model=opener,
        restoration=Restoration(devices=("cpu",), threads=1, policy="fifo", max_queue=8),
    )
    handler.listeners.append(lambda volume: stored.append(time.perf_counter()))
    handler.restoration_listeners.append(events.append)
    rig.core.mda.run(_sequence("tpzc"), output=[handler])

    result = handler.result
    assert result.dataset.name == "restored.ome.zarr"
    assert result.status is RunStatus.COMPLETED
    assert len(stored) == 4 and max(stored) - min(stored) < 1.0
    assert result.restored == 4 and result.restoration["skipped"] == []
    assert [e.status for e in events] == ["restored"] * 4
    ds = open_dataset(result.dataset)
    assert sorted(ds.restored_keys()) == [(t, 0, c) for t in range(2) for c in range(2)]
    restored = ds.volume(1, c=1, image="restored")
    assert restored.shape == (3, ROI, ROI) and restored.dtype == np.float32
    assert np.isfinite(restored).all() and restored.std() > 0
    assert ds.meta["restoration"]["restored"] == 4
    assert locked_by(result.dataset) is None  # released once the last one was in


def test_workers_that_cannot_start_leave_a_complete_raw_dataset(rig, tmp_path, tiny_checkpoint):
    opener = functools.partial(stand_in.fails_to_open, tiny_checkpoint)
    handler = _handler(rig.core, tmp_path / "nogpu", model=opener)
    rig.core.mda.run(_sequence(planes=2), output=[handler])

    result = handler.result
    assert result.status is RunStatus.COMPLETED and result.volumes == 4
    assert result.restored == 0 and result.restoration["failed"] == 4
    assert "no CUDA-capable device" in result.restoration["error"]
    records = restoration_records(result.dataset)
    assert sorted(records) == [(t, 0, c) for t in range(2) for c in range(2)]
    assert {r["status"] for r in records.values()} == {"failed"}
    assert locked_by(result.dataset) is None


def test_connected_to_the_core_records_every_run_a_gui_starts(rig, tmp_path):
    """No ``output=``: the handler listens to ``core.mda.events`` (as with a GUI);
    a 2D sequence makes one-plane volumes; each run gets a dataset of its own."""
    sequence = _sequence(planes=1, channels=("a",), loops=3)
    runs = []
    with _handler(rig.core, tmp_path / "gui") as handler:
        for _ in range(2):
            runs.append(Frames(rig.core))
            rig.core.run_mda(sequence).join()  # how pymmcore-plus GUIs start an MDA
            runs[-1].stop()
            assert handler.wait(timeout=30) is handler.results[-1]
    rig.core.run_mda(sequence).join()  # after disconnecting: not recorded

    assert [r.dataset.name for r in handler.results] == ["gui.ome.zarr", "gui_1.ome.zarr"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gui.ome.zarr", "gui_1.ome.zarr"]
    for result, frames in zip(handler.results, runs, strict=True):
        assert result.status is RunStatus.COMPLETED
        ds = open_dataset(result.dataset)
        assert ds.image("raw").shape == (3, 1, 1, ROI, ROI)
        for t in range(3):
            np.testing.assert_array_equal(ds.volume(t), frames.plane(t=t, p=0, c=0)[None])


@pytest.fixture
def qt_gui(monkeypatch, request):
    """A QApplication, as a GUI has: cores made now emit Qt signals."""
    pytest.importorskip("pytestqt")
    monkeypatch.setenv("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    return request.getfixturevalue("qapp")


def test_connected_under_qt_frames_need_no_event_loop(qt_gui, open_sim_rig, tmp_path):
    """Under a Qt GUI the core's signals are Qt's; the handler takes them on the
    acquisition thread, so frames are stored even while the GUI thread is busy (here:
    blocked in ``join``) instead of waiting for its event loop."""
    rig = open_sim_rig()
    rig.core.setROI(0, 0, ROI, ROI)
    rig.define_illumination("a", {488: 1.0})
    assert type(rig.core.mda.events).__name__ == "QMDASignaler"
    with LiveRestorationHandler(rig.core, tmp_path / "qt", pixel_size_um=PIXEL_UM) as handler:
        rig.core.run_mda(_sequence(channels=("a",))).join()
        result = handler.wait(timeout=30)
    assert result is not None and result.status is RunStatus.COMPLETED
    assert (result.volumes, result.frames) == (2, 6)


def test_positions_of_a_single_time_point_become_tiles_at_their_stage_positions(rig, tmp_path):
    frames = Frames(rig.core)
    sequence = useq.MDASequence(
        stage_positions=[useq.Position(x=10.0, y=-5.0, z=FOCUS_UM)],
        grid_plan=useq.GridRowsColumns(rows=1, columns=2, overlap=10),
        channels=[useq.Channel(group="Illumination", config="a", exposure=2.0)],
        z_plan=useq.ZRangeAround(range=0.5, step=0.5),
        axis_order="pgcz",
    )
    handler = _handler(rig.core, tmp_path / "tiles")
    rig.core.mda.run(sequence, output=[handler])

    result = handler.result
    assert (result.status, result.kind, result.volumes) == (RunStatus.COMPLETED, "tile", 2)
    ds = open_dataset(result.dataset)
    manifest = ds.tile_manifest()
    assert [(t["row"], t["col"]) for t in manifest] == [(0, 0), (0, 1)]
    # the grid's fields sit one field of view (less 10 %) apart, around the position
    step = manifest[1]["x_um"] - manifest[0]["x_um"]
    assert step == pytest.approx(ROI * PIXEL_UM * 0.9, rel=1e-3)
    assert (manifest[0]["x_um"] + manifest[1]["x_um"]) / 2 == pytest.approx(10.0)
    for tile in range(2):
        planes = [frames.plane(p=0, g=tile, c=0, z=z) for z in range(2)]
        np.testing.assert_array_equal(ds.volume(0, p=tile), np.stack(planes))
        assert read_log(result.dataset)[tile]["position"] == tile


def test_positions_over_time_are_channels_of_one_live_image(rig, tmp_path):
    frames = Frames(rig.core)
    sequence = _sequence("tpcz", planes=2, positions=((0.0, 0.0), (30.0, 0.0)))
    handler = _handler(rig.core, tmp_path / "multi")
    rig.core.mda.run(sequence, output=[handler])

    ds = open_dataset(handler.result.dataset)
    assert handler.result.status is RunStatus.COMPLETED
    assert ds.meta["channels"] == ["p0/a", "p0/b", "p1/a", "p1/b"]
    assert ds.image("raw").shape == (2, 4, 2, ROI, ROI)
    for r in read_log(handler.result.dataset):
        p, c = divmod(r["c"], 2)
        assert r["position"] == p and r["xy_um"] == [30.0 * p, 0.0]
        planes = [frames.plane(t=r["t"], p=p, c=c, z=z) for z in range(2)]
        np.testing.assert_array_equal(ds.volume(r["t"], c=r["c"]), np.stack(planes))


def test_a_dataset_it_cannot_write_cancels_the_mda(rig, tmp_path):
    path = tmp_path / "busy.ome.zarr"
    with DatasetLock(path, "another rcanlive run"):
        handler = _handler(rig.core, path, overwrite=True)
        rig.core.mda.run(_sequence(), output=[handler])
    result = handler.result
    assert result.status is RunStatus.FAILED and result.dataset is None
    assert "another rcanlive run" in result.error
    assert str(rig.core.mda.status.finish_reason) == "canceled"


def test_a_storage_failure_cancels_the_mda_and_keeps_what_was_stored(rig, tmp_path, monkeypatch):
    real_write = DatasetWriter.write

    def write(self, volume):
        if self.written:  # the disk fills up after the first volume
            raise OSError(28, "No space left on device")
        real_write(self, volume)

    monkeypatch.setattr(DatasetWriter, "write", write)
    handler = _handler(rig.core, tmp_path / "full")
    sequence = _sequence(loops=4).replace(time_plan={"interval": 0.3, "loops": 4})
    rig.core.mda.run(sequence, output=[handler])

    result = handler.result
    assert result.status is RunStatus.FAILED and result.volumes == 1
    assert "writing the raw data failed at volume t=0 p=0 c=1" in result.error
    assert "No space left" in result.error
    assert str(rig.core.mda.status.finish_reason) == "canceled"
    assert result.frames < result.expected_frames == 24  # stopped early
    ds = open_dataset(result.dataset)
    assert ds.status == "failed" and ds.keys() == [(0, 0, 0)]
    assert ds.volume(0).shape == (3, ROI, ROI)
    assert locked_by(result.dataset) is None


def test_a_sequence_with_unequal_volumes_is_refused_with_the_reason(rig, tmp_path):
    sequence = _sequence(channels=("a",)).replace(
        channels=[useq.Channel(group="Illumination", config="a", do_stack=False)]
    )
    handler = _handler(rig.core, tmp_path / "flat")
    rig.core.mda.run(sequence, output=[handler])
    assert handler.result.status is RunStatus.FAILED
    assert "do_stack=False" in handler.result.error
    assert not (tmp_path / "flat.ome.zarr").exists()


def test_camera_parameters_come_from_arguments_then_properties_then_defaults(rig, monkeypatch):
    monkeypatch.setitem(handler_module.CAMERA_PROPERTIES, "read_noise_e", ("NoSuch", "Exposure"))
    rig.core.setExposure(7.0)
    camera, sources = handler_module.camera_parameters(rig.core, offset_counts=99.0)
    assert (camera.offset_counts, camera.electrons_per_count, camera.read_noise_e) == (
        99.0,
        0.46,
        7.0,
    )
    assert sources == {
        "offset_counts": "argument",
        "electrons_per_count": "default",
        "read_noise_e": "property Camera.Exposure",
    }


def _z(n: int) -> useq.ZRangeAround:
    return useq.ZRangeAround(range=n - 1, step=1.0)


STRUCTURES = {
    "time-lapse": (
        {"time_plan": {"interval": 2, "loops": 3}, "channels": ["a", "b"], "z_plan": _z(4)},
        ("live", 3, 4, ("a", "b"), 24, 2.0),
    ),
    "z-stack, no channel": ({"z_plan": _z(3)}, ("live", 1, 3, ("default",), 3, 0.0)),
    "snapshot 2D": ({"channels": ["a"]}, ("live", 1, 1, ("a",), 1, 0.0)),
    "nothing": ({}, ("live", 1, 1, ("default",), 0, 0.0)),
    "every 2nd time point": (
        {
            "time_plan": {"interval": 1, "loops": 5},
            "channels": [useq.Channel(config="a"), useq.Channel(config="b", acquire_every=2)],
        },
        ("live", 5, 1, ("a", "b"), 5 + 3, 1.0),
    ),
    "grid": (
        {"grid_plan": {"rows": 2, "columns": 2}, "channels": ["a"], "z_plan": _z(2)},
        ("tile", 1, 2, ("a",), 8, 0.0),
    ),
    "positions over time": (
        {
            "time_plan": {"interval": 1, "loops": 2},
            "stage_positions": [(0, 0, 0), (5, 5, 0)],
            "channels": ["a"],
        },
        ("live", 2, 1, ("a",), 4, 1.0),
    ),
    "grid in one position": (
        {
            "stage_positions": [
                useq.Position(
                    x=0, y=0, sequence=useq.MDASequence(grid_plan={"rows": 1, "columns": 3})
                ),
                useq.Position(x=9, y=9),
            ],
            "channels": ["a"],
        },
        ("tile", 1, 1, ("a",), 4, 0.0),
    ),
}


@pytest.mark.parametrize("case", list(STRUCTURES))
def test_volume_structure_is_read_from_the_sequence(case):
    kwargs, (kind, n_t, planes, channels, frames, interval) = STRUCTURES[case]
    s = volume_structure(useq.MDASequence(**kwargs))
    assert (s.kind, s.n_t, s.planes, s.channels, s.interval_s) == (
        kind,
        n_t,
        planes,
        channels,
        interval,
    )
    assert s.expected_frames == frames == sum(1 for _ in useq.MDASequence(**kwargs))


def test_volume_structure_refuses_positions_with_their_own_channels():
    sub = useq.MDASequence(channels=["b"])
    with pytest.raises(ValueError, match="own channels"):
        volume_structure(useq.MDASequence(stage_positions=[useq.Position(x=0, y=0, sequence=sub)]))
