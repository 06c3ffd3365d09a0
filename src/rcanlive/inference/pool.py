"""The acquisition side of live restoration: a pool of worker processes fed by keys.

:meth:`RestorationPool.submit` never waits on a worker. It hands the key of a stored
volume to an idle worker through a pipe (a few hundred bytes into an empty pipe),
or queues the key; when the queue is full the skip policy decides which volume gives
way. A dispatcher thread waits on the workers' pipes and process handles: it turns
their answers into :class:`~rcanlive.inference.events.RestorationEvent`\\ s, sends
the next key to a worker that became idle, and notices a worker that died (abort,
segfault, out-of-memory kill): the volume it held is reported as failed with the cause,
and a fresh worker is started while the restart budget lasts.

Nothing here imports torch; the network only ever runs in the workers.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Literal

from ..log import logger
from .events import (
    Done,
    Failed,
    Ready,
    RestorationEvent,
    RestorationStatus,
    Task,
    VolumeKey,
    VolumeRef,
)
from .worker import WorkerSpec, serve

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from pathlib import Path

SkipPolicy = Literal["latest", "fifo"]


class WorkerDied(RuntimeError):
    """No restoration worker could be started (the message holds the worker's error)."""


class _State(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(eq=False)
class _Slot:
    """One worker: its process, pipe, state and the task it holds."""

    index: int
    spec: WorkerSpec
    process: BaseProcess | None = None
    conn: Connection | None = None
    state: _State = _State.DEAD
    task: Task | None = None
    ready: Ready | None = None
    starts: int = 0
    error: str | None = None

    @property
    def label(self) -> str:
        pid = self.process.pid if self.process is not None else None
        return f"{self.spec.name} pid {pid}"


@dataclass
class PoolSummary:
    """What the pool did (read it after :meth:`RestorationPool.close`)."""

    submitted: int = 0
    restored: list[VolumeKey] = field(default_factory=list)
    skipped: list[tuple[VolumeKey, str]] = field(default_factory=list)
    failed: list[tuple[VolumeKey, str]] = field(default_factory=list)
    restarts: int = 0
    max_queue_depth: int = 0
    error: str | None = None  # the last worker error, if any
    workers: list[Ready] = field(default_factory=list)

    @property
    def not_restored(self) -> list[tuple[VolumeKey, str]]:
        """Skipped and failed volumes with their reasons, in key order."""
        return sorted(self.skipped + self.failed)


class RestorationPool:
    """Worker processes restoring stored volumes, fed without ever blocking.

    Parameters
    ----------
    specs
        One :class:`~rcanlive.inference.worker.WorkerSpec` per worker (per device).
    policy
        ``"latest"``: a full queue drops its *oldest* volume, so restoration keeps up
        with the newest data; ``"fifo"``: the *new* volume is dropped, so restored
        volumes stay contiguous from the start.
    max_queue
        Volumes allowed to wait for a worker (≥ 1).
    restarts
        How many times each worker is started again after it dies.
    listeners
        Called with every :class:`RestorationEvent`, in order, on the pool's own
        notifier thread (so a slow listener delays neither :meth:`submit` nor the
        workers); their exceptions are logged, never raised.
    """

    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        *,
        policy: SkipPolicy = "latest",
        max_queue: int = 1,
        restarts: int = 2,
        listeners: Sequence[Callable[[RestorationEvent], None]] = (),
    ) -> None:
        if not specs:
            raise ValueError("a restoration pool needs at least one worker")
        if policy not in ("latest", "fifo"):
            raise ValueError(f"policy must be 'latest' or 'fifo', got {policy!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be ≥ 1, got {max_queue}")
        self.policy = policy
        self.max_queue = max_queue
        self.restarts = restarts
        self.listeners = list(listeners)
        self.summary = PoolSummary()
        self._slots = [_Slot(i, spec) for i, spec in enumerate(specs)]
        self._queue: deque[Task] = deque()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ctx = mp.get_context("spawn")
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._closing = False
        self._stopped: str | None = None  # why no worker is left, once none is
        self._dispatcher: threading.Thread | None = None
        self._events: queue.SimpleQueue[RestorationEvent | None] = queue.SimpleQueue()
        self._notifier = threading.Thread(
            target=self._notify_loop, name="rcanlive-restoration-events", daemon=True
        )

    # -- life cycle --------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> list[Ready]:
        """Start every worker and wait until each has opened its backend.

        Raises
        ------
        WorkerDied
            If a worker failed to open its backend (its error is in the message), or
            did not answer within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        # the first alone: what it measures for ``auto`` is cached for the others
        first, *others = self._slots
        self._spawn(first)
        self._await_ready(first, deadline)
        for slot in others:
            self._spawn(slot)
        for slot in others:
            self._await_ready(slot, deadline)
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="rcanlive-restoration-pool", daemon=True
        )
        self._dispatcher.start()
        self._notifier.start()
        return list(self.summary.workers)

    def _spawn(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main, args=(slot.spec, child), name=f"rcanlive-{slot.spec.name}"
        )
        process.daemon = True  # never outlive the acquisition process
        process.start()
        child.close()
        with self._lock:
            slot.process, slot.conn, slot.state, slot.task = process, parent, _State.STARTING, None
            slot.starts += 1

    def _await_ready(self, slot: _Slot, deadline: float | None) -> None:
        assert slot.conn is not None and slot.process is not None
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not wait([slot.conn, slot.process.sentinel], left):
            self._kill(slot)
            raise WorkerDied(f"restoration worker {slot.spec.name} did not start in {left} s")
        try:
            message = slot.conn.recv()
        except EOFError:
            slot.process.join(5)
            self._kill(slot)
            raise WorkerDied(
                f"restoration worker {slot.spec.name} died while starting "
                f"({exit_cause(slot.process.exitcode)})"
            ) from None
        if isinstance(message, Failed):
            self._kill(slot)
            raise WorkerDied(f"restoration worker {slot.spec.name}: {message.error}")
        self._on_ready(slot, message)

    def _on_ready(self, slot: _Slot, ready: Ready) -> None:
        slot.ready, slot.state, slot.error = ready, _State.IDLE, None
        self.summary.workers.append(ready)
        logger.info(
            "restoration worker %s ready: %s %s on %s",
            slot.label,
            ready.backend,
            ready.precision,
            ready.device,
        )

    def close(self, timeout: float | None = None) -> PoolSummary:
        """Let the workers finish the queued volumes, stop them, return the summary.

        After ``timeout`` seconds the volumes still queued or in flight are reported
        as skipped and the workers are terminated.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._closing = True
            while self._queue or any(s.state is _State.BUSY for s in self._slots):
                if self._stopped is not None:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            reason = f"restoration did not finish within {timeout} s after the run"
            while self._queue:
                self._emit_skip(self._queue.popleft(), reason)
            for slot in self._slots:
                if slot.task is not None:
                    self._finish_task(slot, RestorationStatus.SKIPPED, reason)
                    self._kill(slot)
                elif slot.state is _State.IDLE and slot.conn is not None:
                    try:
                        slot.conn.send(None)
                    except OSError:
                        pass
        self._wake()
        if self._dispatcher is not None:
            self._dispatcher.join(30)
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(10)
                self._kill(slot)
        self._wake_r.close()
        self._wake_w.close()
        self._events.put(None)
        if self._notifier.is_alive():
            self._notifier.join(30)
        return self.summary

    # -- producer side (acquisition relay thread) ----------------------------------------
    def submit(self, dataset: Path, volume: VolumeRef) -> None:
        """Hand over a stored volume; returns at once whatever the workers are doing."""
        task = Task(dataset, volume, time.monotonic())
        with self._lock:
            self.summary.submitted += 1
            if self._stopped is not None:
                self._emit_skip(task, self._stopped)
            elif self._closing:
                self._emit_skip(task, "the restoration pool was closed")
            elif not self._send_to_idle(task):
                if len(self._queue) < self.max_queue:
                    self._queue.append(task)
                elif self.policy == "latest":
                    self._queue.append(task)
                    self._emit_skip(self._queue.popleft(), "restoration fell behind (latest)")
                else:
                    self._emit_skip(task, "restoration fell behind (fifo)")
            self.summary.max_queue_depth = max(self.summary.max_queue_depth, len(self._queue))

    @property
    def queue_depth(self) -> int:
        """Volumes waiting for a worker (not counting those being restored)."""
        return len(self._queue)

    def _send_to_idle(self, task: Task) -> bool:
        for slot in self._slots:
            if slot.state is _State.IDLE and slot.conn is not None:
                try:
                    slot.conn.send(task)  # tiny, into a pipe the idle worker is reading
                except OSError:  # it just died; the dispatcher will see its exit
                    slot.state = _State.DEAD
                    continue
                slot.task, slot.state = task, _State.BUSY
                return True
        return False

    def _feed(self) -> None:
        while self._queue and self._send_to_idle(self._queue[0]):
            self._queue.popleft()
        self._changed.notify_all()

    # -- dispatcher thread -------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(None)
        except OSError:
            pass

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                watched: dict[Any, tuple[str, _Slot]] = {}
                for slot in self._slots:
                    if slot.process is not None and slot.state is not _State.DEAD:
                        watched[slot.process.sentinel] = ("exit", slot)
                        if slot.conn is not None:
                            watched[slot.conn] = ("message", slot)
                if self._closing and not watched:
                    return
            for obj in wait([*watched, self._wake_r]):
                if obj is self._wake_r:
                    try:
                        self._wake_r.recv()
                    except (EOFError, OSError):
                        return
                    continue
                what, slot = watched[obj]
                respawn = False
                with self._lock:
                    if what == "message":
                        self._on_message(slot)
                    elif slot.state is not _State.DEAD and not (
                        slot.conn is not None and slot.conn.poll()  # its last words first
                    ):
                        respawn = self._on_exit(slot)
                    self._feed()
                if respawn:  # outside the lock: submit() must not wait for a process start
                    self._spawn(slot)

    def _on_message(self, slot: _Slot) -> None:
        assert slot.conn is not None
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):
            slot.conn = None  # the process is gone; its sentinel tells how
            return
        if isinstance(message, Ready):
            self._on_ready(slot, message)
        elif isinstance(message, Done):
            self._finish_task(slot, RestorationStatus.RESTORED, None, message)
            slot.state = _State.IDLE
        elif isinstance(message, Failed) and not message.fatal:
            # the volume, not the worker, is at fault (its raw data is damaged)
            logger.error("volume not restored: %s", message.error)
            if slot.task is not None:
                self._finish_task(slot, RestorationStatus.FAILED, message.error)
            slot.state = _State.IDLE
        elif isinstance(message, Failed):
            slot.error = message.error
            self.summary.error = message.error
            logger.error("restoration worker %s failed: %s", slot.label, message.error)
            if slot.task is not None:
                self._finish_task(slot, RestorationStatus.FAILED, message.error)

    def _on_exit(self, slot: _Slot) -> bool:
        """Account for a worker that ended; True if it is to be started again."""
        assert slot.process is not None
        slot.process.join(1)
        if self._closing and slot.task is None and slot.process.exitcode == 0:
            slot.state, slot.conn = _State.DEAD, None  # asked to stop, and did
            return False
        cause = slot.error or f"the restoration worker died ({exit_cause(slot.process.exitcode)})"
        if slot.error is None:
            self.summary.error = cause
            logger.error("%s: %s", slot.label, cause)
        if slot.task is not None:
            self._finish_task(slot, RestorationStatus.FAILED, cause)
        slot.state, slot.conn = _State.DEAD, None
        # while closing, a fresh worker is still worth it for volumes left in the queue
        if (not self._closing or self._queue) and slot.starts <= self.restarts:
            logger.warning("starting restoration worker %s again", slot.spec.name)
            self.summary.restarts += 1
            slot.state = _State.STARTING  # (not idle until it says it is ready)
            return True
        if all(s.state is _State.DEAD for s in self._slots):
            self._stopped = f"no restoration worker left: {cause}"
            while self._queue:
                self._emit_skip(self._queue.popleft(), self._stopped)
        return False

    def _finish_task(
        self,
        slot: _Slot,
        status: RestorationStatus,
        reason: str | None,
        done: Done | None = None,
    ) -> None:
        task, slot.task = slot.task, None
        assert task is not None
        key = task.volume.key
        if status is RestorationStatus.RESTORED:
            self.summary.restored.append(key)
        elif status is RestorationStatus.FAILED:
            self.summary.failed.append((key, reason or "failed"))
        else:
            self.summary.skipped.append((key, reason or "skipped"))
        self._notify(
            RestorationEvent(
                status,
                task.volume,
                task.dataset,
                latency_s=done.latency_s if done else None,
                compute_s=done.compute_s if done else None,
                queue_depth=len(self._queue),
                reason=reason,
                worker=slot.label,
            )
        )

    def _emit_skip(self, task: Task, reason: str) -> None:
        self.summary.skipped.append((task.volume.key, reason))
        logger.info("volume %s not restored live: %s", task.volume.key, reason)
        self._notify(
            RestorationEvent(
                RestorationStatus.SKIPPED,
                task.volume,
                task.dataset,
                queue_depth=len(self._queue),
                reason=reason,
            )
        )

    def _notify(self, event: RestorationEvent) -> None:
        self._events.put(event)

    def _notify_loop(self) -> None:
        while (event := self._events.get()) is not None:
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("restoration listener %r failed", listener)

    def _kill(self, slot: _Slot) -> None:
        process = slot.process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        slot.state = _State.DEAD


def _worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a worker process: Ctrl-C belongs to the acquisition process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(spec, conn)


def exit_cause(exitcode: int | None) -> str:
    """A process exit code in words: ``"signal SIGABRT"``, ``"exit code 1"``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
