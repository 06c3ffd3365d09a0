"""Image-quality metrics: PSNR and SSIM of restored volumes against ground truth.

The paper reports PSNR and SSIM "on normalized input, network output, and ground
truth with built-in MATLAB functions". We use scikit-image's implementations on
percentile-normalised volumes (2/99.9 by default, the same normalisation the network
sees) with ``data_range = 1``: MATLAB's ``psnr``/``ssim`` take a peak/dynamic range of
1 for double images, so the numbers are on the same scale.

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

#: Side of the Gaussian SSIM window (σ = 1.5, truncated at 3.5σ, as in Wang et al.).
SSIM_WINDOW = 11
_SIGMA = 1.5


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


def psnr(reference: ArrayLike, test: ArrayLike, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of ``test`` against ``reference`` in dB.

    Parameters
    ----------
    reference, test
        Normalised volumes of equal shape (ground truth first).
    data_range
        Peak value; 1 for normalised volumes, as MATLAB for double images.
    """
    from skimage.metrics import peak_signal_noise_ratio

    ref, tst = _pair(reference, test)
    return float(peak_signal_noise_ratio(ref, tst, data_range=data_range))


def ssim(
    reference: ArrayLike,
    test: ArrayLike,
    *,
    data_range: float = 1.0,
    ssim_mode: Literal["auto", "3d", "planes"] = "auto",
) -> float:
    """Structural similarity of ``test`` against ``reference`` (Wang et al. 2004).

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
    """
    from skimage.metrics import structural_similarity

    ref, tst = _pair(reference, test)
    if min(ref.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels, got "
            f"shape {ref.shape}"
        )
    kw = {
        "data_range": data_range,
        "gaussian_weights": True,
        "sigma": _SIGMA,
        "use_sample_covariance": False,
    }
    thick = ref.ndim == 2 or ref.shape[0] >= SSIM_WINDOW
    if ssim_mode == "3d" or (ssim_mode == "auto" and thick):
        return float(structural_similarity(ref, tst, **kw))
    return float(
        np.mean([structural_similarity(r, t, **kw) for r, t in zip(ref, tst, strict=True)])
    )


def _pair(reference: ArrayLike, test: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    # float32 halves SSIM's time over float64 and changes it by < 1e-8
    ref = np.asarray(reference, dtype=np.float32)
    tst = np.asarray(test, dtype=np.float32)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, test {tst.shape}")
    if ref.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image or 3D volume, got shape {ref.shape}")
    return ref, tst
