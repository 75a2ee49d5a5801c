"""The embed step's scheduler: a large document no longer holds up the small ones behind it.

Embedding is the pipeline's one long step: a 200-chunk man page takes about 2 s on 2 CPU cores.
Embedded in one call, every batch read meanwhile (any partition) waits for it, and their
freshness is its time plus theirs. Instead, each partition's batches are queued here and
embedded at most ``slice_chunks`` chunks per partition per turn of the dataflow. A turn embeds
its chunks in one model call, across the partition's batches, and each batch finished by it is
written to the index right away; between turns the other steps run: new batches are read, written
ones are committed.

Within a partition the oldest batch is embedded first, but batches small enough to finish within
half a turn go before it, fewest chunks first (a small batch behind a large one finishes in the
next turn); the oldest always gets at least half of each turn, so a steady stream of small batches
cannot starve it. Large batches never share a turn's model call with each other, so the model's
batches stay even in length. Batches can
therefore finish out of order; the committer commits each partition's offsets in order
(:mod:`streams.commit`), and the index store is exact under any order of writes (its version
registry), so only the order of finishing changes, never the result.

With an ``executor`` the turn's model call runs in the background: the turn hands its slice to
the executor and returns, and the next turn collects it, hands over the next slice, and only then
writes the batches the collected slice finished. Meanwhile the worker goes on reading, cleaning
and chunking, so the pipeline's own work overlaps the model instead of alternating with it. One
slice per partition is in flight at a time. The flow gives every partition one shared executor
with a thread per embedder stream, so several partitions' slices are embedded at once and the
embedder's streams always have a batch waiting while there is work (:class:`streams.embed.Embedder`).
A turn whose slice is not done waits for it only if that slice is the oldest in the model
(:class:`InFlight`, shared by the flow's queues): the model takes batches first in, first out, so
no other slice can finish sooner, and the worker sleeps once per pass over its partitions instead
of once per partition (each wake-up takes a core from the model).

The queue is in memory only: the pipeline's position is the committed offset, which never passes
a queued batch, so a crash re-reads whatever was queued.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulBatchLogic

from streams.batch import Work
from streams.steps import EmbedJob


class InFlight:
    """The slices in the model, oldest first, shared by every partition's :class:`EmbedQueue` (and
    by the threads that finish them).

    A slice belongs to the worker thread that handed it over: :meth:`is_oldest` asks about that
    worker's slices only, so with several workers in a process each one waits once per pass (a
    worker whose slices are all younger than another worker's would otherwise never wait, and
    spin)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order: deque[tuple[int, Future[int]]] = deque()  # (worker thread, slice), oldest first

    def add(self, future: Future[int]) -> None:
        """Called by the worker that handed the slice over."""
        with self._lock:
            self._order.append((threading.get_ident(), future))
        future.add_done_callback(self._remove)

    def is_oldest(self, future: Future[int]) -> bool:
        """Whether ``future`` is the oldest slice in the model of the worker that handed it over."""
        with self._lock:
            worker = next((w for w, f in self._order if f is future), None)
            return worker is not None and next(f for w, f in self._order if w == worker) is future

    def __len__(self) -> int:
        with self._lock:
            return len(self._order)

    def _remove(self, future: Future[int]) -> None:
        with self._lock:
            self._order = deque(entry for entry in self._order if entry[1] is not future)


class EmbedQueue(StatefulBatchLogic[Work, Work, None]):
    """One partition's batches waiting to be embedded (a Bytewax stateful logic, keyed by partition).

    ``start(work)`` makes a batch's :class:`EmbedJob`; ``embed([(job, n), ...])`` embeds the next
    ``n`` chunks of each job in one model call and returns how many (:func:`embed_together`, plus
    the flow's metrics); ``finish(work)`` runs on each batch whose last chunk is embedded, smallest
    first, as soon as the turn's one call returns (the flow writes the batch to the index there).
    """

    def __init__(
        self,
        start: Callable[[Work], EmbedJob],
        embed: Callable[[list[tuple[EmbedJob, int]]], int],
        slice_chunks: int,
        finish: Callable[[Work], Work] = lambda work: work,
        executor: Executor | None = None,
        wait_s: float = 0.002,
        inflight: InFlight | None = None,
    ) -> None:
        if slice_chunks < 2:
            raise ValueError("slice_chunks must be at least 2")
        self._start = start
        self._embed = embed
        self._finish = finish
        self._slice = slice_chunks
        self._jobs: list[EmbedJob] = []  # in arrival order
        self._executor = executor
        # How long a turn waits for the slice in flight before giving the other steps their turn:
        # long enough not to spin the worker, short enough not to hold up reading and writing.
        self._wait_s = wait_s
        self._shared = inflight
        self._inflight: tuple[Future[int], list[tuple[EmbedJob, int]]] | None = None

    def on_batch(self, values: list[Work]) -> tuple[list[Work], bool]:
        self._jobs.extend(self._start(w) for w in values)
        return self._turn(), self._discard()

    def on_notify(self) -> tuple[list[Work], bool]:
        return self._turn(), self._discard()

    def on_eof(self) -> tuple[list[Work], bool]:
        """The input ended (the pipeline is stopping): finish everything queued."""
        out = []
        while self._jobs or self._inflight is not None:
            out.extend(self._turn(block=True))
        return out, StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        # Work left: come back on the next turn, after the other steps have run. A time already
        # past: with "now", Bytewax parked the worker until a timer fired, 50-85 ms a turn (measured).
        busy = self._jobs or self._inflight is not None
        return datetime.now(UTC) - timedelta(seconds=1) if busy else None

    def snapshot(self) -> None:
        # Nothing to recover: the committed offset is the restart point and never passes a queued
        # batch (the pipeline does not use Bytewax recovery).
        return None

    def _discard(self) -> bool:
        return not self._jobs and self._inflight is None

    def _turn(self, block: bool = False) -> list[Work]:
        """One turn; returns the batches that finished (written by ``finish``).

        Without an executor: the next slice embedded now. With one: the slice in flight collected
        (or, if it is not done within ``wait_s``, or at once when another slice is older, and
        ``block`` is false, nothing), the next slice handed over, then the collected slice's
        finished batches written."""
        if self._executor is None:
            plan = self._plan()
            if not plan:
                return []
            self._embed(plan)
            return self._collect(plan)
        done: list[EmbedJob] = []
        if self._inflight is not None:
            future, plan = self._inflight
            wait = self._wait_s if self._shared is None or self._shared.is_oldest(future) else 0.0
            try:
                future.result(timeout=None if block else wait)  # raises the model's errors
            except TimeoutError:
                return []
            self._inflight = None
            done = self._settle(plan)
        plan = self._plan()
        while plan and not any(n for _, n in plan):  # nothing to embed (deletes only): done now
            done += self._settle(plan)
            plan = self._plan()
        if plan:
            self._inflight = (self._executor.submit(self._embed, plan), plan)
            if self._shared is not None:
                self._shared.add(self._inflight[0])
        return [self._finish(job.result()) for job in done]

    def _plan(self) -> list[tuple[EmbedJob, int]]:
        """The next slice: up to ``slice_chunks`` chunks as (job, chunks) pairs, the oldest job last."""
        if not self._jobs:
            return []
        oldest, rest = self._jobs[0], self._jobs[1:]
        reserved = min(oldest.remaining, self._slice // 2)
        budget = self._slice - reserved
        plan: list[tuple[EmbedJob, int]] = []
        for job in sorted(rest, key=lambda j: j.remaining):  # stable: ties keep arrival order
            if job.remaining > budget:
                break  # only batches that finish in this turn overtake; the others keep their place
            plan.append((job, job.remaining))
            budget -= job.remaining
        plan.append((oldest, min(oldest.remaining, reserved + budget)))
        # one call for the whole turn: full model batches even when several batches share it
        return plan

    def _settle(self, plan: list[tuple[EmbedJob, int]]) -> list[EmbedJob]:
        """After ``plan`` was embedded: its finished jobs (in plan order), dropped from the queue."""
        done = [job for job, _ in plan if not job.remaining]
        # Only the plan's own jobs leave the queue: a batch with nothing to embed (all fenced, or
        # deletes only) that arrived while this slice was in flight has no chunks left either, but
        # it was not in the plan; dropped here it was never written or committed, and every later
        # batch of its partition waited behind it in the commit order until the process ended.
        finished = {id(job) for job in done}
        self._jobs = [job for job in self._jobs if id(job) not in finished]
        return done

    def _collect(self, plan: list[tuple[EmbedJob, int]]) -> list[Work]:
        return [self._finish(job.result()) for job in self._settle(plan)]
