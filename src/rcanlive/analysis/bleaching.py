"""Photobleaching curves: background-corrected signal per volume and its half-life.

The signal of a volume is the mean over *all* its voxels minus the background level,
in photoelectrons. A mean over the whole field is linear in the number of
fluorophores left; a mean over a foreground mask is not, because the mask itself
shrinks as the sample dims.

The background level of a raw volume is the camera offset. A restored volume is in
the raw intensity scale only up to its zero: the network's background maps to the
raw volume's low percentile, which read noise puts *below* the offset (about 95
counts for an offset of 100 at 4.2 W/cm²). Subtracting the offset there would make
the signal negative at low light and, at high light, remove a constant that speeds
up the apparent decay. Restored volumes are therefore measured against their own
background, the 1st percentile (:func:`restored_background`): denoised background
is flat, and the sparse samples imaged here leave far more than 1 % of the voxels
dark.

Fit model
---------
The curve, normalised to the first volume, is fitted with ``a · 2^(-n / h)`` (h, the
half-life in volumes), optionally ``+ c``. Dose-driven bleaching removes the same
fraction of every fluorophore per volume, and once the camera offset is subtracted
every part of the signal (structures and autofluorescence alike) bleaches, so the
pure exponential is the unbiased model; that is what the simulated iSIM does. A free
offset ``c`` only helps when a part of the background does not bleach (stray light,
a mis-set offset); over a run that decays little, ``c`` and ``h`` trade off against
each other and the half-life's variance explodes, so it is off by default.

No half-life is reported when the fitted curve decays by less than
``min_decay`` (20 %) over the run: the half-life then lies more than about three run
lengths away and the fit extrapolates rather than measures (at 4.2 W/cm² the
simulator's half-life is ~560 volumes; a 20-volume run decays by 2.4 %).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from .snr import CameraLike

#: The fitted decay over the run below which no half-life is reported.
MIN_DECAY = 0.2


@dataclass(frozen=True, slots=True)
class BleachFit:
    """An exponential fit of a normalised bleaching curve.

    Attributes
    ----------
    amplitude
        Fitted value at volume 0 (≈ 1 for a normalised curve).
    rate_per_volume
        Decay rate k of ``exp(-k n)``; ``ln 2 / k`` is the half-life.
    offset
        Fitted constant background (0 when fitted without offset).
    decay_over_run
        Fraction of the signal the fitted curve loses over the fitted volumes.
    half_life_volumes, half_life_s
        Half-life in volumes and seconds; ``None`` when not measurable within the run
        (see ``reason``).
    reason
        Why there is no half-life, else ``None``.
    """

    amplitude: float
    rate_per_volume: float
    offset: float
    decay_over_run: float
    half_life_volumes: float | None
    half_life_s: float | None
    n_points: int
    reason: str | None = None

    def curve(self, n: ArrayLike) -> NDArray[np.float64]:
        """The fitted curve at volume numbers ``n``."""
        x = np.asarray(n, np.float64)
        return self.amplitude * np.exp(-self.rate_per_volume * x) + self.offset

    def label(self) -> str:
        """One line for a plot legend: the half-life, or why there is none."""
        if self.half_life_volumes is None:
            return f"no half-life within the run ({self.reason})"
        text = f"half-life {self.half_life_volumes:.1f} volumes"
        if self.half_life_s is not None:
            text += f" = {self.half_life_s:.3g} s"
        return text


def volume_signal(
    data: ArrayLike, camera: CameraLike, background_counts: float | None = None
) -> float:
    """Mean background-corrected signal of a volume, photoelectrons per voxel.

    ``background_counts`` defaults to the camera offset (raw volumes); pass
    :func:`restored_background` for restored ones.
    """
    mean_counts = float(np.mean(np.asarray(data), dtype=np.float64))
    zero = camera.offset_counts if background_counts is None else background_counts
    return (mean_counts - zero) * camera.electrons_per_count


def restored_background(data: ArrayLike, percentile: float = 1.0) -> float:
    """Background level of a restored volume (counts): its ``percentile``-th percentile."""
    return float(np.percentile(np.asarray(data), percentile))


def normalise(signal: ArrayLike) -> NDArray[np.float64]:
    """A curve divided by its first value (NaN when that is not positive)."""
    s = np.asarray(signal, np.float64)
    if s.size == 0 or not s[0] > 0:
        return np.full(s.shape, np.nan)
    return s / s[0]


def volume_interval_s(volume: ArrayLike, elapsed_s: ArrayLike) -> float | None:
    """Mean start-to-start time between volumes (least squares), or ``None``."""
    n = np.asarray(volume, np.float64)
    t = np.asarray(elapsed_s, np.float64)
    if n.size < 2 or np.ptp(n) == 0:
        return None
    slope = float(np.polyfit(n, t, 1)[0])
    return slope if slope > 0 else None


def fit_bleaching(
    volume: ArrayLike,
    signal: ArrayLike,
    elapsed_s: ArrayLike | None = None,
    *,
    offset: bool = False,
    min_decay: float = MIN_DECAY,
) -> BleachFit | None:
    """Fit ``a·exp(-k n) (+ c)`` to a bleaching curve against volume number ``n``.

    Parameters
    ----------
    volume
        Volume numbers (time indices) of the points.
    signal
        Background-corrected signal per volume (normalised or not: the fit is done on
        the curve normalised to its first point).
    elapsed_s
        Time of each volume; gives the half-life in seconds.
    offset
        Fit a constant background too (see the module docstring).
    min_decay
        Report no half-life when the fitted curve loses less than this fraction of
        its signal over the run.

    Returns
    -------
    BleachFit or None
        ``None`` with fewer than three usable points (or four with ``offset``).
    """
    n = np.asarray(volume, np.float64)
    y = normalise(signal)
    ok = np.isfinite(y) & np.isfinite(n)
    n, y = n[ok], y[ok]
    if n.size < (4 if offset else 3):
        return None
    n0 = n - n[0]
    params = _fit_exponential(n0, y, offset)
    if params is None:
        return None
    a, k, c = params
    start = a + c
    decay = (a * (1.0 - np.exp(-k * float(n0[-1])))) / start if start > 0 else 0.0
    reason = _no_half_life_reason(k, c, start, decay, offset=offset, min_decay=min_decay)
    half_life = float(np.log(2) / k) if reason is None else None
    half_life_s = _half_life_s(half_life, n, elapsed_s, ok)
    # the fit ran on n - n[0]; report the curve on the caller's volume numbers
    if n[0] != 0:
        a *= float(np.exp(k * n[0]))
    return BleachFit(
        amplitude=a,
        rate_per_volume=k,
        offset=c,
        decay_over_run=float(decay),
        half_life_volumes=half_life,
        half_life_s=half_life_s,
        n_points=int(n.size),
        reason=reason,
    )


def _exponential(x: NDArray[np.float64], a: float, k: float, c: float = 0.0) -> NDArray[np.float64]:
    """The fit model ``a·exp(-k x) + c``."""
    return a * np.exp(-k * x) + c


def _fit_exponential(
    n0: NDArray[np.float64], y: NDArray[np.float64], offset: bool
) -> tuple[float, float, float] | None:
    """Fitted ``(a, k, c)`` (``c`` = 0 without ``offset``), or ``None`` if the fit fails."""
    # log-linear start values; curve_fit refines on the linear scale (equal noise)
    pos = y > 0
    k0 = -np.polyfit(n0[pos], np.log(y[pos]), 1)[0] if pos.sum() >= 2 else 0.0
    k0 = float(k0) if np.isfinite(k0) else 0.0
    p0 = [1.0, k0, 0.0] if offset else [1.0, k0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # singular covariance: unused
            popt, _ = curve_fit(_exponential, n0, y, p0=p0, maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return float(popt[0]), float(popt[1]), float(popt[2]) if offset else 0.0


def _half_life_s(
    half_life: float | None,
    n: NDArray[np.float64],
    elapsed_s: ArrayLike | None,
    ok: NDArray[np.bool_],
) -> float | None:
    """The half-life in seconds, from the volume interval of the ``ok`` points, or ``None``."""
    if half_life is None or elapsed_s is None:
        return None
    interval = volume_interval_s(n, np.asarray(elapsed_s, np.float64)[ok])
    return half_life * interval if interval is not None else None


def _no_half_life_reason(
    k: float, c: float, start: float, decay: float, *, offset: bool, min_decay: float
) -> str | None:
    """Why the fitted curve gives no half-life, or ``None`` when it does."""
    if k <= 0:
        return "the signal does not decay"
    if decay < min_decay:
        return f"{100 * decay:.1f} % decay over the run"
    if offset and c >= start:
        return "the fitted background exceeds the signal"
    return None
