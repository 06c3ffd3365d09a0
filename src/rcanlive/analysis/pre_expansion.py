"""Synthetic pre-expansion volumes from post-expansion ones (the paper's Methods).

The paper ("Generating synthetic pre-expansion data") trains RCAN to turn iSIM
volumes of unexpanded cells into expansion-microscopy ground truth. Registering
real pre- and post-expansion volumes well enough is impractical, so the network's
input is *synthesised* from the post-expansion volume.

Model
-----
The post-expansion image of the object ``s`` expanded ``M`` times is

    g_POST = s_M * sPSF

with ``sPSF`` the microscope's PSF. The pre-expansion image of the unexpanded object,
upsampled ``M`` times so that it lies on the same voxel grid, is

    g_PRE = s_M * ePSF,   ePSF(r) = sPSF(r / M)     (sPSF enlarged M times)

so that in Fourier space ``G_PRE = G_POST · mOTF`` with

    mOTF = FT(ePSF) / FT(sPSF),

where the amplitude of ``FT(sPSF)`` is set to 1 beyond its cut-off to avoid dividing
by (nearly) zero. :func:`modified_otf` builds it; :func:`synthesize_pre_expansion`
applies it.

Grids and units
---------------
All volumes are ZYX. The post-expansion volume and the PSF share the microscope's
voxel grid (camera pixel and z step, as acquired). The synthetic volume is returned on
the *pre-expansion* grid: the same camera pixel and z step over the unexpanded sample,
i.e. the structures are ``M`` times smaller in voxels and blurred by the same sPSF, as
an acquisition of the unexpanded sample on the same microscope would be. Voxel ``i``
of the pre-expansion grid sits at post-expansion coordinate ``M·i + o`` (``o`` centres
the grid; see :func:`pre_expansion_grid`). :func:`enlarge_to_post_grid` upsamples a
pre-expansion volume back by ``M``, which is how a network input of the same shape as
the post-expansion target is made (and how real pre-expansion or live volumes are
prepared for the trained network).

Intensities are camera counts. The clean synthetic signal keeps the post-expansion
volume's counts above its background; :class:`NoiseModel` scales it to the
pre-expansion signal level and adds a background offset, Poisson (shot) noise and
Gaussian noise, in photoelectrons through the camera gain. Its parameters are measured
on an experimental pre-expansion volume (:func:`estimate_noise_model`) and refined by
maximising SSIM against it within ±15 % of the measured values (:func:`fit_noise_model`),
as the paper did.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage, optimize
from skimage.metrics import structural_similarity

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import NDArray

#: |FT(sPSF)| relative to its zero-frequency value below which a frequency lies beyond
#: the PSF's cut-off (a modelled PSF's OTF falls to ~1e-7 there; 1e-3 also clears the
#: noise floor of a PSF averaged from a few dozen beads).
DEFAULT_OTF_CUTOFF = 1e-3
#: Fraction of the volume's voxels, darkest after smoothing, that define its background.
BACKGROUND_FRACTION = 0.25


# -- grids ----------------------------------------------------------------------------


def _expansion(expansion: float) -> float:
    m = float(expansion)
    if not np.isfinite(m) or m <= 1.0:
        raise ValueError(
            f"expansion factor must be a number > 1 (the gel's linear expansion), got {expansion}"
        )
    return m


def pre_expansion_grid(
    shape: tuple[int, ...], expansion: float
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shape of the pre-expansion grid under a post-expansion volume, and its origin.

    Parameters
    ----------
    shape
        ZYX shape of the post-expansion volume.
    expansion
        Linear expansion factor ``M`` (> 1).

    Returns
    -------
    shape, origin
        Pre-expansion voxel ``i`` lies at post-expansion voxel coordinate
        ``M·i + origin`` along each axis; the grid is centred in the volume.
    """
    m = _expansion(expansion)
    small = tuple(int(np.floor((n - 1) / m)) + 1 for n in shape)
    origin = tuple(((n - 1) - m * (k - 1)) / 2.0 for n, k in zip(shape, small, strict=True))
    return small, origin


def shrink_to_pre_grid(volume: np.ndarray, expansion: float) -> NDArray[np.float32]:
    """Sample a volume band-limited to the pre-expansion band on the pre-expansion grid.

    Linear interpolation is enough: after the mOTF filter the volume holds no
    frequency above the pre-expansion grid's Nyquist, so it is oversampled ``M`` times.
    """
    m = _expansion(expansion)
    small, origin = pre_expansion_grid(volume.shape, m)
    out = ndimage.affine_transform(
        np.asarray(volume, np.float32),
        np.full(volume.ndim, m),
        offset=origin,
        output_shape=small,
        order=1,
        mode="nearest",
    )
    return out.astype(np.float32, copy=False)


def enlarge_to_post_grid(
    volume: np.ndarray, expansion: float, shape: tuple[int, ...], *, order: int = 3
) -> NDArray[np.float32]:
    """Upsample a pre-expansion volume ``M`` times onto the post-expansion grid ``shape``.

    The inverse of :func:`shrink_to_pre_grid`'s geometry (cubic spline by default).
    ``volume.shape`` must be the pre-expansion grid of ``shape``.
    """
    m = _expansion(expansion)
    small, origin = pre_expansion_grid(shape, m)
    if tuple(volume.shape) != small:
        raise ValueError(
            f"a volume of shape {tuple(volume.shape)} is not the pre-expansion grid of "
            f"{tuple(shape)} at expansion {m} (expected {small})"
        )
    out = ndimage.affine_transform(
        np.asarray(volume, np.float32),
        np.full(volume.ndim, 1.0 / m),
        offset=[-o / m for o in origin],
        output_shape=tuple(shape),
        order=order,
        mode="nearest",
    )
    return out.astype(np.float32, copy=False)


# -- the modified OTF -----------------------------------------------------------------


def _check_psf(psf: np.ndarray) -> NDArray[np.float64]:
    p = np.asarray(psf, np.float64)
    if p.ndim != 3:
        raise ValueError(f"the PSF must be a ZYX volume, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.sum() <= 0:
        raise ValueError("the PSF must be finite with a positive sum (a centred bead image)")
    return p / p.sum()


def _otf_at(psf: NDArray[np.float64], freqs: list[NDArray[np.float64]]) -> NDArray[np.complex128]:
    """The PSF's discrete-time Fourier transform at ``freqs`` (cycles/voxel per axis),
    phase referred to the PSF's centre voxel (``n // 2``, as in ``fftconvolve``)."""
    out: NDArray[np.complex128] = psf.astype(np.complex128)
    for axis in reversed(range(psf.ndim)):  # contract x, then y, then z
        n = psf.shape[axis]
        kernel = np.exp(-2j * np.pi * np.outer(np.arange(n) - n // 2, freqs[axis]))
        out = np.tensordot(out, kernel, axes=([axis], [0]))  # the new axis goes last
    return np.ascontiguousarray(out.transpose(*reversed(range(psf.ndim))))


def _rfft_freqs(shape: tuple[int, ...]) -> list[NDArray[np.float64]]:
    freqs = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    return [f.astype(np.float64) for f in freqs]


def modified_otf(
    psf: np.ndarray,
    expansion: float,
    shape: tuple[int, ...],
    *,
    cutoff: float = DEFAULT_OTF_CUTOFF,
) -> NDArray[np.complex64]:
    """The paper's mOTF = FT(ePSF) / FT(sPSF) on the ``rfftn`` grid of ``shape``.

    Parameters
    ----------
    psf
        sPSF, ZYX, centred at voxel ``n // 2`` of each axis, sampled on the grid of the
        volumes it will filter (normalised here to sum 1).
    expansion
        Linear expansion factor ``M``; ePSF is sPSF enlarged ``M`` times.
    shape
        ZYX shape of the volume the filter is for.
    cutoff
        Where ``|FT(sPSF)|`` is below ``cutoff`` times its value at zero frequency the
        frequency counts as beyond sPSF's cut-off, and the amplitude of FT(sPSF) is set
        to 1 there (its phase is kept), so that mOTF = FT(ePSF) there.

    Returns
    -------
    numpy.ndarray
        complex64 of shape ``(*shape[:-1], shape[-1] // 2 + 1)``, to multiply
        ``numpy.fft.rfftn(volume)`` with.

    Notes
    -----
    FT(ePSF) at frequency ``k`` is FT(sPSF) at ``M·k`` (enlarging a function compresses
    its transform), evaluated exactly from the PSF's samples; it is zero where ``M·k``
    lies beyond the PSF's own Nyquist frequency, which a sampled PSF cannot describe.
    """
    m = _expansion(expansion)
    p = _check_psf(psf)
    freqs = _rfft_freqs(tuple(shape))
    # FT(ePSF) is zero beyond 1/M of the band, so only the frequencies inside are computed
    keep = [np.flatnonzero(np.abs(m * f) <= 0.5) for f in freqs]
    inside = [f[k] for f, k in zip(freqs, keep, strict=True)]
    otf_s = _otf_at(p, inside)
    otf_e = _otf_at(p, [m * f for f in inside])
    amplitude = np.abs(otf_s)
    beyond = amplitude < cutoff * amplitude.flat[0]  # flat[0]: zero frequency
    # beyond the cut-off keep FT(sPSF)'s phase with amplitude 1 (1 where it is exactly 0)
    denominator = np.where(beyond, np.exp(1j * np.angle(otf_s)), otf_s)
    motf = np.zeros([len(f) for f in freqs], np.complex64)
    motf[np.ix_(*keep)] = otf_e / denominator
    return motf


def blur_to_pre_expansion(
    post: np.ndarray,
    expansion: float,
    psf: np.ndarray,
    *,
    cutoff: float = DEFAULT_OTF_CUTOFF,
    chunk_yx: int = 256,
) -> NDArray[np.float32]:
    """``g_PRE = IFT(FT(g_POST) · mOTF)`` on the post-expansion grid.

    The volume is filtered in lateral chunks of ``chunk_yx`` pixels (bounding memory
    on tiles and stitched gels), each read with a halo of half ePSF's extent, and
    mirrored by that much where it meets the volume's faces, so that the FFT's circular
    convolution neither wraps one face onto the other nor leaves seams between chunks.
    """
    m = _expansion(expansion)
    volume = np.asarray(post, np.float32)
    if volume.ndim != 3 or np.ndim(psf) != 3:
        raise ValueError(f"volume {volume.shape} and PSF {np.shape(psf)} must both be ZYX")
    halo = [
        min(int(np.ceil(m * n / 2)), s - 1)
        for n, s in zip(np.shape(psf), volume.shape, strict=True)
    ]
    out = np.empty(volume.shape, np.float32)
    filters: dict[tuple[int, ...], NDArray[np.complex64]] = {}
    step = max(int(chunk_yx), 1)
    for y0 in range(0, volume.shape[1], step):
        for x0 in range(0, volume.shape[2], step):
            core = (slice(None), slice(y0, y0 + step), slice(x0, x0 + step))
            block, crop = _padded_block(volume, core, halo)
            if block.shape not in filters:
                filters[block.shape] = modified_otf(psf, m, block.shape, cutoff=cutoff)
            spectrum = np.fft.rfftn(block) * filters[block.shape]
            filtered = np.fft.irfftn(spectrum, s=block.shape, axes=(0, 1, 2))
            out[core] = filtered[crop]
    return out


def _padded_block(
    volume: NDArray[np.float32], core: tuple[slice, ...], halo: list[int]
) -> tuple[NDArray[np.float32], tuple[slice, ...]]:
    """``core`` with ``halo`` voxels around it: read from the volume where it has them,
    mirrored beyond its faces; and where ``core`` lies in the result."""
    read, pads, crop = [], [], []
    for sl, h, n in zip(core, halo, volume.shape, strict=True):
        start, stop, _ = sl.indices(n)
        lo, hi = max(start - h, 0), min(stop + h, n)
        read.append(slice(lo, hi))
        pads.append((h - (start - lo), h - (hi - stop)))
        crop.append(slice(h, h + stop - start))
    block = np.pad(volume[tuple(read)], pads, mode="reflect")
    return block, tuple(crop)


# -- background and noise -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoiseModel:
    """Background and noise of a pre-expansion acquisition, applied to a clean signal.

    A clean synthetic volume ``c`` (counts above background, on the post-expansion
    volume's intensity scale) becomes ``offset + (P(g·k·c) + N(0, r²)) / g`` counts,
    with ``k`` the signal scale, ``g`` the gain, ``r`` the read noise, ``P`` Poisson
    and ``N`` Gaussian noise in photoelectrons.

    Attributes
    ----------
    offset
        Background level, counts: camera offset plus diffuse background (the level of
        the empty parts of the volume).
    gain
        Photoelectrons per count (0.46 for the paper's camera); sets the Poisson noise.
    read_noise
        Gaussian noise, photoelectrons RMS (the camera's read noise, 1.3 e⁻, plus any
        noise of the background).
    signal_scale
        Pre-expansion counts above background per count of the clean synthetic signal.
    """

    offset: float = 100.0
    gain: float = 0.46
    read_noise: float = 1.3
    signal_scale: float = 1.0

    def __post_init__(self) -> None:
        if not all(np.isfinite(getattr(self, f.name)) for f in fields(self)):
            raise ValueError(f"noise model parameters must be finite: {self}")
        if self.gain <= 0 or self.read_noise < 0 or self.signal_scale <= 0:
            raise ValueError(
                f"noise model needs gain > 0, read_noise >= 0 and signal_scale > 0: {self}"
            )

    def expected(self, clean: np.ndarray) -> NDArray[np.float32]:
        """Noise-free pre-expansion counts: ``offset + signal_scale · max(clean, 0)``."""
        signal = np.clip(np.asarray(clean, np.float32), 0, None) * np.float32(self.signal_scale)
        return signal + np.float32(self.offset)

    def apply(
        self, clean: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> NDArray[np.float32]:
        """A noisy pre-expansion volume (float32 counts) from a clean synthetic one."""
        rng = np.random.default_rng(rng)
        electrons = (self.expected(clean) - np.float32(self.offset)) * np.float32(self.gain)
        noisy = rng.poisson(electrons).astype(np.float32)
        noisy += rng.standard_normal(noisy.shape, dtype=np.float32) * np.float32(self.read_noise)
        return noisy / np.float32(self.gain) + np.float32(self.offset)

    def scaled(self, factors: dict[str, float]) -> NoiseModel:
        """A copy with named parameters multiplied by ``factors``."""
        return replace(self, **{k: getattr(self, k) * v for k, v in factors.items()})


def estimate_background(volume: np.ndarray) -> float:
    """Background level of a volume, in its units: the mean of its darkest quarter.

    The darkest quarter is chosen on a smoothed copy (σ = 2 voxels), so that the choice
    does not follow the noise (which would bias the level low), and the mean is taken
    of the unsmoothed voxels there.
    """
    v = np.asarray(volume, np.float32)
    smooth = ndimage.gaussian_filter(v, 2.0)
    dark = smooth <= np.quantile(smooth, BACKGROUND_FRACTION)
    return float(v[dark].mean())


def _checkerboard_detail(volume: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """Per-plane content near the (Nyquist, Nyquist) corner of the lateral spectrum,
    scaled so that white noise of variance σ² comes out with variance σ².

    The corner lies beyond the OTF of a microscope sampled at (or finer than) Nyquist:
    |k| there is √2 times the sampling's Nyquist frequency, so the filter sees the
    noise and almost none of the structure (a Haar detail filter, also tried, let
    bright structures through and under-estimated the gain by up to 40 %).
    """
    yy, xx = np.indices(volume.shape[1:])
    sign = np.where((yy + xx) % 2 == 0, 1.0, -1.0)
    detail = ndimage.gaussian_filter(volume * sign, (0, sigma, sigma), mode="reflect")
    return detail * np.sqrt(4 * np.pi * sigma**2)  # 1 / sqrt(sum of the kernel's squares)


def _noise_curve(
    volume: NDArray[np.float64], bins: int = 12, sigma: float = 1.0
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(local mean, noise variance, voxels)`` per bin of local mean (robust MAD)."""
    detail = _checkerboard_detail(volume, sigma)
    local = ndimage.gaussian_filter(volume, (0, sigma, sigma))
    edges = np.unique(np.quantile(local, np.linspace(0, 1, bins + 1)))
    means, variances, counts = [], [], []
    for lo, hi in pairwise(edges):
        selected = (local >= lo) & (local < hi)
        d = detail[selected]
        if d.size < 50:
            continue
        mad = np.median(np.abs(d - np.median(d)))
        means.append(float(local[selected].mean()))
        variances.append(float((1.4826 * mad) ** 2))
        counts.append(float(d.size))
    return np.array(means), np.array(variances), np.array(counts)


def estimate_noise_model(
    experimental: np.ndarray,
    *,
    gain: float | None = None,
    clean: np.ndarray | None = None,
) -> NoiseModel:
    """Measure background, gain and Gaussian noise on an experimental volume.

    Parameters
    ----------
    experimental
        A pre-expansion ZYX volume in camera counts (at least 8 × 8 pixels a plane).
    gain
        The camera's photoelectrons per count, if known; otherwise measured.
    clean
        The clean synthetic volume registered to ``experimental`` (same shape); when
        given, ``signal_scale`` is the least-squares ratio of the experimental signal
        above background to it, else 1.

    Returns
    -------
    NoiseModel
        ``offset`` from :func:`estimate_background`; ``gain`` and ``read_noise`` from a
        photon-transfer fit ``variance = (mean - offset) / gain + (read_noise / gain)²``
        of the noise measured in bins of local mean.

    Raises
    ------
    ValueError
        If the volume is too small, or its noise does not grow with the signal so that
        no gain can be measured (pass the camera's gain then).
    """
    v = np.asarray(experimental, np.float64)
    if v.ndim != 3 or min(v.shape[1:]) < 8:
        raise ValueError(f"need a ZYX volume at least 8 × 8 pixels a plane, got {v.shape}")
    offset = estimate_background(v)
    means, variances, counts = _noise_curve(v)
    x, w = means - offset, np.sqrt(counts)
    if gain is None:
        design = np.stack([x, np.ones_like(x)], axis=1) * w[:, None]
        (slope, intercept), *_ = np.linalg.lstsq(design, variances * w, rcond=None)
        if not slope > 0:
            raise ValueError(
                "the noise of this volume does not grow with its signal, so the camera gain "
                "cannot be measured on it; give the gain (photoelectrons per count)"
            )
        gain = 1.0 / float(slope)
    else:
        intercept = float(np.average(variances - x / gain, weights=counts))
    read_noise = float(np.sqrt(max(float(intercept), 0.0))) * gain
    scale = 1.0
    if clean is not None:
        c, _ = _paired(clean, v)
        scale = float(np.sum(c * (v - offset)) / max(float(np.sum(c * c)), 1e-12))
    return NoiseModel(offset, float(gain), read_noise, max(scale, 1e-6))


# -- fitting the noise to an experimental volume --------------------------------------

#: every parameter of :class:`NoiseModel`, the paper's background, noise and signal level
NOISE_PARAMETERS: tuple[str, ...] = ("offset", "gain", "read_noise", "signal_scale")


def _ssim_window(shape: tuple[int, ...]) -> int:
    smallest = min(shape)
    if smallest < 3:
        raise ValueError(f"volumes of shape {shape} are too thin for SSIM (need 3 voxels a side)")
    return min(7, smallest if smallest % 2 else smallest - 1)


def noise_ssim(
    model: NoiseModel,
    clean: np.ndarray,
    experimental: np.ndarray,
    *,
    rng: np.random.Generator | int | None = 0,
) -> float:
    """SSIM between ``clean`` made noisy by ``model`` and ``experimental``.

    The noise is drawn as Gaussian with the Poisson variance from standard normal draws
    fixed by ``rng``, so that for a seed the SSIM is a smooth, repeatable function of
    the parameters (what the fit needs). The data range is the experimental volume's.
    """
    c, e = _paired(clean, experimental)
    z = np.random.default_rng(rng).standard_normal((2, *c.shape))
    return _ssim_with_draws(model, c, e, z, float(e.max() - e.min()))


def _paired(
    clean: np.ndarray, experimental: np.ndarray
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A clean volume (clipped at 0) and an experimental one of the same shape, float64."""
    c = np.clip(np.asarray(clean, np.float64), 0, None)
    e = np.asarray(experimental, np.float64)
    if c.shape != e.shape:
        raise ValueError(f"clean volume {c.shape} and experimental {e.shape} differ in shape")
    return c, e


def _ssim_with_draws(
    model: NoiseModel,
    clean: NDArray[np.float64],
    experimental: NDArray[np.float64],
    draws: NDArray[np.float64],
    data_range: float,
) -> float:
    signal = model.signal_scale * clean  # counts above background
    shot = np.sqrt(signal / model.gain) * draws[0]
    noisy = model.offset + signal + shot + (model.read_noise / model.gain) * draws[1]
    return float(
        structural_similarity(
            noisy,
            experimental,
            data_range=data_range,
            win_size=_ssim_window(clean.shape),
        )
    )


def fit_noise_model(
    synthetic_clean: np.ndarray,
    experimental: np.ndarray,
    initial: NoiseModel,
    *,
    tolerance: float = 0.15,
    parameters: tuple[str, ...] = NOISE_PARAMETERS,
    rng: np.random.Generator | int | None = 0,
    max_evaluations: int = 300,
) -> NoiseModel:
    """Refine a measured noise model by maximising SSIM against an experimental volume.

    Parameters
    ----------
    synthetic_clean
        Clean synthetic pre-expansion volume (counts above background), registered to
        ``experimental`` (same shape).
    experimental
        Experimental pre-expansion volume of the same region, counts.
    initial
        The measured parameters (:func:`estimate_noise_model`).
    tolerance
        Each fitted parameter stays within ``initial · (1 ± tolerance)`` (the paper's
        ±15 %).
    parameters
        Names of the :class:`NoiseModel` fields fitted; the others keep their values.
    rng
        Seed of the noise draws that the SSIM is computed with (:func:`noise_ssim`).
    max_evaluations
        Budget of SSIM evaluations for the bounded search (Powell's method).

    Returns
    -------
    NoiseModel
        The best model found; ``initial`` itself when no other scored higher.

    Notes
    -----
    Adding noise to the synthetic volume can never make it correlate better with the
    experimental one, so maximising SSIM favours the least noise the bounds allow;
    the bounds around measured values are what keep the noise realistic.
    """
    unknown = set(parameters) - set(NOISE_PARAMETERS)
    if unknown or not parameters:
        raise ValueError(f"fit some of {NOISE_PARAMETERS}, not {sorted(unknown) or 'none'}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance is a fraction in (0, 1), got {tolerance}")
    c, e = _paired(synthetic_clean, experimental)
    draws = np.random.default_rng(rng).standard_normal((2, *c.shape))
    data_range = float(e.max() - e.min())

    def loss(ratios: NDArray[np.float64]) -> float:
        model = initial.scaled(dict(zip(parameters, ratios.tolist(), strict=True)))
        return -_ssim_with_draws(model, c, e, draws, data_range)

    best = _bounded_minimum(loss, len(parameters), tolerance, max_evaluations)
    if best is None:
        return initial
    return initial.scaled(dict(zip(parameters, best.tolist(), strict=True)))


def _bounded_minimum(
    loss: Callable[[NDArray[np.float64]], float], n: int, tolerance: float, max_evaluations: int
) -> NDArray[np.float64] | None:
    """Powell's search for the ratios (each within ``1 ± tolerance``) that minimise
    ``loss``, starting from all ones; None when none scores lower than the start."""
    start = np.ones(n)
    result = optimize.minimize(
        loss,
        start,
        method="Powell",
        bounds=[(1 - tolerance, 1 + tolerance)] * n,
        options={"maxfev": max_evaluations, "xtol": 1e-3, "ftol": 1e-6},
    )
    best = np.clip(result.x, 1 - tolerance, 1 + tolerance)
    return None if loss(best) >= loss(start) else best


# -- the whole synthesis --------------------------------------------------------------


def synthesize_pre_expansion(
    post: np.ndarray,
    expansion: float,
    psf: np.ndarray,
    *,
    noise: NoiseModel | None = None,
    background: float | None = None,
    rng: np.random.Generator | int | None = None,
    cutoff: float = DEFAULT_OTF_CUTOFF,
) -> NDArray[np.float32]:
    """A synthetic pre-expansion volume from a post-expansion one (the paper's Methods).

    Parameters
    ----------
    post
        Post-expansion ZYX volume, camera counts (raw, not deconvolved: the model
        ``g_POST = s_M * sPSF`` is of the raw image).
    expansion
        Linear expansion factor ``M`` of the gel (3.2 for the paper's mitochondria,
        4.0 for its microtubules).
    psf
        sPSF: the microscope's PSF on the same voxel grid as ``post``, centred.
    noise
        Background, signal level and noise of the pre-expansion acquisition to imitate
        (:func:`estimate_noise_model`, :func:`fit_noise_model`); None returns the clean
        synthetic signal, counts above background on ``post``'s scale.
    background
        ``post``'s background, counts (camera offset and diffuse background), removed
        first; estimated with :func:`estimate_background` when None.
    rng
        Seed or generator of the noise.
    cutoff
        Relative |FT(sPSF)| beyond which sPSF's amplitude counts as 1
        (:func:`modified_otf`).

    Returns
    -------
    numpy.ndarray
        float32 ZYX on the pre-expansion grid (:func:`pre_expansion_grid`): the same
        voxel size as ``post``, structures ``M`` times smaller, blurred by sPSF.

    Notes
    -----
    Steps: (1) subtract the background; (2) multiply the spectrum by mOTF, which turns
    ``s_M * sPSF`` into ``s_M * ePSF``, the pre-expansion image upsampled ``M`` times
    (the paper's "upsample by M" happens here, on the post-expansion grid); (3) sample
    that on the pre-expansion grid, undoing the upsampling; (4) scale, offset and add
    Poisson + Gaussian noise with ``noise``.
    """
    volume = np.asarray(post, np.float32)
    if volume.ndim != 3:
        raise ValueError(f"post-expansion volume must be ZYX, got shape {volume.shape}")
    level = estimate_background(volume) if background is None else float(background)
    blurred = blur_to_pre_expansion(volume - np.float32(level), expansion, psf, cutoff=cutoff)
    clean = np.clip(shrink_to_pre_grid(blurred, expansion), 0, None)
    return clean if noise is None else noise.apply(clean, rng)
