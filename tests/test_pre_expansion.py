"""Synthetic pre-expansion data (paper's Methods) against a simulated unexpanded acquisition.

The scene: the simulator's expanded gel imaged post-expansion (iSIM PSF, camera noise),
and the *same sample before expansion* imaged on the same microscope: the gel's density
on its own grid is the unexpanded sample sampled ``M`` times finer, so blurring it with
the iSIM PSF computed at ``M``-times finer voxels and keeping every ``M``-th voxel is an
acquisition of the unexpanded sample at the camera's pixel size. The synthetic volume
is made from the post-expansion acquisition alone and compared with that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import fftconvolve
from skimage.metrics import structural_similarity

from rcanlive.analysis import pre_expansion as pe
from rcanlive.analysis.resolution import decorrelation_resolution
from rcanlive.simulation.optics import CameraModel, isim_psf
from rcanlive.simulation.samples import expanded_gel

M = 3.2
VOXEL_UM = (0.25, 0.0555, 0.0555)
PIXEL_NM = VOXEL_UM[1] * 1000
POST_E = 400.0  # expected photoelectrons per unit density, post-expansion
PRE_E = 300.0  # and pre-expansion
AUTOFLUORESCENCE = 0.02


@dataclass(frozen=True)
class Scene:
    spsf: np.ndarray  # iSIM PSF at the camera's voxels
    post: np.ndarray  # post-expansion acquisition, counts
    pre: np.ndarray  # acquisition of the unexpanded sample, counts
    pre_expected: np.ndarray  # its noise-free counts


def _every_mth_voxel(volume: np.ndarray, m: float) -> np.ndarray:
    """Sample ``volume`` at ``m``-voxel spacing, centred (written out here, not taken from
    the module under test, so that a wrong grid there cannot hide in both)."""
    coords = []
    for n in volume.shape:
        k = int((n - 1) // m) + 1
        coords.append(((n - 1) - m * (k - 1)) / 2 + m * np.arange(k))
    grid = np.meshgrid(*coords, indexing="ij")
    return ndimage.map_coordinates(volume, grid, order=1)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_scene()


def make_scene() -> Scene:
    """The post-expansion and the unexpanded acquisition of the simulated gel."""
    gel = expanded_gel(fov_px=256, n_fields=(1, 1), voxel_um=VOXEL_UM, nz=40, seed=0)
    density = gel.density + AUTOFLUORESCENCE
    dz, dxy = VOXEL_UM[0], VOXEL_UM[2]
    spsf = isim_psf((int(2.0 / dz), int(1.2 / dxy)), (dz, dxy))  # as the simulated rig
    fine = isim_psf((int(2.0 * M / dz), int(1.2 * M / dxy)), (dz / M, dxy / M))
    post_e = np.clip(fftconvolve(density, spsf, mode="same"), 0, None) * POST_E
    pre_e = _every_mth_voxel(np.clip(fftconvolve(density, fine, mode="same"), 0, None), M) * PRE_E
    camera, rng = CameraModel(), np.random.default_rng(0)
    post = camera.expose(post_e, rng).astype(np.float32)
    pre = camera.expose(pre_e, rng).astype(np.float32)
    expected = pre_e / camera.electrons_per_count + camera.offset_counts
    return Scene(spsf, post, pre, expected.astype(np.float32))


@pytest.fixture(scope="module")
def synthetic(scene: Scene) -> tuple[np.ndarray, pe.NoiseModel]:
    """The clean synthetic volume and the noise model measured on the acquisition."""
    clean = pe.synthesize_pre_expansion(scene.post, M, scene.spsf)
    return clean, pe.estimate_noise_model(scene.pre, clean=clean)


def _lateral_nm(volume: np.ndarray) -> float:
    planes = range(2, volume.shape[0] - 2)  # the planes that hold the gel's tubes
    return float(np.mean([decorrelation_resolution(volume[z], PIXEL_NM) for z in planes]))


def _fwhm_px(profile: np.ndarray) -> float:
    half = profile.max() / 2
    above = np.flatnonzero(profile >= half)
    return float(above[-1] - above[0] + 1)


# -- the modified OTF --------------------------------------------------------------------


def _band_limited_psf(cutoff: float = 0.12) -> np.ndarray:
    """A PSF whose lateral OTF ends at ``cutoff`` cycles/pixel, below the pre-expansion
    band's edge (0.5/M), so that FT(sPSF) nears zero where FT(ePSF) is not yet zero:
    incoherent imaging through a circular pupil (Airy²), Gaussian along z."""
    f = np.fft.fftfreq(128)
    pupil = np.hypot(*np.meshgrid(f, f, indexing="ij")) <= cutoff / 2
    airy = np.fft.fftshift(np.abs(np.fft.ifft2(pupil)) ** 2)[44:85, 44:85]
    axial = np.exp(-0.5 * ((np.arange(9) - 4) / 1.5) ** 2)
    return axial[:, None, None] * airy[None]


def test_modified_otf_clips_the_psf_beyond_its_cutoff() -> None:
    psf, shape = _band_limited_psf(), (16, 64, 64)
    otf_s = np.abs(np.fft.rfftn(np.fft.ifftshift(_padded(psf, shape))))
    beyond = otf_s < 1e-3 * otf_s.flat[0]
    clipped = pe.modified_otf(psf, M, shape, cutoff=1e-3)
    unclipped = pe.modified_otf(psf, M, shape, cutoff=0.0)
    assert np.abs(unclipped[beyond]).max() > 1.0  # dividing by ~0 amplifies
    # with |FT(sPSF)| := 1 beyond the cut-off, mOTF there is FT(ePSF): ~0, never amplified
    assert np.abs(clipped[beyond]).max() < 1e-3
    assert np.abs(clipped).max() == pytest.approx(1.0, abs=1e-5)
    inside = ~beyond
    np.testing.assert_allclose(clipped[inside], unclipped[inside])


def test_modified_otf_is_the_pre_expansion_low_pass(scene: Scene) -> None:
    shape = (16, 64, 64)
    motf = pe.modified_otf(scene.spsf, M, shape)
    assert motf.flat[0] == pytest.approx(1.0, abs=1e-6)  # keeps the total intensity
    # ePSF is sPSF enlarged M times: nothing passes beyond 1/M of the band
    fz, fy, fx = np.meshgrid(
        np.fft.fftfreq(16), np.fft.fftfreq(64), np.fft.rfftfreq(64), indexing="ij"
    )
    outside = np.maximum(np.maximum(abs(fz), abs(fy)), abs(fx)) > 0.5 / M
    assert np.abs(motf[outside]).max() == 0
    assert np.abs(motf).max() <= 1.0 + 1e-5


def _padded(psf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``psf`` (sum 1) in a volume of ``shape``, its centre voxel on the volume's."""
    out = np.zeros(shape, np.float64)
    starts = [n // 2 - p // 2 for n, p in zip(shape, psf.shape, strict=True)]
    out[tuple(slice(s, s + p) for s, p in zip(starts, psf.shape, strict=True))] = psf / psf.sum()
    return out


def test_filtering_the_system_psf_gives_it_enlarged_m_times(scene: Scene) -> None:
    """A post-expansion bead (sPSF) comes out as ePSF: M times wider, same microscope."""
    shape = (48, 160, 160)
    bead = _padded(scene.spsf, shape).astype(np.float32)
    epsf = pe.blur_to_pre_expansion(bead, M, scene.spsf)
    c = tuple(n // 2 for n in shape)
    for axis in (1, 2):
        line = [slice(ci, ci + 1) for ci in c]
        line[axis] = slice(None)
        ratio = _fwhm_px(epsf[tuple(line)].ravel()) / _fwhm_px(bead[tuple(line)].ravel())
        assert ratio == pytest.approx(M, rel=0.15)
    assert epsf.sum() == pytest.approx(1.0, rel=1e-2)  # sinc tails leave the volume
    # and on the pre-expansion grid it is the sPSF again
    small = pe.shrink_to_pre_grid(epsf, M)
    assert small.shape == pe.pre_expansion_grid(shape, M)[0] == (15, 50, 50)
    profile = small[7, 25, :]
    assert _fwhm_px(profile) == pytest.approx(_fwhm_px(scene.spsf[4, 10, :]), abs=1.0)


def test_grids_round_trip() -> None:
    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.random((40, 96, 96)).astype(np.float32), 6.0)
    small = pe.shrink_to_pre_grid(smooth, M)
    back = pe.enlarge_to_post_grid(small, M, smooth.shape)
    inner = (slice(6, -6),) * 3
    assert np.abs(back - smooth)[inner].max() < 0.02 * np.ptp(smooth)
    with pytest.raises(ValueError, match="not the pre-expansion grid"):
        pe.enlarge_to_post_grid(small[:-1], M, smooth.shape)
    with pytest.raises(ValueError, match="> 1"):
        pe.pre_expansion_grid((8, 8, 8), 0.5)


# -- against the simulated acquisition of the unexpanded sample --------------------------


def test_synthetic_matches_the_unexpanded_acquisition_in_resolution(
    scene: Scene, synthetic: tuple[np.ndarray, pe.NoiseModel]
) -> None:
    clean, noise = synthetic
    assert clean.shape == scene.pre.shape == (13, 120, 120)
    made = noise.apply(clean, rng=1)
    truth_nm, synthetic_nm = _lateral_nm(scene.pre), _lateral_nm(made)
    assert synthetic_nm == pytest.approx(truth_nm, rel=0.10)


def test_synthetic_matches_the_unexpanded_acquisition_in_noise(
    scene: Scene, synthetic: tuple[np.ndarray, pe.NoiseModel]
) -> None:
    clean, noise = synthetic
    made = noise.apply(clean, rng=1)
    background = scene.pre_expected <= np.quantile(scene.pre_expected, 0.25)
    foreground = scene.pre_expected >= np.quantile(scene.pre_expected, 0.95)

    def levels(volume: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
        residual = volume - expected
        signal = expected[foreground].mean() - expected[background].mean()
        return float(residual[background].std()), float(signal / residual[foreground].std())

    truth_sd, truth_snr = levels(scene.pre, scene.pre_expected)
    made_sd, made_snr = levels(made, noise.expected(clean))
    assert made_sd == pytest.approx(truth_sd, rel=0.15)
    assert made_snr == pytest.approx(truth_snr, rel=0.15)


def test_estimate_noise_model_measures_the_camera(scene: Scene) -> None:
    model = pe.estimate_noise_model(scene.pre)
    truth_background = scene.pre_expected[
        scene.pre_expected <= np.quantile(scene.pre_expected, 0.25)
    ].mean()
    assert model.offset == pytest.approx(truth_background, abs=2.0)
    assert model.gain == pytest.approx(CameraModel().electrons_per_count, rel=0.15)
    assert model.signal_scale == 1.0
    flat = np.random.default_rng(0).normal(100, 3, (4, 32, 32))
    with pytest.raises(ValueError, match="gain"):
        pe.estimate_noise_model(flat)


def test_noise_fit_stays_within_bounds_and_raises_ssim(
    scene: Scene, synthetic: tuple[np.ndarray, pe.NoiseModel]
) -> None:
    clean, measured = synthetic
    crop = (slice(None), slice(30, 90), slice(30, 90))
    c, e = clean[crop], scene.pre[crop]
    initial = measured.scaled({"offset": 1.08, "signal_scale": 0.9, "read_noise": 1.1})
    fitted = pe.fit_noise_model(c, e, initial, tolerance=0.15)
    for name in pe.NOISE_PARAMETERS:
        ratio = getattr(fitted, name) / getattr(initial, name)
        assert 0.85 - 1e-9 <= ratio <= 1.15 + 1e-9, name
    assert pe.noise_ssim(fitted, c, e) > pe.noise_ssim(initial, c, e) + 0.01
    # also with real Poisson noise, and on voxels the fit never saw
    rest = (slice(None), slice(0, 30), slice(None))
    scores = [
        structural_similarity(m.apply(clean[rest], rng=5), scene.pre[rest], data_range=np.ptp(e))
        for m in (initial, fitted)
    ]
    assert scores[1] > scores[0]


# -- the command -------------------------------------------------------------------------


def test_cli_writes_pairs_that_training_reads(tmp_path, scene: Scene) -> None:
    import tifffile

    from rcanlive.cli import main
    from rcanlive.training.datasets import read_tiff_pairs

    posts = tmp_path / "post"
    posts.mkdir()
    tifffile.imwrite(posts / "a.tif", scene.post[:, 100:196, 150:246].astype(np.uint16))
    tifffile.imwrite(posts / "b.tif", scene.post[8:32, 200:264, 40:104].astype(np.uint16))
    tifffile.imwrite(tmp_path / "pre.tif", scene.pre.astype(np.uint16))
    out = tmp_path / "pairs"
    args = ["simulate", "pre-expansion", str(posts), str(out), "--expansion", str(M)]
    args += ["--pixel-size", "0.0555", "--z-step", "0.25", "--iterations", "2"]
    assert main([*args, "--reference", str(tmp_path / "pre.tif"), "--device", "cpu"]) == 0
    pairs = read_tiff_pairs(out / "raw", out / "gt")
    assert [p.name for p in pairs] == ["a", "b"]
    assert pairs[0].low.shape == pairs[0].high.shape == (40, 96, 96)
    assert pairs[1].low.shape == (24, 64, 64)
    assert tifffile.imread(out / "synthetic" / "a.tif").shape == (13, 30, 30)
    manifest = json.loads((out / "pre_expansion.json").read_text())
    measured, fitted = manifest["measured_noise"], manifest["noise"]
    for name in pe.NOISE_PARAMETERS:  # fitted within ±15 % of what the reference showed
        assert abs(fitted[name] / measured[name] - 1) <= 0.15 + 1e-9
    assert manifest["ssim_measured_fitted"][1] >= manifest["ssim_measured_fitted"][0]
    assert main([*args]) == 2  # OUT holds pairs already


def test_a_tiling_dataset_gives_its_tiles_then_its_stitched_blocks(tmp_path) -> None:
    from rcanlive.stitching import stitch_dataset
    from rcanlive.storage import DatasetWriter, Geometry, Volume
    from rcanlive.training.pre_expansion_pairs import post_expansion_volumes

    px, step = 0.0555, 40
    g = Geometry(planes=6, height=48, width=48, pixel_size_um=px, z_step_um=0.25, n_p=2)
    manifest = [
        {"index": i, "row": 0, "col": i, "x_um": (i * step + 24) * px, "y_um": 24 * px}
        for i in range(2)
    ]
    path = tmp_path / "gel.ome.zarr"
    writer = DatasetWriter(path, "tile", g, plan={}, rig={}, tiles=manifest)
    rng = np.random.default_rng(0)
    for i in range(2):
        data = rng.integers(100, 400, (6, 48, 48)).astype(np.uint16)
        writer.write(Volume.from_array(data, 0, i, 0, "ch", (0.0,) * 6, (0.0, 0.0), 0.0))
    writer.finish("completed")

    tiles = post_expansion_volumes(path)
    assert [v.name for v in tiles] == ["tile0000_c0", "tile0001_c0"]
    assert tiles[1].voxel_um == (0.25, px, px)
    assert tiles[1].read().shape == (6, 48, 48)

    stitch_dataset(path, register=False)
    blocks = post_expansion_volumes(path, block_yx=32)
    assert all(v.name.startswith("stitched_y") for v in blocks)
    shapes = [v.read().shape for v in blocks]
    assert {s[0] for s in shapes} == {6}
    assert sum(s[1] * s[2] for s in shapes) == 48 * (step + 48)  # the whole stitched plane
