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
    ds = open_dataset(path)
    if ds.kind != "pairs":
        raise ValueError(f"{path} is a {ds.kind!r} dataset, not a pairs dataset")
    done = {(r["t"], r["p"], r["c"]) for r in ds.volumes}
    keys = sorted({(t, p) for t, p, _ in done})
    for t, p in keys:
        if (t, p, 0) in done and (t, p, 1) in done:
            try:
                low = ds.volume(t, p=p, c=0).astype(np.float32)
                high = ds.volume(t, p=p, c=1).astype(np.float32)
            except DamagedVolume as exc:  # a damaged pair is left out, never read as zeros
                warnings.warn(f"pair t={t} p={p} left out: {exc}", IntegrityWarning, stacklevel=2)
                continue
            yield low, high
