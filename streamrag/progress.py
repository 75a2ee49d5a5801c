"""Consumer-group positions on the source topics: what a snapshot records and what catch-up waits for."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("streamrag")


@dataclass(frozen=True)
class GroupProgress:
    """Per ``"topic:partition"``: the group's committed offset (-1: none) and the log-end offset."""

    committed: dict[str, int]
    end: dict[str, int]
    start: dict[str, int]
    """Log-start offsets: where a group without a commit begins (the pipeline reads from the start)."""

    @property
    def lag(self) -> int:
        """Messages not yet committed, summed over partitions (a partition never read counts whole)."""
        return sum(end - max(self.committed[p], self.start[p]) for p, end in self.end.items())

    @property
    def caught_up(self) -> bool:
        return self.lag == 0


def _partitions(consumer: Any, topics: Sequence[str], timeout_s: float) -> list[Any]:
    from confluent_kafka import TopicPartition

    parts: list[Any] = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LookupError(f"source topic {topic!r} does not exist")
        parts += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    return parts


def group_progress(
    kafka_conf: dict[str, Any], group: str, topics: Sequence[str], timeout_s: float = 10.0
) -> GroupProgress:
    """Read ``group``'s committed offsets and the watermarks of every partition of ``topics``.

    Raises ``LookupError`` for a missing topic and ``confluent_kafka.KafkaException`` when Kafka
    does not answer within ``timeout_s``.
    """
    from confluent_kafka import Consumer

    consumer = Consumer({**kafka_conf, "group.id": group, "enable.auto.commit": False})
    try:
        parts = _partitions(consumer, topics, timeout_s)
        committed = {
            f"{tp.topic}:{tp.partition}": max(tp.offset, -1) for tp in consumer.committed(parts, timeout_s)
        }
        start: dict[str, int] = {}
        end: dict[str, int] = {}
        for tp in parts:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            start[f"{tp.topic}:{tp.partition}"], end[f"{tp.topic}:{tp.partition}"] = low, high
        return GroupProgress(committed, end, start)
    finally:
        consumer.close()


def committed_offsets(
    kafka_conf: dict[str, Any], group: str, topics: Sequence[str], timeout_s: float = 10.0
) -> dict[str, int] | None:
    """``"topic:partition" -> committed offset`` of ``group`` (-1: none); None when Kafka cannot say."""
    from confluent_kafka import KafkaException

    try:
        return group_progress(kafka_conf, group, topics, timeout_s).committed
    except (KafkaException, LookupError) as exc:
        log.warning("cannot read the committed offsets of %s: %s", group, exc)
        return None
