"""Synthetic specimens for the simulated iSIM, as fluorophore density volumes.

Each sample is a :class:`Sample`: a ZYX density (relative brightness, ~1 at the
brightest structures) on a grid whose lateral spacing is the camera's pixel size in
the specimen, anchored at stage coordinates. The camera blurs it with the iSIM PSF.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

SampleKind = Literal["mitochondria", "phantoms", "gel"]


@dataclass
class Sample:
    """A fluorophore density volume placed on the stage.

    Attributes
    ----------
    density
        ``(Z, Y, X)`` float32 density, relative brightness (≈1 on structures).
    voxel_um
        ``(dz, dy, dx)`` grid spacing in µm; dy = dx = camera pixel size.
    center_um
        Stage ``(x, y)`` at which the sample's centre is under the objective.
    """

    density: np.ndarray
    voxel_um: tuple[float, float, float]
    center_um: tuple[float, float] = (0.0, 0.0)
    name: str = "sample"
    meta: dict[str, object] = field(default_factory=dict)


def _tubes(
    shape: tuple[int, int, int],
    n_tubes: int,
    radius_px: float,
    rng: np.random.Generator,
    *,
    mean_length_px: float = 120.0,
    z_spread: float = 0.6,
) -> np.ndarray:
    """Smooth random tubes: persistent random walks drawn into a volume, thickened."""
    nz, ny, nx = shape
    vol = np.zeros(shape, np.float32)
    for _ in range(n_tubes):
        pos = np.array(
            [
                rng.uniform(nz * (0.5 - z_spread / 2), nz * (0.5 + z_spread / 2)),
                rng.uniform(0, ny),
                rng.uniform(0, nx),
            ]
        )
        direction = rng.normal(size=3) * np.array([0.1, 1.0, 1.0])
        direction /= np.linalg.norm(direction)
        brightness = rng.uniform(0.6, 1.0)
        length = int(rng.exponential(mean_length_px)) + 20
        for _ in range(length * 2):  # half-pixel steps
            turn = rng.normal(scale=0.08, size=3) * np.array([0.2, 1.0, 1.0])
            direction = direction + turn
            direction /= np.linalg.norm(direction)
            pos = pos + 0.5 * direction
            iz, iy, ix = np.rint(pos).astype(int)
            if not (0 <= iz < nz and 0 <= iy < ny and 0 <= ix < nx):
                break
            vol[iz, iy, ix] = max(vol[iz, iy, ix], brightness)
    # thicken laterally by radius, axially by the (coarser) z spacing
    sigma = (max(radius_px / 4, 0.5), radius_px / 1.5, radius_px / 1.5)
    vol = ndimage.gaussian_filter(vol, sigma)
    peak = float(vol.max())
    return vol / peak if peak > 0 else vol


def mitochondria(
    shape: tuple[int, int, int] = (24, 640, 640),
    voxel_um: tuple[float, float, float] = (0.25, 0.0555, 0.0555),
    *,
    n_tubes: int = 300,
    seed: int = 0,
) -> Sample:
    """Mitochondria-like tubular network (≈0.3 µm thick tubes) in a cell-sized volume."""
    rng = np.random.default_rng(seed)
    radius_px = 0.15 / voxel_um[1]
    dens = _tubes(shape, n_tubes, radius_px, rng)
    return Sample(dens, voxel_um, name="mitochondria", meta={"seed": seed})


def spherical_phantoms(
    shape: tuple[int, int, int] = (24, 512, 512),
    voxel_um: tuple[float, float, float] = (0.25, 0.0555, 0.0555),
    *,
    n_spheres: int = 400,
    max_radius_px: float = 3.0,
    seed: int = 0,
) -> Sample:
    """The paper's phantoms: random spheres, radius ≤ 3 px, intensities 1000–20000.

    Densities are stored relative to 20000 so that the brightest sphere is 1.
    """
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, np.float32)
    zz, yy, xx = (np.arange(n, dtype=np.float32) for n in shape)
    for _ in range(n_spheres):
        c = rng.uniform(0, shape)
        r = rng.uniform(0.5, max_radius_px)
        value = rng.uniform(1000, 20000) / 20000
        sl = tuple(
            slice(max(int(ci - r - 1), 0), min(int(ci + r + 2), n))
            for ci, n in zip(c, shape, strict=True)
        )
        d2 = (
            (zz[sl[0], None, None] - c[0]) ** 2
            + (yy[None, sl[1], None] - c[1]) ** 2
            + (xx[None, None, sl[2]] - c[2]) ** 2
        )
        vol[sl] = np.where(d2 <= r * r, np.maximum(vol[sl], value), vol[sl])
    return Sample(vol, voxel_um, name="phantoms", meta={"seed": seed})


def expanded_gel(
    fov_px: int = 512,
    n_fields: tuple[int, int] = (3, 3),
    voxel_um: tuple[float, float, float] = (0.25, 0.0555, 0.0555),
    *,
    nz: int = 16,
    seed: int = 0,
) -> Sample:
    """An expanded gel several fields of view wide, for tiling.

    Expanded mitochondria: fewer, thicker (×3.2 expansion) tubes spread over
    ``n_fields`` (rows, columns) fields of view plus a margin, so that a zigzag
    scan with overlap lands on structure everywhere.
    """
    rng = np.random.default_rng(seed)
    ny = int(fov_px * (n_fields[0] + 0.5))
    nx = int(fov_px * (n_fields[1] + 0.5))
    area_fovs = (ny * nx) / fov_px**2
    radius_px = 3.2 * 0.12 / voxel_um[1]
    dens = _tubes(
        (nz, ny, nx),
        int(35 * area_fovs),
        radius_px,
        rng,
        mean_length_px=300.0,
        z_spread=0.7,
    )
    return Sample(dens, voxel_um, name="gel", meta={"seed": seed, "n_fields": n_fields})


def make_sample(kind: SampleKind, seed: int = 0, **kw: object) -> Sample:
    """Build a sample by name: ``mitochondria``, ``phantoms`` or ``gel``."""
    factories = {"mitochondria": mitochondria, "phantoms": spherical_phantoms, "gel": expanded_gel}
    if kind not in factories:
        raise ValueError(f"unknown sample {kind!r}; choose one of {sorted(factories)}")
    return factories[kind](seed=seed, **kw)  # type: ignore[operator]
