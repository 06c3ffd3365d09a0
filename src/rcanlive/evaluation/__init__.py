"""Restoration quality: methods side by side on held-out pairs, stored results scored.

This package loads data and models (storage, simulation, inference) around the
array-level scoring of :mod:`rcanlive.analysis.evaluation` and the classical baselines
of :mod:`rcanlive.analysis.baselines`:

* :mod:`.pairsets`: pair sets with groups (positions, samples) and held-out splits;
* :mod:`.methods`: raw, tuned Gaussian, tuned Richardson–Lucy, an RCAN checkpoint,
  CARE (CAREamics, optional), and :func:`run_methods`;
* :mod:`.compare`: every method on a stored pair set (:func:`compare_methods`);
* :mod:`.volumes`: a restored dataset or TIFF against its truth (:func:`compare_volumes`);
* :mod:`.simulated`: iSIM pairs at the paper's intensities from the simulator, input SNR;
* :mod:`.report`: the tables as text.
"""

from __future__ import annotations

from .compare import compare_methods, default_methods
from .methods import (
    CareMethod,
    CheckpointMethod,
    GaussianMethod,
    Method,
    MethodResult,
    MethodSkipped,
    MethodTable,
    RawInput,
    RichardsonLucyMethod,
    care_unavailable,
    run_methods,
)
from .pairsets import EvalPair, PairSet, read_pair_set, split_by_group
from .volumes import Comparison, compare_volumes

__all__ = [
    "CareMethod",
    "CheckpointMethod",
    "Comparison",
    "EvalPair",
    "GaussianMethod",
    "Method",
    "MethodResult",
    "MethodSkipped",
    "MethodTable",
    "PairSet",
    "RawInput",
    "RichardsonLucyMethod",
    "care_unavailable",
    "compare_methods",
    "compare_volumes",
    "default_methods",
    "read_pair_set",
    "run_methods",
    "split_by_group",
]
