"""Training pairs from a pairs dataset, for :mod:`rcanlive.training`."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from .dataset import open_dataset
from .errors import DamagedVolume, IntegrityWarning

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def read_pairs(path: str | Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(low, high)`` float32 ZYX volumes for every completed pair.

    A pair is yielded only when both its low and its high volume were completed and
    read back whole (a damaged one is left out with an :class:`IntegrityWarning`).
    """
    for _, _, low, high in read_keyed_pairs(path):
        yield low, high


def read_keyed_pairs(path: str | Path) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Like :func:`read_pairs`, with each pair's time point and position:
    ``(t, p, low, high)``, in (t, p) order."""
    ds = open_dataset(path)
    if ds.kind != "pairs":
        raise ValueError(f"{path} is a {ds.kind!r} dataset, not a pairs dataset")
    done = {(r["t"], r["p"], r["c"]) for r in ds.volumes}
    for t, p in sorted({(t, p) for t, p, c in done if c == 0 and (t, p, 1) in done}):
        try:
            low = ds.volume(t, p=p, c=0).astype(np.float32)
            high = ds.volume(t, p=p, c=1).astype(np.float32)
        except DamagedVolume as exc:  # a damaged pair is left out, never read as zeros
            warnings.warn(f"pair t={t} p={p} left out: {exc}", IntegrityWarning, stacklevel=2)
            continue
        yield t, p, low, high
