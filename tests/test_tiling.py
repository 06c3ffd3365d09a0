"""Tiled prediction: tiles cover any shape, blend to exactly 1, leave no seams."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from scipy import ndimage

from rcanlive.inference import TileGrid, create_backend, predict_volume
from rcanlive.inference.tiling import axis_starts, axis_weights, smaller_tiling
from rcanlive.model import RCAN3D, LoadedModel, PercentileNormalizer

if TYPE_CHECKING:
    from pathlib import Path

    from rcanlive.inference.backends import Backend


def tiny_model(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    net = RCAN3D(n_groups=1, n_blocks=1, channels=8).eval()
    return LoadedModel(net, net.config, PercentileNormalizer())


@pytest.fixture(scope="module")
def eager() -> Backend:
    return create_backend("eager", tiny_model(), "fp32", "cpu")


def cell_like(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Camera-like uint16 volume: blurred sparse structures, offset, Poisson noise."""
    rng = np.random.default_rng(seed)
    signal = ndimage.gaussian_filter(rng.random(shape) ** 8, 1.5) * 2000
    return (100 + rng.poisson(signal + 5)).astype(np.uint16)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(16, 16, 4), (17, 16, 4), (100, 32, 8), (257, 64, 16), (31, 8, 0), (1000, 256, 32)],
)
def test_axis_starts_cover_with_overlap(length: int, tile: int, overlap: int) -> None:
    starts = axis_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] + tile == length
    gaps = np.diff(starts)
    assert np.all(gaps > 0)
    assert np.all(tile - gaps >= overlap)  # neighbours overlap at least this much


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [
        ((16, 96, 96), (16, 32, 32), (0, 8, 8)),
        ((13, 101, 77), (8, 32, 24), (2, 8, 6)),
        ((3, 10, 7), (8, 16, 16), None),  # smaller than a tile on every axis
        ((9, 40, 5), (4, 16, 16), (1, 4, 4)),  # mixed: tiled in Z/Y, padded in X
        ((1, 1, 1), (2, 2, 2), 0),
    ],
)
def test_weights_are_a_partition_of_unity(
    shape: tuple[int, int, int],
    tile: tuple[int, int, int],
    overlap: tuple[int, int, int] | int | None,
) -> None:
    grid = TileGrid.plan(shape, tile, overlap)
    total = np.zeros(grid.padded_shape)
    covered = np.zeros(grid.padded_shape, dtype=int)
    for t in grid:
        assert all(
            0 <= s and s + n <= p
            for s, n, p in zip(t.start, t.shape, grid.padded_shape, strict=True)
        )
        w = grid.weight(t)
        assert w.shape == tile
        assert np.all(w > 0)
        total[t.slices] += w
        covered[t.slices] += 1
    assert covered.min() >= 1
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    volume = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    np.testing.assert_array_equal(grid.crop(grid.pad(volume)), volume)


def test_weights_ramp_across_overlaps() -> None:
    starts = axis_starts(56, 32, 8)  # two tiles overlapping by 8
    first, second = axis_weights(56, starts, 32, 8)
    assert first[0] == 1.0 and second[-1] == 1.0  # flat at the volume's borders
    overlap = slice(24, 32)
    ramp = first[overlap]
    assert np.all(np.diff(ramp) < 0) and ramp[0] > 0.9 and ramp[-1] < 0.1
    np.testing.assert_allclose(first[overlap] + second[: 32 - 24], 1.0)


def test_tiled_prediction_matches_whole_volume(eager: Backend) -> None:
    volume = cell_like((16, 96, 96), seed=1)
    whole = predict_volume(volume, eager, tile_shape=volume.shape)
    blended = predict_volume(volume, eager, tile_shape=(16, 40, 40), overlap=(0, 8, 8))
    stitched = predict_volume(volume, eager, tile_shape=(16, 32, 32), overlap=0)
    assert blended.shape == volume.shape and blended.dtype == np.float32
    # Channel attention averages over each tile, so tiles never match the whole
    # volume exactly; blended overlaps bring them within a few percent, far closer
    # than tiles stitched edge to edge.
    assert rel_l2(blended, whole) < 0.05
    assert rel_l2(blended, whole) < rel_l2(stitched, whole) / 4


def seam_ratio(volume: np.ndarray, grid: TileGrid, axis: int) -> float:
    """Highest gradient energy across a tile edge over the median across other planes."""
    energy = (np.diff(volume, axis=axis) ** 2).mean(axis=tuple(a for a in range(3) if a != axis))
    edges = sorted(
        {p for s in grid.starts[axis] for p in (s - 1, s + grid.tile_shape[axis] - 1)}
        & set(range(len(energy)))
    )
    assert edges, "the grid has no interior tile edge on this axis"
    return float(energy[edges].max() / np.median(np.delete(energy, edges)))


def test_no_seam_at_tile_borders(eager: Backend) -> None:
    volume = cell_like((16, 96, 96), seed=2)
    tile, overlap = (16, 40, 40), (0, 8, 8)
    grid = TileGrid.plan(volume.shape, tile, overlap)
    blended = predict_volume(volume, eager, tile_shape=tile, overlap=overlap)
    for axis in (1, 2):
        assert seam_ratio(blended, grid, axis) < 1.1
    # The measure does see a seam where tiles are stitched without blending.
    hard = TileGrid.plan(volume.shape, (16, 32, 32), 0)
    stitched = predict_volume(volume, eager, tile_shape=(16, 32, 32), overlap=0)
    assert seam_ratio(stitched, hard, 2) > 3


def test_volume_smaller_than_static_tile_is_padded_by_reflection(tmp_path: Path) -> None:
    model = tiny_model(3)
    static = create_backend(
        "onnx", model, "fp32", "cpu", (8, 16, 16), batch_size=2, cache_dir=tmp_path
    )
    assert static.tile_shape == (8, 16, 16) and static.batch_size == 2
    volume = cell_like((3, 10, 7), seed=3)
    restored = predict_volume(volume, static, output="normalized")
    assert restored.shape == volume.shape
    # One padded tile covers the volume with weight 1: the result is the network
    # applied to the reflect-padded volume, cropped back.
    grid = TileGrid.plan(volume.shape, (8, 16, 16))
    lo, hi = model.normalizer.stats(volume)
    padded = grid.pad(model.normalizer.normalize(volume, lo, hi))
    reference = create_backend("eager", model, "fp32", "cpu").predict(padded[None, None])
    np.testing.assert_allclose(restored, grid.crop(reference[0, 0]), rtol=1e-4, atol=1e-5)
    static.close()


def test_statistics_come_from_the_whole_volume(eager: Backend) -> None:
    volume = cell_like((8, 48, 48), seed=4).astype(np.float32)
    volume[:, :, 24:] *= 10  # one half ten times brighter than the other
    normalizer = eager.normalizer
    lo, hi = normalizer.stats(volume)
    normed = predict_volume(volume, eager, tile_shape=(8, 24, 24), output="normalized")
    intensity = predict_volume(volume, eager, tile_shape=(8, 24, 24))
    np.testing.assert_allclose(intensity, normalizer.denormalize(normed, lo, hi), rtol=1e-5)
    whole = predict_volume(volume, eager, tile_shape=volume.shape)
    # Per-tile statistics would put the dim half on the bright half's scale.
    dim = (slice(None), slice(None), slice(0, 16))
    assert rel_l2(intensity[dim], whole[dim]) < 0.05


def test_static_backend_refuses_another_tile(tmp_path: Path) -> None:
    static = create_backend("onnx", tiny_model(), "fp32", "cpu", (4, 8, 8), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="built for tiles"):
        predict_volume(cell_like((4, 20, 20), 5), static, tile_shape=(4, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 1, Z, Y, X\)|built for tiles"):
        static.predict(np.zeros((1, 1, 4, 16, 16), np.float32))


@pytest.mark.parametrize(
    ("tile", "batch", "expected"),
    [
        ((16, 256, 256), 4, ((16, 256, 256), 2)),
        ((16, 256, 256), 1, ((16, 128, 256), 1)),
        ((16, 16, 16), 1, ((8, 16, 16), 1)),
        ((4, 16, 16), 1, None),
    ],
)
def test_out_of_memory_shrinks_batch_then_tile(
    tile: tuple[int, int, int], batch: int, expected: object
) -> None:
    assert smaller_tiling(tile, batch) == expected


@pytest.mark.parametrize(
    "volume",
    [np.zeros((4, 8)), np.full((4, 8, 8), 7.0), np.full((2, 8, 8), np.nan)],
    ids=["2d", "constant", "nan"],
)
def test_unusable_volumes_are_refused(eager: Backend, volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"volume|3D"):
        predict_volume(volume, eager)
