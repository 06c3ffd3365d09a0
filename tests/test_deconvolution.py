"""Richardson–Lucy deconvolution: convergence, chunks, flux, PSF files, CLI, training."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile
from scipy.signal import fftconvolve

from rcanlive.analysis import load_psf, percentile_normalize, psnr, richardson_lucy
from rcanlive.analysis.deconvolution import (
    _deconvolve_block,
    _NumpyFFT,
    _TorchFFT,
    default_halo,
    psf_half_size,
    resolve_device,
)
from rcanlive.cli import main
from rcanlive.config.training import TrainingDataConfig

if TYPE_CHECKING:
    from pathlib import Path

SHAPE = (16, 64, 64)


def gaussian_psf(
    shape: tuple[int, int, int] = (9, 15, 15), sigma: tuple[float, ...] = (1.6, 1.3, 1.3)
):
    grids = np.meshgrid(*(np.arange(n) - n // 2 for n in shape), indexing="ij")
    psf = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True)))
    return (psf / psf.sum()).astype(np.float32)


def phantom(shape: tuple[int, int, int] = SHAPE, seed: int = 0, margin: int = 4) -> np.ndarray:
    """Points, a filament and a small ball, kept ``margin`` voxels from the faces."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.float32)
    n = max(20, int(np.prod(shape)) // 1000)
    lo, hi = (margin,) * 3, tuple(s - margin for s in shape)
    for z, y, x in rng.integers(lo, hi, size=(n, 3)):
        truth[z, y, x] += rng.uniform(50, 200)
    zc, yc = shape[0] // 2, shape[1] // 3
    truth[zc, yc, margin : shape[2] - margin] += 60.0  # a filament along x
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    ball = (zz - zc) ** 2 / 4 + (yy - 2 * shape[1] // 3) ** 2 + (xx - shape[2] // 2) ** 2 < 9
    truth[ball] += 40.0
    return truth


def blurred(truth: np.ndarray, psf: np.ndarray) -> np.ndarray:
    return np.clip(fftconvolve(truth, psf, mode="same"), 0, None).astype(np.float32)


def errors(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())


# --- the algorithm ----------------------------------------------------------------


def test_deconvolution_moves_a_blurred_phantom_towards_the_truth() -> None:
    truth, psf = phantom(), gaussian_psf()
    image = blurred(truth, psf)
    scores = {
        n: psnr(
            percentile_normalize(truth),
            percentile_normalize(richardson_lucy(image, psf, n, device="cpu", workers=1)),
        )
        for n in (0, 5, 15)
    }
    # measured (2/99.9 percentile-normalised, as the paper's metrics): 21.9, 22.8, 23.8 dB
    assert scores[5] > scores[0] + 0.5
    assert scores[15] > scores[5] + 0.7
    # the filament gets narrower: its peak grows towards the truth's
    restored = richardson_lucy(image, psf, 15, device="cpu", workers=1)
    zc, yc = SHAPE[0] // 2, SHAPE[1] // 3
    assert restored[zc, yc, 20:44].mean() > 1.3 * image[zc, yc, 20:44].mean()


def test_total_flux_is_kept() -> None:
    truth, psf = phantom(seed=1), gaussian_psf()
    image = blurred(truth, psf)
    for n in (1, 15):
        restored = richardson_lucy(image, psf, n, device="cpu", workers=1)
        assert restored.dtype == np.float32 and restored.shape == image.shape
        assert restored.sum() == pytest.approx(image.sum(), rel=0.01)
        assert restored.min() >= 0


def test_the_camera_offset_is_subtracted_and_negatives_clipped() -> None:
    truth, psf = phantom(seed=2), gaussian_psf()
    image = blurred(truth, psf)
    expected = richardson_lucy(image, psf, 5, device="cpu", workers=1)
    raw = image + 100.0
    raw[0, 0, :4] = 90.0  # read noise below the offset: clipped to 0, never negative
    got = richardson_lucy(raw, psf, 5, background=100.0, device="cpu", workers=1)
    assert np.allclose(got[:, 8:, :], expected[:, 8:, :], rtol=1e-4, atol=1e-3 * expected.max())
    assert got.min() >= 0
    assert np.array_equal(raw[0, 0, :4], [90.0] * 4)  # the input is not changed


def test_chunked_result_equals_the_whole_volume_result() -> None:
    psf = gaussian_psf()
    shape = (24, 96, 96)
    image = blurred(phantom(shape, seed=3, margin=0), psf) + 1.0
    whole = richardson_lucy(image, psf, 15, device="cpu", workers=1)
    half = np.array(psf_half_size(psf.shape))
    for halo, tolerance in ((None, 3e-3), (tuple(int(v) for v in 3 * half), 3e-5)):
        chunked = richardson_lucy(
            image, psf, 15, chunk_shape=(12, 48, 48), halo=halo, device="cpu", workers=1
        )
        # everywhere, faces included: a chunk's faces are treated as the volume's are
        error = np.abs(chunked - whole).max() / whole.max()
        assert error < tolerance, (halo, error)  # measured: 9e-4 (default), 3e-6 (3×)
    assert default_halo(psf.shape) == tuple(2 * half)


class RecordingVolume:
    """A volume read by slices that remembers how much each read asked for."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.reads: list[int] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        part = self.data[key]
        self.reads.append(part.size)
        return part


def test_a_zarr_volume_is_read_and_written_chunk_by_chunk() -> None:
    import dask.array as da
    import zarr

    psf = gaussian_psf((5, 9, 9), (1.0, 1.0, 1.0))
    image = blurred(phantom((16, 64, 64), seed=4), psf) + 1.0
    chunk = (8, 32, 32)
    expected = richardson_lucy(image, psf, 4, chunk_shape=chunk, device="cpu", workers=1)
    source = RecordingVolume(image)
    richardson_lucy(source, psf, 4, chunk_shape=chunk, device="cpu", workers=1)
    assert len(source.reads) == 8 and max(source.reads) < image.size / 2

    stored = zarr.create_array(
        zarr.storage.MemoryStore(), shape=image.shape, chunks=chunk, dtype="f4"
    )
    stored[:] = image
    out = zarr.create_array(zarr.storage.MemoryStore(), shape=image.shape, chunks=chunk, dtype="f4")
    returned = richardson_lucy(stored, psf, 4, chunk_shape=chunk, device="cpu", workers=1, out=out)
    assert returned is out
    assert np.allclose(out[:], expected, rtol=1e-5, atol=1e-5)
    lazy = da.from_array(image, chunks=chunk)
    from_dask = richardson_lucy(lazy, psf, 4, chunk_shape=chunk, device="cpu", workers=1)
    assert np.allclose(from_dask, expected, rtol=1e-5, atol=1e-5)


def test_progress_counts_iterations_over_chunks() -> None:
    psf = gaussian_psf((3, 5, 5), (1.0, 1.0, 1.0))
    calls: list[tuple[int, int]] = []
    richardson_lucy(
        np.ones((8, 16, 16), np.float32),
        psf,
        3,
        chunk_shape=(8, 8, 16),
        device="cpu",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 6) for i in range(1, 7)]


def test_the_torch_fft_path_matches_scipy() -> None:
    """The GPU code path, run by torch on the CPU (no GPU needed)."""
    pytest.importorskip("torch")
    psf = gaussian_psf((5, 9, 9), (1.2, 1.0, 1.0))
    image = blurred(phantom((12, 40, 40), seed=5), psf) + 1.0
    scipy_result = _deconvolve_block(image.copy(), psf, 6, 0.0, _NumpyFFT(1), lambda _: None)
    torch_result = _deconvolve_block(image.copy(), psf, 6, 0.0, _TorchFFT("cpu"), lambda _: None)
    assert np.allclose(torch_result, scipy_result, rtol=1e-4, atol=1e-4 * scipy_result.max())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"volume": np.ones((4, 4))}, "(Z, Y, X) volume"),
        ({"psf": np.ones((3, 3))}, "3D"),
        ({"psf": -np.ones((3, 3, 3))}, "negative"),
        ({"psf": np.zeros((3, 3, 3))}, "sums to 0"),
        ({"chunk_shape": (0, 8, 8)}, "chunk_shape"),
        ({"halo": (1, -1, 1)}, "halo"),
        ({"device": "tpu"}, "unknown device"),
        ({"out": np.zeros((2, 2, 2), np.float32)}, "out has shape"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "volume": np.ones((4, 8, 8), np.float32),
        "psf": gaussian_psf((3, 3, 3)),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        richardson_lucy(args.pop("volume"), args.pop("psf"), 2, **args)


def test_device_choice() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")


# --- PSF files --------------------------------------------------------------------


def bead(shape: tuple[int, int, int] = (10, 16, 16), centre: tuple[int, ...] | None = None):
    """A bead stack in camera counts: offset 100 plus a Gaussian spot."""
    c = centre or tuple(n // 2 for n in shape)
    grids = np.meshgrid(*(np.arange(n) - ci for n, ci in zip(shape, c, strict=True)), indexing="ij")
    spot = np.exp(-(grids[0] ** 2 / 4 + grids[1] ** 2 / 2 + grids[2] ** 2 / 2))
    return (100 + 1000 * spot).astype(np.uint16)


def test_a_bead_tiff_becomes_a_centred_normalised_psf(tmp_path: Path) -> None:
    path = tmp_path / "bead.tif"
    tifffile.imwrite(path, bead())
    psf = load_psf(path)
    assert psf.shape == (9, 15, 15)  # even axes lose the slice away from the bead
    assert psf.dtype == np.float32 and psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(psf), psf.shape) == (4, 7, 7)
    assert psf[0, 0, 0] < 1e-6  # the offset (100 counts) was subtracted


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.ones((16, 16), np.uint16), "3D"),
        (bead(centre=(5, 3, 8)), "not centred"),
        (np.full((5, 9, 9), 100, np.uint16), "no signal"),
    ],
)
def test_unusable_psf_files_are_refused(tmp_path: Path, data: np.ndarray, message: str) -> None:
    path = tmp_path / "psf.tif"
    tifffile.imwrite(path, data)
    with pytest.raises(ValueError, match=message):
        load_psf(path)


def test_a_psf_that_is_not_a_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "psf.tif"
    path.write_text("not a tiff")
    with pytest.raises(ValueError, match="cannot read the PSF"):
        load_psf(path)


# --- the command ------------------------------------------------------------------


def test_cli_deconvolves_a_tiff_with_a_measured_psf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    psf_path, source, target = tmp_path / "bead.tif", tmp_path / "high.tif", tmp_path / "gt.tif"
    tifffile.imwrite(psf_path, bead((9, 15, 15)))
    psf = load_psf(psf_path)
    image = blurred(phantom(seed=6), psf)
    tifffile.imwrite(source, (image + 100).astype(np.float32), metadata={"axes": "ZYX"})
    args = ["deconvolve", str(source), str(target), "--psf", str(psf_path), "--iterations", "5"]
    assert main([*args, "--chunk", "16,32,32", "--device", "cpu"]) == 0
    said = errors(capsys)
    assert "5 iterations" in said and "offset 100 counts subtracted" in said
    got = tifffile.imread(target)
    assert got.dtype == np.float32 and got.shape == image.shape
    expected = richardson_lucy(image, psf, 5, chunk_shape=(16, 32, 32), device="cpu")
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.max())
    assert main(args) == 2
    assert "exists; pass --overwrite" in errors(capsys)


def test_cli_without_psf_needs_the_voxel_size_of_a_tiff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "high.tif"
    tifffile.imwrite(source, np.full((4, 16, 16), 120, np.uint16), photometric="minisblack")
    assert main(["deconvolve", str(source), str(tmp_path / "out.tif")]) == 2
    assert "--pixel-size and --z-step" in errors(capsys)
    args = ["deconvolve", str(source), str(tmp_path / "out.tif"), "-n", "2", "--device", "cpu"]
    assert main([*args, "--pixel-size", "0.1", "--z-step", "0.5"]) == 0
    assert "rig iSIM PSF, 488 nm" in errors(capsys)
    assert np.allclose(tifffile.imread(tmp_path / "out.tif"), 20.0, rtol=1e-3)  # stays flat


@pytest.fixture(scope="module")
def pairs_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-pair dataset in camera counts (offset 100): high = blurred phantom, low noisy."""
    from rcanlive.storage.dataset import DatasetWriter, Geometry
    from rcanlive.storage.volume import Volume

    path = tmp_path_factory.mktemp("pairs") / "pairs.ome.zarr"
    truth_seed = 7

    channels = ("488nm 0.3 mW", "488nm 33 mW")
    geometry = Geometry(16, 64, 64, pixel_size_um=0.0555, z_step_um=0.25, channels=channels)
    rig = {"camera": {"offset_counts": 100.0}}
    writer = DatasetWriter(path, "pairs", geometry, plan={"positions_um": [[0.0, 0.0]]}, rig=rig)
    psf = gaussian_psf((9, 21, 21), (1.0, 1.6, 1.6))
    high = blurred(phantom(seed=truth_seed), psf)
    rng = np.random.default_rng(truth_seed)
    low = rng.poisson(high / 20).astype(np.float32) * 20
    for c, vol in enumerate((low, high)):
        data = np.clip(vol + 100, 0, 65535).astype(np.uint16)
        writer.write(Volume.from_array(data, 0, 0, c, channels[c], (0.0,) * 16, (0.0, 0.0), 0.0))
    writer.finish("complete")
    return path


def test_cli_deconvolves_every_volume_of_a_dataset(
    tmp_path: Path, pairs_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pairs_dataset
    out = tmp_path / "gt"
    assert main(["deconvolve", str(path), str(out), "-n", "2", "--device", "cpu"]) == 0
    said = errors(capsys)
    assert "rig iSIM PSF, 488 nm, 0.25×0.0555 µm voxels" in said
    assert "offset 100 counts subtracted" in said
    assert sorted(p.name for p in out.iterdir()) == ["t0000_p000_c0.tif", "t0000_p000_c1.tif"]
    assert tifffile.imread(out / "t0000_p000_c1.tif").shape == (16, 64, 64)


# --- training ---------------------------------------------------------------------


def sharpness(volume: np.ndarray) -> float:
    """Mean squared lateral gradient of a volume normalised to its 99.9th percentile."""
    v = volume / np.percentile(volume, 99.9)
    return float(np.mean(np.diff(v, axis=2) ** 2) + np.mean(np.diff(v, axis=1) ** 2))


def test_training_data_deconvolve_target_sharpens_the_ground_truth(tmp_path: Path) -> None:
    from rcanlive.model import PercentileNormalizer
    from rcanlive.training import DatasetError, pairs_from_arrays, prepare
    from rcanlive.training.datasets import deconvolve_targets

    psf_path = tmp_path / "bead.tif"
    tifffile.imwrite(psf_path, bead((9, 15, 15)))
    high = blurred(phantom(seed=8), load_psf(psf_path)) + 100.0
    pairs = pairs_from_arrays([high.copy()], [high])
    off = TrainingDataConfig(raw_dir=tmp_path, gt_dir=tmp_path)
    on = off.replace(deconvolve_target=True, deconvolve_background=100.0, psf=psf_path)
    assert deconvolve_targets(pairs, off)[0].high is pairs[0].high
    normalizer = PercentileNormalizer()
    raw_target = prepare(pairs, normalizer)[0].high
    new_target = prepare(deconvolve_targets(pairs, on, device="cpu"), normalizer)[0].high
    assert not np.allclose(new_target, raw_target, atol=0.05)
    assert sharpness(new_target) > 1.5 * sharpness(raw_target)  # measured: 3.4×
    with pytest.raises(DatasetError, match="needs a PSF"):
        deconvolve_targets(pairs, on.replace(psf=None))


def test_the_trainer_and_train_command_use_the_rig_psf_for_a_pairs_dataset(
    tmp_path: Path, pairs_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rcanlive.config.training import TrainingConfig
    from rcanlive.simulation.optics import channel_psf
    from rcanlive.training import trainer
    from rcanlive.training.ground_truth import pairs_target_psf

    path = pairs_dataset
    cfg = TrainingConfig.model_validate(
        {
            "data": {"pairs": str(path), "deconvolve_target": True, "deconvolve_iterations": 3},
            "model": {"n_groups": 1, "n_blocks": 1, "channels": 4, "reduction": 2},
            "patch_shape": (16, 32, 32),
            "epochs": 1,
            "steps_per_epoch": 1,
            "precision": "fp32",
            "device": "cpu",
            "output_dir": tmp_path / "run",
            "progress": False,
        }
    )
    psf = pairs_target_psf(cfg.data, channel_psf)
    assert psf is not None and psf.shape == (9, 21, 21)  # 2.0/0.25 planes, 1.2/0.0555 px
    seen: list[np.ndarray] = []

    def spy(pairs: Any, normalizer: Any) -> Any:
        seen.extend(p.high for p in pairs)
        return trainer_prepare(pairs, normalizer)

    trainer_prepare = trainer.prepare
    monkeypatch.setattr(trainer, "prepare", spy)
    trainer.train(cfg, target_psf=psf)
    raw_high = next(iter(trainer.read_zarr_pairs(path))).high
    assert seen and seen[0].max() > raw_high.max() - 100  # sharper, offset removed
    assert not np.allclose(seen[0], raw_high - 100, atol=1.0)
