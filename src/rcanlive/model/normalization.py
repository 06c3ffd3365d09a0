"""Percentile normalisation (CARE-style), shared by training and inference.

A volume ``v`` is mapped to ``(v - lo) / (hi - lo)`` where ``lo`` and ``hi`` are its
``p_low`` and ``p_high`` percentiles over the whole volume, so the dim background
sits near 0 and the bright structures near 1 whatever the illumination power.
:meth:`PercentileNormalizer.denormalize` is the exact inverse, which brings a
restored volume back to the raw input's intensity scale (bleaching curves need real
intensities).

Percentiles are computed with numpy (``np.percentile``, a partition, not a sort) and
not ``torch.quantile``, which refuses tensors of more than 2**24 elements. Volumes
larger than ``max_samples`` voxels are subsampled with a fixed stride, which keeps
the result deterministic and within a fraction of a grey level of the exact value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True, slots=True)
class PercentileNormalizer:
    """Percentile normalisation settings; stored in every checkpoint.

    Attributes
    ----------
    p_low, p_high
        Percentiles (0–100) mapped to 0 and 1. Paper/CARE defaults 2 and 99.9.
    max_samples
        Voxel count above which :meth:`stats` works on a strided subsample
        (``None``: always exact).
    """

    p_low: float = 2.0
    p_high: float = 99.9
    max_samples: int | None = 2**24

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_low < self.p_high <= 100.0:
            raise ValueError(
                f"percentiles must satisfy 0 <= p_low < p_high <= 100, got "
                f"p_low={self.p_low}, p_high={self.p_high}"
            )
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {self.max_samples}")

    def stats(self, volume: ArrayLike) -> tuple[float, float]:
        """Return ``(lo, hi)``: the volume's ``p_low`` and ``p_high`` percentiles.

        Parameters
        ----------
        volume
            A 3D ``(Z, Y, X)`` array of finite numbers.

        Raises
        ------
        ValueError
            If the volume is not 3D, is empty, holds NaN or infinite values, or has
            no contrast between the two percentiles (e.g. a constant volume).
        """
        vol = check_volume(volume)
        flat = vol.reshape(-1)
        if self.max_samples is not None and flat.size > self.max_samples:
            step = -(-flat.size // self.max_samples)  # ceil division
            flat = flat[::step]
        lo, hi = np.percentile(flat, [self.p_low, self.p_high])
        lo, hi = float(lo), float(hi)
        if not hi > lo:
            vmin, vmax = float(vol.min()), float(vol.max())
            if vmin == vmax:
                raise ValueError(
                    f"volume is constant (every voxel is {vmin:g}), so it has no "
                    "contrast to normalise; check that the shutter was open and the "
                    "laser on, or drop this volume"
                )
            raise ValueError(
                f"volume has no contrast between its {self.p_low:g}th and "
                f"{self.p_high:g}th percentiles (both {lo:g}; voxels range "
                f"{vmin:g}–{vmax:g}); lower p_low or raise p_high, or check the "
                "acquisition"
            )
        return lo, hi

    def normalize(self, volume: ArrayLike, lo: float, hi: float) -> NDArray[np.float32]:
        """Map ``volume`` to ``(volume - lo) / (hi - lo)`` as float32 (no clipping)."""
        _check_range(lo, hi)
        vol = np.asarray(volume, dtype=np.float32)
        out = (vol - np.float32(lo)) / np.float32(hi - lo)
        return out.astype(np.float32, copy=False)

    def denormalize(self, volume: ArrayLike, lo: float, hi: float) -> NDArray[np.float32]:
        """Inverse of :meth:`normalize`: back to the input's intensity scale."""
        _check_range(lo, hi)
        vol = np.asarray(volume, dtype=np.float32)
        out = vol * np.float32(hi - lo) + np.float32(lo)
        return out.astype(np.float32, copy=False)

    def __call__(self, volume: ArrayLike) -> tuple[NDArray[np.float32], float, float]:
        """Normalise ``volume`` by its own percentiles; return ``(normed, lo, hi)``."""
        lo, hi = self.stats(volume)
        return self.normalize(volume, lo, hi), lo, hi

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for checkpoints and configs."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PercentileNormalizer:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**data)


def check_volume(volume: ArrayLike) -> NDArray[Any]:
    """Return ``volume`` as a numpy array after checking it is a usable 3D volume.

    Raises
    ------
    ValueError
        With a message naming the problem (dimensions, emptiness, NaN/inf) and the fix.
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(
            f"expected a 3D (Z, Y, X) volume, got {vol.ndim} dimension(s) with shape "
            f"{vol.shape}; pass one channel and one time point at a time (squeeze or "
            "index extra axes; add an axis for a single plane)"
        )
    if vol.size == 0:
        raise ValueError(f"volume is empty (shape {vol.shape}); check the acquisition or the file")
    if not (np.issubdtype(vol.dtype, np.integer) or np.issubdtype(vol.dtype, np.floating)):
        raise ValueError(f"volume must hold real numbers, got dtype {vol.dtype}")
    if np.issubdtype(vol.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(vol)))
        if bad:
            raise ValueError(
                f"volume contains {bad} NaN or infinite voxel(s) of {vol.size}; "
                "replace them (e.g. numpy.nan_to_num) or fix the source data"
            )
    return vol


def _check_range(lo: float, hi: float) -> None:
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"normalisation range needs finite lo < hi, got lo={lo}, hi={hi}")
