"""Simulated evaluation data: iSIM pairs at the paper's intensities, straight from the
simulator's physics, and the input SNR they have.

:func:`isim_pairs` renders what the simulated rig's camera would record at each stage
position, without Micro-Manager: the same :class:`~rcanlive.simulation.world.World`
(sample blurred by the iSIM PSF, photons per W/cm² and second, Poisson + read noise +
offset of the paper's sCMOS) that ``rcanlive simulate pairs`` drives through the MDA.
The low and high volumes of a pair are independent exposures of the unbleached sample
(bleaching between the two members of a pair is left out: it only scales the truth,
which the normalisation removes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..analysis.snr import foreground_mask, volume_snr
from ..simulation.optics import rig_psf
from ..simulation.samples import make_sample
from ..simulation.world import World, intensity_w_cm2
from .pairsets import EvalPair

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from ..simulation.samples import Sample, SampleKind

#: The paper's training-pair intensities: 0.3 mW and 33 mW at 488 nm over its field.
PAPER_LOW_W_CM2 = intensity_w_cm2(0.3)
PAPER_HIGH_W_CM2 = intensity_w_cm2(33.0)
#: The paper's high intensity for live imaging (Fig. 1e).
PAPER_LIVE_W_CM2 = 360.0


@dataclass(frozen=True, slots=True)
class IsimSpec:
    """How the simulated camera takes a volume.

    Attributes
    ----------
    planes, roi_px
        Z-planes per volume and the square camera ROI (pixels).
    z_step_um
        Plane spacing.
    exposure_ms
        Exposure per plane.
    low_w_cm2, high_w_cm2
        Intensities of the input and of the ground truth (paper: 4.2 and 457).
    """

    planes: int = 16
    roi_px: int = 256
    z_step_um: float = 0.25
    exposure_ms: float = 50.0
    low_w_cm2: float = PAPER_LOW_W_CM2
    high_w_cm2: float = PAPER_HIGH_W_CM2


def simulator_psf(z_step_um: float, pixel_size_um: float) -> NDArray[np.float32]:
    """The iSIM PSF the simulator blurs with, at this voxel size (sum 1)."""
    return np.asarray(rig_psf(z_step_um, pixel_size_um), dtype=np.float32)


def make_world(
    kind: SampleKind | str,
    seed: int,
    *,
    z_step_um: float = 0.25,
    shape: tuple[int, int, int] | None = None,
    **sample_kw: object,
) -> World:
    """A simulated world holding a fresh sample of ``kind`` (``mitochondria``, ``er``...).

    ``shape`` (planes, rows, columns of the sample; default the sample's own, 24×640×640
    for mitochondria and ER) bounds the stage positions that see the sample: a ROI of
    ``r`` pixels at ``(x, y)`` µm must lie within it. A smaller mitochondria sample
    needs fewer tubes (``n_tubes``, passed on with the other ``sample_kw``) to keep the
    default density (300 tubes in 640×640).
    """
    extra: dict[str, object] = dict(sample_kw)
    if shape is not None:
        extra["shape"] = shape
    voxel = (z_step_um, 0.0555, 0.0555)
    sample: Sample = make_sample(kind, seed=seed, voxel_um=voxel, **extra)  # type: ignore[arg-type]
    world = World(sample, seed=seed)
    world.shutter_open = True
    return world


def expected_volume(
    world: World, position_um: tuple[float, float], spec: IsimSpec, intensity: float
) -> NDArray[np.float32]:
    """Noise-free photoelectrons of a volume at ``position_um`` and ``intensity`` W/cm²."""
    world.move_xy(*position_um)
    offsets = (np.arange(spec.planes) - (spec.planes - 1) / 2) * spec.z_step_um
    return np.stack(
        [
            world.expected_photoelectrons(
                (spec.roi_px, spec.roi_px), spec.exposure_ms, world.focus_um + dz, intensity
            )
            for dz in offsets
        ]
    )


def expose(world: World, photoelectrons: NDArray[np.float32]) -> NDArray[np.float32]:
    """Camera counts (offset, Poisson, read noise) of expected photoelectrons, float32."""
    return world.camera.expose(photoelectrons, world.rng).astype(np.float32)


def isim_pairs(
    world: World,
    positions_um: Sequence[tuple[float, float]],
    spec: IsimSpec | None = None,
    *,
    group: str = "",
) -> list[EvalPair]:
    """One (low, high) pair of raw camera volumes per stage position.

    Parameters
    ----------
    world
        The simulated sample (its ``rng`` draws the noise).
    positions_um
        Stage ``(x, y)`` of each field of view.
    spec
        Camera and intensities (default :class:`IsimSpec`: the paper's 4.2 → 457 W/cm²).
    group
        Prefix of the pairs' names and groups (default: sample name and seed); each
        position is its own group.
    """
    spec = spec or IsimSpec()
    sample = world.sample
    name = group or (f"{sample.name}-s{sample.meta.get('seed', 0)}" if sample else "sample")
    pairs = []
    for i, pos in enumerate(positions_um):
        signal = expected_volume(world, pos, spec, 1.0)
        low = expose(world, signal * np.float32(spec.low_w_cm2))
        high = expose(world, signal * np.float32(spec.high_w_cm2))
        pairs.append(EvalPair(f"{name}_p{i:02d}", low, high, f"{name}_p{i:02d}"))
    return pairs


def intensity_for_snr(
    world: World, position_um: tuple[float, float], spec: IsimSpec, snr: float
) -> float:
    """Intensity (W/cm²) at which the foreground's median input SNR is about ``snr``.

    Solves ``S / √(S + Nr²) = snr`` for the median foreground signal ``S`` (the
    paper's formula), from the noise-free signal at 1 W/cm².
    """
    return _intensity_for_snr(world, expected_volume(world, position_um, spec, 1.0), snr)


def _intensity_for_snr(world: World, signal_per_w: NDArray[np.float32], snr: float) -> float:
    """Intensity giving median foreground SNR ``snr`` to the signal at 1 W/cm²."""
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}")
    fg = foreground_mask(signal_per_w)
    per_w = float(np.median(signal_per_w[fg])) if fg.any() else float(signal_per_w.mean())
    nr2 = world.camera.read_noise_e**2
    target = (snr**2 + snr * math.sqrt(snr**2 + 4 * nr2)) / 2
    return target / per_w


def mixed_pairs(
    kinds: Sequence[str],
    positions_um: Sequence[tuple[float, float]],
    *,
    snr_range: tuple[float, float] = (0.8, 8.0),
    inputs_per_field: int = 3,
    seed: int = 0,
    spec: IsimSpec | None = None,
) -> list[EvalPair]:
    """Training pairs over several structures and input SNRs, grouped by field of view.

    For every sample kind (a fresh sample, seeded from ``seed`` and the kind's place in
    ``kinds``) and stage position: one ground truth at ``spec.high_w_cm2`` and
    ``inputs_per_field`` inputs at intensities chosen so that their median foreground
    SNR is spread log-uniformly over ``snr_range`` (one random draw per stratum). All
    pairs of a field share its group: split by group, never by pair.
    """
    spec = spec or IsimSpec()
    lo, hi = np.log(snr_range[0]), np.log(snr_range[1])
    rng = np.random.default_rng(seed)
    pairs = []
    for k, kind in enumerate(kinds):
        world = make_world(kind, seed * 100 + k)
        for i, pos in enumerate(positions_um):
            group = f"{kind}-s{seed}-p{i:02d}"
            signal = expected_volume(world, pos, spec, 1.0)
            high = expose(world, signal * np.float32(spec.high_w_cm2))
            strata = (np.arange(inputs_per_field) + rng.uniform(size=inputs_per_field)) / max(
                inputs_per_field, 1
            )
            for j, u in enumerate(strata):
                snr = float(np.exp(lo + (hi - lo) * u))
                intensity = min(_intensity_for_snr(world, signal, snr), spec.high_w_cm2)
                low = expose(world, signal * np.float32(intensity))
                pairs.append(EvalPair(f"{group}-i{j}", low, high, group))
    return pairs


def input_snr(world: World, counts: NDArray[np.float32]) -> float:
    """Median foreground SNR of a raw volume (:func:`rcanlive.analysis.snr.volume_snr`)."""
    return volume_snr(counts, world.camera).median


def power_mw_for(intensity: float) -> float:
    """Power at the objective (mW) that gives ``intensity`` W/cm² over the paper's field."""
    return intensity / intensity_w_cm2(1.0)
