"""Pairwise registration of neighbouring tiles on their overlap, with a quality measure.

Method: scikit-image's ``phase_cross_correlation`` in its masked form (Padfield's
masked normalised cross-correlation in the Fourier domain) on the z maximum
projections of the two overlap windows, widened by a search margin so that stage
errors of several µm keep the common structure inside both windows. The masked
form scores every shift by the normalised correlation of the pixels that really
overlap at that shift, so it has no wrap-around ambiguity and is not pulled towards
zero by the window edges; plain phase correlation (``normalization="phase"``) locked
onto the window edges on the noisy simulated tiles, and the unnormalised one was
off by more than half a pixel. The integer peak is refined to sub-pixel precision by
a parabola through the correlation at the peak and its neighbours.

Why maximum projections, not 3D: only the XY stage moves between tiles; every tile's
z-stack is taken at the same piezo positions, so the unknown offset is lateral.
Projecting the stack keeps all of the structure in the overlap (a tube seen in any
plane counts), averages noise into a 2D image with a much better signal, and costs
one 2D correlation instead of a 3D one. Samples that drift or tilt in z between
tiles would need 3D registration (a follow-up).

Quality: the normalised correlation at the chosen shift. Textureless overlaps
(background and noise only) correlate near zero and are rejected, as are shifts
beyond the search range and overlaps too small to trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

if TYPE_CHECKING:
    from .layout import Tile, TileReader


@dataclass(frozen=True, slots=True)
class RegistrationSettings:
    """How pairs are registered and when a pair is trusted.

    Attributes
    ----------
    channel
        Channel registered (all channels are fused with the same positions).
    search_px
        Windows are widened by this many pixels beyond the nominal overlap on every
        side, and a shift further than this from the stage offset is rejected.
    min_correlation
        Lowest Pearson correlation of the aligned overlap for a pair to be accepted.
    min_overlap_px
        Fewest overlapping pixels (after the shift) for a pair to be accepted.
    min_overlap_ratio
        Shifts leaving less than this fraction of the windows overlapping are not
        considered (small overlaps correlate well by chance).
    smooth_px
        σ of a Gaussian applied to the projections before registering (noise).
    """

    channel: int = 0
    search_px: int = 64
    min_correlation: float = 0.7
    min_overlap_px: int = 500
    min_overlap_ratio: float = 0.15
    smooth_px: float = 1.0


@dataclass(frozen=True, slots=True)
class PairShift:
    """The registration of tile ``b`` against tile ``a``.

    Attributes
    ----------
    shift_px
        Measured ``position(b) − position(a)``, ``(y, x)`` pixels.
    stage_px
        The same offset from the stage positions.
    correlation
        Pearson correlation of the overlap after alignment (−1…1, NaN if none).
    overlap_px
        Number of pixels compared.
    accepted
        Whether the pair may be used; ``reason`` says why not.
    """

    a: int
    b: int
    shift_px: tuple[float, float]
    stage_px: tuple[float, float]
    correlation: float
    overlap_px: int
    accepted: bool
    reason: str = ""

    @property
    def correction_px(self) -> tuple[float, float]:
        """How far the measurement moves ``b`` from its stage offset, ``(y, x)``."""
        return (self.shift_px[0] - self.stage_px[0], self.shift_px[1] - self.stage_px[1])


def _windows(d: int, n: int, margin: int) -> tuple[slice, slice] | None:
    """Equal-length windows on one axis, in the local pixels of tiles ``a`` and ``b``.

    ``b`` is nominally ``d`` pixels after ``a`` on this axis; both tiles are ``n``
    long. The nominal overlap is widened by ``margin`` inside each tile.
    """
    lo_a, hi_a = max(0, d), min(n, n + d)
    lo_b, hi_b = max(0, -d), min(n, n - d)
    if hi_a <= lo_a:
        return None
    lo_a, hi_a = max(0, lo_a - margin), min(n, hi_a + margin)
    lo_b, hi_b = max(0, lo_b - margin), min(n, hi_b + margin)
    size = min(hi_a - lo_a, hi_b - lo_b)
    if d > 0:  # b lies towards a's far end: keep a's far part and b's near part
        return slice(hi_a - size, hi_a), slice(lo_b, lo_b + size)
    if d < 0:
        return slice(lo_a, lo_a + size), slice(hi_b - size, hi_b)
    return slice(lo_a, lo_a + size), slice(lo_b, lo_b + size)


def overlap_correlation(
    reference: np.ndarray, moving: np.ndarray, shift: tuple[int, int]
) -> tuple[float, int]:
    """Pearson correlation of ``reference`` and ``moving`` where they overlap once
    ``moving`` is shifted by ``shift`` (skimage's convention), and the pixel count."""
    ref_sl, mov_sl = [], []
    for s, n in zip(shift, reference.shape, strict=True):
        lo, hi = max(0, s), min(n, n + s)
        if hi <= lo:
            return float("nan"), 0
        ref_sl.append(slice(lo, hi))
        mov_sl.append(slice(lo - s, hi - s))
    r = reference[tuple(ref_sl)].ravel()
    m = moving[tuple(mov_sl)].ravel()
    if r.size < 2 or r.std() == 0 or m.std() == 0:
        return float("nan"), int(r.size)
    return float(np.corrcoef(r, m)[0, 1]), int(r.size)


def _refine(
    reference: np.ndarray, moving: np.ndarray, peak: tuple[int, int]
) -> tuple[tuple[float, float], float, int]:
    """Sub-pixel shift: a parabola per axis through the correlation at ``peak`` ± 1."""
    c0, n_px = overlap_correlation(reference, moving, peak)
    shift = [float(peak[0]), float(peak[1])]
    if not np.isfinite(c0):
        return (shift[0], shift[1]), c0, n_px
    for k in range(2):
        step = (1, 0) if k == 0 else (0, 1)
        cp, _ = overlap_correlation(reference, moving, (peak[0] + step[0], peak[1] + step[1]))
        cm, _ = overlap_correlation(reference, moving, (peak[0] - step[0], peak[1] - step[1]))
        curvature = cp - 2 * c0 + cm
        if np.isfinite(curvature) and curvature < 0:
            shift[k] += float(np.clip(0.5 * (cm - cp) / curvature, -0.5, 0.5))
    return (shift[0], shift[1]), c0, n_px


def register_pair(
    reader: TileReader,
    a: Tile,
    b: Tile,
    tile_yx: tuple[int, int],
    settings: RegistrationSettings,
) -> PairShift:
    """Register tile ``b`` against tile ``a`` on their overlap.

    Reads only the two overlap windows (every plane), projects them along z, and
    measures the offset with phase correlation; see the module docstring.
    """
    stage = (b.stage_px[0] - a.stage_px[0], b.stage_px[1] - a.stage_px[1])
    d = (round(stage[0]), round(stage[1]))
    found = [_windows(d[k], tile_yx[k], settings.search_px) for k in range(2)]
    if found[0] is None or found[1] is None:
        return PairShift(a.index, b.index, stage, stage, float("nan"), 0, False, "no overlap")
    (ya, yb), (xa, xb) = found[0], found[1]
    c, all_z = settings.channel, slice(None)
    ref = reader.read(a.index, c, all_z, ya, xa).max(axis=0)
    mov = reader.read(b.index, c, all_z, yb, xb).max(axis=0)
    if settings.smooth_px > 0:
        ref = ndimage.gaussian_filter(ref, settings.smooth_px)
        mov = ndimage.gaussian_filter(mov, settings.smooth_px)
    if ref.std() == 0 or mov.std() == 0:
        return PairShift(a.index, b.index, stage, stage, float("nan"), 0, False, "blank overlap")
    mask = np.ones(ref.shape, dtype=bool)
    coarse, _error, _phase = phase_cross_correlation(
        ref,
        mov,
        reference_mask=mask,
        moving_mask=mask,
        overlap_ratio=settings.min_overlap_ratio,
    )
    peak = (round(float(coarse[0])), round(float(coarse[1])))
    shift, corr, n_px = _refine(ref, mov, peak)
    # window origins turn the window shift into a tile offset (see _windows)
    offset = (
        shift[0] + ya.start - yb.start,
        shift[1] + xa.start - xb.start,
    )
    correction = max(abs(offset[0] - stage[0]), abs(offset[1] - stage[1]))
    reason = ""
    if not np.isfinite(corr) or corr < settings.min_correlation:
        reason = f"low correlation {corr:.2f} < {settings.min_correlation:g}"
    elif n_px < settings.min_overlap_px:
        reason = f"overlap of {n_px} px < {settings.min_overlap_px}"
    elif correction > settings.search_px:
        reason = f"shift {correction:.0f} px from the stage offset > {settings.search_px}"
    return PairShift(
        a.index,
        b.index,
        (round(offset[0], 3), round(offset[1], 3)),
        stage,
        round(corr, 4) if np.isfinite(corr) else float("nan"),
        n_px,
        not reason,
        reason,
    )
