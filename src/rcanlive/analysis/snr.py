"""Per-pixel and per-volume SNR of raw camera frames, by the paper's formula.

The paper's Methods ("Estimating signal-to-noise ratio in experiments") model each
pixel's noise as Poisson noise of the signal plus the camera's read noise: after
subtracting the constant camera offset (100 counts) and converting to photoelectrons
(0.46 e⁻/count),

    SNR = S / √(S + Nr²)

with S the background-corrected signal in photoelectrons and Nr the read noise
(1.3 e⁻). The camera parameters must be those of the rig that took the data: they are
in the rig config (``[camera]``), which every dataset stores in its root attributes.

A volume's SNR is summarised over its *foreground*, the voxels that hold the sample:
the median (the typical structure) and the 10th percentile (its dim parts, where the
paper sees restoration artifacts first once the input drops below SNR ≈ 3).

Foreground mask
---------------
Thresholding the per-pixel signal directly would let shot noise decide membership
(at S ≈ 10 e⁻ a background pixel and a dim structure overlap), so the signal is first
smoothed laterally (Gaussian, σ = 1.5 px, about the iSIM PSF's width at 55 nm pixels:
it averages ~30 pixels of noise away while keeping structures' extent) and then split
by Otsu's threshold. Otsu adapts to the signal level, so the same rule works at
4.2 W/cm² and at 360 W/cm² and while the sample bleaches; a fixed percentile would
instead assume how much of the field the cells cover. The per-pixel SNR itself is
computed on the *unsmoothed* signal, as in the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

#: Below this input SNR the paper sees obvious restoration artifacts (Fig. 1c).
SNR_WARNING = 3.0
#: Lateral Gaussian σ (pixels) of the smoothing before the foreground threshold.
MASK_SIGMA_PX = 1.5


class CameraLike(Protocol):
    """Anything with the sCMOS conversion parameters (e.g. ``config.rig.CameraParams``)."""

    @property
    def offset_counts(self) -> float: ...
    @property
    def electrons_per_count(self) -> float: ...
    @property
    def read_noise_e(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Camera:
    """sCMOS conversion parameters: offset (counts), gain (e⁻/count), read noise (e⁻)."""

    offset_counts: float = 100.0
    electrons_per_count: float = 0.46
    read_noise_e: float = 1.3

    @classmethod
    def from_rig(cls, rig: Mapping[str, Any] | CameraLike | Any) -> Camera:
        """From a rig dict (as stored in a dataset), a ``RigConfig`` or camera params."""
        if isinstance(rig, Mapping):
            cam = rig.get("camera", rig)
            return cls(
                float(cam["offset_counts"]),
                float(cam["electrons_per_count"]),
                float(cam["read_noise_e"]),
            )
        cam = getattr(rig, "camera", rig)
        return cls(
            float(cam.offset_counts), float(cam.electrons_per_count), float(cam.read_noise_e)
        )


@dataclass(frozen=True, slots=True)
class VolumeSNR:
    """SNR summary of one raw volume.

    Attributes
    ----------
    median, p10
        Median and 10th percentile of the per-pixel SNR over the foreground.
    signal_e
        Median background-corrected foreground signal, photoelectrons per pixel.
    foreground_fraction
        Fraction of voxels in the foreground mask.
    """

    median: float
    p10: float
    signal_e: float
    foreground_fraction: float

    @property
    def low(self) -> bool:
        """True when the typical foreground SNR is below :data:`SNR_WARNING`."""
        return self.median < SNR_WARNING


def photoelectrons(counts: ArrayLike, camera: CameraLike) -> NDArray[np.float32]:
    """Offset-subtracted signal in photoelectrons (the paper's S, may be < 0)."""
    c = np.asarray(counts, np.float32)
    return (c - np.float32(camera.offset_counts)) * np.float32(camera.electrons_per_count)


def snr_from_photoelectrons(signal_e: ArrayLike, read_noise_e: float) -> NDArray[np.float32]:
    """S/√(S + Nr²) per pixel; pixels with S ≤ 0 (noise around the offset) get 0."""
    s = np.clip(np.asarray(signal_e, np.float32), 0, None)
    return s / np.sqrt(s + np.float32(read_noise_e) ** 2)


def snr_map(counts: ArrayLike, camera: CameraLike) -> NDArray[np.float32]:
    """Per-pixel SNR of raw camera counts (any shape, e.g. one plane)."""
    return snr_from_photoelectrons(photoelectrons(counts, camera), camera.read_noise_e)


def otsu_threshold(values: ArrayLike, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)  # voxels at or below each candidate cut
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))])


def foreground_mask(signal_e: ArrayLike, sigma_px: float = MASK_SIGMA_PX) -> NDArray[np.bool_]:
    """Sample voxels of a plane ``(Y, X)`` or volume ``(Z, Y, X)``: Otsu on a smoothed copy.

    Smoothing is lateral only (planes of a stack are 0.25 µm or more apart, and a
    volume's edge planes must not borrow signal from their neighbours).
    """
    s = np.asarray(signal_e, np.float32)
    sigma = (0.0,) * (s.ndim - 2) + (sigma_px, sigma_px)
    smooth = ndimage.gaussian_filter(s, sigma=sigma, mode="nearest")
    return smooth > otsu_threshold(smooth)


def volume_snr(
    counts: ArrayLike, camera: CameraLike, mask: NDArray[np.bool_] | None = None
) -> VolumeSNR:
    """Median and 10th-percentile SNR over the foreground of a raw plane or volume."""
    s = photoelectrons(counts, camera)
    fg = foreground_mask(s) if mask is None else np.asarray(mask, bool)
    if not fg.any():  # a flat field: nothing stands out, summarise everything
        fg = np.ones(s.shape, bool)
    values = s[fg]
    snr = snr_from_photoelectrons(values, camera.read_noise_e)
    p10, median = np.percentile(snr, [10, 50])
    return VolumeSNR(
        median=float(median),
        p10=float(p10),
        signal_e=float(np.median(values)),
        foreground_fraction=float(fg.mean()),
    )
