"""The embed step's scheduler: a large document no longer holds up the small ones behind it.

Embedding is the pipeline's one long step: a 200-chunk man page takes about 2 s on 2 CPU cores.
Embedded in one call, every batch read meanwhile (any partition) waits for it, and their
freshness is its time plus theirs. Instead, each partition's batches are queued here and
embedded at most ``slice_chunks`` chunks per partition per turn of the dataflow. A batch is
written to the index the moment its last chunk is embedded; between turns the other steps run:
new batches are read, written ones are committed.

Within a partition the batch with the fewest chunks left goes first (shortest remaining work
first: a small batch behind a large one finishes in the next turn), except that the oldest batch
always gets half of each turn, so a steady stream of small batches cannot starve it. Batches can
therefore finish out of order; the committer commits each partition's offsets in order
(:mod:`streams.commit`), and the index store is exact under any order of writes (its version
registry), so only the order of finishing changes, never the result.

The queue is in memory only: the pipeline's position is the committed offset, which never passes
a queued batch, so a crash re-reads whatever was queued.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from streams.batch import Work
from streams.steps import EmbedJob


class EmbedQueue(StatefulBatchLogic[Work, Work, None]):
    """One partition's batches waiting to be embedded (a Bytewax stateful logic, keyed by partition).

    ``start(work)`` makes a batch's :class:`EmbedJob`; ``advance(job, n)`` embeds up to ``n`` of
    its chunks and returns how many (the flow's hook for metrics); ``finish(work)`` runs on each
    batch as soon as its last chunk is embedded, before the rest of the turn (the flow writes it
    to the index there, so a small batch is searchable without waiting for the turn to end).
    """

    def __init__(
        self,
        start: Callable[[Work], EmbedJob],
        advance: Callable[[EmbedJob, int], int],
        slice_chunks: int,
        finish: Callable[[Work], Work] = lambda work: work,
    ) -> None:
        if slice_chunks < 2:
            raise ValueError("slice_chunks must be at least 2")
        self._start = start
        self._advance = advance
        self._finish = finish
        self._slice = slice_chunks
        self._jobs: list[EmbedJob] = []  # in arrival order

    def on_batch(self, values: list[Work]) -> tuple[list[Work], bool]:
        self._jobs.extend(self._start(w) for w in values)
        return self._turn(), self._discard()

    def on_notify(self) -> tuple[list[Work], bool]:
        return self._turn(), self._discard()

    def on_eof(self) -> tuple[list[Work], bool]:
        """The input ended (the pipeline is stopping): finish everything queued."""
        out = []
        while self._jobs:
            out.extend(self._turn())
        return out, StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        # Work left: come back on the next turn, after the other steps have run.
        return datetime.now(UTC) if self._jobs else None

    def snapshot(self) -> None:
        # Nothing to recover: the committed offset is the restart point and never passes a queued
        # batch (the pipeline does not use Bytewax recovery).
        return None

    def _discard(self) -> bool:
        return not self._jobs

    def _turn(self) -> list[Work]:
        """One turn: up to ``slice_chunks`` chunks embedded; returns the batches that finished."""
        if not self._jobs:
            return []
        oldest, rest = self._jobs[0], self._jobs[1:]
        reserved = min(oldest.remaining, self._slice // 2)
        budget = self._slice - reserved
        out: list[Work] = []
        for job in sorted(rest, key=lambda j: j.remaining):  # stable: ties keep arrival order
            if budget <= 0 and job.remaining:
                break
            budget -= self._advance(job, min(job.remaining, budget))
            if not job.remaining:
                out.append(self._finish(job.result()))  # at once: not after the whole turn
        self._advance(oldest, reserved + budget)
        if not oldest.remaining:
            out.append(self._finish(oldest.result()))
        self._jobs = [job for job in self._jobs if job.remaining]
        return out
