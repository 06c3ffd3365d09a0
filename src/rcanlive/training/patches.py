"""Random training patches with ground-truth-based background rejection.

Sparse specimens leave most of a volume dark; trained on every patch indiscriminately
the network learns mostly background (paper, Methods "3D RCAN"). The rule, from the
paper's supplementary methods: a patch is **background** when the mean of its
ground truth is below ``fraction`` (default 0.2) × the mean of the whole ground-truth
volume. The sampler draws random patches until one passes; after ``max_tries`` draws it
takes the most foreground patch it saw, and if even that one is background (very
sparse foreground), a patch placed to contain a random foreground voxel (one brighter
than the volume mean). So when the ground truth has any foreground, no sampled patch
is pure background.

The rule is meant for **normalised** ground truth (background ≈ 0). On raw camera
counts the offset (≈100 counts) lifts every patch mean close to the volume mean and
the rule would accept almost everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: Foreground voxels remembered per volume for the last-resort placement.
_MAX_CANDIDATES = 65536


@dataclass(frozen=True, slots=True)
class BackgroundRule:
    """When a patch counts as background.

    Attributes
    ----------
    fraction
        Reject a patch whose ground-truth mean is below ``fraction`` × the ground-truth
        volume's mean. 0 accepts every patch.
    max_tries
        Random draws before falling back to the most foreground patch seen.
    """

    fraction: float = 0.2
    max_tries: int = 20

    def __post_init__(self) -> None:
        if self.fraction < 0 or self.max_tries < 1:
            raise ValueError(
                f"need fraction >= 0 and max_tries >= 1, got {self.fraction}, {self.max_tries}"
            )


@dataclass(frozen=True, slots=True)
class ForegroundStats:
    """What the sampler needs to know about a ground-truth volume; compute it once.

    Attributes
    ----------
    mean
        Mean of the whole ground-truth volume.
    candidates
        Flat indices of (up to 65536, evenly thinned) voxels brighter than ``mean``.
    """

    mean: float
    candidates: NDArray[np.int64]

    @classmethod
    def of(cls, high: NDArray[np.float32]) -> ForegroundStats:
        """Compute the statistics of ground-truth volume ``high``."""
        mean = float(high.mean(dtype=np.float64))
        flat = np.flatnonzero(high.reshape(-1) > mean)
        if flat.size > _MAX_CANDIDATES:
            flat = flat[:: -(-flat.size // _MAX_CANDIDATES)]
        return cls(mean, flat)


class PatchSampler:
    """Draw matched ``(input, target)`` patches from a pair of ZYX volumes.

    Parameters
    ----------
    patch_shape
        ``(z, y, x)`` patch size; each side is clipped to the volume's.
    rule
        Background rejection rule.
    """

    def __init__(
        self,
        patch_shape: tuple[int, int, int] = (16, 256, 256),
        rule: BackgroundRule | None = None,
    ) -> None:
        if len(patch_shape) != 3 or min(patch_shape) < 1:
            raise ValueError(f"patch_shape must be 3 positive sizes, got {patch_shape}")
        z, y, x = (int(s) for s in patch_shape)
        self.patch_shape = (z, y, x)
        self.rule = rule or BackgroundRule()

    def shape_for(self, volume_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """The patch shape used for a volume of ``volume_shape`` (clipped)."""
        z, y, x = (min(p, v) for p, v in zip(self.patch_shape, volume_shape, strict=True))
        return z, y, x

    def sample(
        self,
        low: NDArray[np.float32],
        high: NDArray[np.float32],
        rng: np.random.Generator,
        stats: ForegroundStats | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Return one foreground patch pair (views into ``low`` and ``high``).

        Parameters
        ----------
        low, high
            Input and ground-truth volumes of equal shape (normalised).
        rng
            Source of randomness; the same state gives the same patch.
        stats
            ``ForegroundStats.of(high)``, precomputed; computed here when omitted.
        """
        if low.shape != high.shape or high.ndim != 3:
            raise ValueError(
                f"need two 3D volumes of equal shape, got {low.shape} and {high.shape}"
            )
        stats = stats or ForegroundStats.of(high)
        shape = self.shape_for(high.shape)
        threshold = self.rule.fraction * stats.mean
        best_score, best_box = -np.inf, None
        for _ in range(self.rule.max_tries if self.rule.fraction > 0 else 1):
            box = _random_box(high.shape, shape, rng)
            score = float(high[box].mean())
            if self.rule.fraction <= 0 or score >= threshold:
                return low[box], high[box]
            if score > best_score:
                best_score, best_box = score, box
        assert best_box is not None
        if not bool((high[best_box] > stats.mean).any()) and stats.candidates.size:
            # the best random patch holds no foreground voxel at all: place one on purpose
            best_box = _box_around(
                np.unravel_index(int(rng.choice(stats.candidates)), high.shape),
                shape,
                high.shape,
                rng,
            )
        return low[best_box], high[best_box]


def _random_box(
    volume_shape: tuple[int, ...], shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[slice, ...]:
    starts = [int(rng.integers(0, n - p + 1)) for n, p in zip(volume_shape, shape, strict=True)]
    return tuple(slice(s, s + p) for s, p in zip(starts, shape, strict=True))


def _box_around(
    voxel: tuple[np.intp, ...],
    shape: tuple[int, int, int],
    volume_shape: tuple[int, ...],
    rng: np.random.Generator,
) -> tuple[slice, ...]:
    box = []
    for c, p, n in zip(voxel, shape, volume_shape, strict=True):
        # any start that keeps voxel c inside the patch and the patch inside the volume
        start = int(rng.integers(max(0, int(c) - p + 1), min(int(c), n - p) + 1))
        box.append(slice(start, start + p))
    return tuple(box)
