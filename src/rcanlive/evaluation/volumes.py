"""Score stored restorations against a stored ground truth (datasets or TIFFs).

The prediction is a dataset's restored volumes (every volume ``restored.jsonl`` lists
as restored, read and verified) or a TIFF (``(Z, Y, X)``, or ``(T, Z, Y, X)``: one
volume per T). The truth is a dataset's raw volumes (a pairs dataset: its high
volumes) or a TIFF of the same layout. Volumes are matched by ``(t, p, c)`` when both
sides are live or tiling datasets, otherwise in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.evaluation import Scores, Summary, evaluate, summarize
from ..analysis.metrics import MetricConvention

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import NDArray

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True, slots=True)
class NamedVolume:
    """A volume and its name (``t0000_p000_c0``, or ``t0`` in a TIFF stack)."""

    name: str
    key: tuple[int, int, int] | None
    load: Callable[[], NDArray[Any]]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Per-volume scores of a prediction against its truth, and their summary."""

    prediction: str
    truth: str
    names: tuple[str, ...]
    scores: tuple[Scores, ...]
    summary: Summary

    @property
    def convention(self) -> MetricConvention:
        """How the scores were measured."""
        return self.summary.convention

    def as_dict(self) -> dict[str, Any]:
        """For JSON: the convention (fields and sentence), per volume and summary."""
        conv = self.convention
        return {
            "prediction": self.prediction,
            "truth": self.truth,
            "convention": {**conv.as_dict(), "text": conv.describe()},
            "volumes": [
                {"name": n, **s.as_dict()} for n, s in zip(self.names, self.scores, strict=True)
            ],
            "summary": self.summary.as_dict(),
        }


def _index(data: NDArray[Any], t: int) -> NDArray[Any]:
    return data[t]


def _is_tiff(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in TIFF_SUFFIXES


def _tiff_volumes(path: Path) -> list[NamedVolume]:
    import tifffile

    data = np.squeeze(tifffile.imread(path))
    if data.ndim == 3:
        return [NamedVolume(path.stem, None, lambda: data)]
    if data.ndim == 4:
        return [NamedVolume(f"t{t}", None, partial(_index, data, t)) for t in range(data.shape[0])]
    raise ValueError(f"{path}: expected a (Z, Y, X) or (T, Z, Y, X) TIFF, got shape {data.shape}")


def _dataset_volumes(path: Path, role: str) -> tuple[list[NamedVolume], str]:
    from ..storage import VolumeKey, open_dataset

    ds = open_dataset(path)
    if role == "prediction":
        if ds.kind == "pairs":
            raise ValueError(f"{path} is a pairs dataset: it holds no restored volumes")
        keys = sorted(ds.restored_keys())
        if not keys:
            raise ValueError(f"{path} has no restored volume; restore it first")
        image = "restored"
    elif ds.kind == "pairs":
        keys = sorted(k for k in ds.keys() if k[2] == 1)  # the high member of each pair
        image = "raw"
    else:
        keys = sorted(ds.keys())
        image = "raw"
    if not keys:
        raise ValueError(f"{path} has no complete volume")
    out = [
        NamedVolume(
            f"t{k[0]:04d}_p{k[1]:03d}_c{k[2]}",
            (k[0], k[1], k[2]),
            partial(ds.volume, VolumeKey(*k), image=image),
        )
        for k in keys
    ]
    return out, ds.kind


def read_volumes(path: str | Path, role: str) -> tuple[list[NamedVolume], str]:
    """The volumes of ``path`` as prediction or truth, and its kind (``tiff`` or a
    dataset kind); volumes are read when :attr:`NamedVolume.load` is called.

    Raises
    ------
    FileNotFoundError
        If ``path`` is neither a TIFF nor an rcanlive dataset.
    ValueError
        If it holds nothing to compare.
    """
    src = Path(path)
    if _is_tiff(src):
        return _tiff_volumes(src), "tiff"
    if (src / "zarr.json").is_file():
        return _dataset_volumes(src, role)
    raise FileNotFoundError(f"{src} is neither a TIFF file nor an rcanlive dataset (.ome.zarr)")


def _match(
    pred: list[NamedVolume], truth: list[NamedVolume], by_key: bool
) -> list[tuple[NamedVolume, NamedVolume]]:
    if by_key:
        truths = {t.key: t for t in truth}
        missing = [p.name for p in pred if p.key not in truths]
        if missing:
            raise ValueError(f"the truth has no volume for {', '.join(missing[:5])}")
        return [(p, truths[p.key]) for p in pred]
    if len(pred) != len(truth):
        raise ValueError(
            f"{len(pred)} predicted volume(s) but {len(truth)} truth volume(s): "
            "give the same number, in the same order"
        )
    return list(zip(pred, truth, strict=True))


def compare_volumes(
    prediction: str | Path,
    truth: str | Path,
    convention: MetricConvention | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Comparison:
    """Score every predicted volume against its truth.

    Parameters
    ----------
    prediction
        A restored dataset or a TIFF.
    truth
        A dataset (its raw volumes; a pairs dataset's high volumes) or a TIFF.
    convention
        How to score (default: the paper's).
    progress
        ``progress(done, total)`` after each volume.

    Raises
    ------
    FileNotFoundError
        If a path is neither a TIFF nor a dataset.
    ValueError
        If the volumes cannot be matched, or a pair's shapes differ (the message names
        the volume and both shapes).
    """
    conv = convention or MetricConvention()
    pred, pred_kind = read_volumes(prediction, "prediction")
    true, true_kind = read_volumes(truth, "truth")
    by_key = pred_kind in ("live", "tile") and true_kind in ("live", "tile")
    matched = _match(pred, true, by_key)
    scores = []
    for i, (p, t) in enumerate(matched):
        p_vol, t_vol = np.asarray(p.load()), np.asarray(t.load())
        if p_vol.shape != t_vol.shape:
            raise ValueError(
                f"shape mismatch: prediction {p.name} is {p_vol.shape} but truth {t.name} "
                f"is {t_vol.shape}; compare volumes of the same shape"
            )
        scores.append(evaluate(p_vol, t_vol, conv))
        if progress is not None:
            progress(i + 1, len(matched))
    return Comparison(
        str(prediction),
        str(truth),
        tuple(p.name for p, _ in matched),
        tuple(scores),
        summarize(scores),
    )
