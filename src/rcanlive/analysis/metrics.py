"""Image-quality metrics: PSNR, SSIM and NRMSE of restored volumes against ground truth.

Every number these functions return depends on a convention: how the two volumes were
brought to one intensity scale, the ``data_range`` of PSNR and SSIM, and which voxels
count. A figure without its convention cannot be compared with another (the same
model reads 5–7 dB apart under two reasonable conventions), so
:class:`MetricConvention` records it, says it in words (:meth:`MetricConvention.describe`)
and travels with every result of :mod:`rcanlive.analysis.evaluation`.

The default convention is the paper's as closely as its Methods allow: PSNR and SSIM
"on normalized input, network output, and ground truth with built-in MATLAB
functions". We use scikit-image's implementations on percentile-normalised volumes
(2/99.9, each volume separately, the normalisation the network sees) with
``data_range = 1``: MATLAB's ``psnr``/``ssim`` take a peak/dynamic range of 1 for
double images, so the numbers are on the same scale.

How they compare with MATLAB's:

* PSNR is the same formula, ``10·log10(data_range² / MSE)`` over all voxels.
* SSIM uses the constants and window of Wang et al. 2004 as MATLAB does (Gaussian
  weights σ = 1.5 with an 11-voxel window, K1 = 0.01, K2 = 0.03, population
  covariance) and filters in 3D, as MATLAB's ``ssim`` does for 3D arrays. Two
  differences remain: MATLAB pads borders by replication and averages the SSIM map
  over every voxel, scikit-image reflects and leaves a 5-voxel border out of the
  mean. Measured on noisy phantoms (replicating MATLAB's rule with scipy), scikit-image
  reads 0.008 higher on a 128³ volume and 0.02 higher on a 12-plane 256×256 stack, so
  compare with the paper's tables to about ±0.02, not to the third decimal.
* The paper does not say exactly how it normalised before measuring; we use the same
  2/99.9 percentile normalisation as training, applied to each volume separately.
* Volumes thinner than the 11-voxel window in Z (e.g. 8-plane stacks) cannot be
  filtered in 3D; their SSIM is the mean of per-plane 2D SSIMs, which MATLAB would not
  do; choose explicitly with ``ssim(..., ssim_mode=...)``.
* NRMSE (not in the paper) is scikit-image's ``normalized_root_mse`` with the
  ``"euclidean"`` normalisation: ``RMSE / RMS(truth)``, on the same normalised volumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

#: Side of the Gaussian SSIM window (σ = 1.5, truncated at 3.5σ, as in Wang et al.).
SSIM_WINDOW = 11
_SIGMA = 1.5

SsimMode = Literal["auto", "3d", "planes"]
NrmseNorm = Literal["euclidean", "min-max", "mean"]


@dataclass(frozen=True, slots=True)
class MetricConvention:
    """How a PSNR/SSIM/NRMSE figure was measured; carried by every result.

    Attributes
    ----------
    p_low, p_high
        Percentiles of the truth mapped to 0 and 1 (each volume separately).
    scaling
        How the prediction reaches the truth's normalised scale: ``"percentile"``,
        normalised by its own percentiles like the truth (the paper's; insensitive to
        a method's output scale and offset); ``"least_squares"``, the affine map
        ``a·prediction + b`` closest to the normalised truth (what a fair comparison
        of methods with different output scales fits; it reads higher).
    data_range
        Peak of PSNR and dynamic range of SSIM: a number (1: the paper's, MATLAB's for
        double images), or ``"target"``: max − min of the normalised truth (reads
        several dB higher on sparse samples, whose maximum is far above the 99.9th
        percentile).
    region
        ``"volume"``: every voxel (the paper's); ``"foreground"``: only the voxels the
        truth's Otsu mask keeps (:func:`rcanlive.analysis.snr.foreground_mask`), so
        that background offsets do not dominate a sparse sample.
    ssim_mode
        ``"3d"``, ``"planes"`` or ``"auto"`` (3D when the volume has ≥ 11 planes); see
        :func:`ssim`.
    nrmse_normalization
        scikit-image's ``normalized_root_mse`` normalisation: ``"euclidean"``
        (RMSE / RMS of the truth), ``"min-max"`` or ``"mean"``.
    """

    p_low: float = 2.0
    p_high: float = 99.9
    scaling: Literal["percentile", "least_squares"] = "percentile"
    data_range: float | Literal["target"] = 1.0
    region: Literal["volume", "foreground"] = "volume"
    ssim_mode: SsimMode = "auto"
    nrmse_normalization: NrmseNorm = "euclidean"

    def __post_init__(self) -> None:
        if not 0 <= self.p_low < self.p_high <= 100:
            raise ValueError(
                f"percentiles must satisfy 0 <= p_low < p_high <= 100, got "
                f"{self.p_low} and {self.p_high}"
            )
        if self.data_range != "target" and not (
            isinstance(self.data_range, (int, float)) and self.data_range > 0
        ):
            raise ValueError(
                f"data_range must be a positive number or 'target', got {self.data_range!r}"
            )
        if self.scaling not in ("percentile", "least_squares"):
            raise ValueError(
                f"scaling must be 'percentile' or 'least_squares', got {self.scaling!r}"
            )
        if self.region not in ("volume", "foreground"):
            raise ValueError(f"region must be 'volume' or 'foreground', got {self.region!r}")

    def describe(self) -> str:
        """The convention in one sentence, for the caption of a table."""
        scale = (
            "prediction normalised the same way"
            if self.scaling == "percentile"
            else "prediction fitted to it by least squares (a·x + b)"
        )
        rng = (
            "max − min of the normalised truth"
            if self.data_range == "target"
            else f"{self.data_range:g}"
        )
        region = "all voxels" if self.region == "volume" else "the truth's foreground (Otsu)"
        ssim_how = {
            "auto": "3D Gaussian window σ 1.5 (per-plane 2D below 11 planes)",
            "3d": "3D Gaussian window σ 1.5",
            "planes": "mean of per-plane 2D SSIMs, Gaussian window σ 1.5",
        }[self.ssim_mode]
        nrmse_how = {
            "euclidean": "RMSE / RMS(truth)",
            "min-max": "RMSE / (max − min of truth)",
            "mean": "RMSE / mean(truth)",
        }[self.nrmse_normalization]
        return (
            f"truth normalised to its {self.p_low:g}/{self.p_high:g} percentiles "
            f"(each volume), {scale}; PSNR and SSIM with data_range {rng}; over {region}; "
            f"SSIM {ssim_how}; NRMSE = {nrmse_how}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields, for JSON."""
        return asdict(self)


def percentile_normalize(
    volume: ArrayLike, p_low: float = 2.0, p_high: float = 99.9
) -> NDArray[np.float32]:
    """Map ``volume`` so its ``p_low``/``p_high`` percentiles become 0 and 1.

    Raises
    ------
    ValueError
        If the two percentiles coincide (no contrast).
    """
    vol = np.asarray(volume, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(vol, [p_low, p_high]))
    if not hi > lo:
        raise ValueError(f"cannot normalise: percentiles {p_low} and {p_high} are both {lo:g}")
    return (vol - np.float32(lo)) / np.float32(hi - lo)


def fit_affine(test: ArrayLike, reference: ArrayLike) -> NDArray[np.float32]:
    """``a·test + b`` with ``a, b`` minimising the squared error to ``reference``."""
    x = np.asarray(test, dtype=np.float64).ravel()
    y = np.asarray(reference, dtype=np.float64).ravel()
    x_mean, y_mean = x.mean(), y.mean()
    var = float(np.mean((x - x_mean) ** 2))
    a = float(np.mean((x - x_mean) * (y - y_mean))) / var if var > 0 else 0.0
    b = y_mean - a * x_mean
    return (np.asarray(test, dtype=np.float32) * np.float32(a) + np.float32(b)).astype(np.float32)


def psnr(
    reference: ArrayLike,
    test: ArrayLike,
    *,
    data_range: float = 1.0,
    mask: ArrayLike | None = None,
) -> float:
    """Peak signal-to-noise ratio of ``test`` against ``reference`` in dB.

    ``10·log10(data_range² / MSE)`` (scikit-image's ``peak_signal_noise_ratio``).

    Parameters
    ----------
    reference, test
        Normalised volumes of equal shape (ground truth first).
    data_range
        Peak value; 1 for normalised volumes, as MATLAB for double images.
    mask
        Boolean array of the same shape: only these voxels count (default: all).
    """
    from skimage.metrics import peak_signal_noise_ratio

    ref, tst = _masked_pair(reference, test, mask)
    return float(peak_signal_noise_ratio(ref, tst, data_range=data_range))


def _masked_pair(
    reference: ArrayLike, test: ArrayLike, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """The two volumes as float arrays, reduced to the voxels of ``mask`` when given."""
    ref, tst = _pair(reference, test)
    if mask is None:
        return ref, tst
    m = _mask(mask, ref.shape)
    return ref[m], tst[m]


def nrmse(
    reference: ArrayLike,
    test: ArrayLike,
    *,
    normalization: NrmseNorm = "euclidean",
    mask: ArrayLike | None = None,
) -> float:
    """Normalised root-mean-square error of ``test`` against ``reference`` (lower is better).

    scikit-image's ``normalized_root_mse``: ``RMSE / RMS(reference)`` for
    ``"euclidean"``, ``RMSE / (max − min)`` for ``"min-max"``, ``RMSE / mean`` for
    ``"mean"``, the denominator taken over the reference.

    Parameters
    ----------
    reference, test
        Volumes of equal shape (ground truth first), normalised alike.
    normalization
        The denominator, as above.
    mask
        Boolean array of the same shape: only these voxels count (default: all).
    """
    from skimage.metrics import normalized_root_mse

    ref, tst = _masked_pair(reference, test, mask)
    return float(normalized_root_mse(ref, tst, normalization=normalization))


def ssim(
    reference: ArrayLike,
    test: ArrayLike,
    *,
    data_range: float = 1.0,
    ssim_mode: SsimMode = "auto",
    mask: ArrayLike | None = None,
) -> float:
    """Structural similarity of ``test`` against ``reference`` (Wang et al. 2004).

    Gaussian window σ = 1.5 (11 voxels), K1 = 0.01, K2 = 0.03, population covariance;
    the mean of scikit-image's SSIM map (which leaves a 5-voxel border out).

    Parameters
    ----------
    reference, test
        Normalised volumes ``(Z, Y, X)`` (or 2D images) of equal shape.
    data_range
        Dynamic range; 1 for normalised volumes, as MATLAB for double images.
    ssim_mode
        ``"3d"``: one 3D Gaussian-windowed SSIM (needs every side ≥ 11 voxels);
        ``"planes"``: mean of per-plane 2D SSIMs; ``"auto"``: 3D when the volume is
        thick enough, else planes.
    mask
        Boolean array of the same shape: the SSIM map is averaged over these voxels
        (its border included) instead of scikit-image's cropped mean.
    """
    from skimage.metrics import structural_similarity

    ref, tst = _pair(reference, test)
    if min(ref.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels, got "
            f"shape {ref.shape}"
        )
    kw: dict[str, Any] = {
        "data_range": data_range,
        "gaussian_weights": True,
        "sigma": _SIGMA,
        "use_sample_covariance": False,
    }
    thick = ref.ndim == 2 or ref.shape[0] >= SSIM_WINDOW
    in_3d = ssim_mode == "3d" or (ssim_mode == "auto" and thick)
    if mask is None:
        if in_3d:
            return float(structural_similarity(ref, tst, **kw))
        planes = zip(ref, tst, strict=True)
        return float(np.mean([structural_similarity(r, t, **kw) for r, t in planes]))
    m = _mask(mask, ref.shape)
    if not m.any():
        raise ValueError("the mask selects no voxel")
    if in_3d:
        full = structural_similarity(ref, tst, full=True, **kw)[1]
    else:
        full = np.stack(
            [structural_similarity(r, t, full=True, **kw)[1] for r, t in zip(ref, tst, strict=True)]
        )
    return float(np.mean(full[m]))


def _pair(reference: ArrayLike, test: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    # float32 halves SSIM's time over float64 and changes it by < 1e-8
    ref = np.asarray(reference, dtype=np.float32)
    tst = np.asarray(test, dtype=np.float32)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, test {tst.shape}")
    if ref.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image or 3D volume, got shape {ref.shape}")
    return ref, tst


def _mask(mask: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} differs from the volumes' {shape}")
    if not m.any():
        raise ValueError("the mask selects no voxel")
    return m
