"""Every method on one pair set: raw, tuned Gaussian, tuned Richardson–Lucy, RCAN, CARE.

:func:`compare_methods` reads a pair set, holds out whole positions for tuning the
baselines, and scores every method on the remaining positions. Richardson–Lucy uses
the simulator's iSIM PSF at the data's voxel size (the rig's PSF; the truth is the
sample seen through the same PSF, so re-blurring the estimate is tried too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..analysis.metrics import MetricConvention
from .methods import (
    CareMethod,
    CheckpointMethod,
    GaussianMethod,
    Method,
    MethodTable,
    RawInput,
    RichardsonLucyMethod,
    run_methods,
)
from .pairsets import PairSet, read_pair_set, split_by_group
from .simulated import simulator_psf

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


def default_methods(
    pair_set: PairSet,
    models: Sequence[tuple[str, Path]],
    *,
    backend: str = "eager",
    precision: str = "fp32",
    device: str = "auto",
    care_model: Path | None = None,
    convention: MetricConvention | None = None,
) -> list[Method]:
    """Raw, tuned Gaussian, tuned Richardson–Lucy, each ``(label, checkpoint)``, CARE.

    Richardson–Lucy is left out when the pair set does not record its voxel size (TIFF
    folders): its PSF would be a guess.
    """
    conv = convention or MetricConvention()
    methods: list[Method] = [RawInput(), GaussianMethod(conv)]
    if pair_set.voxel_um is not None:
        psf = simulator_psf(*pair_set.voxel_um)
        methods.append(
            RichardsonLucyMethod(psf, pair_set.background, psf, convention=conv, device=device)
        )
    methods += [CheckpointMethod(path, label, backend, precision, device) for label, path in models]
    methods.append(CareMethod(care_model))
    return methods


def compare_methods(
    pairs: str | Path,
    models: Sequence[tuple[str, Path]],
    *,
    tuning_groups: int = 1,
    backend: str = "eager",
    precision: str = "fp32",
    device: str = "auto",
    care_model: Path | None = None,
    convention: MetricConvention | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> MethodTable:
    """Score every method on the held-out positions of the pair set ``pairs``.

    Parameters
    ----------
    pairs
        A pairs dataset (``.ome.zarr``) or a folder with ``raw/`` and ``gt/`` TIFFs.
    models
        ``(label, checkpoint)`` of each network to evaluate.
    tuning_groups
        Positions (the first ones) held out to tune the baselines on; never tested.
    backend, precision, device
        How the networks run (:func:`rcanlive.inference.create_backend`).
    care_model
        A CAREamics model to compare with (skipped when CAREamics is absent).
    convention
        How to score (default: the paper's).
    progress
        ``progress(method, done, total)`` after each test volume.

    Raises
    ------
    FileNotFoundError, ValueError
        If the pair set cannot be read or split by position.
    """
    conv = convention or MetricConvention()
    pair_set = read_pair_set(pairs)
    tuning, test = split_by_group(pair_set.pairs, tuning_groups)
    methods = default_methods(
        pair_set,
        models,
        backend=backend,
        precision=precision,
        device=device,
        care_model=care_model,
        convention=conv,
    )
    title = f"{pair_set.source}: {len(test)} test pair(s), tuned on {len(tuning)}"
    return run_methods(methods, test, tuning, convention=conv, title=title, progress=progress)
