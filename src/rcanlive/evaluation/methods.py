"""Restoration methods side by side on the same held-out pairs.

A :class:`Method` is prepared once on tuning pairs (a baseline tunes its parameters
there; a network is already trained) and then restores each test input. :func:`run_methods`
scores every method's restorations of the test pairs under one
:class:`~rcanlive.analysis.metrics.MetricConvention` and times them; a method that cannot
run here (CAREamics not installed, a backend that does not work on this machine) is
kept in the table as *skipped*, with the reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
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
    """Every method on the same test pairs, under one convention."""

    title: str
    convention: MetricConvention
    results: tuple[MethodResult, ...]
    test_names: tuple[str, ...]
    tuning_names: tuple[str, ...]

    def result(self, name: str) -> MethodResult:
        """The row of method ``name``."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no method {name!r}; rows are {[r.name for r in self.results]}")

    def as_dict(self) -> dict[str, Any]:
        """For JSON: the convention (fields and sentence), the split and every row."""
        return {
            "title": self.title,
            "convention": {**self.convention.as_dict(), "text": self.convention.describe()},
            "test": list(self.test_names),
            "tuning": list(self.tuning_names),
            "methods": [r.as_dict() for r in self.results],
        }


def run_methods(
    methods: Sequence[Method],
    test: Sequence[EvalPair],
    tuning: Sequence[EvalPair],
    *,
    convention: MetricConvention | None = None,
    title: str = "",
    progress: Callable[[str, int, int], None] | None = None,
    on_restored: Callable[[str, EvalPair, NDArray[np.float32]], None] | None = None,
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
        try:
            results.append(_run_one(method, test, tuning, conv, progress, on_restored))
        finally:
            method.close()
    return MethodTable(
        title,
        conv,
        tuple(results),
        tuple(p.name for p in test),
        tuple(p.name for p in tuning),
    )


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
