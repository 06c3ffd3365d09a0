"""Geometric augmentation of training patches, identical for input and target.

Rotations by 90° and flips in the XY plane (the 8 symmetries of a square) and a flip
along Z. No transform mixes Z with Y/X, because the PSF is longer axially than
laterally. Non-square patches are only rotated by 0° or 180° so that every patch of
a batch keeps the same shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray


def augment_pair(
    low: NDArray[np.float32], high: NDArray[np.float32], rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Apply one random XY rotation/flip and Z flip to both ZYX patches.

    Parameters
    ----------
    low, high
        Input and target patches of equal shape ``(Z, Y, X)``.
    rng
        Source of randomness.

    Returns
    -------
    tuple of ndarray
        Contiguous transformed copies ``(low, high)``.
    """
    if low.shape != high.shape:
        raise ValueError(f"patch shapes differ: {low.shape} and {high.shape}")
    square = low.shape[1] == low.shape[2]
    k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    flip_x = bool(rng.integers(2))
    flip_z = bool(rng.integers(2))
    return _apply(low, k, flip_x, flip_z), _apply(high, k, flip_x, flip_z)


def _apply(a: NDArray[np.float32], k: int, flip_x: bool, flip_z: bool) -> NDArray[np.float32]:
    out = np.rot90(a, k, axes=(1, 2))
    if flip_x:
        out = out[:, :, ::-1]
    if flip_z:
        out = out[::-1]
    return np.ascontiguousarray(out)
