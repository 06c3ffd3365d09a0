"""The paper's spherical phantoms as training pairs (Methods, "Spherical simulations").

Random spheres (radius ≤ 3 px, intensity 1000–20000) are blurred by the iSIM PSF to
make the ground truth. The input is the same spheres blurred by a kernel ``blur`` times
the size of the iSIM PSF (``blur = 1``: the same PSF, a pure denoising pair), optionally
with Poisson noise on the signal and Gaussian camera-background noise.

A kernel "k× the size of the PSF" is the iSIM PSF computed on a voxel grid k times
finer, so that in pixels it is k times wider in every dimension; it keeps the PSF's
shape (axial/lateral ratio, side lobes) and its normalisation (sum 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .optics import isim_psf
from .samples import spherical_phantoms

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class PhantomSpec:
    """How to make one phantom pair.

    Attributes
    ----------
    shape
        Volume ``(z, y, x)`` in voxels (the paper: 256³).
    voxel_um
        ``(dz, dxy)`` voxel size in µm, used to compute the iSIM PSF.
    n_spheres
        Spheres per volume; ``None``: one per 4000 voxels (≈4200 in 256³).
    max_radius_px
        Largest sphere radius in voxels (paper: 3).
    blur
        Input blur kernel size relative to the iSIM PSF (1, 2, 3, ...).
    noise
        Add Poisson and Gaussian noise to the input.
    gaussian_sigma
        Standard deviation of the Gaussian background noise, in intensity units.
    photons_per_unit
        Photons per intensity unit for the Poisson noise (lower is noisier).
    psf_size
        ``(nz, nxy)`` of the 1× PSF in voxels; scaled by ``blur`` for the input.
    """

    shape: tuple[int, int, int] = (256, 256, 256)
    voxel_um: tuple[float, float] = (0.1, 0.0555)
    n_spheres: int | None = None
    max_radius_px: float = 3.0
    blur: int = 1
    noise: bool = True
    gaussian_sigma: float = 50.0
    photons_per_unit: float = 1.0
    psf_size: tuple[int, int] = (17, 17)

    def __post_init__(self) -> None:
        if self.blur < 1:
            raise ValueError(f"blur must be >= 1 (times the iSIM PSF), got {self.blur}")
        if min(self.shape) < 1:
            raise ValueError(f"shape must be positive, got {self.shape}")
        if self.gaussian_sigma < 0 or self.photons_per_unit <= 0:
            raise ValueError("gaussian_sigma must be >= 0 and photons_per_unit > 0")


def blur_kernel(spec: PhantomSpec, factor: int) -> np.ndarray:
    """The iSIM PSF scaled to ``factor`` times its size in voxels (sum 1)."""
    nz, nxy = spec.psf_size
    dz, dxy = spec.voxel_um
    return isim_psf((nz * factor, nxy * factor), (dz / factor, dxy / factor))


def make_phantom_pair(
    spec: PhantomSpec, seed: int | np.random.SeedSequence = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return one ``(raw, gt)`` pair of float32 ZYX volumes.

    Parameters
    ----------
    spec
        What to simulate.
    seed
        Seed for the spheres and the noise.
    """
    from scipy.signal import fftconvolve

    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    sphere_seed, noise_seed = seq.spawn(2)
    n = spec.n_spheres if spec.n_spheres is not None else max(1, int(np.prod(spec.shape)) // 4000)
    sample = spherical_phantoms(
        spec.shape,
        (spec.voxel_um[0], spec.voxel_um[1], spec.voxel_um[1]),
        n_spheres=n,
        max_radius_px=spec.max_radius_px,
        seed=int(sphere_seed.generate_state(1)[0]),
    )
    spheres = sample.density * np.float32(20000.0)  # samples stores intensity / 20000

    def blurred(factor: int) -> np.ndarray:
        out = fftconvolve(spheres, blur_kernel(spec, factor), mode="same")
        return np.clip(out, 0, None).astype(np.float32)

    gt = blurred(1)
    raw = gt.copy() if spec.blur == 1 else blurred(spec.blur)
    if spec.noise:
        rng = np.random.default_rng(noise_seed)
        raw = rng.poisson(raw * spec.photons_per_unit).astype(np.float32)
        raw /= np.float32(spec.photons_per_unit)
        raw += rng.normal(0.0, spec.gaussian_sigma, raw.shape).astype(np.float32)
    return raw, gt


def write_phantom_pairs(
    out_dir: str | Path,
    n: int,
    spec: PhantomSpec,
    *,
    seed: int = 0,
    on_volume: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write ``n`` pairs as ``raw/phantom_NNN.tif`` and ``gt/phantom_NNN.tif``.

    The two folders are what ``rcanlive train`` reads with ``raw_dir``/``gt_dir``.
    Volumes are float32 ZYX TIFFs; each pair has its own seed derived from ``seed``.

    Returns
    -------
    list of Path
        The ground-truth files written.
    """
    import tifffile

    out = Path(out_dir)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    written = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n)):
        raw, gt = make_phantom_pair(spec, child)
        name = f"phantom_{i:03d}.tif"
        tifffile.imwrite(
            out / "raw" / name, raw, photometric="minisblack", metadata={"axes": "ZYX"}
        )
        tifffile.imwrite(out / "gt" / name, gt, photometric="minisblack", metadata={"axes": "ZYX"})
        written.append(out / "gt" / name)
        if on_volume is not None:
            on_volume(i)
    return written
