"""The restoration worker process: owns one backend, restores stored volumes.

A worker is started by :class:`~rcanlive.inference.pool.RestorationPool` with the
``spawn`` method, so it shares nothing with the acquisition process: its own
interpreter and GIL, its own threads, a lower OS priority. It receives the *key* of a
volume already on disk, reads the raw volume, restores it, writes the restored volume
and its record into the dataset, and answers with a small message. A backend error is
reported and ends the process (a CUDA context that failed once is not trusted); the
pool decides whether to start another.

This module imports neither torch nor the backends at import time: ``serve`` sets
the thread count first, then imports them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .events import Done, Failed, Ready

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

    from .backends import Backend


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker process runs.

    Attributes
    ----------
    open_backend
        A picklable callable returning the backend, normally a
        :class:`~rcanlive.inference.recipe.BackendRecipe`.
    name
        Label in events and logs (``"cpu#0"``).
    threads
        Intra-op threads of the backend (torch, ONNX Runtime, OpenVINO).
    nice
        Added to the process's niceness, so that acquisition wins the CPU.
    tile_shape
        Tile ``(Z, Y, X)`` for backends that take any (static ones use theirs).
    overlap
        Tile overlap ``(Z, Y, X)``; ``None``: the default.
    """

    open_backend: Callable[[], Backend]
    name: str = "worker"
    threads: int = 1
    nice: int = 10
    tile_shape: tuple[int, int, int] | None = None
    overlap: tuple[int, int, int] | None = None


def _limit_threads(threads: int) -> None:
    """Thread pools read these when they start: set them before torch is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def serve(spec: WorkerSpec, conn: Connection) -> None:
    """Process main: open the backend, then restore one task at a time until ``None``."""
    try:
        os.nice(spec.nice)
    except OSError:  # not allowed here: run at the same priority rather than not at all
        pass
    _limit_threads(spec.threads)
    try:
        import torch

        torch.set_num_threads(spec.threads)
        backend = spec.open_backend()
    except BaseException as exc:
        conn.send(Failed(None, f"{type(exc).__name__}: {exc}"))
        return
    conn.send(
        Ready(
            pid=os.getpid(),
            backend=backend.name,
            precision=str(backend.precision),
            device=str(backend.device),
            tile_shape=backend.tile_shape,
            threads=spec.threads,
            choice=tuple(getattr(backend, "auto_choice", ())),
        )
    )
    from ..storage.errors import DamagedVolume
    from .offline import StoreCache, restore_stored

    stores = StoreCache()
    try:
        while (task := conn.recv()) is not None:
            try:
                v = task.volume
                record = restore_stored(
                    task.dataset,
                    v.key,
                    backend,
                    stores=stores,
                    tile_shape=spec.tile_shape,
                    overlap=spec.overlap,
                    submitted=task.submitted,
                    pid=os.getpid(),
                )
                latency = time.monotonic() - task.submitted
                conn.send(Done(v, latency_s=latency, compute_s=record["compute_s"]))
            except DamagedVolume as exc:  # the data's fault, not the backend's
                conn.send(Failed(task.volume, f"raw volume damaged: {exc}", fatal=False))
            except Exception as exc:
                conn.send(Failed(task.volume, f"{type(exc).__name__}: {exc}"))
                return
    except (EOFError, KeyboardInterrupt):  # the pool went away, or Ctrl-C reached us too
        return
    finally:
        stores.close()
        backend.close()
