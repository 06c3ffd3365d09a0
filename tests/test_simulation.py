"""The simulated iSIM's physics: noise model and dose-driven bleaching."""

from __future__ import annotations

import numpy as np
import pytest

from rcanlive.simulation.optics import CameraModel, isim_psf
from rcanlive.simulation.samples import spherical_phantoms
from rcanlive.simulation.world import World


def test_camera_noise_statistics():
    cam = CameraModel()
    rng = np.random.default_rng(0)
    signal = np.full((400, 400), 50.0, np.float32)  # photoelectrons
    counts = cam.expose(signal, rng)
    e = cam.to_photoelectrons(counts)
    assert e.mean() == pytest.approx(50.0, rel=0.01)
    # Poisson (50) + read noise (1.3²) + quantisation ((0.46)²/12)
    assert e.var() == pytest.approx(50 + 1.3**2 + 0.46**2 / 12, rel=0.05)
    dark = cam.expose(np.zeros((400, 400), np.float32), rng)
    assert dark.mean() == pytest.approx(100.0, abs=0.05)


def test_psf_is_normalised_and_narrower_than_widefield():
    psf = isim_psf((21, 33), (0.25, 0.0555))
    assert psf.sum() == pytest.approx(1.0, rel=1e-5)
    line = psf[10, 16] / psf[10, 16].max()
    fwhm_px = (line > 0.5).sum()
    assert 0.1 < fwhm_px * 0.0555 < 0.25  # iSIM lateral FWHM ~150–200 nm


def _volume_signal(world: World, intensity: float, planes: int = 25, exposure_ms: float = 50.0):
    total = 0.0
    for z in np.linspace(world.focus_um - 3, world.focus_um + 3, planes):
        total += world.expected_photoelectrons((128, 128), exposure_ms, z, intensity).sum()
        world.bleach((128, 128), exposure_ms, intensity)
    return total


@pytest.mark.parametrize(("intensity", "halves_within"), [(360.0, 7), (4.2, None)])
def test_bleaching_half_life(intensity, halves_within):
    world = World(spherical_phantoms((16, 128, 128), seed=1), seed=0)
    signals = [_volume_signal(world, intensity) for _ in range(12)]
    rel = np.array(signals) / signals[0]
    if halves_within is None:
        assert rel[-1] > 0.97  # 4.2 W/cm²: negligible bleaching
    else:
        first_below = int(np.argmax(rel <= 0.5))
        # paper Fig. 1e: seven volumes before the signal is below half
        assert first_below == halves_within
