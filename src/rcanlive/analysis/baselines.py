"""Classical restorations a microscopist tries first, each tuned on validation pairs.

* :class:`GaussianBaseline`: a Gaussian filter, one σ axially and one laterally (the
  PSF is laterally symmetric), tuned by a grid search refined by Nelder–Mead
  (:func:`tune_gaussian`).
* :class:`RichardsonLucyBaseline`: Richardson–Lucy with the known PSF
  (:func:`rcanlive.analysis.deconvolution.richardson_lucy`), the iteration count tuned
  (:func:`tune_richardson_lucy`; the paper uses 15). When the ground truth is itself the
  sample seen through a PSF (the simulator's truth is the sample blurred by the iSIM
  PSF; a phantom's, by the 1× PSF), the deconvolved estimate can be blurred again by
  that ``target_psf`` so that it is compared at the truth's resolution; whether to is
  tuned too.

Tuning maximises the mean PSNR over the tuning pairs under a
:class:`~.metrics.MetricConvention` (PSNR rather than SSIM: it is ~50× cheaper and
ranks these one-parameter families the same way on our data). Tune on pairs held out
from the test set (other positions or samples); tuning on the test set flatters the
baselines.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
from scipy import ndimage

from .deconvolution import PAPER_ITERATIONS, check_psf, richardson_lucy
from .metrics import MetricConvention, fit_affine, percentile_normalize, psnr

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import ArrayLike, NDArray

#: Default grid of (axial, lateral) σ in voxels for :func:`tune_gaussian`.
SIGMA_Z_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
SIGMA_XY_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
#: Default iteration counts tried by :func:`tune_richardson_lucy`, in increasing order.
RL_ITERATIONS = (1, 2, 3, 5, 10, 15, 25, 40, 60)

_B = TypeVar("_B")


@dataclass(frozen=True, slots=True)
class GaussianBaseline:
    """A Gaussian filter with σ ``(z, y, x)`` in voxels (``mode="reflect"``)."""

    sigma_zyx: tuple[float, float, float]

    def __call__(self, volume: ArrayLike) -> NDArray[np.float32]:
        """The filtered volume, float32."""
        vol = np.asarray(volume, dtype=np.float32)
        if not any(self.sigma_zyx):
            return vol.copy()
        return ndimage.gaussian_filter(vol, self.sigma_zyx, mode="reflect")

    def describe(self) -> str:
        """``"Gaussian σz 0.5, σxy 2"``."""
        z, y, _ = self.sigma_zyx
        return f"Gaussian σz {z:.2g}, σxy {y:.2g}"


@dataclass(frozen=True, slots=True)
class RichardsonLucyBaseline:
    """Richardson–Lucy with a known PSF, optionally re-blurred to the truth's PSF.

    Attributes
    ----------
    psf
        PSF that blurred the input, at its voxel size (normalised to sum 1).
    iterations
        RL iterations.
    background
        Subtracted before deconvolving (the camera offset for raw counts).
    target_psf
        If set, the estimate is convolved with it (the truth's own PSF).
    device
        ``richardson_lucy``'s device (``auto``: a CUDA GPU when torch sees one).
    """

    psf: NDArray[np.float32] = field(repr=False)
    iterations: int = PAPER_ITERATIONS
    background: float = 0.0
    target_psf: NDArray[np.float32] | None = field(default=None, repr=False)
    device: str = "auto"

    def __call__(self, volume: ArrayLike) -> NDArray[np.float32]:
        """The deconvolved (and, with ``target_psf``, re-blurred) volume, float32."""
        vol = np.asarray(volume, dtype=np.float32)
        est = richardson_lucy(
            vol, self.psf, self.iterations, background=self.background, device=self.device
        )
        return reblur(est, self.target_psf) if self.target_psf is not None else est

    def describe(self) -> str:
        """``"Richardson–Lucy, 15 iterations (re-blurred)"``."""
        again = " (re-blurred to the truth's PSF)" if self.target_psf is not None else ""
        return f"Richardson–Lucy, {self.iterations} iterations{again}"


@dataclass(frozen=True, slots=True)
class Tuned(Generic[_B]):
    """A tuned baseline, its tuning score and what the search tried.

    Attributes
    ----------
    baseline
        The best baseline found.
    score
        Its mean PSNR (dB) on the tuning pairs.
    trials
        ``(parameters, mean PSNR)`` of every candidate evaluated, in order.
    seconds
        Wall-clock time of the search.
    """

    baseline: _B
    score: float
    trials: tuple[tuple[dict[str, Any], float], ...]
    seconds: float


def reblur(volume: ArrayLike, psf: ArrayLike) -> NDArray[np.float32]:
    """``volume`` convolved with ``psf`` (normalised), same shape, reflected borders."""
    from scipy.signal import fftconvolve

    kernel = check_psf(psf)
    vol = np.asarray(volume, dtype=np.float32)
    pad = [(min(k // 2, n - 1),) * 2 for k, n in zip(kernel.shape, vol.shape, strict=True)]
    padded = np.pad(vol, pad, mode="reflect")
    out = fftconvolve(padded, kernel, mode="same")
    crop = tuple(slice(p, p + n) for (p, _), n in zip(pad, vol.shape, strict=True))
    return np.clip(out[crop], 0, None).astype(np.float32)


class _Scorer:
    """Mean PSNR of candidate restorations over fixed tuning pairs (truths normalised once)."""

    def __init__(
        self, pairs: Sequence[tuple[ArrayLike, ArrayLike]], convention: MetricConvention
    ) -> None:
        if not pairs:
            raise ValueError("tuning needs at least one (input, truth) pair")
        self.conv = convention
        self.inputs = [np.asarray(low, dtype=np.float32) for low, _ in pairs]
        self.truths = [
            percentile_normalize(high, convention.p_low, convention.p_high) for _, high in pairs
        ]
        for low, truth in zip(self.inputs, self.truths, strict=True):
            if low.shape != truth.shape:
                raise ValueError(f"tuning pair shapes differ: {low.shape} and {truth.shape}")

    def one(self, restored: ArrayLike, index: int) -> float:
        truth = self.truths[index]
        if self.conv.scaling == "least_squares":
            pred = fit_affine(restored, truth)
        else:
            try:
                pred = percentile_normalize(restored, self.conv.p_low, self.conv.p_high)
            except ValueError:  # a restoration with no contrast left
                return -math.inf
        rng = self.conv.data_range
        return psnr(truth, pred, data_range=float(np.ptp(truth)) if rng == "target" else float(rng))

    def mean(self, restore: Callable[[NDArray[np.float32]], ArrayLike]) -> float:
        return self.mean_of([restore(x) for x in self.inputs])

    def mean_of(self, restored: Sequence[ArrayLike]) -> float:
        """Mean PSNR of already restored tuning inputs (one per pair, in order)."""
        return float(np.mean([self.one(r, i) for i, r in enumerate(restored)]))


def tune_gaussian(
    pairs: Sequence[tuple[ArrayLike, ArrayLike]],
    *,
    convention: MetricConvention | None = None,
    sigma_z: Sequence[float] = SIGMA_Z_GRID,
    sigma_xy: Sequence[float] = SIGMA_XY_GRID,
    refine: bool = True,
) -> Tuned[GaussianBaseline]:
    """The Gaussian filter that maximises mean PSNR on ``pairs`` of (input, truth).

    Parameters
    ----------
    pairs
        Tuning ``(input, truth)`` volumes, held out from the test set.
    convention
        How PSNR is measured (default: the paper's).
    sigma_z, sigma_xy
        The grid of axial and lateral σ (voxels) searched first.
    refine
        Then refine the best grid point by Nelder–Mead (σ kept ≥ 0).

    Raises
    ------
    ValueError
        If ``pairs`` is empty or a pair's shapes differ.
    """
    t0 = time.perf_counter()
    scorer = _Scorer(pairs, convention or MetricConvention())
    trials: list[tuple[dict[str, Any], float]] = []
    cache: dict[tuple[float, float], float] = {}

    def score(sz: float, sxy: float) -> float:
        key = (round(abs(float(sz)), 3), round(abs(float(sxy)), 3))
        if key not in cache:
            cache[key] = scorer.mean(GaussianBaseline((key[0], key[1], key[1])))
            trials.append(({"sigma_z": key[0], "sigma_xy": key[1]}, cache[key]))
        return cache[key]

    best = max(((sz, sxy) for sz in sigma_z for sxy in sigma_xy), key=lambda s: score(*s))
    if refine:
        from scipy.optimize import minimize

        step = 0.25
        simplex = np.array([best, (best[0] + step, best[1]), (best[0], best[1] + step)])
        res = minimize(
            lambda s: -score(s[0], s[1]),
            np.asarray(best, dtype=np.float64),
            method="Nelder-Mead",
            options={"initial_simplex": simplex, "xatol": 0.05, "fatol": 0.01, "maxfev": 40},
        )
        if -res.fun > score(*best):
            best = (float(abs(res.x[0])), float(abs(res.x[1])))
    sz, sxy = round(abs(best[0]), 3), round(abs(best[1]), 3)
    return Tuned(
        GaussianBaseline((sz, sxy, sxy)), score(sz, sxy), tuple(trials), time.perf_counter() - t0
    )


def tune_richardson_lucy(
    pairs: Sequence[tuple[ArrayLike, ArrayLike]],
    psf: ArrayLike,
    *,
    background: float = 0.0,
    target_psf: ArrayLike | None = None,
    iterations: Sequence[int] = RL_ITERATIONS,
    convention: MetricConvention | None = None,
    device: str = "auto",
    patience: int = 2,
) -> Tuned[RichardsonLucyBaseline]:
    """The Richardson–Lucy iteration count (and re-blurring) with the best mean PSNR.

    Parameters
    ----------
    pairs
        Tuning ``(input, truth)`` volumes, held out from the test set.
    psf
        The PSF that blurred the input.
    background
        Subtracted from the input first (the camera offset for raw counts).
    target_psf
        The truth's own PSF: each count is also tried re-blurred by it.
    iterations
        Counts tried, in increasing order.
    convention
        How PSNR is measured (default: the paper's).
    device
        ``richardson_lucy``'s device.
    patience
        Stop after this many counts in a row that do not beat the best (RL's PSNR
        rises, then falls as it amplifies noise).

    Raises
    ------
    ValueError
        If ``pairs`` is empty, a pair's shapes differ, or the PSF is unusable.
    """
    t0 = time.perf_counter()
    scorer = _Scorer(pairs, convention or MetricConvention())
    kernel = check_psf(psf)
    target = check_psf(target_psf) if target_psf is not None else None
    trials: list[tuple[dict[str, Any], float]] = []
    best: tuple[float, int, bool] = (-math.inf, PAPER_ITERATIONS, False)
    worse = 0
    for n in sorted({int(i) for i in iterations}):
        plain = RichardsonLucyBaseline(kernel, n, background, None, device)
        estimates = [plain(x) for x in scorer.inputs]
        found = [(scorer.mean_of(estimates), False)]
        if target is not None:
            found.append((scorer.mean_of([reblur(e, target) for e in estimates]), True))
        improved = False
        for value, again in found:
            trials.append(({"iterations": n, "reblur": again}, value))
            if value > best[0]:
                best, improved = (value, n, again), True
        worse = 0 if improved else worse + 1
        if worse >= patience:
            break
    score, n, again = best
    baseline = RichardsonLucyBaseline(kernel, n, background, target if again else None, device)
    return Tuned(baseline, score, tuple(trials), time.perf_counter() - t0)
