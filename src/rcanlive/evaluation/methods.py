"""Restoration methods side by side on the same held-out pairs.

A :class:`Method` is prepared once on tuning pairs (a baseline tunes its parameters
there; a network is already trained) and then restores each test input. :func:`run_methods`
scores every method's restorations of the test pairs under one
:class:`~rcanlive.analysis.metrics.MetricConvention` and times them; a method that cannot
run here (CAREamics not installed, a backend that does not work on this machine) is
kept in the table as *skipped*, with the reason. Given a :class:`ResolutionSpec`, it
also estimates the resolution (decorrelation analysis) of the restorations and truths.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..analysis.baselines import (
    RL_ITERATIONS,
    GaussianBaseline,
    RichardsonLucyBaseline,
    tune_gaussian,
    tune_richardson_lucy,
)
from ..analysis.evaluation import Scores, Summary, evaluate, summarize
from ..analysis.metrics import MetricConvention
from ..analysis.resolution import measure_resolution

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from numpy.typing import NDArray

    from .pairsets import EvalPair


class MethodSkipped(RuntimeError):
    """A method that cannot run here; the message says why (and how to enable it)."""


class Method(Protocol):
    """A restoration method: prepared on tuning pairs, then applied to test inputs."""

    name: str

    def prepare(self, tuning: Sequence[EvalPair]) -> None:
        """Tune (or load) on ``tuning``; raise :class:`MethodSkipped` if it cannot run."""
        ...

    def restore(self, volume: NDArray[np.float32]) -> NDArray[np.float32]:
        """The restored ``(Z, Y, X)`` volume (any intensity scale)."""
        ...

    def details(self) -> dict[str, Any]:
        """Parameters and provenance for the table and the JSON."""
        ...

    def close(self) -> None:
        """Release what :meth:`prepare` opened."""
        ...


class RawInput:
    """The input as it is: the floor every method must beat."""

    name = "raw input"

    def prepare(self, tuning: Sequence[EvalPair]) -> None:
        """Nothing to tune."""

    def restore(self, volume: NDArray[np.float32]) -> NDArray[np.float32]:
        """``volume`` unchanged."""
        return np.asarray(volume, dtype=np.float32)

    def details(self) -> dict[str, Any]:
        """No parameters."""
        return {}

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class GaussianMethod:
    """The best Gaussian filter, σ per axis tuned on the tuning pairs (mean PSNR)."""

    convention: MetricConvention = field(default_factory=MetricConvention)
    name: str = "tuned Gaussian"
    baseline: GaussianBaseline | None = None
    tuning_psnr: float = math.nan

    def prepare(self, tuning: Sequence[EvalPair]) -> None:
        """Grid search + Nelder–Mead over (σz, σxy)."""
        found = tune_gaussian([(p.low, p.high) for p in tuning], convention=self.convention)
        self.baseline, self.tuning_psnr = found.baseline, found.score

    def restore(self, volume: NDArray[np.float32]) -> NDArray[np.float32]:
        """The filtered volume."""
        if self.baseline is None:
            raise RuntimeError("prepare() the Gaussian method on tuning pairs first")
        return self.baseline(volume)

    def details(self) -> dict[str, Any]:
        """σ (voxels) and the tuning PSNR."""
        if self.baseline is None:
            return {}
        z, y, x = self.baseline.sigma_zyx
        return {"sigma_zyx": [z, y, x], "tuning_psnr": self.tuning_psnr}

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class RichardsonLucyMethod:
    """Richardson–Lucy with the known PSF, iterations (and re-blurring) tuned.

    Attributes
    ----------
    psf
        The PSF that blurred the inputs.
    background
        Camera offset subtracted from the inputs first.
    target_psf
        The truth's own PSF, tried for re-blurring the estimate (None: never).
    iterations
        Counts tried.
    """

    psf: NDArray[np.float32] = field(repr=False)
    background: float = 0.0
    target_psf: NDArray[np.float32] | None = field(default=None, repr=False)
    iterations: tuple[int, ...] = RL_ITERATIONS
    convention: MetricConvention = field(default_factory=MetricConvention)
    device: str = "auto"
    name: str = "tuned Richardson–Lucy"
    baseline: RichardsonLucyBaseline | None = None
    tuning_psnr: float = math.nan

    def prepare(self, tuning: Sequence[EvalPair]) -> None:
        """Try each iteration count on the tuning pairs, keep the best."""
        found = tune_richardson_lucy(
            [(p.low, p.high) for p in tuning],
            self.psf,
            background=self.background,
            target_psf=self.target_psf,
            iterations=self.iterations,
            convention=self.convention,
            device=self.device,
        )
        self.baseline, self.tuning_psnr = found.baseline, found.score

    def restore(self, volume: NDArray[np.float32]) -> NDArray[np.float32]:
        """The deconvolved volume."""
        if self.baseline is None:
            raise RuntimeError("prepare() the Richardson–Lucy method on tuning pairs first")
        return self.baseline(volume)

    def details(self) -> dict[str, Any]:
        """Iterations, re-blurring, PSF shape and the tuning PSNR."""
        if self.baseline is None:
            return {}
        return {
            "iterations": self.baseline.iterations,
            "reblurred": self.baseline.target_psf is not None,
            "psf_shape": list(self.psf.shape),
            "tuning_psnr": self.tuning_psnr,
        }

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class CheckpointMethod:
    """A trained RCAN checkpoint through :mod:`rcanlive.inference` (tiled prediction).

    Attributes
    ----------
    model
        Checkpoint (``.pt``) or exported artifact.
    name
        Row label.
    backend, precision, device
        As :func:`rcanlive.inference.create_backend` takes them.
    info
        Extra provenance for the table (training budget, steps...).
    """

    model: Path
    name: str = "RCAN"
    backend: str = "eager"
    precision: str = "fp32"
    device: str = "auto"
    info: dict[str, Any] = field(default_factory=dict)
    _backend: Any = field(default=None, init=False, repr=False)

    def prepare(self, tuning: Sequence[EvalPair]) -> None:
        """Open the backend (a network is not tuned on the tuning pairs)."""
        from ..inference import BackendUnavailable, create_backend

        try:
            self._backend = create_backend(self.backend, self.model, self.precision, self.device)
        except BackendUnavailable as exc:
            raise MethodSkipped(str(exc)) from None

    def restore(self, volume: NDArray[np.float32]) -> NDArray[np.float32]:
        """The network's restoration, in the input's intensity scale."""
        from ..inference import predict_volume

        if self._backend is None:
            raise RuntimeError("prepare() the checkpoint method first")
        return predict_volume(volume, self._backend)

    def details(self) -> dict[str, Any]:
        """Architecture, parameter count, backend and precision, plus :attr:`info`."""
        out: dict[str, Any] = {"model": str(self.model), **self.info}
        if self._backend is not None:
            out["backend"] = getattr(self._backend, "name", self.backend)
            out["precision"] = str(getattr(self._backend, "precision", self.precision))
        out.update(_architecture(self.model))
        return out

    def close(self) -> None:
        """Close the backend."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _architecture(model: Path) -> dict[str, Any]:
    """Architecture (RCAN groups × blocks × channels, or U-Net) and parameters of a
    checkpoint (empty for artifacts)."""
    if model.suffix != ".pt":
        return {}
    from ..model import count_parameters, load_checkpoint

    loaded = load_checkpoint(model)
    cfg = loaded.model_config
    label = (
        f"U-Net depth {cfg.unet_depth}, {cfg.unet_filters} filters"
        if cfg.architecture == "unet"
        else f"{cfg.n_groups}×{cfg.n_blocks}×{cfg.channels}"
    )
    return {
        "architecture": label,
        "parameters": count_parameters(loaded.model),
    }


def care_unavailable() -> str | None:
    """Why CARE (CAREamics) cannot run here, or ``None`` if it can."""
    try:
        import careamics  # noqa: F401
    except ImportError:
        return (
            "CAREamics is not installed (optional: pip install careamics, in an "
            "environment where its torch requirement fits)"
        )
    return None


@dataclass
class CareMethod:
    """A CARE 3D U-Net trained with CAREamics, loaded from its checkpoint.

    Skipped (with the reason) when CAREamics is not importable or no model is given.
    """

    model: Path | None = None
    name: str = "CARE (CAREamics)"
    info: dict[str, Any] = field(default_factory=dict)
    _care: Any = field(default=None, init=False, repr=False)

    def prepare(self, tuning: Sequence[EvalPair]) -> None:
        """Load the CAREamics model."""
        reason = care_unavailable()
        if reason is not None:
            raise MethodSkipped(reason)
        if self.model is None:
            raise MethodSkipped("no CARE model given (train one with CAREamics on the same pairs)")
        from careamics import CAREamist

        self._care = CAREamist(source=self.model)

    def restore(self, volume: NDArray[np.float32]) -> NDArray[np.float32]:
        """CAREamics' prediction of the volume."""
        if self._care is None:
            raise RuntimeError("prepare() the CARE method first")
        out = self._care.predict(source=np.asarray(volume, np.float32), axes="ZYX")
        first = out[0] if isinstance(out, list) else out
        return np.asarray(first, dtype=np.float32).reshape(np.shape(volume))

    def details(self) -> dict[str, Any]:
        """The model path and :attr:`info`."""
        return {"model": str(self.model), **self.info}

    def close(self) -> None:
        """Drop the model."""
        self._care = None


@dataclass(frozen=True, slots=True)
class ResolutionSpec:
    """How :func:`run_methods` estimates the resolution of truths and restorations.

    Decorrelation analysis with the 3D RCAN paper's modification
    (:func:`rcanlive.analysis.resolution.measure_resolution`): the theoretical limits
    bound the analysed frequencies, the modified criterion picks the peak. The limits
    are the optics' (widefield, emission) OTF support: laterally ``λ/2NA``, axially
    ``λ/(n − √(n² − NA²))``. The defaults are the paper's iSIM: 55.5 nm pixels,
    250 nm planes, NA 1.42 oil (n 1.515), emission 525 nm.
    """

    pixel_size_nm: float = 55.5
    z_step_nm: float = 250.0
    na: float = 1.42
    emission_nm: float = 525.0
    immersion_index: float = 1.515

    @property
    def lateral_limit_nm(self) -> float:
        """``λ/2NA``."""
        return self.emission_nm / (2.0 * self.na)

    @property
    def axial_limit_nm(self) -> float:
        """``λ/(n − √(n² − NA²))``: the axial extent of the widefield OTF."""
        n = self.immersion_index
        return self.emission_nm / (n - math.sqrt(n * n - self.na**2))

    def measure(self, volume: NDArray[np.float32]) -> dict[str, float]:
        """``{"lateral": nm, "axial": nm}`` of one ``(Z, Y, X)`` volume (NaN: no peak)."""
        try:
            found = measure_resolution(
                volume,
                self.pixel_size_nm,
                self.z_step_nm,
                axial=True,
                limit_nm=self.lateral_limit_nm,
                axial_limit_nm=self.axial_limit_nm,
            )
        except ValueError:  # no structure above the noise (e.g. a blank restoration)
            return {"lateral": math.nan, "axial": math.nan}
        return {"lateral": found["lateral_nm"]["mean"], "axial": float(found["axial_nm"])}

    def describe(self) -> str:
        """The convention in one sentence."""
        return (
            "decorrelation analysis (Descloux et al. 2019) with the 3D RCAN paper's "
            f"modified criterion and theoretical limits λ/2NA = {self.lateral_limit_nm:.0f} nm "
            f"lateral, λ/(n − √(n² − NA²)) = {self.axial_limit_nm:.0f} nm axial (NA "
            f"{self.na:g}, n {self.immersion_index:g}, λ {self.emission_nm:g} nm); voxel "
            f"{self.z_step_nm:g} × {self.pixel_size_nm:g} × {self.pixel_size_nm:g} nm; lateral: "
            "mean over the xy slices of the stack made isotropic, axial: 22.5° sectors on "
            "xz slices; mean over the test volumes"
        )

    def as_dict(self) -> dict[str, Any]:
        """For JSON: the fields, the limits and the sentence."""
        return {
            "pixel_size_nm": self.pixel_size_nm,
            "z_step_nm": self.z_step_nm,
            "na": self.na,
            "emission_nm": self.emission_nm,
            "immersion_index": self.immersion_index,
            "lateral_limit_nm": self.lateral_limit_nm,
            "axial_limit_nm": self.axial_limit_nm,
            "text": self.describe(),
        }


def mean_resolution(measured: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Mean lateral and axial resolution over volumes (NaN ones left out), with each."""
    out: dict[str, Any] = {}
    for key in ("lateral", "axial"):
        values = [m[key] for m in measured if math.isfinite(m[key])]
        out[key] = float(np.mean(values)) if values else math.nan
    out["per_volume"] = list(measured)
    return out


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One method's row: scores per test volume, their summary and timings.

    Attributes
    ----------
    name
        The method.
    details
        Its parameters and provenance.
    scores
        One :class:`~rcanlive.analysis.evaluation.Scores` per test volume.
    summary
        Mean ± s.d. (None when skipped).
    seconds_per_volume
        Mean wall-clock time to restore one test volume.
    prepare_seconds
        Time spent tuning or loading.
    skipped
        Why the method did not run, or ``None``.
    """

    name: str
    details: dict[str, Any] = field(default_factory=dict)
    scores: tuple[Scores, ...] = ()
    summary: Summary | None = None
    seconds_per_volume: float = math.nan
    prepare_seconds: float = math.nan
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For JSON."""
        return {
            "name": self.name,
            "details": self.details,
            "summary": self.summary.as_dict() if self.summary else None,
            "per_volume": [s.as_dict() for s in self.scores],
            "seconds_per_volume": self.seconds_per_volume,
            "prepare_seconds": self.prepare_seconds,
            "skipped": self.skipped,
        }


@dataclass(frozen=True, slots=True)
class MethodTable:
    """Every method on the same test pairs, under one convention.

    With a :class:`ResolutionSpec` (``resolution``), each row's details hold
    ``resolution_nm`` (see :func:`mean_resolution`) and ``truth_resolution_nm`` is the
    test truths' own.
    """

    title: str
    convention: MetricConvention
    results: tuple[MethodResult, ...]
    test_names: tuple[str, ...]
    tuning_names: tuple[str, ...]
    resolution: ResolutionSpec | None = None
    truth_resolution_nm: dict[str, Any] | None = None

    def result(self, name: str) -> MethodResult:
        """The row of method ``name``."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no method {name!r}; rows are {[r.name for r in self.results]}")

    def as_dict(self) -> dict[str, Any]:
        """For JSON: the convention (fields and sentence), the split and every row (and
        the resolution convention and the truths' resolution, when measured)."""
        out: dict[str, Any] = {
            "title": self.title,
            "convention": {**self.convention.as_dict(), "text": self.convention.describe()},
            "test": list(self.test_names),
            "tuning": list(self.tuning_names),
            "methods": [r.as_dict() for r in self.results],
        }
        if self.resolution is not None:
            out["resolution"] = self.resolution.as_dict()
            out["truth_resolution_nm"] = self.truth_resolution_nm
        return out


def run_methods(
    methods: Sequence[Method],
    test: Sequence[EvalPair],
    tuning: Sequence[EvalPair],
    *,
    convention: MetricConvention | None = None,
    title: str = "",
    progress: Callable[[str, int, int], None] | None = None,
    on_restored: Callable[[str, EvalPair, NDArray[np.float32]], None] | None = None,
    resolution: ResolutionSpec | None = None,
) -> MethodTable:
    """Prepare each method on ``tuning``, restore every ``test`` input, score it.

    Parameters
    ----------
    methods
        The methods, in table order.
    test, tuning
        Held-out pairs, and the pairs the baselines are tuned on (other positions
        or samples than the test pairs).
    convention
        How to score (default: the paper's).
    title
        Caption of the table.
    progress
        Called as ``progress(method, done, total)`` after each test volume.
    on_restored
        Called with ``(method, pair, restored)`` for each restoration (for figures).
    resolution
        If given, also estimate the resolution of every restoration and of the truths
        (not timed): ``details["resolution_nm"]`` per row, the table's
        ``truth_resolution_nm``.

    Raises
    ------
    ValueError
        If ``test`` is empty or a test pair is also a tuning pair.
    """
    conv = convention or MetricConvention()
    if not test:
        raise ValueError("no test pairs to evaluate on")
    shared = {p.name for p in test} & {p.name for p in tuning}
    if shared:
        raise ValueError(f"pairs {sorted(shared)} are both tuning and test pairs")
    results = []
    for method in methods:
        measured: list[dict[str, float]] = []
        hook = on_restored if resolution is None else _measuring(resolution, measured, on_restored)
        try:
            result = _run_one(method, test, tuning, conv, progress, hook)
        finally:
            method.close()
        if measured:
            details = {**result.details, "resolution_nm": mean_resolution(measured)}
            result = replace(result, details=details)
        results.append(result)
    truth = None
    if resolution is not None:
        truth = mean_resolution([resolution.measure(p.high) for p in test])
    return MethodTable(
        title,
        conv,
        tuple(results),
        tuple(p.name for p in test),
        tuple(p.name for p in tuning),
        resolution,
        truth,
    )


def _measuring(
    resolution: ResolutionSpec,
    measured: list[dict[str, float]],
    then: Callable[[str, EvalPair, NDArray[np.float32]], None] | None,
) -> Callable[[str, EvalPair, NDArray[np.float32]], None]:
    """An ``on_restored`` hook that appends each restoration's resolution to ``measured``
    (and calls ``then``)."""

    def hook(name: str, pair: EvalPair, restored: NDArray[np.float32]) -> None:
        measured.append(resolution.measure(restored))
        if then is not None:
            then(name, pair, restored)

    return hook


def _run_one(
    method: Method,
    test: Sequence[EvalPair],
    tuning: Sequence[EvalPair],
    conv: MetricConvention,
    progress: Callable[[str, int, int], None] | None,
    on_restored: Callable[[str, EvalPair, NDArray[np.float32]], None] | None,
) -> MethodResult:
    """Prepare, restore and score one method (skipped: a row with the reason)."""
    t0 = time.perf_counter()
    try:
        method.prepare(tuning)
    except MethodSkipped as exc:
        return MethodResult(method.name, skipped=str(exc))
    prepared = time.perf_counter() - t0
    scores, seconds = [], []
    for i, pair in enumerate(test):
        t1 = time.perf_counter()
        restored = method.restore(pair.low)
        seconds.append(time.perf_counter() - t1)
        scores.append(evaluate(restored, pair.high, conv))
        if on_restored is not None:
            on_restored(method.name, pair, restored)
        if progress is not None:
            progress(method.name, i + 1, len(test))
    return MethodResult(
        method.name,
        method.details(),
        tuple(scores),
        summarize(scores),
        float(np.mean(seconds)),
        prepared,
    )
