"""The one command of a tiling experiment: scan → restore each tile → stitch both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from rcanlive.cli import main
from rcanlive.storage import open_dataset, restoration_records

ROOT = Path(__file__).resolve().parents[1]


def _footprint(stitching: dict, shape: tuple[int, ...], tile_px: int) -> np.ndarray:
    """Where the mosaic's tiles lie: their placed positions minus the mosaic's origin."""
    mask = np.zeros(shape, bool)
    oy, ox = stitching["origin_px"]
    for tile in stitching["tiles"]:
        y, x = (round(v - o) for v, o in zip(tile["position_px"], (oy, ox), strict=True))
        mask[max(y, 0) : y + tile_px, max(x, 0) : x + tile_px] = True
    return mask


def test_acquire_tile_restores_and_stitches(tmp_path, capsys):
    cfg = tmp_path / "gel.toml"
    cfg.write_text(
        (ROOT / "configs/gel-tiling.toml")
        .read_text()
        .replace("camera_roi_px = [512, 512]", "camera_roi_px = [128, 128]")
        .replace("step_um = 22.0", "step_um = 5.5")  # 22.5 % overlap of a 7.1 µm field
        .replace("planes = 16", "planes = 8")
        .replace("rows = 3", "rows = 2")
        .replace("gel_fields = [3, 3]", "gel_fields = [1, 1]\nrealtime = false")
    )
    model = ROOT / "src/rcanlive/model/bundled/rcan-isim-sim.pt"
    argv = ["acquire", "tile", "-c", str(cfg), "--simulate", "--out", str(tmp_path)]
    assert main([*argv, "--model", str(model), "--backend", "eager", "--precision", "fp32"]) == 0
    err = capsys.readouterr().err
    path = tmp_path / "gel-tiling.ome.zarr"

    ds = open_dataset(path)
    assert len(ds.volumes) == 6
    records = restoration_records(path)
    assert sorted(k[1] for k, r in records.items() if r["status"] == "restored") == list(range(6))
    for name in ("stitched", "stitched_restored"):
        group = zarr.open_group(path / name)
        tiles = group.attrs["rcanlive"]["stitching"]["tiles"]
        assert len(tiles) == 6 and all(t["status"] != "missing" for t in tiles), tiles
        level0 = np.asarray(group["0"])
        # the mosaic is wider than a tile in both directions, and every tile's footprint
        # is filled, not left at zero (the corners of the bounding box may stay empty)
        assert level0.shape[-2] > 128 and level0.shape[-1] > 2 * 128
        footprint = _footprint(group.attrs["rcanlive"]["stitching"], level0.shape[-2:], 128)
        assert (level0.max(axis=(0, 1))[footprint] > 0).mean() > 0.98
    assert "stitched_restored" in err
    # restoration does not move the sample: the restored mosaic reuses the raw one's
    # tile positions, so the two overlay pixel for pixel
    raw, restored = (zarr.open_group(path / n) for n in ("stitched", "stitched_restored"))
    raw_st, restored_st = (g.attrs["rcanlive"]["stitching"] for g in (raw, restored))
    assert restored_st["positions_from"] == "stitched" and raw_st["positions_from"] is None
    assert raw["0"].shape[-2:] == restored["0"].shape[-2:]
    assert raw_st["origin_px"] == restored_st["origin_px"]
    assert [t.get("position_px") for t in raw_st["tiles"]] == [
        t.get("position_px") for t in restored_st["tiles"]
    ]

    # --no-stitch leaves the tiles alone
    assert main([*argv, "--overwrite", "--no-stitch"]) == 0
    assert not (path / "stitched").exists()
