"""Score a restored volume against its ground truth, and summarise over a set.

:func:`evaluate` applies one :class:`~.metrics.MetricConvention` (normalisation,
data_range, region) to a prediction and its truth and returns :class:`Scores`, which
carry the convention; :func:`summarize` turns the scores of held-out volumes into mean
± standard deviation (:class:`Summary`). Loading data and running methods belongs to
:mod:`rcanlive.evaluation`, which builds on this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import MetricConvention, fit_affine, nrmse, percentile_normalize, psnr, ssim
from .snr import foreground_mask

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

#: The metrics of a :class:`Scores`, in table order, and whether higher is better.
METRICS: dict[str, bool] = {"psnr": True, "ssim": True, "nrmse": False}


@dataclass(frozen=True, slots=True)
class Scores:
    """PSNR (dB), SSIM and NRMSE of one volume, and how they were measured."""

    psnr: float
    ssim: float
    nrmse: float
    convention: MetricConvention = field(default_factory=MetricConvention)

    def as_dict(self) -> dict[str, float]:
        """``{"psnr": ..., "ssim": ..., "nrmse": ...}`` (the convention left out)."""
        return {name: float(getattr(self, name)) for name in METRICS}


@dataclass(frozen=True, slots=True)
class Stat:
    """Mean and sample standard deviation (0 for one value) of one metric."""

    mean: float
    sd: float
    n: int

    def format(self, digits: int) -> str:
        """``"36.06 ± 0.52"`` (the ± part left out for a single value)."""
        if self.n <= 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


@dataclass(frozen=True, slots=True)
class Summary:
    """Mean ± s.d. of every metric over a set of volumes, with the convention."""

    psnr: Stat
    ssim: Stat
    nrmse: Stat
    convention: MetricConvention

    @property
    def n(self) -> int:
        """Volumes summarised."""
        return self.psnr.n

    def as_dict(self) -> dict[str, Any]:
        """Per metric ``{"mean", "sd"}``, plus ``n``, for JSON."""
        out: dict[str, Any] = {
            name: {"mean": getattr(self, name).mean, "sd": getattr(self, name).sd}
            for name in METRICS
        }
        out["n"] = self.n
        return out


def normalized_pair(
    prediction: ArrayLike,
    truth: ArrayLike,
    convention: MetricConvention | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``(prediction, truth)`` on the truth's normalised scale, as ``convention`` says.

    Raises
    ------
    ValueError
        If the shapes differ, or a volume has no contrast to normalise.
    """
    conv = convention or MetricConvention()
    pred = np.asarray(prediction)
    true = np.asarray(truth)
    if pred.shape != true.shape:
        raise ValueError(
            f"prediction has shape {pred.shape} but truth has shape {true.shape}; "
            "compare volumes of the same shape"
        )
    truth_n = percentile_normalize(true, conv.p_low, conv.p_high)
    if conv.scaling == "percentile":
        pred_n = percentile_normalize(pred, conv.p_low, conv.p_high)
    else:
        pred_n = fit_affine(pred, truth_n)
    return pred_n, truth_n


def evaluate(
    prediction: ArrayLike,
    truth: ArrayLike,
    convention: MetricConvention | None = None,
) -> Scores:
    """PSNR, SSIM and NRMSE of ``prediction`` against ``truth`` under ``convention``.

    Parameters
    ----------
    prediction, truth
        ``(Z, Y, X)`` volumes (or 2D images) of the same shape, in any intensity
        units: the convention's normalisation puts them on one scale.
    convention
        How to measure (default :class:`~.metrics.MetricConvention`: the paper's).

    Raises
    ------
    ValueError
        If the shapes differ, a volume is constant, or an image is smaller than the
        SSIM window.
    """
    conv = convention or MetricConvention()
    pred_n, truth_n = normalized_pair(prediction, truth, conv)
    rng = float(truth_n.max() - truth_n.min()) if conv.data_range == "target" else conv.data_range
    mask = foreground_mask(truth_n) if conv.region == "foreground" else None
    return Scores(
        psnr=psnr(truth_n, pred_n, data_range=rng, mask=mask),
        ssim=ssim(truth_n, pred_n, data_range=rng, ssim_mode=conv.ssim_mode, mask=mask),
        nrmse=nrmse(truth_n, pred_n, normalization=conv.nrmse_normalization, mask=mask),
        convention=conv,
    )


def summarize(scores: Sequence[Scores]) -> Summary:
    """Mean ± sample s.d. of each metric over ``scores`` (one convention).

    Raises
    ------
    ValueError
        If ``scores`` is empty or mixes conventions.
    """
    if not scores:
        raise ValueError("no scores to summarise")
    conventions = {s.convention for s in scores}
    if len(conventions) > 1:
        raise ValueError("cannot summarise scores measured under different conventions")

    def stat(name: str) -> Stat:
        values = np.array([getattr(s, name) for s in scores], dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:  # e.g. PSNR of identical volumes is +inf
            return Stat(float(values[0]), 0.0, values.size)
        sd = float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0
        mean = float(np.mean(finite)) if finite.size == values.size else math.inf
        return Stat(mean, sd, values.size)

    return Summary(stat("psnr"), stat("ssim"), stat("nrmse"), scores[0].convention)
