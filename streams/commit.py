"""The last step: commit finished batches' offsets to the pipeline's consumer group, in order.

Batches of one partition may finish out of order: the embed step lets a small batch overtake one
holding a large document (:mod:`streams.schedule`). A partition's offset is therefore committed
only up to its longest run of finished batches, counted by :attr:`Work.seq` from the first batch
of this run: a finished batch behind an unfinished one waits here, so the committed offset always
covers only events whose effects are durable. Every batch of a partition reaches the same worker
(the embed step is keyed by partition), so one committer sees all of them.

The committer is a plain consumer that never joins the group, so ``kafka-consumer-groups
--describe`` shows the committed offsets and the true lag.
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, TopicPartition

from streams.batch import Work


class InOrder:
    """Releases each partition's batches in ``seq`` order, holding back those that finish early."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._held: dict[tuple[str, int], dict[int, Work]] = {}

    def add(self, work: Work) -> list[Work]:
        """``work`` is finished; returns the batches now released (possibly none), in order."""
        tp = (work.topic, work.partition)
        held = self._held.setdefault(tp, {})
        if work.seq in held or work.seq < self._next.get(tp, 0):
            raise ValueError(f"batch {work.seq} of {tp} finished twice")
        held[work.seq] = work
        released = []
        nxt = self._next.get(tp, 0)
        while nxt in held:
            released.append(held.pop(nxt))
            nxt += 1
        self._next[tp] = nxt
        return released

    def held(self) -> int:
        """Finished batches waiting for an earlier one."""
        return sum(len(h) for h in self._held.values())


class _Committer(StatelessSinkPartition[Work]):
    def __init__(self, conf: dict[str, Any], on_commit: Any) -> None:
        self._consumer = Consumer(conf)
        self._on_commit = on_commit
        self._order = InOrder()

    def write_batch(self, items: list[Work]) -> None:
        released = [w for work in items for w in self._order.add(work)]
        latest: dict[tuple[str, int], int] = {}
        for work in released:
            tp = (work.topic, work.partition)
            latest[tp] = max(work.next_offset, latest.get(tp, 0))
        if not latest:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in latest.items()]
        self._consumer.commit(offsets=offsets, asynchronous=False)
        for work in released:
            self._on_commit(work)

    def close(self) -> None:
        self._consumer.close()


class OffsetCommitSink(DynamicSink[Work]):
    """Commits synchronously; ``on_commit(work)`` runs after each batch's commit (metrics)."""

    def __init__(self, conf: dict[str, Any], group_id: str, on_commit: Any = None) -> None:
        self._conf = {**conf, "group.id": group_id, "enable.auto.commit": False}
        self._on_commit = on_commit or (lambda _work: None)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Committer:
        return _Committer(self._conf, self._on_commit)
