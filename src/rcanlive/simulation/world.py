"""The physical state the simulated devices share: sample, stage, light, bleaching.

Micro-Manager instantiates each Python device from the ``.cfg`` file with no
arguments, so devices cannot be handed references to each other. They meet here
instead: every simulated device looks up the :class:`World` named by its ``World``
property (``"default"`` unless set), exactly as real devices meet in the specimen.

Physics
-------
* Illumination intensity (W/cm²) = power at the objective / field of view
  (106 × 68 µm), as in the paper's Methods.
* The AOTF's transmission is sin²(π/2 · value/100) of the line's full power: the
  non-linear response the calibration table in the rig config has to map.
* Photobleaching is dose-driven: each exposure removes a fraction
  ``1 - 2^(-dose / dose_half_J_cm2)`` of the fluorophores in the illuminated field
  (all depths: iSIM excitation crosses the whole specimen). The default half-dose
  (a half-life of 6.5 volumes of the default live plan, 25 planes × 50 ms, at
  360 W/cm²) lets seven volumes be taken before the signal drops below half, as in
  the paper's Fig. 1e; at 4.2 W/cm² the half-life is ~560 volumes.
* Frames: the sample pre-blurred by the iSIM PSF, interpolated at the focal plane,
  cropped at the stage position (plus the stage's true positioning error), scaled
  by remaining fluorescence × intensity × exposure × brightness, then Poisson +
  read noise + offset by :class:`~rcanlive.simulation.optics.CameraModel`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import fftconvolve

from .optics import CameraModel, rig_psf

if TYPE_CHECKING:
    from .samples import Sample

FOV_CM2 = 106e-4 * 68e-4  # the paper's field of view, for W/cm²
LINES_NM = (488, 561)
#: Full power at the objective, mW, per laser line at AOTF 100.
MAX_POWER_MW = {488: 100.0, 561: 150.0}
BLEACH_BLOCK_PX = 16  # lateral resolution of the bleaching map


def aotf_power_mw(line: int, value: float) -> float:
    """Power at the objective for an AOTF value (0–100) on a laser line."""
    v = min(max(float(value), 0.0), 100.0)
    return MAX_POWER_MW[line] * float(np.sin(np.pi / 2 * v / 100.0) ** 2)


def intensity_w_cm2(power_mw: float) -> float:
    """Average intensity over the paper's 106 × 68 µm field of view."""
    return power_mw * 1e-3 / FOV_CM2


@dataclass
class TriggerSequences:
    """Hardware sequences loaded into the piezo and AOTF, stepped by camera TTLs."""

    z: tuple[float, ...] | None = None
    aotf: dict[int, tuple[float, ...]] = field(default_factory=dict)


class World:
    """Sample, stage, light and bleaching state shared by the simulated devices."""

    def __init__(self, sample: Sample | None = None, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.rng = np.random.default_rng(seed)
        self.camera = CameraModel()
        #: expected photoelectrons per voxel of density 1, per (W/cm² · s)
        self.brightness = 120.0
        #: dose (J/cm²) that halves the fluorescence
        self.dose_half_j_cm2 = 6.5 * 360.0 * 25 * 0.050
        self.autofluorescence = 0.01  # relative background density
        self.focus_um = 50.0  # piezo position at which the sample's middle is in focus
        self.stage_error_um = 0.0  # σ of the XY stage's positioning error
        self.pixel_size_um = 0.0555
        self.aotf = dict.fromkeys(LINES_NM, 0.0)
        self.shutter_open = False
        self.z_um = self.focus_um
        self.xy_commanded = (0.0, 0.0)
        self.xy_true = (0.0, 0.0)
        self.triggers = TriggerSequences()
        self.frames_exposed = 0
        self.dose_log: list[float] = []  # dose (J/cm²) of every exposure
        self._blurred: np.ndarray | None = None
        self._remaining: np.ndarray | None = None
        self.sample: Sample | None = None
        if sample is not None:
            self.set_sample(sample)

    # -- sample ---------------------------------------------------------------
    def set_sample(self, sample: Sample) -> None:
        """Place a new sample on the stage (resets bleaching)."""
        with self.lock:
            self.sample = sample
            self._blurred = None
            ny, nx = sample.density.shape[1:]
            shape = (-(-ny // BLEACH_BLOCK_PX), -(-nx // BLEACH_BLOCK_PX))
            self._remaining = np.ones(shape, np.float32)
            self.pixel_size_um = sample.voxel_um[2]

    def blurred(self) -> np.ndarray:
        """The sample convolved with the iSIM PSF (computed once, cached)."""
        with self.lock:
            if self._blurred is None:
                if self.sample is None:
                    raise RuntimeError("no sample on the simulated stage")
                dz, dxy = self.sample.voxel_um[0], self.sample.voxel_um[2]
                psf = rig_psf(dz, dxy)
                dens = self.sample.density + self.autofluorescence
                out = fftconvolve(dens, psf, mode="same").astype(np.float32)
                np.clip(out, 0, None, out=out)
                self._blurred = out
            return self._blurred

    def remaining_fraction(self) -> np.ndarray:
        """Fluorescence left in each lateral block of the sample (1 = unbleached)."""
        assert self._remaining is not None
        return self._remaining

    # -- light ----------------------------------------------------------------
    def intensity(self, aotf: dict[int, float] | None = None) -> float:
        """Total excitation intensity (W/cm²) reaching the sample now."""
        if not self.shutter_open:
            return 0.0
        values = aotf if aotf is not None else self.aotf
        return sum(intensity_w_cm2(aotf_power_mw(ln, v)) for ln, v in values.items())

    def lasers_off(self) -> bool:
        """True when no light can reach the sample: AOTF at 0 and shutter closed."""
        return not self.shutter_open and all(v == 0 for v in self.aotf.values())

    # -- stage ----------------------------------------------------------------
    def move_xy(self, x: float, y: float) -> None:
        """Command an XY move; the stage lands with its positioning error."""
        with self.lock:
            err = self.rng.normal(scale=self.stage_error_um, size=2)
            self.xy_commanded = (x, y)
            self.xy_true = (x + float(err[0]), y + float(err[1]))

    # -- imaging --------------------------------------------------------------
    def _field_slices(
        self, height: int, width: int, x0_px: int = 0, y0_px: int = 0
    ) -> tuple[slice, slice, tuple[slice, slice]]:
        """Sample rows/cols under the camera's ROI, and where they land in the frame."""
        assert self.sample is not None
        ny, nx = self.sample.density.shape[1:]
        sx, sy = self.sample.center_um
        px = self.pixel_size_um
        # top-left sample pixel under the ROI's top-left corner
        cx = nx / 2 + (self.xy_true[0] - sx) / px
        cy = ny / 2 + (self.xy_true[1] - sy) / px
        left = round(cx - width / 2) + x0_px
        top = round(cy - height / 2) + y0_px
        ys = slice(max(top, 0), min(top + height, ny))
        xs = slice(max(left, 0), min(left + width, nx))
        dst = (
            slice(ys.start - top, ys.start - top + max(ys.stop - ys.start, 0)),
            slice(xs.start - left, xs.start - left + max(xs.stop - xs.start, 0)),
        )
        return ys, xs, dst

    def expected_photoelectrons(
        self,
        shape: tuple[int, int],
        exposure_ms: float,
        z_um: float,
        intensity_w_cm2: float,
        roi_offset: tuple[int, int] = (0, 0),
    ) -> np.ndarray:
        """Noise-free signal (photoelectrons) of one frame; no bleaching side effect."""
        h, w = shape
        out = np.zeros((h, w), np.float32)
        if self.sample is None or intensity_w_cm2 <= 0:
            return out
        ys, xs, dst = self._field_slices(h, w, *roi_offset)
        if ys.stop <= ys.start or xs.stop <= xs.start:
            return out
        plane = self._plane(self._z_index(z_um), ys, xs)
        if plane is None:
            return out
        scale = self.brightness * intensity_w_cm2 * exposure_ms * 1e-3
        scale *= self.sample.brightness_at(self.frames_exposed)  # expression / dimming
        out[dst] = plane * self._remaining_at(ys, xs) * scale
        return out

    def _z_index(self, z_um: float) -> float:
        """Fractional plane index of the blurred volume at piezo position ``z_um``."""
        assert self.sample is not None
        nz = self.blurred().shape[0]
        return (z_um - self.focus_um) / self.sample.voxel_um[0] + (nz - 1) / 2

    def _plane(self, fz: float, ys: slice, xs: slice) -> np.ndarray | None:
        """Blurred sample at fractional plane ``fz`` (linear in z; zero beyond the
        volume), or ``None`` when ``fz`` is a whole plane or more outside it."""
        vol = self.blurred()
        nz = vol.shape[0]
        if not -1 < fz < nz:
            return None
        z0 = int(np.floor(fz))
        t = fz - z0
        plane = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.float32)
        if 0 <= z0 < nz:
            plane += (1 - t) * vol[z0, ys, xs]
        if 0 <= z0 + 1 < nz and t > 0:
            plane += t * vol[z0 + 1, ys, xs]
        return plane

    @staticmethod
    def _blocks(ys: slice, xs: slice) -> tuple[slice, slice]:
        """Bleaching-map blocks covering sample rows ``ys`` and columns ``xs``."""
        b = BLEACH_BLOCK_PX
        return slice(ys.start // b, (ys.stop - 1) // b + 1), slice(
            xs.start // b, (xs.stop - 1) // b + 1
        )

    def _remaining_at(self, ys: slice, xs: slice) -> np.ndarray:
        b = BLEACH_BLOCK_PX
        block = self.remaining_fraction()[self._blocks(ys, xs)]
        full = np.repeat(np.repeat(block, b, 0), b, 1)
        oy, ox = ys.start % b, xs.start % b
        return full[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start]

    def bleach(self, shape: tuple[int, int], exposure_ms: float, intensity: float) -> None:
        """Apply one exposure's dose to the illuminated field of the sample."""
        dose = intensity * exposure_ms * 1e-3
        self.dose_log.append(dose)
        self.frames_exposed += 1
        if self.sample is None or dose <= 0:
            return
        ys, xs, _ = self._field_slices(*shape)
        if ys.stop <= ys.start or xs.stop <= xs.start:
            return
        self.remaining_fraction()[self._blocks(ys, xs)] *= np.float32(
            2.0 ** (-dose / self.dose_half_j_cm2)
        )

    def ground_truth(self, shape: tuple[int, int], z_positions_um: list[float]) -> np.ndarray:
        """Noise-free, unbleached blurred sample under the camera at ``z_positions``.

        Returned in relative density units (independent of light), for scoring
        restorations against what the simulator really rendered.
        """
        nz = self.blurred().shape[0]
        ys, xs, dst = self._field_slices(*shape)
        planes = np.zeros((len(z_positions_um), *shape), np.float32)
        for i, z in enumerate(z_positions_um):
            # clamped to the volume: beyond it the truth is its outermost plane
            plane = self._plane(float(np.clip(self._z_index(z), 0, nz - 1)), ys, xs)
            assert plane is not None
            planes[i][dst] = plane
        return planes


_WORLDS: dict[str, World] = {}
_WORLDS_LOCK = threading.Lock()


def get_world(name: str = "default") -> World:
    """The world named ``name``, created empty on first use."""
    with _WORLDS_LOCK:
        if name not in _WORLDS:
            _WORLDS[name] = World()
        return _WORLDS[name]


def install_world(world: World, name: str = "default") -> World:
    """Make ``world`` the one that devices with ``World == name`` use."""
    with _WORLDS_LOCK:
        _WORLDS[name] = world
    return world
