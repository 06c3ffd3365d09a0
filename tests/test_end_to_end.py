"""The loop a user runs: acquire pairs → train → export → acquire live with that model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcanlive.cli import main
from rcanlive.simulation.world import get_world
from rcanlive.storage import open_dataset, read_restored

ROOT = Path(__file__).resolve().parents[1]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_pairs_train_export_live(tmp_path):
    pairs_cfg = tmp_path / "pairs.toml"
    pairs_cfg.write_text(
        (ROOT / "configs/bundled/pairs.toml")
        .read_text()
        .replace("camera_roi_px = [256, 256]", "camera_roi_px = [96, 96]")
        .replace("planes = 16", "planes = 8")
    )
    assert main(["simulate", "pairs", "--config", str(pairs_cfg), "--out", str(tmp_path)]) == 0

    train_cfg = tmp_path / "train.toml"
    train_cfg.write_text(
        (ROOT / "configs/bundled/train.toml")
        .read_text()
        .replace("patch_shape = [16, 128, 128]", "patch_shape = [8, 64, 64]")
        .replace("steps_per_epoch = 40", "steps_per_epoch = 20")
        .replace(
            'pairs = "data/bundled-pairs.ome.zarr"',
            f'pairs = "{tmp_path / "bundled-pairs.ome.zarr"}"',
        )
        .replace("n_groups = 2", "n_groups = 1")
        .replace("n_blocks = 2", "n_blocks = 1")
        .replace("channels = 16", "channels = 12")
    )
    assert main(["train", "--config", str(train_cfg), "--out", str(tmp_path / "run")]) == 0
    ckpt = tmp_path / "run" / "best.pt"
    assert ckpt.is_file()

    onnx = tmp_path / "model.onnx"
    assert (
        main(
            [
                "export",
                str(ckpt),
                "--backend",
                "onnx",
                "--precision",
                "fp32",
                "--tile",
                "8,96,96",
                "--out",
                str(onnx),
            ]
        )
        == 0
    )

    live_cfg = tmp_path / "live.toml"
    live_cfg.write_text(
        (ROOT / "configs/live-4d.toml")
        .read_text()
        .replace("volumes = 20", "volumes = 2")
        .replace("interval_s = 5.6", "interval_s = 0.2")
        .replace("camera_roi_px = [512, 512]", "camera_roi_px = [96, 96]")
        .replace("planes = 25", "planes = 8")
        .replace('name = "live-4d"', 'name = "live"')
        + '\n[simulation]\nsample = "mitochondria"\nseed = 7\nrealtime = false\n'
    )
    assert (
        main(
            [
                "acquire",
                "live",
                "--config",
                str(live_cfg),
                "--simulate",
                "--out",
                str(tmp_path),
                "--model",
                str(onnx),
                "--backend",
                "onnx",
            ]
        )
        == 0
    )

    ds = open_dataset(tmp_path / "live.ome.zarr")
    assert ds.meta["restoration"]["restored"] == 2
    world = get_world()  # the simulator that produced the data knows the truth
    for rec in ds.volumes:
        truth = world.ground_truth((96, 96), rec["z_um"])
        raw = ds.volume(rec["t"]).astype(np.float32)
        restored = read_restored(ds, rec["t"])
        assert _corr(restored, truth) > _corr(raw, truth) + 0.01
