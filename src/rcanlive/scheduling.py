"""Where Dask tasks run (stitching, offline restoration): threads, a local cluster or a cluster.

Stitching builds ``dask.delayed`` tasks and hands them to whatever scheduler is
active: the threaded scheduler by default, a ``distributed`` client when one is set
as default (a ``LocalCluster`` on one machine, ``Client("tcp://host:8786")`` for many).
:func:`use_scheduler` picks one from a command-line word.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import dask
from dask.callbacks import Callback

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from dask.delayed import Delayed

#: words :func:`use_scheduler` accepts besides a scheduler address
SCHEDULER_WORDS = ("threads", "sync", "local")


@contextlib.contextmanager
def use_scheduler(spec: str | None = "threads", *, workers: int | None = None) -> Iterator[str]:
    """Make ``spec`` the active Dask scheduler for the ``with`` block.

    Parameters
    ----------
    spec
        ``threads`` (Dask's threaded scheduler, in this process), ``sync`` (one
        thread; for debugging), ``local`` (a ``distributed.LocalCluster`` of worker
        processes on this machine) or the address of a running scheduler, e.g.
        ``tcp://10.0.0.5:8786``.
    workers
        Worker processes of a ``local`` cluster (default: one per core).

    Yields
    ------
    str
        A description of the scheduler, for the user.
    """
    spec = spec or "threads"
    if spec in ("threads", "sync"):
        with dask.config.set(scheduler="threads" if spec == "threads" else "synchronous"):
            yield "threaded scheduler" if spec == "threads" else "synchronous scheduler"
        return
    from distributed import Client, LocalCluster

    if spec == "local":
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield f"local cluster, {len(client.scheduler_info()['workers'])} worker(s)"
        return
    with Client(spec, timeout="20s") as client:
        yield f"cluster at {spec}, {len(client.scheduler_info()['workers'])} worker(s)"


def _distributed_client() -> Any | None:
    """The default ``distributed`` client if it is the active scheduler, else None."""
    if dask.config.get("scheduler", None) != "dask.distributed":
        return None
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


class _Counter(Callback):
    """Calls ``on_done`` once per finished task among ``keys`` (local schedulers)."""

    def __init__(self, keys: set[Any], on_done: Callable[[], None]) -> None:
        super().__init__()
        self._keys = keys
        self._on_done = on_done

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in self._keys:
            self._on_done()


def compute(tasks: Sequence[Delayed], on_done: Callable[[], None] | None = None) -> list[Any]:
    """Run ``tasks`` on the active scheduler; ``on_done()`` after each one finishes."""
    if not tasks:
        return []
    client = _distributed_client()
    if client is not None:
        from distributed import as_completed

        futures = client.compute(list(tasks))
        for _ in as_completed(futures):
            if on_done is not None:
                on_done()
        return list(client.gather(futures))
    if on_done is None:
        return list(dask.compute(*tasks))
    with _Counter({t.key for t in tasks}, on_done):
        return list(dask.compute(*tasks))
