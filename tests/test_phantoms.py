"""The paper's spherical phantoms: ground truth, blurred inputs, noise, files, CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from rcanlive.cli import main
from rcanlive.simulation.phantoms import (
    PhantomSpec,
    blur_kernel,
    make_phantom_pair,
    write_phantom_pairs,
)
from rcanlive.training import read_tiff_pairs

if TYPE_CHECKING:
    from pathlib import Path

SMALL = PhantomSpec(shape=(16, 32, 32), n_spheres=10)


def _rms_width(kernel: np.ndarray, axis: int) -> float:
    profile = kernel.sum(axis=tuple(a for a in range(3) if a != axis))
    x = np.arange(profile.size) - (profile.size - 1) / 2
    return float(np.sqrt((profile * x**2).sum() / profile.sum()))


@pytest.mark.parametrize("factor", [2, 3])
def test_blur_kernel_is_k_times_the_psf(factor: int) -> None:
    base, wide = blur_kernel(SMALL, 1), blur_kernel(SMALL, factor)
    assert wide.sum() == pytest.approx(1.0, rel=1e-4)
    for axis in range(3):
        assert _rms_width(wide, axis) / _rms_width(base, axis) == pytest.approx(factor, rel=0.05)


def test_ground_truth_is_blurred_spheres_within_the_paper_range() -> None:
    raw, gt = make_phantom_pair(SMALL, seed=3)
    assert raw.shape == gt.shape == SMALL.shape
    assert raw.dtype == gt.dtype == np.float32
    assert gt.min() >= 0
    assert 100 < gt.max() < 20000  # spheres of 1000–20000, spread by the PSF
    assert np.count_nonzero(gt > 0.05 * gt.max()) > 50
    # noise: Poisson on the signal plus Gaussian background of sigma 50
    background = raw[gt < 1e-3]
    assert background.std() == pytest.approx(50.0, rel=0.15)
    assert np.corrcoef(raw.ravel(), gt.ravel())[0, 1] > 0.5


def test_same_seed_same_pair_and_blur_lowers_the_peaks() -> None:
    a = make_phantom_pair(SMALL, seed=1)
    b = make_phantom_pair(SMALL, seed=1)
    c = make_phantom_pair(SMALL, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])
    spec3 = PhantomSpec(shape=SMALL.shape, n_spheres=10, blur=3, noise=False)
    raw3, gt3 = make_phantom_pair(spec3, seed=1)
    np.testing.assert_array_equal(gt3, a[1])  # same spheres, same ground truth
    assert raw3.max() < 0.5 * gt3.max()  # 3× blur spreads each sphere out


def test_spec_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="blur must be >= 1"):
        PhantomSpec(blur=0)


def test_written_pairs_are_ready_for_training(tmp_path: Path) -> None:
    written = write_phantom_pairs(tmp_path, 3, SMALL, seed=5)
    assert [p.name for p in written] == [f"phantom_{i:03d}.tif" for i in range(3)]
    pairs = read_tiff_pairs(tmp_path / "raw", tmp_path / "gt")
    assert [p.name for p in pairs] == ["phantom_000", "phantom_001", "phantom_002"]
    assert pairs[0].low.shape == SMALL.shape
    assert not np.array_equal(pairs[0].high, pairs[1].high)


def test_simulate_phantoms_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ph"
    code = main(
        [
            "simulate",
            "phantoms",
            "--out",
            str(out),
            "--n",
            "2",
            "--size",
            "24",
            "--depth",
            "12",
            "--blur",
            "2",
            "--seed",
            "4",
        ]
    )
    assert code == 0
    raw = tifffile.imread(out / "raw" / "phantom_001.tif")
    gt = tifffile.imread(out / "gt" / "phantom_001.tif")
    assert raw.shape == gt.shape == (12, 24, 24)
    assert raw.min() >= 0  # --blur 2 is noiseless by default, as in the paper
    assert "wrote 2 pairs" in capsys.readouterr().err


def test_simulate_phantoms_cli_refuses_identical_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "phantoms", "--out", str(tmp_path), "--blur", "1", "--no-noise"])
    assert code == 2
    assert "identical to ground truth" in capsys.readouterr().err


def test_bundled_phantom_model_deblurs_2x(tmp_path: Path) -> None:
    """``--model bundled:phantom-2x`` restores a held-out 2× phantom closer to its truth."""
    from rcanlive.analysis.metrics import psnr

    raw, gt = make_phantom_pair(
        PhantomSpec(shape=(32, 64, 64), blur=2, noise=False), np.random.SeedSequence(4242)
    )
    source, target = tmp_path / "blurred.tif", tmp_path / "restored.tif"
    tifffile.imwrite(source, raw, photometric="minisblack", metadata={"axes": "ZYX"})
    args = ["restore", str(source), str(target), "--model", "bundled:phantom-2x"]
    assert main([*args, "--backend", "eager", "--precision", "fp32", "--device", "cpu"]) == 0
    restored = tifffile.imread(target)

    def scaled(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, (2, 99.9))
        return (a - lo) / (hi - lo)

    gain = psnr(scaled(gt), scaled(restored)) - psnr(scaled(gt), scaled(raw))
    assert gain > 10.0  # dB; 27.1 → 47.2 dB when the model was bundled
