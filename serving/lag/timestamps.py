"""Broker timestamps of the messages at given offsets, read without joining or committing to a group.

Lag in seconds needs the timestamp of the oldest unconsumed message, the one at the committed
offset. Kafka's admin API has no "timestamp of offset" call, so this module reads the message
itself with a short-lived consumer: ``assign`` at the offset (no group join, no rebalance), take the
first message of each partition, never commit. The consumer's ``group.id`` is only a name librdkafka
insists on; with ``assign`` and no commits the broker never learns of it.

The timestamp is the record's own: LogAppendTime on topics configured for it, otherwise the
producer's CreateTime (the project's producers leave it to the client clock, so it is the send time).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from serving.lag.kafkaconf import client_config
from streamrag.config import KafkaSettings

PartitionKey = tuple[str, int]
"""(topic, partition)."""

_PROBE_GROUP = "streamrag-lag-probe"


class MessageTimestamps:
    """Looks up and caches broker timestamps (epoch seconds) by (topic, partition, offset).

    The cache matters for a stalled group: its committed offset does not move, so each sample would
    otherwise read the same message again. Not thread-safe: use from one thread.
    """

    def __init__(self, kafka: KafkaSettings, timeout_s: float, cache_size: int = 10_000) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int, int], float] = OrderedDict()

    def lookup(self, offsets: Mapping[PartitionKey, int]) -> dict[PartitionKey, float]:
        """Timestamp (epoch seconds) of the first message at or after each offset.

        A partition is missing from the result when no message could be read within the timeout
        (for example only transaction markers follow the offset).
        """
        found: dict[PartitionKey, float] = {}
        missing: dict[PartitionKey, int] = {}
        for key, offset in offsets.items():
            cached = self._cache.get((*key, offset))
            if cached is None:
                missing[key] = offset
            else:
                self._cache.move_to_end((*key, offset))
                found[key] = cached
        if missing:
            for key, ts in self._read(missing).items():
                found[key] = ts
                self._remember((*key, missing[key]), ts)
        return found

    def _remember(self, key: tuple[str, int, int], ts: float) -> None:
        self._cache[key] = ts
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _read(self, offsets: Mapping[PartitionKey, int]) -> dict[PartitionKey, float]:
        consumer = Consumer(self._consumer_config())
        try:
            consumer.assign([TopicPartition(topic, part, off) for (topic, part), off in offsets.items()])
            pending = set(offsets)
            found: dict[PartitionKey, float] = {}
            deadline = time.monotonic() + self._timeout_s
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=max(1, len(pending)), timeout=0.2):
                    key = (msg.topic() or "", msg.partition() or 0)
                    if key not in pending:
                        continue  # a second message of a partition already answered
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(key)  # nothing readable follows the offset
                        continue
                    _ts_type, ts_ms = msg.timestamp()
                    if ts_ms >= 0:
                        found[key] = ts_ms / 1000.0
                    pending.discard(key)
                    # Stop fetching a partition once answered: only its first message matters.
                    consumer.incremental_unassign([TopicPartition(*key)])
            return found
        finally:
            consumer.close()

    def _consumer_config(self) -> dict[str, Any]:
        return client_config(
            self._kafka,
            **{
                "group.id": _PROBE_GROUP,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                # An offset before the log start (deleted by retention) reads the oldest kept message.
                "auto.offset.reset": "earliest",
                # Only the first message per partition is wanted: keep prefetching small.
                "max.partition.fetch.bytes": 65536,
                "queued.min.messages": 1,
                "socket.timeout.ms": int(self._timeout_s * 1000),
            },
        )
