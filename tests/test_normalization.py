"""Percentile normalisation: statistics, round trip, and the errors users see."""

from __future__ import annotations

import numpy as np
import pytest

from rcanlive.model import PercentileNormalizer


def test_stats_are_the_volume_percentiles() -> None:
    vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    lo, hi = PercentileNormalizer().stats(vol)
    assert lo == pytest.approx(np.percentile(vol, 2.0))
    assert hi == pytest.approx(np.percentile(vol, 99.9))


def test_round_trip_returns_the_input_scale() -> None:
    rng = np.random.default_rng(0)
    vol = (rng.poisson(50, (6, 32, 32)) + 100).astype(np.uint16)
    norm = PercentileNormalizer()
    normed, lo, hi = norm(vol)
    assert normed.dtype == np.float32
    assert np.percentile(normed, 2.0) == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(normed, 99.9) == pytest.approx(1.0, abs=1e-5)
    back = norm.denormalize(normed, lo, hi)
    np.testing.assert_allclose(back, vol, rtol=0, atol=1e-3)


def test_large_volume_beyond_torch_quantile_limit() -> None:
    # 2**24 + extra voxels: torch.quantile refuses this; numpy (subsampled) does not.
    vol = np.empty((65, 512, 512), np.float32)
    vol[:] = np.linspace(0.0, 1.0, vol.size // 65, dtype=np.float32).reshape(512, 512)
    assert vol.size > 2**24
    lo, hi = PercentileNormalizer().stats(vol)
    assert lo == pytest.approx(0.02, abs=1e-3)
    assert hi == pytest.approx(0.999, abs=1e-3)
    exact_lo, exact_hi = PercentileNormalizer(max_samples=None).stats(vol)
    assert (lo, hi) == pytest.approx((exact_lo, exact_hi), abs=1e-4)


def _with_nan() -> np.ndarray:
    vol = np.ones((4, 8, 8), np.float32)
    vol[1, 2, 3] = np.nan
    return vol


def _with_inf() -> np.ndarray:
    vol = np.arange(256, dtype=np.float32).reshape(4, 8, 8)
    vol[0, 0, 0] = np.inf
    return vol


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (_with_nan(), r"contains 1 NaN or infinite voxel\(s\).*nan_to_num"),
        (_with_inf(), r"contains 1 NaN or infinite voxel\(s\)"),
        (np.ones((8, 8), np.float32), r"expected a 3D \(Z, Y, X\) volume, got 2 dimension"),
        (np.ones((2, 3, 8, 8), np.float32), r"got 4 dimension\(s\).*one channel and one time"),
        (np.ones((0, 8, 8), np.float32), r"volume is empty \(shape \(0, 8, 8\)\)"),
        (np.full((4, 8, 8), 7.0, np.float32), r"volume is constant \(every voxel is 7\)"),
        (np.zeros((4, 8, 8), np.uint16), r"volume is constant \(every voxel is 0\)"),
        (np.array([[[1 + 1j]]]), "real numbers"),
    ],
    ids=["nan", "inf", "2d", "4d", "empty", "constant", "zeros", "complex"],
)
def test_unusable_volumes_get_clear_errors(volume: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PercentileNormalizer().stats(volume)


def test_sparse_volume_without_percentile_contrast_names_the_fix() -> None:
    vol = np.zeros((4, 16, 16), np.float32)
    vol[0, 0, 0] = 5.0  # one voxel in 1024: both percentiles are 0
    with pytest.raises(ValueError, match="lower p_low or raise p_high"):
        PercentileNormalizer().stats(vol)
    lo, hi = PercentileNormalizer(p_high=100.0).stats(vol)
    assert (lo, hi) == (0.0, 5.0)


@pytest.mark.parametrize(("p_low", "p_high"), [(50, 10), (-1, 99), (2, 101)])
def test_bad_percentiles_are_refused(p_low: float, p_high: float) -> None:
    with pytest.raises(ValueError, match="0 <= p_low < p_high <= 100"):
        PercentileNormalizer(p_low, p_high)


def test_normalize_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError, match="finite lo < hi"):
        PercentileNormalizer().normalize(np.ones((2, 2, 2)), 3.0, 3.0)


def test_settings_round_trip_through_a_dict() -> None:
    norm = PercentileNormalizer(1.0, 99.0, max_samples=None)
    assert PercentileNormalizer.from_dict(norm.to_dict()) == norm
