"""SNR-guided illumination: the control law, its bounds, and live simulated runs."""

from __future__ import annotations

import errno
import itertools
import json
import math
import queue
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pymmcore_plus.core import SequencedEvent
from pymmcore_plus.mda import RunState

from rcanlive.acquisition import (
    AcquisitionError,
    PlanError,
    illumination_loop,
    prepare,
    run_plan,
)
from rcanlive.acquisition.illumination_control import (
    AdaptiveSettings,
    IlluminationController,
    resolve_adaptive,
    signal_for_snr,
)
from rcanlive.acquisition.illumination_loop import measurement_planes
from rcanlive.acquisition.runner import RunStatus
from rcanlive.analysis.snr import snr_from_photoelectrons
from rcanlive.config.experiment import AdaptiveIllumination, LivePlan, load_plan
from rcanlive.dashboard.model import model_for_dataset, replay
from rcanlive.microscope.illumination import intensity_to_power_mw
from rcanlive.simulation.samples import mitochondria
from rcanlive.storage import DatasetWriter, open_dataset
from rcanlive.storage.illumination_log import read_illumination, summarize_illumination

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
READ_NOISE = 1.3
SETTINGS = AdaptiveSettings(min_mw=0.1, max_mw=100.0)


def plant(power_mw: float, brightness: float = 1.0) -> float:
    """A sample's SNR at ``power_mw``: 4 e⁻ per mW at the dim (10th-percentile) pixel."""
    return float(snr_from_photoelectrons(4.0 * power_mw * brightness, READ_NOISE))


def run_loop(
    controller: IlluminationController,
    volumes: int,
    brightness=lambda t: 1.0,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[list[float], list[float]]:
    """Powers and SNRs of ``volumes`` volumes of the plant under ``controller``."""
    rng = np.random.default_rng(seed)
    powers, snrs = [], []
    for t in range(volumes):
        power = controller.power_mw
        snr = plant(power, brightness(t)) * (1 + noise * rng.standard_normal())
        powers.append(power)
        snrs.append(snr)
        controller.update(t, snr, power)
    return powers, snrs


# -- the control law -----------------------------------------------------------------


def test_inverse_of_the_snr_formula() -> None:
    for s in (0.5, 3.0, 17.5, 400.0):
        snr = float(snr_from_photoelectrons(s, READ_NOISE))
        assert signal_for_snr(snr, READ_NOISE) == pytest.approx(s, rel=1e-5)
    assert signal_for_snr(4.0, 0.0) == pytest.approx(16.0)  # shot noise: SNR² = S


@pytest.mark.parametrize(
    ("start_mw", "name"),
    [(30.0, "far above"), (12.0, "above"), (2.5, "below"), (0.8, "far below")],
)
def test_step_response_settles_within_five_volumes(start_mw: float, name: str) -> None:
    controller = IlluminationController(SETTINGS, start_mw, READ_NOISE)
    powers, snrs = run_loop(controller, 15, noise=0.01)
    ratios = np.array(powers[1:]) / np.array(powers[:-1])
    assert ratios.max() <= 1.5 + 1e-9 and ratios.min() >= 0.8 - 1e-9, name
    aim = SETTINGS.aim
    settled = next(i for i, s in enumerate(snrs) if abs(s / aim - 1) <= SETTINGS.tolerance)
    if name in ("above", "below"):
        assert settled <= 5, (name, snrs)
    # once settled: at or above the target, and the power moves < 10 % per volume
    assert min(snrs[settled:]) >= SETTINGS.target_snr, (name, snrs)
    assert np.all(np.abs(ratios[settled:] - 1) < 0.10), (name, powers)


def test_no_oscillation_on_a_constant_noisy_sample() -> None:
    controller = IlluminationController(SETTINGS, 6.0, READ_NOISE)
    powers, _ = run_loop(controller, 60, noise=0.01, seed=3)  # 1 % noise on the SNR
    steps = np.diff(np.log(powers[5:]))
    assert np.count_nonzero(steps) <= 0.1 * steps.size  # held nearly always
    assert np.abs(steps).max() < np.log(1.10)  # and < 10 % when it moves
    # no ringing: never three moves in a row (a noise blip is corrected once, at most)
    moving = steps != 0
    assert not np.any(moving[:-2] & moving[1:-1] & moving[2:])


def test_tracks_dimming_and_brightening() -> None:
    def brightness(t: int) -> float:  # bleaching 3 %/volume, then expression ×2.5
        return 0.97**t if t < 20 else 0.97**20 * min(1 + 0.15 * (t - 20), 2.5)

    controller = IlluminationController(SETTINGS, 5.0, READ_NOISE)
    powers, snrs = run_loop(controller, 40, brightness)
    assert powers[19] > 1.5 * powers[3]  # dimming: more light
    assert powers[39] < 0.6 * powers[19]  # brightening: less light
    assert sum(s >= SETTINGS.target_snr for s in snrs[3:]) / len(snrs[3:]) >= 0.95


@pytest.mark.parametrize(
    "snr",
    [None, math.nan, math.inf, -math.inf, 0.0, -3.0, 1e9, 201.0],
    ids=["none", "nan", "inf", "-inf", "zero", "negative", "1e9", "above-camera"],
)
def test_failed_or_absurd_snr_holds_the_last_power(snr: float | None) -> None:
    controller = IlluminationController(SETTINGS, 7.0, READ_NOISE)
    decision = controller.update(0, snr, 7.0)
    assert decision.power_mw == 7.0 and not decision.changed
    assert decision.reason.startswith("hold:")


def test_bounds_hold_for_any_sequence_of_measurements() -> None:
    settings = AdaptiveSettings(min_mw=1.0, max_mw=20.0)
    controller = IlluminationController(settings, 5.0, READ_NOISE)
    rng = np.random.default_rng(1)
    absurd = [0.0, math.nan, math.inf, 1e9, 1e-9, -1.0, 200.0, None]
    for t in range(500):
        snr = absurd[t % len(absurd)] if t % 3 == 0 else float(rng.lognormal(1.0, 2.0))
        before = controller.power_mw
        after = controller.update(t, snr).power_mw
        assert 1.0 <= after <= 20.0
        assert 0.8 - 1e-9 <= after / before <= 1.5 + 1e-9
    # pinned at the bounds by extreme (valid) SNRs
    for t in range(40):
        controller.update(t, 0.01)
    assert controller.power_mw == 20.0
    assert controller.update(0, 0.01).reason.startswith("hold: at max")
    for t in range(40):
        controller.update(t, 150.0)
    assert controller.power_mw == 1.0


def test_every_n_volumes_holds_in_between() -> None:
    controller = IlluminationController(AdaptiveSettings(every=3), 5.0, READ_NOISE)
    changed = [controller.update(t, 1.0).changed for t in range(9)]
    assert changed == [False, False, True] * 3


def test_resolve_in_w_cm2_and_the_calibrated_range(sim_rig_config) -> None:
    rig = sim_rig_config
    s = resolve_adaptive(
        AdaptiveIllumination(min_w_cm2=4.2, max_w_cm2=360.0), rig, 488, initial_mw=7.0
    )
    assert s.min_mw == pytest.approx(intensity_to_power_mw(rig, 4.2))
    assert s.max_mw == pytest.approx(intensity_to_power_mw(rig, 360.0))
    default = resolve_adaptive(AdaptiveIllumination(), rig, 488, initial_mw=7.0)
    table = rig.laser(488).calibration
    assert (default.min_mw, default.max_mw) == (table[1][1], table[-1][1])
    with pytest.raises(ValueError, match="max_mw = 500 mW exceeds"):
        resolve_adaptive(AdaptiveIllumination(max_mw=500.0), rig, 488, initial_mw=7.0)
    plan = load_plan(CONFIGS / "live-adaptive.toml", "live")
    with pytest.raises(PlanError, match=r"illumination.adaptive \(channels\[0\]\).*outside"):
        prepare(plan.replace(channels=[{"line_nm": 488, "intensity_w_cm2": 500.0}]), rig)
    assert len(prepare(plan, rig).adaptive) == 1


def test_measurement_keeps_whole_planes_within_the_budget() -> None:
    planes = [np.full((64, 64), z, np.uint16) for z in range(25)]
    kept = measurement_planes(planes, max_voxels=64 * 64 * 5)
    assert kept.shape == (5, 64, 64)
    assert list(kept[:, 0, 0]) == [0, 6, 12, 18, 24]  # evenly spaced, ends included
    assert measurement_planes(planes, max_voxels=32 * 32).shape == (1, 32, 32)


def test_sample_brightness_profile() -> None:
    sample = mitochondria((4, 32, 32), n_tubes=5)
    assert sample.brightness_at(10**6) == 1.0
    sample.brightness = ((0, 1.0), (100, 2.0), (200, 0.5))
    assert [sample.brightness_at(f) for f in (0, 50, 100, 150, 999)] == [1.0, 1.5, 2.0, 1.25, 0.5]


# -- live simulated runs -------------------------------------------------------------


def _plan(tmp_path: Path, adaptive: bool, volumes: int = 9) -> LivePlan:
    return LivePlan.model_validate(
        {
            "volumes": volumes,
            "interval_s": 0.0,
            "exposure_ms": 50.0,
            "camera_roi_px": [96, 96],
            "zstack": {"planes": 6, "step_um": 0.25},
            "channels": [{"line_nm": 488, "intensity_w_cm2": 150.0}],
            "storage": {"out_dir": str(tmp_path), "name": "adaptive" if adaptive else "fixed"},
            "illumination": {"adaptive": {"min_w_cm2": 4.2, "max_w_cm2": 360.0}}
            if adaptive
            else {},
        }
    )


class CameraLog:
    """What the simulated camera saw: each frame's AOTF value and the event type."""

    def __init__(self, core) -> None:
        self.aotf: dict[int, list[float]] = {}
        self.sequenced = 0
        self.events = 0
        core.mda.events.frameReady.connect(self.frame)
        core.mda.events.eventStarted.connect(self.started)

    def frame(self, img, event, meta) -> None:
        seen = dict(kv.split(":") for kv in meta["camera_metadata"]["sim_aotf"].split(","))
        self.aotf.setdefault(event.index["t"], []).append(float(seen["488"]))

    def started(self, event) -> None:
        self.events += 1
        self.sequenced += isinstance(event, SequencedEvent)


def test_adaptive_run_records_decisions_and_the_camera_saw_them(
    open_sim_rig, sim_rig_config, tmp_path
) -> None:
    plan = _plan(tmp_path, adaptive=True)
    prepared = prepare(plan, sim_rig_config)
    rig = open_sim_rig()
    camera = CameraLog(rig.core)
    result = run_plan(rig, prepared)
    assert result.status is RunStatus.COMPLETED and result.frames == prepared.n_frames
    assert rig.world.lasers_off()
    records = read_illumination(result.dataset)
    assert [r["t"] for r in records] == list(range(9))  # one decision per volume
    # hardware sequencing kept: one sequence of 6 frames per volume
    assert camera.events == camera.sequenced == 9
    for r in records:
        assert camera.aotf[r["t"]] == pytest.approx([r["aotf"]] * 6, abs=1e-3)
        assert r["mode"] == "adaptive" and r["snr"] is not None
        assert 4.2 <= r["intensity_w_cm2"] <= 360.0
    for a, b in itertools.pairwise(records):  # each decision is applied
        assert b["power_mw"] == pytest.approx(a["next_power_mw"], rel=1e-6)
        assert b["dose_j_cm2"] == pytest.approx(a["dose_j_cm2"] + b["volume_dose_j_cm2"])
    snrs = [r["snr"] for r in records]
    # a constant sample: from 150 W/cm² the power comes down and settles within 5 volumes
    assert records[-1]["intensity_w_cm2"] < 100.0
    powers = [r["power_mw"] for r in records]
    assert all(abs(b / a - 1) < 0.10 for a, b in itertools.pairwise(powers[5:]))
    assert min(snrs[5:]) >= 4.0
    summary = open_dataset(result.dataset).meta["summary"]["illumination"]
    assert summary["volumes"] == 9 and summary["volumes_at_target"] == sum(s >= 4 for s in snrs)
    series = replay(model_for_dataset(result.dataset), result.dataset).snapshot().series
    assert list(next(iter(series.values())).power_mw) == pytest.approx(powers)


def test_fixed_run_writes_the_same_log(open_sim_rig, sim_rig_config, tmp_path) -> None:
    prepared = prepare(_plan(tmp_path, adaptive=False, volumes=3), sim_rig_config)
    result = run_plan(open_sim_rig(), prepared)
    records = read_illumination(result.dataset)
    assert [r["reason"] for r in records] == ["fixed"] * 3
    assert [r["intensity_w_cm2"] for r in records] == [150.0] * 3
    dose = 150.0 * 0.050 * 6  # W/cm² × s per plane × planes
    assert [r["dose_j_cm2"] for r in records] == pytest.approx([dose, 2 * dose, 3 * dose])
    summary = summarize_illumination(records, target_snr=4.0)
    assert summary is not None and summary.at_target == 3 and "fixed" in summary.describe()
    log = (result.dataset / "volumes.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in log]
    assert [rec["power_mw"] for rec in logged] == [r["power_mw"] for r in records]


def test_failed_measurements_hold_the_power(
    open_sim_rig, sim_rig_config, tmp_path, monkeypatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("analysis broke")

    monkeypatch.setattr(illumination_loop, "measure_snr", broken)
    prepared = prepare(_plan(tmp_path, adaptive=True, volumes=3), sim_rig_config)
    result = run_plan(open_sim_rig(), prepared)
    records = read_illumination(result.dataset)
    assert [r["intensity_w_cm2"] for r in records] == [150.0] * 3
    assert all(r["snr"] is None and r["reason"].startswith("hold:") for r in records)


def test_cancel_between_volumes_stops_safely(open_sim_rig, sim_rig_config, tmp_path) -> None:
    prepared = prepare(_plan(tmp_path, adaptive=True, volumes=8), sim_rig_config)
    rig = open_sim_rig()

    def cancel_after_second(volume) -> None:
        if volume.t == 1:
            rig.core.mda.cancel()

    result = run_plan(rig, prepared, listeners=[cancel_after_second])
    assert result.status is RunStatus.CANCELLED
    assert 2 <= result.volumes < 8 and rig.world.lasers_off()
    assert len(read_illumination(result.dataset)) == result.volumes


class _Core:
    """Just enough of a core for the event source's wait: the runner's status."""

    def __init__(self, phase: RunState) -> None:
        self.mda = SimpleNamespace(status=SimpleNamespace(phase=phase, cancel_requested=False))


def test_wait_for_a_decision_ends_on_cancel_and_on_timeout(monkeypatch) -> None:
    recorder = object.__new__(illumination_loop.IlluminationRecorder)  # the queue only
    recorder._decisions = queue.Queue()
    # cancelled while waiting: return at once with the held powers
    assert recorder._await_decisions(_Core(RunState.FINISHING), 3, [5.0]) == [5.0]
    # a stale decision (earlier volume) is ignored; the right one is taken
    recorder._decisions.put((2, 0, 9.0))
    recorder._decisions.put((3, 0, 6.0))
    assert recorder._await_decisions(_Core(RunState.WAITING), 3, [5.0]) == [6.0]
    # no decision in time: hold
    monkeypatch.setattr(illumination_loop, "DECISION_TIMEOUT_S", 0.05)
    assert recorder._await_decisions(_Core(RunState.WAITING), 4, [6.0]) == [6.0]


def test_storage_failure_releases_no_further_volume(
    open_sim_rig, sim_rig_config, tmp_path, monkeypatch
) -> None:
    original = DatasetWriter.write

    def write(self, volume) -> None:
        if volume.t == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, volume)

    monkeypatch.setattr(DatasetWriter, "write", write)
    prepared = prepare(_plan(tmp_path, adaptive=True, volumes=6), sim_rig_config)
    rig = open_sim_rig()
    with pytest.raises(AcquisitionError, match="No space left"):
        run_plan(rig, prepared)
    assert rig.core.mda.engine.delivered == 3 * 6  # the failed volume was the last one
    assert rig.world.lasers_off()
    assert [r["t"] for r in read_illumination(tmp_path / "adaptive.ome.zarr")] == [0, 1]
