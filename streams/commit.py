"""The last step: commit each finished batch's offset to the pipeline's consumer group.

Batches of one partition reach this sink in order on the worker that read them (no step in
between re-keys the stream), so committing ``batch.next_offset`` is monotonic and always covers
only events whose effects are durable. The committer is a plain consumer that never joins the
group, so ``kafka-consumer-groups --describe`` shows the committed offsets and the true lag.
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, TopicPartition

from streams.batch import Work


class _Committer(StatelessSinkPartition[Work]):
    def __init__(self, conf: dict[str, Any], on_commit: Any) -> None:
        self._consumer = Consumer(conf)
        self._on_commit = on_commit

    def write_batch(self, items: list[Work]) -> None:
        latest: dict[tuple[str, int], int] = {}
        for work in items:
            latest[(work.topic, work.partition)] = max(
                work.next_offset, latest.get((work.topic, work.partition), 0)
            )
        if not latest:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in latest.items()]
        self._consumer.commit(offsets=offsets, asynchronous=False)
        for work in items:
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
