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

SampleKind = Literal["mitochondria", "er", "filaments", "puncta", "sheets", "phantoms", "gel"]


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
    brightness
        How the sample's own brightness changes during a run (expression of the
        fluorescent protein growing, or the cell dimming), independent of bleaching:
        ``(frame, factor)`` knots, linear in between and constant beyond, where
        ``frame`` counts the frames the simulated camera exposed (a simulated camera
        has no biological clock; with a fixed plan, frames stand for time). Empty: 1.
    """

    density: np.ndarray
    voxel_um: tuple[float, float, float]
    center_um: tuple[float, float] = (0.0, 0.0)
    name: str = "sample"
    meta: dict[str, object] = field(default_factory=dict)
    brightness: tuple[tuple[int, float], ...] = ()

    def brightness_at(self, frame: int) -> float:
        """The sample's brightness factor when the camera exposes frame ``frame``."""
        if not self.brightness:
            return 1.0
        frames, factors = zip(*self.brightness, strict=True)
        return float(np.interp(frame, frames, factors))


def _tubes(
    shape: tuple[int, int, int],
    n_tubes: int,
    radius_px: float,
    rng: np.random.Generator,
    *,
    mean_length_px: float = 120.0,
    z_spread: float = 0.6,
    turn_sigma: float = 0.08,
    brightness_range: tuple[float, float] = (0.6, 1.0),
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
        brightness = rng.uniform(*brightness_range)
        length = int(rng.exponential(mean_length_px)) + 20
        for _ in range(length * 2):  # half-pixel steps
            turn = rng.normal(scale=turn_sigma, size=3) * np.array([0.2, 1.0, 1.0])
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


def er_network(
    shape: tuple[int, int, int] = (24, 640, 640),
    voxel_um: tuple[float, float, float] = (0.25, 0.0555, 0.0555),
    *,
    mesh_um: float = 1.0,
    seed: int = 0,
) -> Sample:
    """ER-like network: thin tubules (≈0.1 µm) joined in polygons, on a wavy sheet.

    The tubules are the edges of a Voronoi tessellation of random points about
    ``mesh_um`` apart, drawn on a surface that undulates by ±0.5 µm around the middle
    plane (the peripheral ER of a flat cell); each tubule has its own brightness.
    """
    from scipy.spatial import Voronoi

    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    dz, px = voxel_um[0], voxel_um[1]
    n_points = max(4, int(ny * nx * px * px / mesh_um**2))
    vor = Voronoi(rng.uniform((0, 0), (ny, nx), size=(n_points, 2)))
    edges = np.array([r for r in vor.ridge_vertices if -1 not in r], dtype=int)
    a, b = vor.vertices[edges[:, 0]], vor.vertices[edges[:, 1]]
    steps = np.maximum(2, (np.linalg.norm(b - a, axis=1) * 2).astype(int))  # half-pixel
    seg = np.repeat(np.arange(len(edges)), steps)
    frac = np.concatenate([np.linspace(0, 1, k) for k in steps])
    yx = a[seg] + (b[seg] - a[seg]) * frac[:, None]
    y_um, x_um = yx[:, 0] * px, yx[:, 1] * px
    wave = 0.5 / dz * np.sin(2 * np.pi * x_um / 7.0) * np.cos(2 * np.pi * y_um / 9.0)
    z = (nz - 1) / 2 + wave
    idx = np.rint(np.column_stack([z, yx])).astype(int)
    keep = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
    vol = np.zeros(shape, np.float32)
    np.maximum.at(
        vol, tuple(idx[keep].T), rng.uniform(0.5, 1.0, len(edges)).astype(np.float32)[seg[keep]]
    )
    radius_px = 0.05 / px
    vol = ndimage.gaussian_filter(vol, (max(radius_px / 4, 0.5), radius_px, radius_px))
    peak = float(vol.max())
    return Sample(vol / peak if peak > 0 else vol, voxel_um, name="er", meta={"seed": seed})


def _per_area(count: int | None, per_640_square: int, shape: tuple[int, int, int]) -> int:
    """``count``, or by default ``per_640_square`` scaled to the sample's lateral area."""
    if count is not None:
        return count
    return max(1, round(per_640_square * shape[1] * shape[2] / 640**2))


def filaments(
    shape: tuple[int, int, int] = (24, 640, 640),
    voxel_um: tuple[float, float, float] = (0.25, 0.0555, 0.0555),
    *,
    n_filaments: int | None = None,
    seed: int = 0,
) -> Sample:
    """Microtubule- or actin-like filaments: long, stiff, 25 nm thin, mostly in-plane.

    ``n_filaments`` defaults to 300 per 640² pixels (likewise the counts of
    :func:`puncta` and :func:`sheets`: 3000 and 30).

    Far below the resolution limit (the camera sees the PSF along a line) and far
    longer than mitochondria; brightness varies 0.4–1 between filaments (bundles).
    """
    rng = np.random.default_rng(seed)
    dens = _tubes(
        shape,
        _per_area(n_filaments, 300, shape),
        0.0125 / voxel_um[1],
        rng,
        mean_length_px=400.0,
        z_spread=0.5,
        turn_sigma=0.02,
        brightness_range=(0.4, 1.0),
    )
    return Sample(dens, voxel_um, name="filaments", meta={"seed": seed})


def puncta(
    shape: tuple[int, int, int] = (24, 640, 640),
    voxel_um: tuple[float, float, float] = (0.25, 0.0555, 0.0555),
    *,
    n_puncta: int | None = None,
    seed: int = 0,
) -> Sample:
    """Vesicle- or lysosome-like puncta: balls of 40–250 nm radius, brightness 0.2–1.

    Most are below the resolution limit (the camera sees the PSF), a few are resolved
    hollow-looking vesicles; spread through the middle 70 % of the planes.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    n_puncta = _per_area(n_puncta, 3000, shape)
    vol = np.zeros(shape, np.float32)
    centres = rng.uniform((nz * 0.15, 0, 0), (nz * 0.85, ny, nx), size=(n_puncta, 3))
    radii_um = rng.uniform(0.04, 0.25, n_puncta)
    values = rng.uniform(0.2, 1.0, n_puncta).astype(np.float32)
    scale = np.array(voxel_um, dtype=float)
    for c, r_um, v in zip(centres, radii_um, values, strict=True):
        half = np.ceil(r_um / scale).astype(int) + 1
        lo = np.maximum(np.floor(c).astype(int) - half, 0)
        hi = np.minimum(np.floor(c).astype(int) + half + 1, shape)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        d2 = sum(((g - ci) * s) ** 2 for g, ci, s in zip(grids, c, scale, strict=True))
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        vol[box] = np.maximum(vol[box], np.where(d2 <= r_um**2, v, 0.0))
    vol = ndimage.gaussian_filter(vol, (0.5, 0.7, 0.7))  # partial-volume smoothing
    peak = float(vol.max())
    return Sample(vol / peak if peak > 0 else vol, voxel_um, name="puncta", meta={"seed": seed})


def sheets(
    shape: tuple[int, int, int] = (24, 640, 640),
    voxel_um: tuple[float, float, float] = (0.25, 0.0555, 0.0555),
    *,
    n_shells: int | None = None,
    seed: int = 0,
) -> Sample:
    """Membrane-like sheets: 50 nm thin ellipsoidal shells of 0.5–4 µm across.

    Vacuoles, nuclear envelopes and large vesicles: flattened ellipsoids (axial
    semi-axis at most 2 µm) whose surface is fluorescent; lateral planes cut them into
    rings, the top and bottom planes into discs.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    scale = np.array(voxel_um, dtype=float)
    vol = np.zeros(shape, np.float32)
    thickness_um = 0.05
    for _ in range(_per_area(n_shells, 30, shape)):
        axes = np.array([rng.uniform(0.4, 2.0), *rng.uniform(0.25, 2.0, 2)])
        centre = rng.uniform((nz * 0.3, 0, 0), (nz * 0.7, ny, nx)) * scale
        lo = np.maximum(np.floor((centre - axes) / scale).astype(int) - 1, 0)
        hi = np.minimum(np.ceil((centre + axes) / scale).astype(int) + 2, shape)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        rho = np.sqrt(
            sum(
                ((g * s - c) / a) ** 2
                for g, s, c, a in zip(grids, scale, centre, axes, strict=True)
            )
        )
        # distance to the surface ≈ |ρ − 1| × the local semi-axis (the shortest, to be thin)
        shell = np.abs(rho - 1.0) * axes.min() <= thickness_um
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        vol[box] = np.maximum(vol[box], shell * np.float32(rng.uniform(0.4, 1.0)))
    vol = ndimage.gaussian_filter(vol, (0.5, 0.7, 0.7))
    peak = float(vol.max())
    return Sample(vol / peak if peak > 0 else vol, voxel_um, name="sheets", meta={"seed": seed})


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
    """Build a sample by name: ``mitochondria``, ``er``, ``filaments``, ``puncta``,
    ``sheets``, ``phantoms`` or ``gel``."""
    factories = {
        "mitochondria": mitochondria,
        "er": er_network,
        "filaments": filaments,
        "puncta": puncta,
        "sheets": sheets,
        "phantoms": spherical_phantoms,
        "gel": expanded_gel,
    }
    if kind not in factories:
        raise ValueError(f"unknown sample {kind!r}; choose one of {sorted(factories)}")
    return factories[kind](seed=seed, **kw)  # type: ignore[operator]
