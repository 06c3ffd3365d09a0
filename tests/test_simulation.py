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


@pytest.mark.parametrize("kind", ["filaments", "puncta", "sheets"])
def test_structure_samples_are_sparse_normalised_and_distinct(kind):
    from rcanlive.simulation.samples import make_sample

    shape = (12, 160, 160)
    a = make_sample(kind, seed=1, shape=shape).density
    b = make_sample(kind, seed=2, shape=shape).density
    assert a.shape == shape and a.dtype == np.float32
    assert a.max() == pytest.approx(1.0) and a.min() >= 0
    fg = a > 0.1
    assert 1e-4 < fg.mean() < 0.1  # sparse structure, not an empty or full volume
    assert not np.array_equal(a, b)  # the seed draws a new sample


def test_structure_shapes_differ_as_described():
    from scipy import ndimage

    from rcanlive.simulation.samples import make_sample

    shape = (12, 200, 200)
    labels = {}
    for kind in ("filaments", "puncta"):
        fg = make_sample(kind, seed=3, shape=shape).density.max(axis=0) > 0.2
        lab, n = ndimage.label(fg, structure=np.ones((3, 3)))
        sizes = ndimage.sum(fg, lab, range(1, n + 1))
        extents = [max(s.stop - s.start for s in sl) for sl in ndimage.find_objects(lab)]
        labels[kind] = (np.median(sizes), np.median(extents))
    # filaments are long thin lines, puncta compact dots
    assert labels["filaments"][1] > 3 * labels["puncta"][1]


def test_mixed_pairs_spread_snr_and_group_by_field():
    from rcanlive.evaluation.simulated import IsimSpec, mixed_pairs
    from rcanlive.simulation.world import World

    spec = IsimSpec(planes=8, roi_px=64)
    pairs = mixed_pairs(
        ["puncta", "sheets"], [(0.0, 0.0), (5.0, 5.0)], snr_range=(1.0, 8.0), spec=spec
    )
    assert len(pairs) == 2 * 2 * 3
    assert len({p.group for p in pairs}) == 4
    by_group: dict[str, list] = {}
    for p in pairs:
        by_group.setdefault(p.group, []).append(p)
    camera = World().camera
    from rcanlive.analysis.snr import volume_snr

    for members in by_group.values():
        # one truth per field, inputs at increasing SNR (one per stratum of the range)
        assert all(m.high is members[0].high for m in members)
        snrs = [volume_snr(m.low, camera).median for m in members]
        assert snrs == sorted(snrs)
        assert snrs[0] < 2.5 and snrs[-1] > 3.5
