"""Restoration-quality measurement: metrics against scikit-image, baselines, the method
runner on simulated held-out pairs, and ``rcanlive evaluate``."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np
import pytest
from scipy import ndimage
from skimage import metrics as skm

from rcanlive.analysis.baselines import tune_gaussian, tune_richardson_lucy
from rcanlive.analysis.evaluation import evaluate, summarize
from rcanlive.analysis.metrics import MetricConvention, nrmse, percentile_normalize, psnr, ssim

if TYPE_CHECKING:
    from pathlib import Path

    from rcanlive.evaluation import MethodTable


def _smooth_volume(shape: tuple[int, int, int] = (12, 40, 40), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, np.float32)
    idx = tuple(rng.integers(0, n, 60) for n in shape)
    vol[idx] = rng.uniform(0.5, 1.0, 60)
    return ndimage.gaussian_filter(vol, (1.0, 2.0, 2.0)) * 50


# -- metrics against scikit-image --------------------------------------------------


def test_psnr_and_nrmse_on_known_cases() -> None:
    ref = np.zeros((4, 16, 16), np.float32)
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01, range 1
    ones = np.ones((4, 16, 16), np.float32)
    assert nrmse(ones, ones * 1.1) == pytest.approx(0.1, rel=1e-5)  # RMSE 0.1 / RMS 1
    assert nrmse(ones * 2, ones * 2.5, normalization="mean") == pytest.approx(0.25, rel=1e-5)


@pytest.mark.parametrize("normalization", ["euclidean", "min-max", "mean"])
def test_metrics_match_scikit_image(normalization: str) -> None:
    rng = np.random.default_rng(1)
    ref = rng.random((12, 32, 32)).astype(np.float32)
    test = (ref + rng.normal(0, 0.1, ref.shape)).astype(np.float32)
    assert psnr(ref, test) == pytest.approx(skm.peak_signal_noise_ratio(ref, test, data_range=1))
    assert nrmse(ref, test, normalization=normalization) == pytest.approx(  # type: ignore[arg-type]
        skm.normalized_root_mse(ref, test, normalization=normalization)
    )
    expected = skm.structural_similarity(
        ref, test, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(ref, test) == pytest.approx(expected)
    assert ssim(ref, ref) == pytest.approx(1.0)
    # a mask that keeps every voxel gives the same PSNR and NRMSE
    full = np.ones(ref.shape, bool)
    assert psnr(ref, test, mask=full) == pytest.approx(psnr(ref, test))
    assert nrmse(ref, test, mask=full) == pytest.approx(nrmse(ref, test))


def test_thin_volumes_use_the_mean_of_plane_ssims() -> None:
    rng = np.random.default_rng(2)
    ref = rng.random((6, 24, 24)).astype(np.float32)
    test = (ref + rng.normal(0, 0.2, ref.shape)).astype(np.float32)
    kw = {"data_range": 1, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    planes = np.mean(
        [skm.structural_similarity(r, t, **kw) for r, t in zip(ref, test, strict=True)]
    )
    assert ssim(ref, test) == pytest.approx(planes)


def test_convention_is_stated_and_checked() -> None:
    text = MetricConvention().describe()
    assert "2/99.9" in text and "data_range 1" in text and "all voxels" in text
    assert "foreground" in MetricConvention(region="foreground").describe()
    assert "max − min" in MetricConvention(data_range="target").describe()
    with pytest.raises(ValueError, match="data_range"):
        MetricConvention(data_range=0)
    with pytest.raises(ValueError, match="percentiles"):
        MetricConvention(p_low=50, p_high=10)


def test_evaluate_follows_its_convention() -> None:
    truth = _smooth_volume()
    rng = np.random.default_rng(3)
    noisy = truth + rng.normal(0, 2, truth.shape).astype(np.float32)
    base = evaluate(noisy, truth)
    # the paper's normalisation makes the score blind to the prediction's scale and offset
    rescaled = evaluate(noisy * 7 + 100, truth)
    assert rescaled.psnr == pytest.approx(base.psnr, abs=1e-3)
    assert base.convention == MetricConvention()
    # on a sparse sample the target's range (max far above the 99.9th percentile) reads higher
    assert evaluate(noisy, truth, MetricConvention(data_range="target")).psnr > base.psnr
    fg = evaluate(noisy, truth, MetricConvention(region="foreground"))
    assert fg.psnr != pytest.approx(base.psnr)
    with pytest.raises(ValueError, match="shape"):
        evaluate(noisy[:-1], truth)


def test_summarize_gives_mean_and_sample_sd() -> None:
    truth = _smooth_volume()
    rng = np.random.default_rng(4)
    scores = [evaluate(truth + rng.normal(0, s, truth.shape), truth) for s in (1.0, 2.0, 4.0)]
    summary = summarize(scores)
    values = [s.psnr for s in scores]
    assert summary.psnr.mean == pytest.approx(np.mean(values))
    assert summary.psnr.sd == pytest.approx(np.std(values, ddof=1))
    assert summary.n == 3
    assert "±" in summary.psnr.format(2)


# -- baselines ---------------------------------------------------------------------


def test_tuned_gaussian_denoises() -> None:
    rng = np.random.default_rng(5)
    pairs = []
    for seed in (10, 11):
        truth = _smooth_volume(seed=seed)
        pairs.append((truth + rng.normal(0, 3, truth.shape).astype(np.float32), truth))
    tuned = tune_gaussian(pairs, refine=False)
    _, y, x = tuned.baseline.sigma_zyx
    assert y == x and y > 0  # lateral σ shared, and smoothing helps
    assert tuned.score > np.mean(
        [psnr(percentile_normalize(t), percentile_normalize(n)) for n, t in pairs]
    )
    assert tuned.score == max(score for _, score in tuned.trials)


def test_richardson_lucy_tuning_prefers_more_iterations_without_noise() -> None:
    rng = np.random.default_rng(0)
    obj = np.zeros((16, 32, 32), np.float32)
    obj[tuple(rng.integers(2, n - 2, 12) for n in obj.shape)] = 1000
    obj = ndimage.gaussian_filter(obj, 1.0)
    psf = np.zeros((7, 11, 11), np.float32)
    psf[3, 5, 5] = 1
    psf = ndimage.gaussian_filter(psf, (1.0, 1.5, 1.5))
    blurred = ndimage.convolve(obj, psf / psf.sum(), mode="constant")
    tuned = tune_richardson_lucy([(blurred, obj)], psf, iterations=(1, 5, 25), device="cpu")
    assert tuned.baseline.iterations == 25  # noise-free: deconvolving further only helps
    assert [t[0]["iterations"] for t in tuned.trials] == [1, 5, 25]
    scores = [score for _, score in tuned.trials]
    assert scores == sorted(scores)


# -- the method runner on simulated held-out pairs ---------------------------------


@pytest.fixture(scope="module")
def method_table() -> MethodTable:
    from rcanlive.evaluation import (
        CareMethod,
        CheckpointMethod,
        GaussianMethod,
        RawInput,
        RichardsonLucyMethod,
        run_methods,
    )
    from rcanlive.evaluation.simulated import IsimSpec, isim_pairs, make_world, simulator_psf
    from rcanlive.model import bundled_model_path

    model = bundled_model_path()
    assert model is not None
    spec = IsimSpec(planes=16, roi_px=64)
    # test and tuning volumes come from two different samples (never one field twice);
    # 27 tubes in 192×192 px is the density of the bundled model's training sample
    test, tune = (
        isim_pairs(
            make_world("mitochondria", seed, shape=(24, 192, 192), n_tubes=27), [(0, 0)], spec
        )
        for seed in (21, 22)
    )
    psf = simulator_psf(spec.z_step_um, 0.0555)
    methods = [
        RawInput(),
        GaussianMethod(),
        RichardsonLucyMethod(psf, 100.0, psf, iterations=(1, 3, 10), device="cpu"),
        CheckpointMethod(model, "bundled RCAN", device="cpu"),
        CareMethod(),
    ]
    return run_methods(methods, test, tune)


def test_every_method_has_a_row(method_table: MethodTable) -> None:
    from rcanlive.evaluation import care_unavailable
    from rcanlive.evaluation.report import method_markdown

    names = [r.name for r in method_table.results]
    assert names == [
        "raw input",
        "tuned Gaussian",
        "tuned Richardson–Lucy",
        "bundled RCAN",
        "CARE (CAREamics)",
    ]
    for row in method_table.results[:4]:
        assert row.summary is not None and math.isfinite(row.summary.psnr.mean)
    care = method_table.result("CARE (CAREamics)")
    if care_unavailable() is not None:
        assert care.summary is None and "CAREamics" in (care.skipped or "")
    text = method_markdown(method_table)
    assert "skipped" in text or care.summary is not None
    assert MetricConvention().describe() in text
    assert json.loads(json.dumps(method_table.as_dict()))["convention"]["data_range"] == 1.0


def test_bundled_model_beats_the_tuned_gaussian(method_table: MethodTable) -> None:
    rcan = method_table.result("bundled RCAN").summary
    gauss = method_table.result("tuned Gaussian").summary
    raw = method_table.result("raw input").summary
    assert rcan is not None and gauss is not None and raw is not None
    assert gauss.psnr.mean > raw.psnr.mean
    assert rcan.psnr.mean > gauss.psnr.mean
    assert rcan.ssim.mean > gauss.ssim.mean


class _Blur:
    """A test method: a lateral Gaussian blur of σ pixels (loses resolution)."""

    name = "blurred"

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def prepare(self, tuning: object) -> None: ...

    def restore(self, volume: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(volume, (0.0, self.sigma, self.sigma))

    def details(self) -> dict[str, float]:
        return {"sigma": self.sigma}

    def close(self) -> None: ...


def test_resolution_is_finer_for_a_sharper_volume() -> None:
    """ResolutionSpec (decorrelation, theoretical limits) in run_methods: the blurred
    restoration's lateral estimate is coarser than the input's and the truth's, and the
    table shows the columns and the convention."""
    from rcanlive.evaluation import EvalPair, RawInput, run_methods
    from rcanlive.evaluation.methods import ResolutionSpec
    from rcanlive.evaluation.report import method_markdown

    rng = np.random.default_rng(3)
    points = np.zeros((16, 96, 96), np.float32)
    points[tuple(rng.integers(0, n, 400) for n in points.shape)] = 1.0
    truth = ndimage.gaussian_filter(points, (1.0, 1.5, 1.5)) * 20000 + 100
    noisy = rng.poisson(truth).astype(np.float32)
    spec = ResolutionSpec()
    sharp, blurred = spec.measure(noisy), spec.measure(_Blur(3.0).restore(noisy))
    assert spec.lateral_limit_nm < sharp["lateral"] < 0.8 * blurred["lateral"]
    assert math.isfinite(sharp["axial"])

    pairs = [EvalPair("a", noisy, truth, "a"), EvalPair("b", noisy[:, ::-1], truth, "b")]
    table = run_methods([RawInput(), _Blur(3.0)], pairs[:1], pairs[1:], resolution=spec)
    raw, blur = (r.details["resolution_nm"] for r in table.results)
    assert raw["lateral"] == pytest.approx(sharp["lateral"])
    assert blur["lateral"] > 1.2 * raw["lateral"] and len(blur["per_volume"]) == 1
    assert table.truth_resolution_nm is not None
    assert table.truth_resolution_nm["lateral"] < blur["lateral"]
    text = method_markdown(table)
    assert "| lateral nm | axial nm |" in text and spec.describe() in text
    assert json.loads(json.dumps(table.as_dict()))["resolution"]["na"] == 1.42


def test_bundled_model_beats_the_tuned_gaussian_on_an_unseen_structure() -> None:
    """The bundled model never saw an ER network in training (its model card's claim)."""
    from rcanlive.evaluation import CheckpointMethod, GaussianMethod, run_methods
    from rcanlive.evaluation.simulated import IsimSpec, isim_pairs, make_world
    from rcanlive.model import bundled_model_path, read_model_card

    model = bundled_model_path()
    assert model is not None
    card = read_model_card(model)
    assert card is not None and "ER" in card.training_data  # named as left out
    spec = IsimSpec(planes=16, roi_px=64)
    test, tune = (
        isim_pairs(make_world("er", seed, shape=(24, 160, 160)), [(0, 0)], spec)
        for seed in (31, 32)
    )
    table = run_methods(
        [GaussianMethod(), CheckpointMethod(model, "bundled RCAN", device="cpu")], test, tune
    )
    rcan, gauss = (table.result(n).summary for n in ("bundled RCAN", "tuned Gaussian"))
    assert rcan is not None and gauss is not None
    assert rcan.psnr.mean > gauss.psnr.mean + 1.0
    assert rcan.ssim.mean > gauss.ssim.mean


# -- rcanlive evaluate ---------------------------------------------------------------


def _write_tiffs(tmp_path: Path) -> tuple[Path, Path, Path]:
    import tifffile

    truth = _smooth_volume((12, 32, 32))
    rng = np.random.default_rng(6)
    pred = truth + rng.normal(0, 1.0, truth.shape).astype(np.float32)
    paths = tmp_path / "pred.tif", tmp_path / "truth.tif", tmp_path / "small.tif"
    tifffile.imwrite(paths[0], pred)
    tifffile.imwrite(paths[1], truth)
    tifffile.imwrite(paths[2], truth[:, :16])
    return paths


def test_cli_evaluate_tiffs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rcanlive.cli import main

    pred, truth, _ = _write_tiffs(tmp_path)
    assert main(["evaluate", str(pred), str(truth), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    import tifffile

    expected = evaluate(tifffile.imread(pred), tifffile.imread(truth))
    assert out["summary"]["psnr"]["mean"] == pytest.approx(expected.psnr)
    assert out["volumes"][0]["ssim"] == pytest.approx(expected.ssim)
    assert "data_range 1" in out["convention"]["text"]
    assert main(["evaluate", str(pred), str(truth)]) == 0
    table = capsys.readouterr().out
    assert "PSNR" in table and "convention:" in table and f"{expected.psnr:.2f}" in table


def test_cli_evaluate_shape_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rcanlive.cli import main

    pred, _, small = _write_tiffs(tmp_path)
    assert main(["evaluate", str(pred), str(small)]) == 2
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "(12, 32, 32)" in err and "(12, 16, 32)" in err


def test_cli_evaluate_methods_on_tiff_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tifffile

    from rcanlive.cli import main

    rng = np.random.default_rng(7)
    for sub in ("raw", "gt"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        truth = _smooth_volume((12, 32, 32), seed=20 + i) + 100
        tifffile.imwrite(tmp_path / "gt" / f"cell{i}.tif", truth)
        noisy = rng.poisson(truth / 10).astype(np.float32)
        tifffile.imwrite(tmp_path / "raw" / f"cell{i}.tif", noisy)
    assert main(["evaluate", "--methods", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in out["methods"]]
    # no voxel size in a TIFF folder: Richardson–Lucy is left out rather than guessed
    assert names == ["raw input", "tuned Gaussian", "bundled RCAN", "CARE (CAREamics)"]
    assert out["tuning"] == ["cell0"] and out["test"] == ["cell1", "cell2"]
    for row in out["methods"][:3]:
        assert len(row["per_volume"]) == 2 and math.isfinite(row["summary"]["psnr"]["mean"])
    assert main(["evaluate", "--methods", str(tmp_path), "pred.tif"]) == 2
