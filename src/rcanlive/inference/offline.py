"""Restore a finished dataset's volumes (or tiles), here or spread over Dask workers.

Used by ``rcanlive restore DATASET`` and after a tiling scan for the tiles the live
queue dropped. Each volume is read from the dataset, restored and written back next to
the raw one with its record, exactly as live restoration does; with a scheduler
(``local`` or a cluster's address) every Dask worker opens one backend from the
:class:`~rcanlive.inference.recipe.BackendRecipe` and reads from and writes to the
shared dataset, so a 100×100-tile gel needs no home-made cluster.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from .backends import Backend
    from .events import VolumeKey
    from .recipe import BackendRecipe


@dataclass(frozen=True, slots=True)
class OfflineResult:
    """What an offline restoration did."""

    restored: int
    backend: str
    precision: str
    where: str  # "restored" or "restored_tiles"
    scheduler: str


def volumes_to_restore(path: Path, only_missing: bool) -> list[VolumeKey]:
    """Keys of the dataset's complete raw volumes (only the unrestored ones if asked)."""
    from ..storage import missing_restorations, open_dataset
    from ..storage.layout import VolumeKey

    ds = open_dataset(path)
    if ds.kind not in ("live", "tile"):
        raise ValueError(
            f"{path} is a {ds.kind!r} dataset; only live and tiling datasets are restored"
        )
    if only_missing:
        return [VolumeKey(*k) for k in missing_restorations(path)]
    return [VolumeKey(r["t"], r["p"], r["c"]) for r in ds.volumes]


def restore_dataset(
    path: Path,
    recipe: BackendRecipe,
    keys: Sequence[VolumeKey],
    *,
    overlap: tuple[int, int, int] | None = None,
    scheduler: str | None = None,
    on_done: Callable[[], None] | None = None,
) -> OfflineResult:
    """Restore ``keys`` of the dataset at ``path`` in place.

    Parameters
    ----------
    recipe
        The backend to open (once here, or once per Dask worker).
    scheduler
        ``None`` (in this process), or ``local``/an address (Dask workers, each with
        one backend); see :func:`rcanlive.scheduling.use_scheduler`.
    on_done
        Called after each volume.
    """
    from ..storage.lock import lock_dataset

    with lock_dataset(path, "rcanlive restore"):  # no run or other restore writes meanwhile
        return _restore_locked(path, recipe, keys, overlap, scheduler, on_done)


def _restore_locked(
    path: Path,
    recipe: BackendRecipe,
    keys: Sequence[VolumeKey],
    overlap: tuple[int, int, int] | None,
    scheduler: str | None,
    on_done: Callable[[], None] | None,
) -> OfflineResult:
    from ..storage import RestoredWriter, open_dataset
    from ..storage.layout import restored_image

    where = restored_image(open_dataset(path).kind)
    RestoredWriter(path).close()  # create the restored image(s) once, before any worker
    if scheduler is None:
        backend = _backend(recipe)
        try:
            for key in keys:
                restore_one(path, key, recipe, overlap)
                if on_done is not None:
                    on_done()
        finally:
            _forget(recipe)
            _STORES.close()
        return OfflineResult(len(keys), backend.name, str(backend.precision), where, "this process")

    import dask

    from ..scheduling import compute, use_scheduler

    with use_scheduler(scheduler) as described:
        tasks = [dask.delayed(restore_one, pure=False)(path, key, recipe, overlap) for key in keys]
        records = compute(tasks, on_done)
    _STORES.close()
    first = records[0] if records else {}
    return OfflineResult(
        len(records), first.get("backend", "?"), first.get("precision", "?"), where, described
    )


_BACKENDS: dict[BackendRecipe, Backend] = {}
_LOCK = threading.Lock()


def _backend(recipe: BackendRecipe) -> Backend:
    """This process's backend for ``recipe`` (a Dask worker keeps it across tasks)."""
    with _LOCK:
        if recipe not in _BACKENDS:
            _BACKENDS[recipe] = recipe()
        return _BACKENDS[recipe]


def _forget(recipe: BackendRecipe) -> None:
    with _LOCK:
        backend = _BACKENDS.pop(recipe, None)
    if backend is not None:
        backend.close()


class StoreCache:
    """Open datasets and restored writers, one per dataset path, kept across volumes
    (re-opening a dataset re-reads its log: quadratic over a 10,000-tile gel)."""

    def __init__(self) -> None:
        self._open: dict[Path, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> tuple[Any, Any]:
        """``(Dataset, RestoredWriter)`` for ``path``."""
        from ..storage import RestoredWriter, open_dataset

        with self._lock:
            if path not in self._open:
                self._open[path] = (open_dataset(path), RestoredWriter(path))
            return self._open[path]

    def read(self, path: Path, key: VolumeKey) -> Any:
        """The raw volume ``key``, verified (``DamagedVolume`` if it is not whole)."""
        t, p, c = key
        return self.get(path)[0].volume(t, p=p, c=c)

    def close(self) -> None:
        with self._lock:
            for _, writer in self._open.values():
                writer.close()
            self._open.clear()


_STORES = StoreCache()


def restore_stored(
    path: Path,
    key: VolumeKey,
    backend: Backend,
    *,
    stores: StoreCache,
    tile_shape: tuple[int, int, int] | None = None,
    overlap: tuple[int, int, int] | None = None,
    submitted: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Read the raw volume ``key``, restore it, store it and its record; returns the record.

    ``submitted`` (``time.monotonic()`` when the volume was handed over) adds its
    latency to the record.

    The one place where a stored volume is restored, live (worker processes) and
    offline (here, Dask workers).
    """
    from .tiling import predict_volume

    t0 = time.perf_counter()
    raw = stores.read(path, key)
    _, writer = stores.get(path)
    tile = None if backend.tile_shape is not None else tile_shape
    restored = predict_volume(raw, backend, tile_shape=tile, overlap=overlap)
    record = {
        "compute_s": round(time.perf_counter() - t0, 4),
        "backend": backend.name,
        "precision": str(backend.precision),
        "raw_mean": float(raw.mean()),
        **extra,
    }
    if submitted is not None:
        record["latency_s"] = round(time.monotonic() - submitted, 4)
    writer.write(key, restored, **record)
    return record


def restore_one(
    path: Path, key: VolumeKey, recipe: BackendRecipe, overlap: tuple[int, int, int] | None
) -> dict[str, Any]:
    """Dask task: restore one stored volume with this process's backend for ``recipe``."""
    return restore_stored(
        path,
        key,
        _backend(recipe),
        stores=_STORES,
        tile_shape=recipe.tile_shape,
        overlap=overlap,
        offline=True,
    )


def restore_missing(
    path: Path, recipe: BackendRecipe, on_done: Callable[[], None] | None = None
) -> OfflineResult | None:
    """Restore the volumes (tiles) of ``path`` that were not restored live; None if none."""
    keys = volumes_to_restore(path, only_missing=True)
    if not keys:
        return None
    return restore_dataset(path, recipe, keys, on_done=on_done)


def restore_skipped_tiles(
    path: Path, model: Path, backend: str, precision: str
) -> OfflineResult | None:
    """Restore the tiles a tiling run's live queue dropped, so the restored mosaic is whole.

    Uses the model, backend and precision of the live restoration, with the live tile
    shape (whole tile when it fits); None if every tile was restored.
    """
    from ..storage import open_dataset
    from .recipe import BackendRecipe, live_tile_shape

    g = open_dataset(path).meta["geometry"]
    tile = live_tile_shape((g["planes"], g["height"], g["width"]))
    return restore_missing(path, BackendRecipe(model, backend, precision, tile_shape=tile))
