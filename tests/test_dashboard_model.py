"""Dashboard numbers without Qt: SNR by the paper's formula, bleaching half-life, model, report."""

from __future__ import annotations

import base64
import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from rcanlive.acquisition import prepare, run_plan
from rcanlive.analysis.bleaching import MIN_DECAY, fit_bleaching
from rcanlive.analysis.snr import Camera, foreground_mask, photoelectrons, volume_snr
from rcanlive.cli import main
from rcanlive.config.experiment import load_plan
from rcanlive.dashboard.colors import RAW_COLORS
from rcanlive.dashboard.model import RAW, DashboardModel, LiveFeed, model_for_dataset, replay

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CAMERAS = {
    "paper sCMOS": {"offset_counts": 100.0, "electrons_per_count": 0.46, "read_noise_e": 1.3},
    "other camera": {"offset_counts": 400.0, "electrons_per_count": 0.25, "read_noise_e": 3.0},
}


def _expose(photons: np.ndarray, cam: dict[str, float], seed: int) -> np.ndarray:
    """Poisson photons + Gaussian read noise → counts with gain and offset (uint16)."""
    rng = np.random.default_rng(seed)
    e = rng.poisson(photons).astype(np.float64)
    e += rng.standard_normal(photons.shape) * cam["read_noise_e"]
    counts = e / cam["electrons_per_count"] + cam["offset_counts"]
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def _formula(s: np.ndarray, read_noise_e: float) -> np.ndarray:
    return s / np.sqrt(s + read_noise_e**2)


def _disk(shape: tuple[int, int, int] = (6, 96, 96), radius: float = 30) -> np.ndarray:
    _, yy, xx = np.indices(shape)
    return (yy - shape[1] / 2) ** 2 + (xx - shape[2] / 2) ** 2 < radius**2


@pytest.mark.parametrize("camera", CAMERAS)
@pytest.mark.parametrize("photons", [5.0, 10.5, 30.0, 200.0])  # 10.5 e⁻: SNR ≈ 3
def test_snr_matches_formula_on_known_photon_counts(camera, photons):
    cam = CAMERAS[camera]
    disk = _disk()
    counts = _expose(np.where(disk, photons, 0.0), cam, seed=int(photons * 10))
    # the parameters come from a rig dict, as a dataset stores it
    est = volume_snr(counts, Camera.from_rig({"camera": cam}))
    expected = float(_formula(np.float64(photons), cam["read_noise_e"]))
    assert est.median == pytest.approx(expected, rel=0.05)
    assert est.signal_e == pytest.approx(photons, rel=0.1)
    # the foreground is the disk, not the dark surround
    mask = foreground_mask(photoelectrons(counts, Camera.from_rig({"camera": cam})))
    assert (mask & disk).sum() / (mask | disk).sum() > 0.9


@pytest.mark.parametrize("camera", CAMERAS)
def test_snr_percentiles_on_a_photon_gradient(camera):
    cam = CAMERAS[camera]
    disk = _disk()
    _, _, xx = np.indices(disk.shape)
    photons = np.where(disk, 20 + 180 * xx / xx.max(), 0.0)
    est = volume_snr(_expose(photons, cam, seed=1), Camera.from_rig({"camera": cam}))
    truth = _formula(photons[disk], cam["read_noise_e"])
    assert est.median == pytest.approx(float(np.median(truth)), rel=0.05)
    assert est.p10 == pytest.approx(float(np.percentile(truth, 10)), rel=0.05)
    assert est.p10 < est.median


def test_wrong_camera_parameters_change_the_estimate():
    """The SNR really depends on the rig's camera parameters (not the paper's defaults)."""
    cam = CAMERAS["other camera"]
    counts = _expose(np.where(_disk(), 30.0, 0.0), cam, seed=3)
    right = volume_snr(counts, Camera.from_rig({"camera": cam})).median
    wrong = volume_snr(counts, Camera()).median
    assert right == pytest.approx(float(_formula(np.float64(30.0), 3.0)), rel=0.05)
    assert abs(wrong - right) / right > 0.3


def _live_run(open_sim_rig, sim_rig_config, out: Path, intensity: float, volumes: int, **kw):
    """A simulated live run at ``intensity`` W/cm² with a dashboard feed attached."""
    plan = load_plan(CONFIGS / "live-4d.toml", "live").replace(
        volumes=volumes,
        interval_s=kw.get("interval_s", 0.0),
        zstack={"planes": kw.get("planes", 25), "step_um": 0.25},
        exposure_ms=50.0,
        camera_roi_px=kw.get("roi", (32, 32)),
        channels=[{"line_nm": 488, "intensity_w_cm2": intensity}],
    )
    prepared = prepare(plan, sim_rig_config)
    rig = open_sim_rig()
    model = DashboardModel(Camera.from_rig(sim_rig_config), title="test")
    feed = LiveFeed(model)
    vols = []
    result = run_plan(
        rig,
        prepared,
        out=out,
        listeners=[feed.on_volume, vols.append],
        on_frame=feed.on_frame,
    )
    feed.close()
    assert rig.world.lasers_off()
    return result, model, rig.world, vols, plan


def test_half_life_at_high_intensity_matches_the_simulator(open_sim_rig, sim_rig_config, tmp_path):
    _, model, world, vols, plan = _live_run(
        open_sim_rig, sim_rig_config, tmp_path, intensity=360.0, volumes=12
    )
    # ground truth from the simulator's dose model at the intensity it really applied
    intensity = vols[0].meta["sim_intensity_w_cm2"]
    assert intensity == pytest.approx(360.0, rel=0.02)
    dose_per_volume = intensity * plan.zstack.planes * plan.exposure_ms * 1e-3
    truth = world.dose_half_j_cm2 / dose_per_volume
    (series,) = model.snapshot().series.values()
    fit = series.fit
    assert len(series) == 12 and fit is not None and fit.half_life_volumes is not None
    assert fit.half_life_volumes == pytest.approx(truth, rel=0.10)
    # in seconds: times the mean start-to-start interval of the volumes (least squares)
    interval = np.polyfit(series.t, [v.elapsed_s for v in vols], 1)[0]
    assert interval > 0
    assert fit.half_life_s == pytest.approx(truth * interval, rel=0.10)
    # normalised to the first volume and below half by the ground-truth half-life
    assert series.normalised[0] == 1.0
    assert series.normalised[int(np.ceil(truth))] < 0.5 < series.normalised[int(truth)]


def test_no_half_life_at_low_intensity(open_sim_rig, sim_rig_config, tmp_path):
    _, model, world, vols, plan = _live_run(
        open_sim_rig, sim_rig_config, tmp_path, intensity=4.2, volumes=20
    )
    (series,) = model.snapshot().series.values()
    fit = series.fit
    assert fit is not None and len(series) == 20
    assert fit.half_life_volumes is None and fit.half_life_s is None
    assert fit.decay_over_run < MIN_DECAY and "decay" in fit.reason
    assert "no half-life" in fit.label()
    # the simulator's half-life at this dose lies far beyond the run
    dose = vols[0].meta["sim_intensity_w_cm2"] * plan.zstack.planes * plan.exposure_ms * 1e-3
    assert world.dose_half_j_cm2 / dose > 10 * len(series)
    # and low light is flagged: the input SNR is below the paper's threshold of 3
    snap = model.snapshot()
    assert snap.low_snr_channels() == list(snap.channels)
    assert "LOW INPUT SNR" in snap.warning()


def test_fit_with_offset_recovers_a_non_bleaching_background():
    n = np.arange(30)
    rng = np.random.default_rng(0)
    signal = 0.7 * 2 ** (-n / 8.0) + 0.3 + rng.normal(0, 0.002, n.size)
    plain = fit_bleaching(n, signal)
    with_offset = fit_bleaching(n, signal, offset=True)
    assert with_offset.half_life_volumes == pytest.approx(8.0, rel=0.05)
    assert with_offset.offset == pytest.approx(0.3 / signal[0], rel=0.1)
    assert plain.half_life_volumes > 1.3 * with_offset.half_life_volumes  # biased without
    assert fit_bleaching(n[:2], signal[:2]) is None  # too few points


def test_replay_gives_the_live_numbers_and_the_report_draws_them(
    open_sim_rig, sim_rig_config, tmp_path
):
    result, live_model, *_ = _live_run(
        open_sim_rig, sim_rig_config, tmp_path, intensity=360.0, volumes=6, planes=6
    )
    replayed = replay(model_for_dataset(result.dataset), result.dataset).snapshot()
    live = live_model.snapshot()
    assert replayed.camera == live.camera == Camera.from_rig(sim_rig_config)
    key = (live.channels[0], RAW)
    for name in ("t", "signal_e", "snr_median", "snr_p10"):
        np.testing.assert_allclose(
            getattr(replayed.series[key], name), getattr(live.series[key], name)
        )
    assert replayed.health.frames == live.health.frames == 36
    assert replayed.health.volumes == 6

    png = tmp_path / "report.png"
    html = tmp_path / "report.html"
    assert main(["report", str(result.dataset), "-o", str(png)]) == 0
    assert main(["report", str(result.dataset), "-o", str(html)]) == 0
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html.read_text()).group(1)
    for data in (png.read_bytes(), base64.b64decode(embedded)):
        _assert_plot_pixels(data)
    assert "half-life" in html.read_text()


def _assert_plot_pixels(png: bytes) -> None:
    import matplotlib.image

    rgb = (matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255).round()
    background = np.all(rgb == 255, axis=-1)
    assert 0.05 < 1 - background.mean() < 0.9  # drawn, not blank, not a solid block
    raw_curve = np.all(np.abs(rgb - RAW_COLORS[0]) <= 3, axis=-1)
    assert raw_curve.sum() > 200  # the raw bleaching and SNR curves are there


def test_model_is_thread_safe_and_versioned():
    """Writers on several threads, a reader taking snapshots meanwhile: nothing lost."""
    cam = Camera()
    model = DashboardModel(cam)
    disk = _disk((4, 32, 32), 10)

    class Vol:
        def __init__(self, t: int, c: int) -> None:
            self.t, self.c, self.channel, self.elapsed_s = t, c, f"ch{c}", 0.1 * t
            self.data = _expose(np.where(disk, 50.0 * 0.97**t, 0.0), CAMERAS["paper sCMOS"], t)

    def write(c: int) -> None:
        for t in range(15):
            model.add_raw(Vol(t, c))
            model.set_frames(t)

    threads = [threading.Thread(target=write, args=(c,)) for c in range(3)]
    versions = []
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        versions.append(model.snapshot().version)
    for th in threads:
        th.join()
    snap = model.snapshot()
    assert versions == sorted(versions)
    assert snap.version >= 3 * 15 * 2
    assert sorted(snap.channels) == ["ch0", "ch1", "ch2"]
    assert snap.health.volumes == 45
    assert all(len(snap.series[(ch, RAW)]) == 15 for ch in snap.channels)
    assert model.snapshot() is snap  # unchanged model: the cached snapshot


def test_cli_help_and_user_errors(tmp_path, capsys):
    def printed(stream: str) -> str:
        # whitespace normalised: rich may wrap at the terminal width, anywhere in a path
        return " ".join(getattr(capsys.readouterr(), stream).split())

    for command in ("dashboard", "report"):
        assert main([command, "--help"]) == 0
        assert "Example: rcanlive" in printed("out")
    missing = tmp_path / "nope.ome.zarr"
    assert main(["report", str(missing)]) == 2
    assert "dataset not found" in printed("err")
    assert main(["dashboard", "--replay", str(missing)]) == 2
    assert "dataset not found" in printed("err")
    not_a_dataset = tmp_path / "folder"
    not_a_dataset.mkdir()
    assert main(["report", str(not_a_dataset)]) == 2
    assert "not an rcanlive" in printed("err")


def test_restored_curve_is_measured_against_its_own_background():
    """A restored volume's zero is its background, which sits below the camera offset."""
    from rcanlive.dashboard.model import RESTORED
    from rcanlive.storage.volume import Volume

    cam = CAMERAS["paper sCMOS"]
    model = DashboardModel(Camera.from_rig({"camera": cam}))
    disk = _disk()
    half_life = 6.5
    for t in range(8):
        photons = np.where(disk, 20.0 * 2 ** (-t / half_life), 0.0)
        raw = _expose(photons, cam, seed=t)
        vol = Volume.from_array(raw, t, 0, 0, "488", (0.0,) * 6, (0.0, 0.0), float(t))
        model.add_raw(vol)
        # a denoised volume in the raw scale whose background maps to 95 counts, below
        # the offset of 100, as the percentile denormalisation puts it at low light
        model.add_restored(vol, (95.0 + photons / cam["electrons_per_count"]).astype(np.float32))
    snap = model.snapshot()
    restored, raw = snap.series[("488", RESTORED)], snap.series[("488", RAW)]
    assert np.all(restored.signal_e > 0)
    truth = 2 ** (-np.arange(8) / half_life)
    np.testing.assert_allclose(restored.normalised, truth, rtol=0.01)
    np.testing.assert_allclose(raw.normalised, truth, rtol=0.05)
    assert restored.fit is not None
    assert restored.fit.half_life_volumes == pytest.approx(half_life, rel=0.02)
