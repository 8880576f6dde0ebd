"""Run a function over many items in worker processes, each call under a deadline.

A call that runs past its deadline has its worker killed and replaced; a worker that dies mid-call (killed,
out of memory, a crash in native code) is replaced as well. Either way only that item is lost, and the caller
gets a :class:`Lost` in its place. Workers are forked, so the function needs no pickling and sees the parent's
state; its results are pickled back through a pipe.

Each worker computes on one thread: torch's pool and the native BLAS and OpenMP pools (numpy's and scipy's OpenBLAS
starts a thread per core in every process). A pool is about one worker per core, so more threads only contend: two
workers minimising crystals on two cores ran 2.4 times slower with OpenBLAS's default threads than with one each
(``benchmarks/worker_threads.py``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import torch
from threadpoolctl import threadpool_limits

#: How often (s) an idle worker checks that its parent is still alive.
_PARENT_POLL = 1.0
#: Marks the end of the items.
_END = object()


@dataclass(frozen=True)
class Lost:
    """An item whose call gave no result: ``reason`` is ``timeout`` or ``worker_died``."""

    reason: str
    detail: str


def _serve(conn: Connection, function: Callable, initializer: Callable[[], None] | None, parent: int) -> None:
    """Worker loop, on one thread: receive ``(item,)``, send back ``function(item)``; stop on ``None``.

    Ctrl-C is left to the parent, which stops the workers. A worker whose parent was killed (SIGKILL gives no
    chance to stop it) notices while idle and exits rather than linger. A forked child also must not enter the
    OpenMP pool it inherited from a parent that already used it (the precaution torch's DataLoader workers take).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    threadpool_limits(limits=1)  # for the worker's whole life
    if initializer is not None:
        initializer()
    while True:
        while not conn.poll(_PARENT_POLL):
            if os.getppid() != parent:
                return
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(function(task[0]))


class _Worker:
    """One forked worker process, the parent's end of its pipe, and the call it is running."""

    def __init__(self, function: Callable, initializer: Callable[[], None] | None) -> None:
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, function, initializer, os.getpid()), daemon=True, name="curate-worker"
        )
        self.process.start()
        child.close()  # the worker holds the only other end: its death reads as end-of-file here
        self.task: tuple[object] | None = None  # the item in flight, boxed so that any item (even None) can be one
        self.timeout = self.deadline = 0.0

    def submit(self, item: object, timeout: float) -> None:
        self.task = (item,)
        self.conn.send(self.task)
        self.timeout, self.deadline = timeout, time.monotonic() + timeout

    def stop(self) -> None:
        """Kill the process and close the pipe (an idle worker would also stop on ``None``; killing is quicker)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _death_detail(process: multiprocessing.Process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"worker process killed by {signal.Signals(-code).name}"
    return f"worker process exited with status {code}"


def map_with_deadline(
    function: Callable,
    items: Iterable,
    workers: int,
    timeout: float,
    initializer: Callable[[], None] | None = None,
) -> Iterator[tuple[object, object]]:
    """Yield ``(item, function(item))`` in completion order, or ``(item, Lost(...))`` for a call that took longer
    than ``timeout`` seconds or whose worker died. Runs up to ``workers`` (at least one) forked processes.

    ``items`` is read lazily, one item whenever a worker is free, so at most ``workers`` items are held at a time
    however long it is; a worker is started only when an item is waiting for one.
    """
    pending = iter(items)
    size = max(workers, 1)
    pool: list[_Worker] = []
    exhausted = False
    try:
        while True:
            while not exhausted and (len(pool) < size or any(w.task is None for w in pool)):
                item = next(pending, _END)
                if item is _END:
                    exhausted = True
                    break
                worker = next((w for w in pool if w.task is None), None)
                if worker is None:
                    worker = _Worker(function, initializer)
                    pool.append(worker)
                try:
                    worker.submit(item, timeout)
                except OSError:  # the idle worker is gone (killed from outside): replace it
                    yield item, Lost("worker_died", "worker process died before it was given the item")
                    worker.stop()
                    pool[pool.index(worker)] = _Worker(function, initializer)
            busy = [w for w in pool if w.task is not None]
            if not busy:
                return
            wait_for = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=wait_for)
            for worker in busy:
                outcome = _collect(worker)
                if outcome is None:
                    continue
                yield outcome
                if isinstance(outcome[1], Lost):
                    worker.stop()
                    pool[pool.index(worker)] = _Worker(function, initializer)
    finally:
        for worker in pool:
            worker.stop()


def _collect(worker: _Worker) -> tuple[object, object] | None:
    """The finished call of a busy worker: its result, a ``Lost`` (dead or past its deadline), or None (running)."""
    item = worker.task[0]
    if worker.conn.poll():
        try:
            result = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join()
            return item, Lost("worker_died", _death_detail(worker.process))
        worker.task = None
        return item, result
    if not worker.process.is_alive():
        return item, Lost("worker_died", _death_detail(worker.process))
    if time.monotonic() >= worker.deadline:
        return item, Lost("timeout", f"no result within {worker.timeout:g} s; worker killed")
    return None
