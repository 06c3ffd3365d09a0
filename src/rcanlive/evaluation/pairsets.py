"""Sets of (input, truth) volumes to evaluate on, and held-out splits that do not leak.

A pair carries a *group*: the position (or sample) it was imaged at. Splitting by
group keeps every time point of a field of view on one side of the split: two time
points of one field are near copies (target correlation 0.989 in the bundled pairs),
so a split by time point measures memory, not generalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

TIFF_SUFFIXES = (".tif", ".tiff")
#: The paper's camera offset (counts), for data that record none.
DEFAULT_OFFSET = 100.0


@dataclass(frozen=True, slots=True)
class EvalPair:
    """One input volume and its ground truth.

    Attributes
    ----------
    name
        Identifier (``t0000_p001`` for a dataset, the file stem for TIFFs).
    low
        Input volume (low SNR, or blurred), float32 ``(Z, Y, X)``.
    high
        Ground truth of the same shape, float32.
    group
        What a held-out split separates: the position or sample.
    """

    name: str
    low: NDArray[np.float32]
    high: NDArray[np.float32]
    group: str = ""

    def __post_init__(self) -> None:
        if self.low.shape != self.high.shape:
            raise ValueError(
                f"pair {self.name}: input shape {self.low.shape} differs from the truth's "
                f"{self.high.shape}"
            )
        if self.low.ndim != 3:
            raise ValueError(f"pair {self.name}: expected (Z, Y, X) volumes, got {self.low.shape}")


@dataclass(frozen=True, slots=True)
class PairSet:
    """Pairs and what a method needs to know about how they were taken.

    Attributes
    ----------
    pairs
        The pairs, in order.
    voxel_um
        ``(dz, dxy)`` in µm, if known (the PSF of Richardson–Lucy needs it).
    background
        Camera offset of the inputs, counts (subtracted before deconvolution).
    source
        Where the pairs came from, for reports.
    """

    pairs: tuple[EvalPair, ...]
    voxel_um: tuple[float, float] | None = None
    background: float = 0.0
    source: str = ""

    @property
    def groups(self) -> list[str]:
        """Distinct groups in order of first appearance."""
        return list(dict.fromkeys(p.group for p in self.pairs))


def read_pair_set(path: str | Path) -> PairSet:
    """Read a pairs dataset (``.ome.zarr``) or a folder with ``raw/`` and ``gt/`` TIFFs.

    A dataset's pairs are grouped by position (``p000``, ``p001``...); TIFF pairs,
    matched by file name, are each their own group (a folder does not say which were
    taken at one position).

    Raises
    ------
    FileNotFoundError
        If ``path`` is neither.
    ValueError
        If a pair's shapes differ or nothing usable is found.
    """
    src = Path(path)
    if (src / "zarr.json").is_file():
        return _dataset_pairs(src)
    if (src / "raw").is_dir() and (src / "gt").is_dir():
        return _tiff_pairs(src)
    raise FileNotFoundError(
        f"{src} is neither an rcanlive pairs dataset (.ome.zarr) nor a folder holding "
        "raw/ and gt/ TIFF folders"
    )


def _dataset_pairs(path: Path) -> PairSet:
    from ..storage import open_dataset

    ds = open_dataset(path)
    if ds.kind != "pairs":
        raise ValueError(f"{path} is a {ds.kind!r} dataset, not a pairs dataset")
    done = set(ds.keys())
    pairs = []
    for t, p in sorted({(t, p) for t, p, _ in done}):
        if (t, p, 0) in done and (t, p, 1) in done:
            low = ds.volume(t, p=p, c=0).astype(np.float32)
            high = ds.volume(t, p=p, c=1).astype(np.float32)
            pairs.append(EvalPair(f"t{t:04d}_p{p:03d}", low, high, f"p{p:03d}"))
    if not pairs:
        raise ValueError(f"{path} holds no complete pair")
    geometry = ds.meta.get("geometry") or {}
    voxel = None
    if "z_step_um" in geometry and "pixel_size_um" in geometry:
        voxel = (float(geometry["z_step_um"]), float(geometry["pixel_size_um"]))
    camera = (ds.meta.get("rig") or {}).get("camera") or {}
    offset = float(camera.get("offset_counts", DEFAULT_OFFSET))
    return PairSet(tuple(pairs), voxel, offset, str(path))


def _tiff_pairs(folder: Path) -> PairSet:
    import tifffile

    def files(sub: str) -> dict[str, Path]:
        return {
            f.stem: f for f in sorted((folder / sub).iterdir()) if f.suffix.lower() in TIFF_SUFFIXES
        }

    raws, gts = files("raw"), files("gt")
    names = sorted(set(raws) & set(gts))
    if not names:
        raise ValueError(f"no TIFF in {folder / 'raw'} has a namesake in {folder / 'gt'}")
    pairs = tuple(
        EvalPair(
            n,
            np.squeeze(tifffile.imread(raws[n])).astype(np.float32),
            np.squeeze(tifffile.imread(gts[n])).astype(np.float32),
            n,
        )
        for n in names
    )
    return PairSet(pairs, None, 0.0, str(folder))


def split_by_group(
    pairs: Sequence[EvalPair], tuning_groups: int | Sequence[str] = 1
) -> tuple[list[EvalPair], list[EvalPair]]:
    """``(tuning, test)``: whole groups on each side, never one group on both.

    Parameters
    ----------
    pairs
        The pairs to split.
    tuning_groups
        How many groups (the first ones, in order of appearance) go to tuning, or
        their names.

    Raises
    ------
    ValueError
        If either side would be empty, or a named group does not exist.
    """
    groups = list(dict.fromkeys(p.group for p in pairs))
    if isinstance(tuning_groups, int):
        if not 0 < tuning_groups < len(groups):
            raise ValueError(
                f"cannot hold out {tuning_groups} of {len(groups)} group(s) (positions or "
                "samples) for tuning and keep some for testing: take pairs from at least "
                "two positions, or give a separate tuning set"
            )
        chosen = set(groups[:tuning_groups])
    else:
        chosen = set(tuning_groups)
        unknown = chosen - set(groups)
        if unknown:
            raise ValueError(f"no pairs in group(s) {sorted(unknown)}; groups are {groups}")
        if chosen >= set(groups):
            raise ValueError("every group is used for tuning; none is left to test on")
    tuning = [p for p in pairs if p.group in chosen]
    test = [p for p in pairs if p.group not in chosen]
    return tuning, test
