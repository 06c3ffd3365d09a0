"""Matched low/high volume pairs: reading, checking, splitting, and patch datasets.

Sources: two folders of raw and ground-truth TIFFs matched by file name, the OME-Zarr
pairs dataset that ``rcanlive acquire pairs`` writes, or arrays in memory. Every volume
is percentile-normalised once, by its own percentiles, before patches are drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from ..model.normalization import check_volume
from .augment import augment_pair
from .patches import ForegroundStats, PatchSampler

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

    from ..config.training import TrainingDataConfig
    from ..model.normalization import PercentileNormalizer

TIFF_SUFFIXES = (".tif", ".tiff")


class DatasetError(ValueError):
    """Training data that cannot be used; the message lists every problem found."""


@dataclass(frozen=True, slots=True)
class VolumePair:
    """One matched pair of ZYX volumes.

    Attributes
    ----------
    name
        Identifier (file stem or position in the dataset).
    low
        Input volume (low SNR, or blurred), float32.
    high
        Ground-truth volume, float32, same shape.
    group
        Field of view the pair shows (default: ``name``). Pairs of one group (time
        points or intensities of one field) are held out together by
        :func:`split_pairs`, so validation never sees a field it trained on.
    """

    name: str
    low: NDArray[np.float32]
    high: NDArray[np.float32]
    group: str = ""

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", self.name)


@dataclass(frozen=True, slots=True)
class PreparedVolume:
    """A pair after normalisation, ready for patch sampling."""

    name: str
    low: NDArray[np.float32]
    high: NDArray[np.float32]
    stats: ForegroundStats


def pairs_from_arrays(
    lows: Sequence[ArrayLike],
    highs: Sequence[ArrayLike],
    names: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
) -> list[VolumePair]:
    """Make checked :class:`VolumePair` s from in-memory volumes.

    ``groups`` names each pair's field of view (default: its name, i.e. every pair
    its own field); :func:`split_pairs` never splits a group.

    Raises
    ------
    DatasetError
        If the counts differ, or any pair has unequal shapes or an unusable volume.
    """
    if len(lows) != len(highs):
        raise DatasetError(f"{len(lows)} input volumes but {len(highs)} ground-truth volumes")
    names = list(names) if names is not None else [f"pair{i:03d}" for i in range(len(lows))]
    if len(names) != len(lows):
        raise DatasetError(f"{len(names)} names for {len(lows)} pairs")
    groups = list(groups) if groups is not None else names
    if len(groups) != len(lows):
        raise DatasetError(f"{len(groups)} groups for {len(lows)} pairs")
    pairs, problems = [], []
    for name, group, low, high in zip(names, groups, lows, highs, strict=True):
        try:
            pairs.append(_checked_pair(name, low, high, group))
        except DatasetError as exc:
            problems.append(str(exc))
    if problems:
        raise DatasetError("unusable training pairs:\n  " + "\n  ".join(problems))
    if not pairs:
        raise DatasetError("no training pairs given")
    return pairs


def read_tiff_pairs(raw_dir: str | Path, gt_dir: str | Path) -> list[VolumePair]:
    """Read pairs from two folders of ZYX TIFFs, matched by file name.

    ``raw/cell01.tif`` pairs with ``gt/cell01.tif`` (``.tif`` and ``.tiff`` match each
    other). Pairs are returned sorted by name. A pair's group (field of view) is its
    file stem without a time suffix ``_tNNN``/``_tNNNN``: ``cell01_t000`` and
    ``cell01_t001`` are one field, held out together.

    Raises
    ------
    DatasetError
        Listing every file without a partner, every pair whose shapes differ, and every
        volume that is not a usable 3D volume.
    """
    import tifffile

    raw_dir, gt_dir = Path(raw_dir), Path(gt_dir)
    for d, what in ((raw_dir, "raw_dir"), (gt_dir, "gt_dir")):
        if not d.is_dir():
            raise DatasetError(f"{what} is not a folder: {d}")
    raw, gt = _tiffs(raw_dir), _tiffs(gt_dir)
    problems = []
    if not raw:
        problems.append(f"no .tif/.tiff files in raw_dir {raw_dir}")
    if not gt:
        problems.append(f"no .tif/.tiff files in gt_dir {gt_dir}")
    only_raw, only_gt = sorted(raw.keys() - gt.keys()), sorted(gt.keys() - raw.keys())
    if only_raw:
        problems.append(
            f"in {raw_dir} but not in {gt_dir}: {', '.join(raw[n].name for n in only_raw)}"
        )
    if only_gt:
        problems.append(
            f"in {gt_dir} but not in {raw_dir}: {', '.join(gt[n].name for n in only_gt)}"
        )
    names = sorted(raw.keys() & gt.keys())
    for name in names:
        shapes = [_tiff_shape(raw[name]), _tiff_shape(gt[name])]
        if shapes[0] != shapes[1]:
            problems.append(f"{name}: raw shape {shapes[0]} but ground truth {shapes[1]}")
    if problems:
        raise DatasetError("raw/ground-truth TIFFs do not match:\n  " + "\n  ".join(problems))
    lows = [_squeezed(tifffile.imread(raw[n])) for n in names]
    highs = [_squeezed(tifffile.imread(gt[n])) for n in names]
    return pairs_from_arrays(lows, highs, names, [_TIME_SUFFIX.sub("", n) for n in names])


#: a file stem's time-point suffix, stripped to find its field of view
_TIME_SUFFIX = re.compile(r"(?<=.)_t(?:\d{3}|\d{4})$")


def read_zarr_pairs(path: str | Path) -> list[VolumePair]:
    """Read every completed pair of an OME-Zarr pairs dataset (``acquire pairs``).

    Pairs are named ``tTTTT_pPPP`` (time point, stage position) and grouped by
    position ``pPPP``: the time points of one field are held out together. A pair
    with a damaged volume is left out with an :class:`IntegrityWarning`.
    """
    from ..storage import read_keyed_pairs

    try:
        found = list(read_keyed_pairs(path))
    except ValueError as exc:  # not a pairs dataset
        raise DatasetError(str(exc)) from None
    lows = [low for _, _, low, _ in found]
    highs = [high for _, _, _, high in found]
    names = [f"t{t:04d}_p{p:03d}" for t, p, _, _ in found]
    groups = [f"p{p:03d}" for _, p, _, _ in found]
    if not lows:
        raise DatasetError(f"{path} holds no completed low/high pair")
    return pairs_from_arrays(lows, highs, names, groups)


def deconvolve_targets(
    pairs: Sequence[VolumePair],
    data: TrainingDataConfig,
    *,
    psf: ArrayLike | None = None,
    device: str = "auto",
) -> list[VolumePair]:
    """The pairs with their ground truth deconvolved, if ``data.deconvolve_target`` says so.

    Richardson–Lucy (``data.deconvolve_iterations``, paper: 15) on each ground-truth
    volume after subtracting ``data.deconvolve_background`` (default: the camera offset
    recorded in the pairs dataset, 0 for TIFF folders); the inputs are left as they are.

    Parameters
    ----------
    psf
        PSF to use when ``data.psf`` names no TIFF (the rig's, at the data's voxel size).
    device
        Where the FFTs run: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises
    ------
    DatasetError
        If no PSF is known or the PSF file is unusable.
    """
    if not data.deconvolve_target:
        return list(pairs)
    from ..analysis.deconvolution import load_psf, richardson_lucy

    if data.psf is not None:
        try:
            psf = load_psf(data.psf)
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
    if psf is None:
        raise DatasetError(
            "deconvolve_target needs a PSF: set 'psf' (a centred bead TIFF) in [data]; "
            "for a pairs dataset `rcanlive train` uses the rig's iSIM PSF"
        )
    background = data.deconvolve_background
    if background is None:
        background = _camera_offset(data.pairs) if data.pairs is not None else 0.0
    iterations = data.deconvolve_iterations
    return [
        replace(
            p, high=richardson_lucy(p.high, psf, iterations, background=background, device=device)
        )
        for p in pairs
    ]


def _camera_offset(path: Path) -> float:
    """The camera offset (counts) recorded with a pairs dataset's rig (100 if absent)."""
    from ..storage import open_dataset
    from ..storage.imaging import dataset_imaging

    return dataset_imaging(open_dataset(path).meta).offset_counts


def register_pairs(pairs: Sequence[VolumePair], data: TrainingDataConfig) -> list[VolumePair]:
    """The pairs aligned as ``data.registration`` says, cropped to where both have data.

    Each input is registered onto its ground truth (the high-SNR volume is the fixed
    image, :func:`rcanlive.analysis.registration.register_pair`); the input is then
    resampled onto the ground truth's grid, or the ground truth onto the input's
    (``data.register_apply_to``). Warping leaves borders with no data; both volumes
    are cropped to a box without them, so no patch trains on those zeros. Pairs that
    had one shape keep one shape (each is cropped to the smallest box, centred in its
    own), so patches clipped to the volume stay alike.

    Raises
    ------
    DatasetError
        Naming a pair that cannot be registered, or whose overlap after registration
        is under half the volume (the volumes probably do not show the same field).
    """
    if data.registration == "none":
        return list(pairs)
    aligned = [_registered(pair, data) for pair in pairs]
    if len({p.low.shape for p in pairs}) == 1:
        common = np.min([[s.stop - s.start for s in box] for _, _, box in aligned], axis=0)
        aligned = [(lo, hi, _shrunk(box, common)) for lo, hi, box in aligned]
    return [
        replace(p, low=np.ascontiguousarray(lo[box]), high=np.ascontiguousarray(hi[box]))
        for p, (lo, hi, box) in zip(pairs, aligned, strict=True)
    ]


def _registered(
    pair: VolumePair, data: TrainingDataConfig
) -> tuple[NDArray[np.float32], NDArray[np.float32], tuple[slice, slice, slice]]:
    """One pair registered: its (input, ground truth) and the box where both have data."""
    from ..analysis.registration import RegistrationError, register_pair, valid_box
    from ..log import logger

    try:
        reg = register_pair(pair.low, pair.high, data.registration)
    except RegistrationError as exc:
        raise DatasetError(f"pair {pair.name}: cannot register it: {exc}") from None
    low, high, valid = reg.warped, pair.high, reg.valid
    if data.register_apply_to == "target":
        low = pair.low
        high, valid = reg.transform.to_moving(pair.high)
    box = valid_box(valid)
    kept = float(np.prod([s.stop - s.start for s in box])) / valid.size
    if kept < 0.5:
        raise DatasetError(
            f"pair {pair.name}: only {kept:.0%} of the volume overlaps after {data.registration} "
            "registration; check that input and ground truth show the same field, or "
            "set register = 'none'"
        )
    logger.info(
        "registered %s (%s): RMS block shift %.2f → %.2f px, correlation %.3f → %.3f, "
        "kept %.0f%% of the volume",
        pair.name,
        data.registration,
        reg.misalignment_px,
        reg.residual_px,
        reg.correlation_before,
        reg.correlation_after,
        100 * kept,
    )
    return low, high, box


def _shrunk(box: tuple[slice, ...], size: Sequence[int]) -> tuple[slice, slice, slice]:
    """``box`` cut to ``size`` voxels per axis, centred in it."""
    starts = [s.start + (s.stop - s.start - n) // 2 for s, n in zip(box, size, strict=True)]
    return (
        slice(starts[0], starts[0] + int(size[0])),
        slice(starts[1], starts[1] + int(size[1])),
        slice(starts[2], starts[2] + int(size[2])),
    )


def split_pairs(
    pairs: Sequence[VolumePair],
    *,
    validation_fraction: float = 0.15,
    validation_count: int | None = None,
    seed: int = 0,
) -> tuple[list[VolumePair], list[VolumePair]]:
    """Hold out whole fields of view for validation; return ``(train, validation)``.

    Pairs are held out by :attr:`VolumePair.group`: every time point (or intensity)
    of a held-out field is held out with it, so no field is both trained and
    validated on.

    Parameters
    ----------
    pairs
        All pairs.
    validation_fraction
        Fraction of the groups held out, rounded to the nearest count but at least 1
        when positive (the paper: 5 of 35 ≈ 0.15).
    validation_count
        Exact number of groups held out; overrides the fraction.
    seed
        Seed of the random choice of held-out groups.

    Notes
    -----
    With a single group nothing can be held out without a leak: every pair is both
    trained and validated on (a warning says the validation figures then measure
    fitting, not generalisation).
    """
    if not pairs:
        raise DatasetError("no training pairs")
    groups = list(dict.fromkeys(p.group for p in pairs))  # in order of first appearance
    n = len(groups)
    if n == 1:
        from ..log import logger

        logger.warning(
            "all %d pair(s) show one field of view (%s): nothing can be held out, so "
            "validation uses the training pairs and measures fitting, not generalisation; "
            "add pairs of other fields to validate",
            len(pairs),
            groups[0],
        )
        return list(pairs), list(pairs)
    if validation_count is not None:
        n_val = validation_count
    else:
        n_val = max(1, round(n * validation_fraction)) if validation_fraction > 0 else 0
    if n_val >= n:
        raise DatasetError(
            f"validation takes {n_val} of {n} fields of view (pair groups) and leaves none "
            "to train on; lower validation_count/validation_fraction or add pairs of more fields"
        )
    order = np.random.default_rng(seed).permutation(n)
    held_out = {groups[int(i)] for i in order[:n_val]}
    train = [p for p in pairs if p.group not in held_out]
    return train, [p for p in pairs if p.group in held_out]


def prepare(pairs: Sequence[VolumePair], normalizer: PercentileNormalizer) -> list[PreparedVolume]:
    """Normalise each volume of each pair by its own percentiles.

    Raises
    ------
    DatasetError
        Naming the pair whose volume cannot be normalised (e.g. constant).
    """
    out = []
    for pair in pairs:
        try:
            low, _, _ = normalizer(pair.low)
            high, _, _ = normalizer(pair.high)
        except ValueError as exc:
            raise DatasetError(f"pair {pair.name}: {exc}") from None
        out.append(PreparedVolume(pair.name, low, high, ForegroundStats.of(high)))
    return out


class PatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``length`` random augmented patch pairs per epoch, each fixed by its index.

    Item ``i`` of epoch ``e`` is drawn with a generator seeded by ``(seed, e, i)``, so
    the stream is reproducible, resuming at an epoch gives the same patches, and
    :class:`torch.utils.data.DistributedSampler` can shard indices across processes.

    Parameters
    ----------
    volumes
        Normalised pairs to draw from (chosen uniformly).
    sampler
        Patch sampler (shape, background rule).
    length
        Items per epoch.
    seed
        Base seed.
    augment
        Apply random rotations/flips.
    """

    def __init__(
        self,
        volumes: Sequence[PreparedVolume],
        sampler: PatchSampler,
        length: int,
        *,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        if not volumes:
            raise DatasetError("no volumes to draw patches from")
        shapes = {sampler.shape_for(v.high.shape) for v in volumes}
        if len(shapes) > 1:
            raise DatasetError(
                f"volumes smaller than the patch give patches of different shapes {shapes}; "
                "set patch_shape no larger than the smallest volume"
            )
        self.volumes = list(volumes)
        self.sampler = sampler
        self.length = int(length)
        self.seed = int(seed)
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose patches are served."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        vol = self.volumes[int(rng.integers(len(self.volumes)))]
        low, high = self.sampler.sample(vol.low, vol.high, rng, vol.stats)
        if self.augment:
            low, high = augment_pair(low, high, rng)
        return (
            torch.from_numpy(np.ascontiguousarray(low))[None],
            torch.from_numpy(np.ascontiguousarray(high))[None],
        )


def _tiffs(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES
    }


def _tiff_shape(path: Path) -> tuple[int, ...]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        shape = tuple(tif.series[0].shape)
    return tuple(s for s in shape if s != 1) if len(shape) > 3 else shape


def _squeezed(a: np.ndarray) -> np.ndarray:
    return np.squeeze(a) if a.ndim > 3 else a


def _checked_pair(name: str, low: ArrayLike, high: ArrayLike, group: str) -> VolumePair:
    try:
        lo = check_volume(low)
        hi = check_volume(high)
    except ValueError as exc:
        raise DatasetError(f"{name}: {exc}") from None
    if lo.shape != hi.shape:
        raise DatasetError(f"{name}: input shape {lo.shape} but ground truth {hi.shape}")
    return VolumePair(
        name, lo.astype(np.float32, copy=False), hi.astype(np.float32, copy=False), group
    )
