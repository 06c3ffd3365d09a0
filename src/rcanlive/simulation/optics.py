"""iSIM optics: point-spread function and the sCMOS camera's noise model.

The iSIM PSF is the product of the excitation PSF (at the laser wavelength) and the
emission PSF (at the emission wavelength), both computed by ``psfmodels`` with the
Gibson-Lanni vectorial model for an NA 1.42 oil objective, as the paper did with
PSF Generator. :func:`rig_psf` is that PSF over the extent the simulated rig blurs
with, the one PSF of the rig: the simulator blurs with it, and ground truth is
deconvolved by it where no measured PSF is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Stokes shift of the emission peak over the laser line, for GFP- and RFP-like dyes.
EMISSION_NM = {488: 525.0, 561: 610.0}
#: Extent of the rig PSF, µm (axial, lateral): the simulated rig blurs with a PSF this
#: large, so that simulated data are deconvolved by the PSF that blurred them.
RIG_PSF_EXTENT_UM = (2.0, 1.2)
#: The laser line assumed where a channel's name names none, nm.
DEFAULT_EXCITATION_NM = 488.0


@lru_cache(maxsize=16)
def _isim_psf_cached(
    nz: int, nxy: int, dz_um: float, dxy_um: float, na: float, ex_nm: float, em_nm: float
) -> np.ndarray:
    import psfmodels

    zv: list[float] = ((np.arange(nz) - nz // 2) * dz_um).tolist()

    def gibson_lanni(wvl_um: float) -> np.ndarray:
        return psfmodels.make_psf(
            zv, nx=nxy, dxy=dxy_um, NA=na, ni=1.515, ni0=1.515, ns=1.515, wvl=wvl_um
        )

    ex = gibson_lanni(ex_nm / 1000.0)
    em = gibson_lanni(em_nm / 1000.0)
    psf = (ex * em).astype(np.float32)
    psf /= psf.sum()
    psf.setflags(write=False)
    return psf


def isim_psf(
    shape_zyx: tuple[int, int],
    voxel_um: tuple[float, float],
    *,
    na: float = 1.42,
    excitation_nm: float = 488.0,
    emission_nm: float | None = None,
) -> np.ndarray:
    """Return a normalised (sum 1) iSIM PSF of shape ``(nz, nxy, nxy)``.

    Parameters
    ----------
    shape_zyx
        ``(nz, nxy)``: planes and lateral size in pixels (both made odd, centred).
    voxel_um
        ``(dz, dxy)`` voxel size in µm.
    na
        Numerical aperture of the objective (1.42 oil in the paper).
    excitation_nm, emission_nm
        Laser line and emission peak; the emission defaults to the dye's usual peak.
    """
    nz, nxy = (int(n) | 1 for n in shape_zyx)
    em = emission_nm or EMISSION_NM.get(round(excitation_nm), excitation_nm * 1.08)
    return _isim_psf_cached(
        nz, nxy, float(voxel_um[0]), float(voxel_um[1]), na, float(excitation_nm), em
    )


def rig_psf(
    z_step_um: float, pixel_size_um: float, excitation_nm: float = DEFAULT_EXCITATION_NM
) -> np.ndarray:
    """The rig's iSIM PSF at this voxel size: :data:`RIG_PSF_EXTENT_UM` across.

    Normalised to sum 1, centred, odd sizes (at least one plane and one pixel), and
    read-only (cached).
    """
    dz_extent, dxy_extent = RIG_PSF_EXTENT_UM
    planes = max(1, int(dz_extent / z_step_um))
    side = max(1, int(dxy_extent / pixel_size_um))
    return isim_psf((planes, side), (z_step_um, pixel_size_um), excitation_nm=excitation_nm)


def channel_excitation_nm(channel: str, default: float = DEFAULT_EXCITATION_NM) -> float:
    """The laser line a channel's name gives (``"488nm 33 mW"`` → 488), else ``default``."""
    found = re.search(r"(\d{3,4})\s*nm", channel)
    return float(found.group(1)) if found else default


def channel_psf(
    z_step_um: float,
    pixel_size_um: float,
    channel: str = "",
    *,
    default_nm: float = DEFAULT_EXCITATION_NM,
) -> tuple[np.ndarray, str]:
    """The rig's PSF for a channel at this voxel size, and a line describing it.

    Parameters
    ----------
    z_step_um, pixel_size_um
        The data's voxel size.
    channel
        The channel's name (its laser line is read from it, ``"561nm 5 mW"``).
    default_nm
        The laser line when the name gives none (a TIFF has no channel name).

    Returns
    -------
    psf, description
        :func:`rig_psf` and e.g. ``"rig iSIM PSF, 488 nm, 0.25×0.0555 µm voxels"``.
    """
    line = channel_excitation_nm(channel, default_nm)
    described = f"rig iSIM PSF, {line:g} nm, {z_step_um:g}×{pixel_size_um:g} µm voxels"
    return rig_psf(z_step_um, pixel_size_um, line), described


@dataclass(frozen=True, slots=True)
class CameraModel:
    """An sCMOS camera: offset, gain and read noise as in the paper's Methods.

    Attributes
    ----------
    offset_counts
        Constant added to every pixel (100 counts).
    electrons_per_count
        Conversion factor (0.46 photoelectrons per digital count).
    read_noise_e
        Gaussian read noise, in electrons RMS (1.3 e⁻).
    bit_depth
        ADC depth; values saturate at ``2**bit_depth - 1``.
    """

    offset_counts: float = 100.0
    electrons_per_count: float = 0.46
    read_noise_e: float = 1.3
    bit_depth: int = 16

    def expose(self, photoelectrons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Turn expected photoelectrons into a noisy uint16 frame (Poisson + read)."""
        e = rng.poisson(np.clip(photoelectrons, 0, None)).astype(np.float32)
        e += rng.standard_normal(e.shape, dtype=np.float32) * self.read_noise_e
        counts = e / self.electrons_per_count + self.offset_counts
        top = float(2**self.bit_depth - 1)
        return np.clip(np.rint(counts), 0, top).astype(np.uint16)

    def to_photoelectrons(self, counts: np.ndarray) -> np.ndarray:
        """Offset-subtracted signal in photoelectrons (the paper's S)."""
        return (np.asarray(counts, np.float32) - self.offset_counts) * self.electrons_per_count
