"""Stitching: registration accuracy on the simulated gel, global placement, blended
chunked fusion into a validated NGFF pyramid, bad input, restored tiles, the CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image
from scipy import ndimage

from rcanlive.acquisition import prepare, run_plan
from rcanlive.acquisition.plans import serpentine
from rcanlive.cli import main
from rcanlive.config.experiment import load_plan
from rcanlive.stitching import (
    PairShift,
    StitchWarning,
    TileReader,
    load_layout,
    solve_positions,
    stitch_dataset,
    use_scheduler,
)
from rcanlive.stitching.fusion import chunk_jobs, fuse_chunk, plan_fusion
from rcanlive.stitching.layout import Tile
from rcanlive.storage import DatasetWriter, Geometry, RestoredWriter, Volume, read_log

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PX = 0.0555
TILE = 256


# -- the simulated rig ------------------------------------------------------------------
def _acquire_gel(open_sim_rig, sim_rig_config, tmp_path, stage_error_um=1.0):
    """3×3 tiles of 256×256×8 px over the simulated gel, 30 % overlap, stage error σ."""
    sim = {
        **sim_rig_config.simulation.model_dump(),
        "sample": "gel",
        "gel_fields": (1, 1),
        "stage_error_um": stage_error_um,
        "seed": 3,
    }
    rig_cfg = sim_rig_config.replace(simulation=sim)
    plan = load_plan(CONFIGS / "gel-tiling.toml", "tile").replace(
        step_um=round(TILE * 0.7 * PX, 3),
        zstack={"planes": 8, "step_um": 0.5},
        camera_roi_px=(TILE, TILE),
        storage={"name": "gel"},
        simulation=sim,
    )
    rig = open_sim_rig(rig_cfg)
    result = run_plan(rig, prepare(plan, rig_cfg), out=tmp_path)
    return result.dataset, rig.world


def _true_px(dataset: Path, world) -> dict[int, np.ndarray]:
    """Top-left pixel of what the simulated camera really imaged, per tile, in the
    stitching frame (stage origin): the simulator crops the sample at whole pixels."""
    ny, nx = world.sample.density.shape[1:]
    out = {}
    for rec in read_log(dataset):
        x, y = rec["sim_stage_true_um"]
        top = round(ny / 2 + y / PX - TILE / 2) - ny / 2
        left = round(nx / 2 + x / PX - TILE / 2) - nx / 2
        out[rec["p"]] = np.array([top, left], dtype=float)
    return out


def _overlap_correlation_with_truth(dataset: Path, name: str, world, anchor_offset) -> float:
    """Pearson r of the stitched level 0 and the noise-free sample, on pixels that two
    or more tiles cover."""
    group = zarr.open_group(dataset / name, mode="r")
    stitching = group.attrs["rcanlive"]["stitching"]
    stitched = np.asarray(group["0"][0], dtype=np.float32)
    oy, ox = stitching["origin_px"]
    _, h, w = stitched.shape
    cover = np.zeros((h, w), int)
    for t in stitching["tiles"]:
        py, px = (round(v) - o for v, o in zip(t["position_px"], (oy, ox), strict=True))
        cover[py : py + TILE, px : px + TILE] += 1
    # place the truth under the stitched image: registered frame → true frame
    ny, nx = world.sample.density.shape[1:]
    top = oy + anchor_offset[0] + ny / 2
    left = ox + anchor_offset[1] + nx / 2
    world.xy_true = ((left + w / 2 - nx / 2) * PX, (top + h / 2 - ny / 2) * PX)
    z = [world.focus_um + (k - 3.5) * 0.5 for k in range(stitched.shape[0])]
    truth = world.ground_truth((h, w), z)
    sel = cover >= 2
    return float(np.corrcoef(stitched[:, sel].ravel(), truth[:, sel].ravel())[0, 1])


def test_registration_on_simulated_gel_within_half_a_pixel(open_sim_rig, sim_rig_config, tmp_path):
    dataset, world = _acquire_gel(open_sim_rig, sim_rig_config, tmp_path)
    with use_scheduler("threads"):
        result = stitch_dataset(dataset)
    layout = load_layout(dataset)
    truth = _true_px(dataset, world)
    stage = {t.index: np.array(t.stage_px) for t in layout.tiles}
    a = result.anchor
    # the stage really missed by a few µm: neighbours are off by up to ~3 µm
    stage_err = [np.abs((stage[i] - stage[a]) - (truth[i] - truth[a])).max() * PX for i in truth]
    assert max(stage_err) > 2.0
    errors = {
        i: np.abs(
            (np.array(result.positions_px[i]) - result.positions_px[a]) - (truth[i] - truth[a])
        )
        for i in truth
    }
    assert all(result.status[i] == "registered" for i in truth)
    assert max(e.max() for e in errors.values()) < 0.5, errors
    # no accumulation along the zigzag: the last tile scanned is as good as the first
    order = [i for i, _ in enumerate(serpentine(3, 3))]
    assert errors[order[-1]].max() < 0.5 and errors[order[0]].max() < 0.5

    # the stitched volume matches the sample in the overlaps, far better than the stage
    r_registered = _overlap_correlation_with_truth(dataset, "stitched", world, truth[a] - stage[a])
    with use_scheduler("sync"):
        stage_only = stitch_dataset(dataset, register=False, name="stage_only")
    sa = stage_only.anchor
    r_stage = _overlap_correlation_with_truth(dataset, "stage_only", world, truth[sa] - stage[sa])
    print(
        f"overlap correlation with ground truth: registered {r_registered:.3f}, "
        f"stage only {r_stage:.3f}"
    )
    assert r_registered > 0.9
    assert r_registered > r_stage + 0.1


# -- synthetic tile datasets ------------------------------------------------------------
def _texture(shape, seed=0, density=0.002):
    rng = np.random.default_rng(seed)
    spots = (rng.random(shape) < density).astype(np.float32)
    img = ndimage.gaussian_filter(spots, (0.5, 3, 3))
    return 100 + 4000 * img / img.max()


def _synthetic_dataset(
    tmp_path: Path,
    rows=2,
    cols=3,
    tile=96,
    step=70,
    z=4,
    jitter=0,
    skip=(),
    flat=(),
    seed=0,
    name="syn",
):
    """A tiling dataset cut from one textured volume; returns (path, true positions)."""
    rng = np.random.default_rng(seed)
    margin = 3 * jitter + 2
    world = _texture((z, rows * step + tile + 2 * margin, cols * step + tile + 2 * margin), seed)
    manifest, truth = [], {}
    for i, (r, c) in enumerate(serpentine(rows, cols)):
        # stage (x, y) centre in µm such that the stage top-left pixel is (r·step, c·step)
        manifest.append(
            {
                "index": i,
                "row": r,
                "col": c,
                "x_um": (c * step + tile / 2) * PX,
                "y_um": (r * step + tile / 2) * PX,
            }
        )
        truth[i] = np.array([r * step, c * step]) + rng.integers(-jitter, jitter + 1, 2)
    g = Geometry(
        planes=z, height=tile, width=tile, pixel_size_um=PX, z_step_um=0.5, n_p=len(manifest)
    )
    path = tmp_path / f"{name}.ome.zarr"
    writer = DatasetWriter(path, "tile", g, plan={}, rig={}, tiles=manifest)
    noise = np.random.default_rng(seed + 1)
    for i, (ty, tx) in truth.items():
        if i in skip:
            continue
        y0, x0 = ty + margin, tx + margin
        data = world[:, y0 : y0 + tile, x0 : x0 + tile]
        if i in flat:
            data = np.full_like(data, 100.0)
        data = data + noise.normal(0, 3, data.shape)
        vol = Volume.from_array(data.astype(np.uint16), 0, i, 0, "ch", (0.0,) * z, (0.0, 0.0), 0.0)
        writer.write(vol)
    writer.finish("completed")
    return path, truth


def test_textureless_overlap_keeps_the_stage_position(tmp_path):
    path, truth = _synthetic_dataset(tmp_path, rows=1, cols=3, jitter=4, flat=(2,))
    with use_scheduler("sync"), pytest.warns(StitchWarning, match="tile 2 .*stage position"):
        result = stitch_dataset(path)
    assert result.status[2] == "stage"
    rejected = [p for p in result.pairs if 2 in (p.a, p.b)]
    assert rejected and not any(p.accepted for p in rejected)
    assert "correlation" in rejected[0].reason
    layout = load_layout(path)
    assert result.positions_px[2] == layout.tile(2).stage_px
    # the textured pair is registered exactly
    shift = np.subtract(result.positions_px[1], result.positions_px[0])
    np.testing.assert_allclose(shift, truth[1] - truth[0], atol=0.5)
    tiles = zarr.open_group(path / "stitched", mode="r").attrs["rcanlive"]["stitching"]["tiles"]
    assert [t["status"] for t in tiles] == ["registered", "registered", "stage"]


def test_missing_tile_leaves_a_gap(tmp_path):
    path, truth = _synthetic_dataset(tmp_path, rows=2, cols=3, jitter=3, skip=(4,))
    with use_scheduler("threads"), pytest.warns(StitchWarning, match="left as gaps"):
        result = stitch_dataset(path)
    assert result.status[4] == "missing" and 4 not in result.positions_px
    group = zarr.open_group(path / "stitched", mode="r")
    origin = group.attrs["rcanlive"]["stitching"]["origin_px"]
    level0 = np.asarray(group["0"][0, 0])
    # tile 4 is row 1, col 1: its centre is covered by no other tile
    cy, cx = 70 + 48 - origin[0], 70 + 48 - origin[1]
    assert level0[cy - 5 : cy + 5, cx - 5 : cx + 5].max() == 0
    present = [i for i in truth if i != 4]
    a = result.anchor
    for i in present:
        np.testing.assert_allclose(
            np.subtract(result.positions_px[i], result.positions_px[a]),
            truth[i] - truth[a],
            atol=0.5,
        )


def _grid_tiles(rows, cols, step=100.0):
    return [
        Tile(i, r, c, (r * step, c * step), True) for i, (r, c) in enumerate(serpentine(rows, cols))
    ]


def test_global_solution_drops_inconsistent_links_and_does_not_accumulate():
    rows = cols = 6
    tiles = _grid_tiles(rows, cols)
    rng = np.random.default_rng(1)
    true = {t.index: np.array(t.stage_px) + rng.normal(0, 20, 2) for t in tiles}
    by_rc = {(t.row, t.col): t.index for t in tiles}
    links = []
    for (r, c), a in by_rc.items():
        for b in (by_rc.get((r, c + 1)), by_rc.get((r + 1, c))):
            if b is not None:
                measured = true[b] - true[a] + rng.normal(0, 0.15, 2)
                links.append(PairShift(a, b, tuple(measured), (0, 0), 0.95, 5000, True))
    bad = links[7]
    links[7] = PairShift(
        bad.a, bad.b, (bad.shift_px[0] + 25, bad.shift_px[1]), (0, 0), 0.9, 5000, True
    )
    placement = solve_positions(tiles, links, anchor=0)
    assert [(p.a, p.b) for p, _ in placement.dropped] == [(bad.a, bad.b)]
    err = {
        i: np.abs(
            np.subtract(placement.positions_px[i], placement.positions_px[0]) - (true[i] - true[0])
        ).max()
        for i in true
    }
    assert max(err.values()) < 0.5
    # chaining the same (good) links along the zigzag accumulates their errors
    good = {(p.a, p.b): np.asarray(p.shift_px) for p in links if p is not links[7]}
    good[(bad.a, bad.b)] = true[bad.b] - true[bad.a]
    chained = {0: np.zeros(2)}
    order = [by_rc[rc] for rc in serpentine(rows, cols)]
    for prev, nxt in itertools.pairwise(order):
        step = good.get((prev, nxt))
        chained[nxt] = chained[prev] + (step if step is not None else -good[(nxt, prev)])
    chain_err = np.abs(chained[order[-1]] - (true[order[-1]] - true[0])).max()
    assert err[order[-1]] < chain_err


def test_isolated_tile_and_detached_group_keep_stage_positions():
    tiles = _grid_tiles(1, 4)
    links = [
        PairShift(0, 1, (0.0, 103.0), (0.0, 100.0), 0.9, 5000, True),
        PairShift(2, 3, (0.0, 96.0), (0.0, 100.0), 0.9, 5000, True),
        PairShift(1, 2, (0.0, 100.0), (0.0, 100.0), 0.1, 5000, False, "low correlation"),
    ]
    placement = solve_positions(tiles, links, anchor=0)
    assert placement.status == {0: "registered", 1: "registered", 2: "detached", 3: "detached"}
    assert placement.positions_px[1] == pytest.approx((0.0, 103.0))
    # the detached pair keeps its internal shift and its mean stage position
    assert placement.positions_px[3][1] - placement.positions_px[2][1] == pytest.approx(96.0)
    assert (placement.positions_px[2][1] + placement.positions_px[3][1]) / 2 == pytest.approx(250.0)


class CountingReader(TileReader):
    """Records every tile region read (as a test double of the real reader)."""

    def __init__(self, path, image="tiles"):
        super().__init__(path, image)
        self.reads: list[tuple[int, slice, slice]] = []

    def read(self, index, c, z, y, x):
        self.reads.append((index, y, x))
        return super().read(index, c, z, y, x)


def test_fusion_reads_only_the_tiles_over_each_chunk_and_blends_them(tmp_path):
    path, truth = _synthetic_dataset(tmp_path, rows=3, cols=4, tile=64, step=48, z=2)
    layout = load_layout(path)
    positions = {i: tuple(float(v) for v in truth[i]) for i in truth}
    geometry = plan_fusion(positions, layout.shape, chunk_px=32)
    zarr.open_group(path, mode="r+").create_group("fused").create_array(
        "0", shape=geometry.shape, chunks=geometry.chunks, dtype="uint16", fill_value=0
    )
    reader = CountingReader(path)
    h, w = layout.tile_yx
    per_chunk = []
    for job in chunk_jobs(geometry):
        reader.reads.clear()
        fuse_chunk(reader, path, "fused", job, (h, w), blend_px=16)
        overlapping = {
            i
            for i, (ty, tx) in geometry.offsets.items()
            if ty < job.y.stop and ty + h > job.y.start and tx < job.x.stop and tx + w > job.x.start
        }
        assert {i for i, _, _ in reader.reads} == overlapping
        for _, ys, xs in reader.reads:  # only the part inside the chunk is read
            assert ys.stop - ys.start <= 32 and xs.stop - xs.start <= 32
        per_chunk.append(len(reader.reads))
    assert max(per_chunk) <= 4  # bounded by the geometry, not by the number of tiles
    # blending two copies of the same texture gives back the texture
    fused = np.asarray(zarr.open_array(path / "fused" / "0", mode="r")[0, 0], dtype=float)
    tile0 = np.asarray(zarr.open_array(path / "tiles" / "0000" / "0", mode="r")[0, 0])
    tile1 = np.asarray(zarr.open_array(path / "tiles" / "0001" / "0", mode="r")[0, 0])
    ov = fused[:48, 48:64]  # tiles 0 and 1 only (row 1 starts at y = 48)
    assert np.all(ov >= np.minimum(tile0[:48, 48:], tile1[:48, :16]) - 0.5)
    assert np.all(ov <= np.maximum(tile0[:48, 48:], tile1[:48, :16]) + 0.5)
    np.testing.assert_array_equal(fused[:16, :16], tile0[:16, :16])


def test_stitched_is_a_valid_ngff_pyramid_and_same_on_a_local_cluster(tmp_path):
    path, _ = _synthetic_dataset(tmp_path, rows=2, cols=3, tile=128, step=100, jitter=3)
    with use_scheduler("threads"):
        threaded = stitch_dataset(path, chunk_px=64)
    group = zarr.open_group(path / "stitched", mode="r")
    img = Image.from_zarr(group)
    datasets = img.attributes.ome.multiscales[0].datasets
    assert len(datasets) == threaded.levels >= 2
    shapes = [group[str(k)].shape for k in range(threaded.levels)]
    assert shapes[0] == threaded.shape
    for finer, coarser in itertools.pairwise(shapes):
        assert coarser[2:] == (-(-finer[2] // 2), -(-finer[3] // 2))
    scales = [d.coordinateTransformations[0].scale for d in datasets]
    assert scales[1][3] == pytest.approx(2 * scales[0][3])
    # level 0 sits where the tiles are (same physical frame)
    tr = datasets[0].coordinateTransformations[1].translation
    assert tr[3] == pytest.approx(group.attrs["rcanlive"]["stitching"]["origin_px"][1] * PX)
    records = group.attrs["rcanlive"]["stitching"]["tiles"]
    assert all(r["status"] == "registered" and r["quality"] > 0.9 for r in records)
    for r in records:
        assert r["position_px"] == pytest.approx(threaded.positions_px[r["index"]], abs=1e-3)
    level0 = np.asarray(group["0"])
    with use_scheduler("local", workers=1):
        distributed = stitch_dataset(path, chunk_px=64, overwrite=True)
    np.testing.assert_array_equal(np.asarray(zarr.open_array(path / "stitched" / "0")), level0)
    assert distributed.positions_px == threaded.positions_px


def test_restored_tiles_are_written_like_raw_and_stitched(tmp_path):
    path, truth = _synthetic_dataset(tmp_path, rows=2, cols=2, tile=64, step=48, jitter=2)
    writer = RestoredWriter(path)
    for i in truth:
        raw = np.asarray(zarr.open_array(path / "tiles" / f"{i:04d}" / "0", mode="r")[0])
        writer.write((0, i, 0), raw.astype(np.float32) * 0.5, backend="test")
    writer.close()
    raw_ms = zarr.open_group(path / "tiles" / "0003").attrs["ome"]["multiscales"][0]
    restored = zarr.open_group(path / "restored_tiles" / "0003")
    Image.from_zarr(restored)
    assert restored.attrs["ome"]["multiscales"][0]["datasets"] == raw_ms["datasets"]
    assert restored["0"].dtype == np.float32
    with use_scheduler("sync"):
        result = stitch_dataset(path, image="restored")
    assert result.name == "stitched_restored"
    out = zarr.open_array(path / "stitched_restored" / "0", mode="r")
    assert out.dtype == np.float32
    a = result.anchor
    for i in truth:
        np.testing.assert_allclose(
            np.subtract(result.positions_px[i], result.positions_px[a]),
            truth[i] - truth[a],
            atol=0.5,
        )


def test_cli_stitch(tmp_path, capsys):
    path, _ = _synthetic_dataset(tmp_path, rows=1, cols=2, jitter=2)
    assert main(["stitch", str(path), "--scheduler", "sync"]) == 0
    assert "registered" in capsys.readouterr().err
    assert main(["stitch", str(path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["stitch", str(path), "--image", "restored"]) == 2
    assert "restore the tiles first" in capsys.readouterr().err
    live = tmp_path / "live.ome.zarr"
    g = Geometry(planes=1, height=4, width=4, pixel_size_um=PX, z_step_um=0.5)
    DatasetWriter(live, "live", g, plan={}, rig={}).finish("completed")
    assert main(["stitch", str(live)]) == 2
    assert "only tiling datasets" in capsys.readouterr().err
