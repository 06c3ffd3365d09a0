"""Each plan acquires the right frames at the right z, xy and intensity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rcanlive.acquisition import prepare, run_plan, serpentine
from rcanlive.config.experiment import load_plan
from rcanlive.storage import open_dataset

if TYPE_CHECKING:
    import numpy as np

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class FrameRecorder:
    """Records what the simulated camera really did for each frame."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    def __call__(self, img: np.ndarray, event, meta: dict) -> None:
        cam = meta.get("camera_metadata", {})
        self.frames.append(
            {
                "index": dict(event.index),
                "z": float(cam["sim_z_um"]),
                "intensity": float(cam["sim_intensity_w_cm2"]),
                "xy": tuple(float(v) for v in cam["sim_stage_true_um"].split(",")),
                "mean": float(img.mean()),
            }
        )


def _run(open_sim_rig, sim_rig_config, plan, tmp_path):
    rig_cfg = sim_rig_config
    if plan.simulation is not None:
        rig_cfg = rig_cfg.replace(simulation={**plan.simulation.model_dump(), "realtime": False})
    prepared = prepare(plan, rig_cfg)
    rig = open_sim_rig(rig_cfg)
    rec = FrameRecorder()
    rig.core.mda.events.frameReady.connect(rec)
    result = run_plan(rig, prepared, out=tmp_path)
    assert rig.world.lasers_off()
    return prepared, result, rec.frames


def test_live_plan_frames_z_and_intensity(open_sim_rig, sim_rig_config, tmp_path):
    plan = load_plan(CONFIGS / "live-4d.toml", "live").replace(
        volumes=3, interval_s=0.0, zstack={"planes": 5, "step_um": 0.5}, camera_roi_px=(64, 64)
    )
    prepared, result, frames = _run(open_sim_rig, sim_rig_config, plan, tmp_path)
    assert result.frames == len(frames) == 3 * 5 == prepared.n_frames
    assert result.volumes == 3 and result.frames_lost == 0
    zs = sorted({f["z"] for f in frames})
    assert zs == pytest.approx([49.0, 49.5, 50.0, 50.5, 51.0])
    for f in frames:  # hardware-sequenced: the camera saw the piezo at the event's z
        assert f["z"] == pytest.approx(49.0 + 0.5 * f["index"]["z"])
        assert f["intensity"] == pytest.approx(4.2, rel=0.01)
    ds = open_dataset(result.dataset)
    assert ds.status == "completed"
    assert [(v["t"], v["c"]) for v in ds.volumes] == [(0, 0), (1, 0), (2, 0)]


def test_pairs_differ_only_in_intensity(open_sim_rig, sim_rig_config, tmp_path):
    plan = load_plan(CONFIGS / "training-pairs.toml", "pairs").replace(
        volumes_per_position=2, zstack={"planes": 4, "step_um": 0.5}, camera_roi_px=(64, 64)
    )
    _prepared, result, frames = _run(open_sim_rig, sim_rig_config, plan, tmp_path)
    n_pos = len(plan.positions_um)
    assert len(frames) == 2 * n_pos * 2 * 4 == result.frames
    # switch = "plane": low, high, low, high ... at every plane
    lows, highs = frames[0::2], frames[1::2]
    assert all(f["index"]["c"] == 0 for f in lows) and all(f["index"]["c"] == 1 for f in highs)
    for lo, hi in zip(lows, highs, strict=True):
        assert lo["z"] == hi["z"] and lo["xy"] == hi["xy"]
        assert {k: v for k, v in lo["index"].items() if k != "c"} == {
            k: v for k, v in hi["index"].items() if k != "c"
        }
        assert lo["intensity"] == pytest.approx(0.3e-3 / (106e-4 * 68e-4), rel=0.01)
        assert hi["intensity"] == pytest.approx(33e-3 / (106e-4 * 68e-4), rel=0.01)
    visited = {f["xy"] for f in frames}
    assert visited == {tuple(p) for p in plan.positions_um}
    from rcanlive.storage import read_pairs

    pairs = list(read_pairs(result.dataset))
    assert len(pairs) == 2 * n_pos
    for low, high in pairs:
        assert low.shape == high.shape == (4, 64, 64)
        assert high.mean() > low.mean()


def test_pairs_per_volume_switching(open_sim_rig, sim_rig_config, tmp_path):
    plan = load_plan(CONFIGS / "training-pairs.toml", "pairs").replace(
        volumes_per_position=1,
        positions_um=[(0.0, 0.0)],
        switch="volume",
        zstack={"planes": 3, "step_um": 0.5},
        camera_roi_px=(32, 32),
    )
    _, _, frames = _run(open_sim_rig, sim_rig_config, plan, tmp_path)
    assert [f["index"]["c"] for f in frames] == [0, 0, 0, 1, 1, 1]
    assert [f["z"] for f in frames[:3]] == [f["z"] for f in frames[3:]]


def test_tiling_is_serpentine_and_matches_manifest(open_sim_rig, sim_rig_config, tmp_path):
    plan = load_plan(CONFIGS / "gel-tiling.toml", "tile")
    plan = plan.replace(
        rows=3,
        columns=4,
        step_um=5.0,
        zstack={"planes": 2, "step_um": 0.5},
        camera_roi_px=(128, 128),
        # a perfect stage: the positions the camera saw are the commanded ones
        simulation={**plan.simulation.model_dump(), "stage_error_um": 0.0},
    )
    _prepared, result, frames = _run(open_sim_rig, sim_rig_config, plan, tmp_path)
    assert result.frames == 3 * 4 * 2
    manifest = open_dataset(result.dataset).tile_manifest()
    assert [(t["row"], t["col"]) for t in manifest] == serpentine(3, 4)
    assert serpentine(3, 4)[:8] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (1, 2), (1, 1), (1, 0)]
    # the stage visited the manifest positions, in manifest order
    per_tile = [frames[i * 2]["xy"] for i in range(12)]
    assert per_tile == [(t["x_um"], t["y_um"]) for t in manifest]
    xs = [t["x_um"] for t in manifest]
    assert xs[:4] == sorted(xs[:4]) and xs[4:8] == sorted(xs[4:8], reverse=True)
