"""Registration of a training pair: the input volume onto its ground truth.

Pairs taken on two instruments, or minutes apart, are misaligned by drift and by
instrument misalignment; a network trained on them learns to blur. The paper found
an affine registration of the confocal/STED pairs improved the restorations and
suggested a local registration step on top (Results, "Confocal-to-STED", and
Discussion). This module offers both, estimated on the high-SNR volume (the fixed
image) and applied to the low-SNR one, or the other way round.

Method, built from scikit-image and scipy without a hand-written optimiser:

1. **Global translation** by phase correlation of the whole (smoothed) volumes
   (:func:`skimage.registration.phase_cross_correlation`).
2. **Block matching**: the fixed volume is cut into overlapping tapered blocks, and
   each is slid over the moving volume's block widened by a quarter block on every
   side; the peak of their window-weighted Pearson correlation, refined to sub-voxel
   by a three-point Gaussian fit, is the block's shift. Tapering only the fixed side
   keeps the estimate unbiased (tapering both pulled shifts 20 % towards zero), and
   the correlations of a whole stack of blocks come from one batched FFT (scipy.fft),
   where scikit-image's per-block upsampled DFT took 36 ms a block in 3D. A block's
   weight is its squared correlation at the peak, so textureless and noise-only
   blocks drop out.
3. **Affine** (``method="affine"``): a rigid, similarity (rigid + isotropic scale,
   the default) or full affine transform (per-axis scale and shear) fitted to the
   block correspondences in physical units (scikit-image's closed-form
   estimators), with outlier rejection; repeated on the re-warped volume until the
   update is below 0.02 voxel.
4. **Local** (``method="local"``): on top of the affine, block shifts on a denser
   grid, smoothed and gap-filled by normalised Gaussian convolution over the block
   grid, form a smooth displacement field that cubic splines interpolate to every
   voxel; repeated twice, each pass measuring what the previous left.

The result maps every fixed voxel ``x`` (ZYX, voxels) to the moving voxel
``M · (x + u(x))`` with ``M`` a 4×4 affine and ``u`` the local field, so the moving
volume resampled there lies on the fixed grid. Voxels that map outside the moving
volume have no data: they are flagged in ``valid``, and :func:`valid_box` gives the
largest box free of them for cropping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from scipy import fft, ndimage
from scipy.signal.windows import tukey
from skimage import transform as sktransform
from skimage.registration import phase_cross_correlation

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import ArrayLike, NDArray

RegistrationMethod = Literal["none", "affine", "local"]
AffineModel = Literal["rigid", "similarity", "affine"]

#: the registration methods, in order of flexibility
METHODS: tuple[str, ...] = get_args(RegistrationMethod)
#: the affine models
MODELS: tuple[str, ...] = get_args(AffineModel)

_ESTIMATORS = {
    "rigid": sktransform.EuclideanTransform,
    "similarity": sktransform.SimilarityTransform,
    "affine": sktransform.AffineTransform,
}
_MIN_POINTS = {"rigid": 3, "similarity": 3, "affine": 4}
#: blocks cross-correlated at once (bounds the memory of the FFTs)
_BATCH = 256
#: most passes of the affine estimate (it stops once an update moves < 0.02 voxel)
_AFFINE_PASSES = 6
#: passes of the local refinement, each measuring what the previous left
_LOCAL_PASSES = 2
#: lowest correlation at a block's peak for its shift to count
_MIN_CORRELATION = 0.3
#: fewest voxels with data in a block for its shift to count
_MIN_VALID = 0.8
#: z slices warped at a time (bounds the memory of the coordinate arrays)
_SLAB = 8


class RegistrationError(ValueError):
    """A pair that cannot be registered (too little common structure, bad shapes)."""


@dataclass(frozen=True, slots=True)
class BlockGrid:
    """A regular grid of overlapping blocks; its nodes are the block centres.

    Attributes
    ----------
    block
        Block shape ``(z, y, x)`` in voxels.
    step
        Distance between neighbouring blocks in voxels.
    counts
        Number of blocks along each axis.
    offset
        Voxel index of the first block's corner along each axis.
    """

    block: tuple[int, int, int]
    step: tuple[int, int, int]
    counts: tuple[int, int, int]
    offset: tuple[int, int, int]

    @classmethod
    def covering(cls, shape: Sequence[int], block: Sequence[int], step: Sequence[int]) -> BlockGrid:
        """The grid of ``block``-sized blocks every ``step`` voxels, centred in ``shape``."""
        b = [min(int(bi), int(s)) for bi, s in zip(block, shape, strict=True)]
        st = [max(1, min(int(si), bi)) for si, bi in zip(step, b, strict=True)]
        n = [(s - bi) // si + 1 for s, bi, si in zip(shape, b, st, strict=True)]
        off = [
            (s - ((ni - 1) * si + bi)) // 2 for s, ni, si, bi in zip(shape, n, st, b, strict=True)
        ]
        return cls(
            (b[0], b[1], b[2]), (st[0], st[1], st[2]), (n[0], n[1], n[2]), (off[0], off[1], off[2])
        )

    @property
    def origin(self) -> NDArray[np.float64]:
        """Voxel coordinates of the first block's centre."""
        return np.asarray(self.offset, float) + (np.asarray(self.block, float) - 1) / 2

    def centres(self) -> NDArray[np.float64]:
        """``(N, 3)`` voxel coordinates of every block centre, in C order of the grid."""
        axes = [
            o + s * np.arange(n)
            for o, s, n in zip(self.origin, self.step, self.counts, strict=True)
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    def slices(self) -> list[tuple[slice, slice, slice]]:
        """The blocks' index boxes, in the order of :meth:`centres`."""
        ranges = [
            [slice(o + i * s, o + i * s + b) for i in range(n)]
            for o, s, n, b in zip(self.offset, self.step, self.counts, self.block, strict=True)
        ]
        return [(z, y, x) for z in ranges[0] for y in ranges[1] for x in ranges[2]]


@dataclass(frozen=True, slots=True)
class PairTransform:
    """Where each fixed voxel lies in the moving volume: ``M · (x + u(x))``.

    Attributes
    ----------
    matrix
        4×4 homogeneous affine ``M`` on ZYX voxel coordinates (fixed → moving).
    field
        Local displacement ``u`` in voxels, ``(3, gz, gy, gx)`` sampled at the nodes of
        ``grid`` (interpolated by cubic splines in between); ``None`` for none.
    grid
        The nodes ``field`` is sampled on.
    """

    matrix: NDArray[np.float64]
    field: NDArray[np.float32] | None = None
    grid: BlockGrid | None = None

    @classmethod
    def identity(cls) -> PairTransform:
        """The transform that moves nothing."""
        return cls(np.eye(4))

    def local_displacement(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """``u`` at ``(3, ...)`` voxel coordinates ``points`` (zeros without a field)."""
        if self.field is None or self.grid is None:
            return np.zeros(points.shape, np.float64)
        shape = (3,) + (1,) * (points.ndim - 1)
        nodes = (points - self.grid.origin.reshape(shape)) / np.reshape(self.grid.step, shape)
        return np.stack(
            [ndimage.map_coordinates(f, nodes, order=3, mode="nearest") for f in self.field]
        ).astype(np.float64)

    def map_points(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """Moving-volume coordinates of fixed-volume coordinates ``points`` ``(3, ...)``."""
        p = points.astype(np.float64) + self.local_displacement(points)
        flat = self.matrix[:3, :3] @ p.reshape(3, -1) + self.matrix[:3, 3:]
        return flat.reshape(points.shape)

    def inverse_points(
        self, points: NDArray[np.floating], iterations: int = 8
    ) -> NDArray[np.float64]:
        """Fixed-volume coordinates of moving-volume coordinates ``points`` ``(3, ...)``.

        The affine part is inverted exactly; the smooth field by fixed-point iteration
        ``x ← M⁻¹y − u(x)``, which converges while ``u`` varies slowly (its gradient
        well below 1), as a field smoothed over blocks does.
        """
        inv = np.linalg.inv(self.matrix)
        base = (inv[:3, :3] @ points.reshape(3, -1) + inv[:3, 3:]).reshape(points.shape)
        x = base
        for _ in range(iterations if self.field is not None else 0):
            x = base - self.local_displacement(x)
        return x

    def displacement(self, shape: Sequence[int]) -> NDArray[np.float64]:
        """``(3, Z, Y, X)`` displacement ``T(x) − x`` in voxels at every fixed voxel."""
        grid = np.indices(tuple(shape), np.float64)
        return self.map_points(grid) - grid

    def to_fixed(
        self, volume: ArrayLike, *, order: int = 3
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """Resample a volume on the moving grid onto the fixed grid.

        Returns
        -------
        warped, valid
            The resampled volume (cubic spline for ``order=3``; 0 where it has no data)
            and the voxels that map inside ``volume``.
        """
        return _resample(np.asarray(volume, np.float32), self.map_points, order)

    def to_moving(
        self, volume: ArrayLike, *, order: int = 3
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """Resample a volume on the fixed grid onto the moving grid (the inverse)."""
        return _resample(np.asarray(volume, np.float32), self.inverse_points, order)


@dataclass(frozen=True, slots=True)
class RegisteredPair:
    """The moving volume registered onto the fixed one, and how well it went.

    Attributes
    ----------
    warped
        The moving volume resampled on the fixed grid, float32; 0 where ``valid`` is
        false.
    valid
        Voxels of ``warped`` that the moving volume covers.
    transform
        Fixed → moving voxel mapping; :meth:`PairTransform.to_moving` applies it the
        other way (to bring the fixed volume onto the moving one).
    method
        ``"none"``, ``"affine"`` or ``"local"``.
    blocks
        Blocks whose shifts the last estimate used (0 for ``"none"``).
    misalignment_px
        RMS block displacement (voxels) between the volumes before registration
        (NaN for ``"none"``).
    residual_px
        RMS block displacement left after registration, measured on the warped volume
        (NaN for ``"none"``); near the noise floor of the block shifts when it worked.
    correlation_before, correlation_after
        Pearson correlation of the moving and fixed volumes (smoothed as for the
        estimate) over the voxels with data, before and after.
    """

    warped: NDArray[np.float32]
    valid: NDArray[np.bool_]
    transform: PairTransform
    method: str
    blocks: int
    misalignment_px: float
    residual_px: float
    correlation_before: float
    correlation_after: float


def register_pair(
    moving: ArrayLike,
    fixed: ArrayLike,
    method: RegistrationMethod,
    *,
    model: AffineModel = "similarity",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    smooth_px: float = 1.0,
) -> RegisteredPair:
    """Register ``moving`` onto ``fixed`` (two ZYX volumes of one shape).

    Parameters
    ----------
    moving
        The volume to move (the low-SNR input of a training pair).
    fixed
        The reference, on whose grid the result lies (the high-SNR ground truth).
    method
        ``"none"`` (identity), ``"affine"`` (global transform) or ``"local"`` (affine
        plus a smooth local displacement field).
    model
        Affine model: ``"rigid"``, ``"similarity"`` (rigid + isotropic scale) or
        ``"affine"`` (per-axis scale and shear too; needs structure spread in z).
    spacing
        Voxel size ``(dz, dy, dx)`` in any one unit, so that rotations and isotropic
        scale are physical on anisotropic voxels.
    smooth_px
        σ (voxels) of a Gaussian applied to both volumes before estimating, against
        noise; the warp is applied to the unsmoothed volume.

    Raises
    ------
    RegistrationError
        If the shapes differ, an argument is unknown, or too few blocks hold common
        structure to estimate the transform.
    """
    mov, fix = _checked(moving, fixed, method, model, spacing)
    sm = ndimage.gaussian_filter(mov, smooth_px) if smooth_px > 0 else mov
    sf = ndimage.gaussian_filter(fix, smooth_px) if smooth_px > 0 else fix
    everywhere = np.ones(fix.shape, bool)
    before = _correlation(sm, sf, everywhere)
    if method == "none":
        identity = PairTransform.identity()
        return RegisteredPair(
            mov.copy(), everywhere, identity, "none", 0, math.nan, math.nan, before, before
        )
    transform, blocks, misalignment = _estimate_affine(
        sf, sm, _affine_grid(fix.shape), model, np.asarray(spacing, float)
    )
    local_grid = _local_grid(fix.shape)
    if method == "local":
        transform, blocks = _estimate_local(sf, sm, transform, local_grid)
    warped, valid = transform.to_fixed(mov)
    smooth_warped, _ = _resample(sm, transform.map_points, 1, fill=None)
    residual = _match(sf, smooth_warped, local_grid, valid).rms()
    after = _correlation(smooth_warped, sf, valid)
    return RegisteredPair(
        warped, valid, transform, method, blocks, misalignment, residual, before, after
    )


def valid_box(valid: NDArray[np.bool_]) -> tuple[slice, slice, slice]:
    """A large axis-aligned box of ``valid`` voxels only, for cropping a warped pair.

    Greedy: starting from the bounding box of the valid voxels, the face with the
    largest fraction of invalid voxels is peeled off until none is left. The
    registered regions are convex (an affine image of a box, mildly bent), where
    this finds the largest box or close to it.

    Raises
    ------
    RegistrationError
        If no voxel is valid.
    """
    if valid.ndim != 3:
        raise RegistrationError(f"need a ZYX mask, got {valid.ndim} dimensions")
    if not valid.any():
        raise RegistrationError("the warped volume has no voxel with data: nothing to crop to")
    extent = [
        np.flatnonzero(valid.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    lo = [int(e[0]) for e in extent]
    hi = [int(e[-1]) + 1 for e in extent]
    while True:
        box = valid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        if box.all():
            return slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])
        worst, worst_side, worst_bad = 0, 0, -1.0
        for ax in range(3):
            for side, index in ((0, 0), (1, -1)):
                face = np.take(box, index, axis=ax)
                bad = 1.0 - float(face.mean())
                if bad > worst_bad and box.shape[ax] > 1:
                    worst, worst_side, worst_bad = ax, side, bad
        if worst_side == 0:
            lo[worst] += 1
        else:
            hi[worst] -= 1


# --- estimation -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Matches:
    """Block shifts: moving position of each fixed block centre, and its weight."""

    centres: NDArray[np.float64]  # (N, 3)
    shifts: NDArray[np.float64]  # (N, 3) moving − fixed, voxels
    weights: NDArray[np.float64]  # (N,), 0 = unusable

    def rms(self) -> float:
        """Weighted RMS shift length of the usable blocks (NaN if none)."""
        w = self.weights
        if not np.any(w > 0):
            return math.nan
        return float(np.sqrt(np.sum(w * np.sum(self.shifts**2, 1)) / np.sum(w)))


def _affine_grid(shape: tuple[int, ...]) -> BlockGrid:
    """Coarse blocks for the global fit, at least three layers in z where possible."""
    bz = max(4, min(16, shape[0] // 2))
    return BlockGrid.covering(shape, (bz, 32, 32), (max(1, bz // 2), 16, 16))


def _local_grid(shape: tuple[int, ...]) -> BlockGrid:
    """Denser blocks for the local field (block 24 voxels, every 8 laterally)."""
    bz = max(4, min(16, shape[0] // 2))
    return BlockGrid.covering(shape, (bz, 24, 24), (max(1, bz // 2), 8, 8))


def _match(
    fixed: NDArray[np.float32],
    moving: NDArray[np.float32],
    grid: BlockGrid,
    valid: NDArray[np.bool_] | None = None,
) -> _Matches:
    """Sub-voxel shift of every block of ``moving`` relative to ``fixed`` (see module)."""
    slices = grid.slices()
    # blocks mostly off the moving volume's edge compare the edge's smeared copy
    usable = np.array([valid is None or valid[sl].mean() >= _MIN_VALID for sl in slices])
    shifts = np.zeros((len(slices), 3))
    quality = np.zeros(len(slices))
    margin = tuple(max(1, b // 4) for b in grid.block)
    padded = np.pad(moving, [(m, m) for m in margin], mode="reflect")
    window = np.einsum("i,j,k->ijk", *(tukey(b, 0.5) for b in grid.block)).astype(np.float32)
    todo = np.flatnonzero(usable)
    for start in range(0, todo.size, _BATCH):
        batch = todo[start : start + _BATCH]
        f = _templates(fixed, [slices[i] for i in batch], window)
        wide = [
            tuple(slice(s.start, s.stop + 2 * m) for s, m in zip(slices[i], margin, strict=True))
            for i in batch
        ]
        m = np.stack([padded[sl] for sl in wide])
        lag, ncc = _correlation_peaks(f, m, window, margin)
        # a peak at the edge of the searched lags may lie beyond them: unusable
        ok = np.all(np.abs(lag) < np.asarray(margin) - 0.5, axis=1)
        shifts[batch[ok]] = lag[ok]
        quality[batch[ok]] = np.clip(ncc[ok], 0.0, None) ** 2
    # pure noise peaks at correlations up to 0.26 over these lags; textured blocks of a
    # pair far above it, and noise-only blocks far below the textured ones
    quality[quality < _MIN_CORRELATION**2] = 0.0
    good = quality > 0
    if good.any():
        quality[quality < 0.3 * np.percentile(quality[good], 90)] = 0.0
    return _Matches(grid.centres(), shifts, quality)


def _templates(
    volume: NDArray[np.float32],
    slices: list[tuple[slice, slice, slice]],
    window: NDArray[np.float32],
) -> NDArray[np.float32]:
    """The blocks stacked, less their window-weighted mean, times the window.

    Zero weighted mean makes the correlation blind to a constant offset in the moving
    volume; the result is the numerator of a window-weighted Pearson correlation.
    """
    blocks = np.stack([volume[sl] for sl in slices])
    mean = np.sum(blocks * window, axis=(1, 2, 3), keepdims=True) / window.sum()
    return (blocks - mean) * window


def _correlation_peaks(
    f: NDArray[np.float32],
    m: NDArray[np.float32],
    window: NDArray[np.float32],
    margin: tuple[int, ...],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sub-voxel shift of each template ``f`` within its wider region ``m``, and the NCC.

    The template sits at offset ``margin`` in ``m`` when unshifted; the correlation at
    lags up to ``margin`` needs no wrap-around. The integer peak is refined per axis by
    a three-point Gaussian fit (the peak of blurred images is close to Gaussian), or a
    parabola where a neighbour is ≤ 0.
    """
    shape = m.shape[1:]
    axes = (1, 2, 3)
    lags = tuple(2 * g + 1 for g in margin)
    # standardised regions keep the single-precision energies below free of cancellation
    m = m - m.mean(axis=axes, keepdims=True)
    m = m / np.maximum(m.std(axis=axes, keepdims=True), 1e-12)
    # cc[k] = sum f(x) m(x + k); the unshifted template sits at k = margin
    crop = (slice(None), *(slice(0, n) for n in lags))
    m_hat = fft.rfftn(m, axes=axes)
    cc = fft.irfftn(np.conj(fft.rfftn(f, s=shape, axes=axes)) * m_hat, s=shape, axes=axes)[crop]
    # window-weighted Pearson correlation at every lag: divided by the weighted spread
    # of the moving region under the template there, or bright spots would win
    w_hat = np.conj(fft.rfftn(window, s=shape))
    s1 = fft.irfftn(w_hat * m_hat, s=shape, axes=axes)[crop]
    s2 = fft.irfftn(w_hat * fft.rfftn(m * m, axes=axes), s=shape, axes=axes)[crop]
    spread = np.sqrt(np.clip(s2 - s1**2 / float(window.sum()), 0.0, None))
    # sum w (b - mean)^2 from the template f = w (b - mean)
    own = np.sqrt(np.sum(f.astype(np.float64) ** 2 / np.maximum(window, 1e-12), axis=axes))
    cc = cc / np.maximum(own.reshape(-1, 1, 1, 1) * spread, 1e-30)
    n = len(f)
    flat = cc.reshape(n, -1)
    peak = np.unravel_index(np.argmax(flat, axis=1), lags)
    rows = np.arange(n)
    c0 = flat[rows, np.ravel_multi_index(peak, lags)]
    shift = np.zeros((n, 3))
    for axis in range(3):
        p = peak[axis]
        inner = (p > 0) & (p < lags[axis] - 1)
        lo_idx, hi_idx = list(peak), list(peak)
        lo_idx[axis] = np.clip(p - 1, 0, lags[axis] - 1)
        hi_idx[axis] = np.clip(p + 1, 0, lags[axis] - 1)
        offset = _peak_offset(cc[(rows, *lo_idx)], c0, cc[(rows, *hi_idx)])
        shift[:, axis] = p - margin[axis] + np.where(inner, offset, 0.0)
    return shift, c0


def _peak_offset(
    lo: NDArray[np.float64], c0: NDArray[np.float64], hi: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Sub-voxel offset of a peak from three samples (Gaussian fit, else parabola)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = (lo > 0) & (hi > 0) & (c0 > 0)
        llo, l0, lhi = (np.log(np.where(positive, v, 1.0)) for v in (lo, c0, hi))
        gauss = (llo - lhi) / (2 * (llo - 2 * l0 + lhi))
        parab = (lo - hi) / (2 * (lo - 2 * c0 + hi))
        out = np.where(positive, gauss, parab)
    return np.clip(np.nan_to_num(out), -0.5, 0.5)


def _global_shift(fixed: NDArray[np.float32], moving: NDArray[np.float32]) -> NDArray[np.float64]:
    """Translation (moving − fixed, voxels) of the whole volumes, to start from."""
    window = np.einsum("i,j,k->ijk", *(tukey(n, 0.25) for n in fixed.shape)).astype(np.float32)
    shift, _, _ = phase_cross_correlation(
        (fixed - fixed.mean()) * window,
        (moving - moving.mean()) * window,
        upsample_factor=4,
        normalization=None,
    )
    return -np.asarray(shift, float)


def _estimate_affine(
    fixed: NDArray[np.float32],
    moving: NDArray[np.float32],
    grid: BlockGrid,
    model: str,
    spacing: NDArray[np.float64],
) -> tuple[PairTransform, int, float]:
    """Fit ``model`` to block shifts, re-warping and re-measuring until it settles.

    Returns the transform, the blocks of the last fit, and the RMS block displacement
    before any correction (the global shift plus the first pass's block shifts).
    """
    matrix = np.eye(4)
    matrix[:3, 3] = _global_shift(fixed, moving)
    nz, ny, nx = fixed.shape
    probe = np.mgrid[0 : nz : max(1, nz - 1), 0:ny:16, 0:nx:16].astype(float)  # where updates count
    blocks, misalignment = 0, math.nan
    for iteration in range(_AFFINE_PASSES):
        current = PairTransform(matrix)
        warped, valid = _resample(moving, current.map_points, 1, fill=None)
        matches = _match(fixed, warped, grid, valid)
        keep = matches.weights > 0
        blocks = int(keep.sum())
        if blocks < _MIN_POINTS[model]:
            raise RegistrationError(
                f"only {blocks} blocks hold structure common to both volumes, too few to fit "
                f"a {model} transform; check that the two volumes show the same field "
                "(or register them with method 'none')"
            )
        src = matches.centres[keep]
        dst = current.map_points((src + matches.shifts[keep]).T).T
        if iteration == 0:
            misalignment = _Matches(src, dst - src, matches.weights[keep]).rms()
        matrix = _fit(src, dst, model, spacing)
        if np.abs(PairTransform(matrix).map_points(probe) - current.map_points(probe)).max() < 0.02:
            break
    return PairTransform(matrix), blocks, misalignment


def _fit(
    src: NDArray[np.float64], dst: NDArray[np.float64], model: str, spacing: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Voxel-space 4×4 matrix of ``model`` fitted to ``src → dst``, rejecting outliers."""
    scale = np.diag([*spacing, 1.0])
    p, q = src * spacing, dst * spacing  # physical units: rotations are rotations
    keep = np.ones(len(p), bool)
    params = np.eye(4)
    for _ in range(4):
        params = _estimate(p[keep], q[keep], model)
        moved = (params[:3, :3] @ p.T + params[:3, 3:]).T
        residual = np.linalg.norm((moved - q) / spacing, axis=1)  # voxels
        spread = 1.4826 * float(np.median(residual[keep]))
        new_keep = residual <= max(3.0 * spread, 0.1)
        if new_keep.sum() < _MIN_POINTS[model] or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return np.linalg.inv(scale) @ params @ scale


def _estimate(p: NDArray[np.float64], q: NDArray[np.float64], model: str) -> NDArray[np.float64]:
    """scikit-image's closed-form estimate of ``model`` mapping ``p`` onto ``q``."""
    cls = _ESTIMATORS[model]
    if hasattr(cls, "from_estimate"):  # scikit-image >= 0.26
        tf = cls.from_estimate(p, q)
        ok = bool(tf)
    else:
        tf = cls(dimensionality=3)
        ok = bool(tf.estimate(p, q))
    if not ok:
        raise RegistrationError(
            f"the {model} fit to the block shifts failed (degenerate block positions); "
            "use model 'similarity' or 'rigid'"
        )
    return np.asarray(tf.params, float)


def _estimate_local(
    fixed: NDArray[np.float32],
    moving: NDArray[np.float32],
    affine: PairTransform,
    grid: BlockGrid,
) -> tuple[PairTransform, int]:
    """Add a smooth displacement field measured by block shifts after the affine."""
    field = np.zeros((3, *grid.counts), np.float32)
    transform, blocks = affine, 0
    for _ in range(_LOCAL_PASSES):
        warped, valid = _resample(moving, transform.map_points, 1, fill=None)
        matches = _match(fixed, warped, grid, valid)
        blocks = int((matches.weights > 0).sum())
        if blocks == 0:
            break
        field = field + _smooth_field(matches, grid)
        transform = PairTransform(affine.matrix, field, grid)
    return transform, blocks


def _smooth_field(matches: _Matches, grid: BlockGrid) -> NDArray[np.float32]:
    """Block shifts smoothed over the grid, gaps filled (normalised convolution)."""
    w = matches.weights.reshape(grid.counts)
    sigma = (0.5, 1.0, 1.0)  # in blocks: the field is smooth over ~2 blocks
    norm = ndimage.gaussian_filter(w, sigma, mode="nearest")
    out = np.empty((3, *grid.counts), np.float32)
    for axis in range(3):
        values = (matches.shifts[:, axis] * matches.weights).reshape(grid.counts)
        out[axis] = ndimage.gaussian_filter(values, sigma, mode="nearest") / np.maximum(norm, 1e-12)
    out[:, norm < 1e-6] = 0.0  # nowhere near a usable block: no evidence, no shift
    return out


# --- resampling and checks ---------------------------------------------------------


def _resample(
    volume: NDArray[np.float32],
    mapping: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    order: int,
    *,
    fill: float | None = 0.0,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Sample ``volume`` at ``mapping(grid)`` for every voxel, a z slab at a time.

    Outside the volume the nearest edge value is used, or ``fill`` unless it is None.
    """
    shape = volume.shape
    out = np.zeros(shape, np.float32)
    valid = np.zeros(shape, bool)
    # spline coefficients once for the whole volume, not once per slab
    coeffs = (
        ndimage.spline_filter(volume, order, output=np.float32, mode="nearest")
        if order > 1
        else volume
    )
    for z0 in range(0, shape[0], _SLAB):
        z1 = min(shape[0], z0 + _SLAB)
        grid = np.mgrid[z0:z1, 0 : shape[1], 0 : shape[2]].astype(np.float64)
        coords = mapping(grid)
        inside = np.all(
            (coords >= -1e-3) & (coords <= np.reshape(shape, (3, 1, 1, 1)) - 1 + 1e-3), axis=0
        )
        values = ndimage.map_coordinates(
            coeffs, coords, order=order, mode="nearest", prefilter=False
        )
        out[z0:z1] = values if fill is None else np.where(inside, values, fill)
        valid[z0:z1] = inside
    return out, valid


def _correlation(a: NDArray[np.float32], b: NDArray[np.float32], mask: NDArray[np.bool_]) -> float:
    """Pearson correlation of ``a`` and ``b`` over ``mask`` (NaN when either is flat)."""
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else math.nan


def _checked(
    moving: ArrayLike, fixed: ArrayLike, method: str, model: str, spacing: Sequence[float]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The two volumes as float32, after checking every argument."""
    if method not in METHODS:
        raise RegistrationError(
            f"unknown registration method {method!r}; use one of {', '.join(METHODS)}"
        )
    if model not in MODELS:
        raise RegistrationError(f"unknown affine model {model!r}; use one of {', '.join(MODELS)}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise RegistrationError(
            f"spacing must be 3 positive voxel sizes (dz, dy, dx), got {tuple(spacing)}"
        )
    mov, fix = np.asarray(moving, np.float32), np.asarray(fixed, np.float32)
    if mov.ndim != 3 or mov.shape != fix.shape:
        raise RegistrationError(
            f"need two ZYX volumes of one shape, got {mov.shape} (moving) and {fix.shape} (fixed)"
        )
    if min(mov.shape) < 4:
        raise RegistrationError(
            f"volumes of shape {mov.shape} are too thin to register: need 4 voxels on every axis"
        )
    if not (np.isfinite(mov).all() and np.isfinite(fix).all()):
        raise RegistrationError("the volumes hold NaN or infinite values; replace them first")
    return mov, fix
