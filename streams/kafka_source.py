"""A partitioned Kafka source whose position is the consumer group's committed offset.

Each Kafka topic-partition is one Bytewax partition, read by one worker with a plain
``assign``-ed consumer (no group membership, no automatic commits). A partition resumes from its
resume state when Bytewax recovery gives one, else from the group's committed offset, else from
the beginning. Offsets are committed by :mod:`streams.commit` only after the batch's effects are
durable, so the committed offset is always a safe restart point and Kafka's tools show true lag.

Messages are emitted in :class:`RawBatch` micro-batches: a batch closes when it holds
``max_messages`` or ``max_bytes`` of keys and values, or ``max_wait_s`` after its first message,
whichever comes first; a message that would take a batch past ``max_bytes`` starts the next one
(a large document does not hold up the small ones read before it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger("streamrag.streams")

#: How long an idle partition sleeps between polls (seconds). Bounds the added latency when idle.
IDLE_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Consecutive messages of one topic-partition; ``next_offset`` is the offset to commit after it."""

    topic: str
    partition: int
    messages: tuple[RawMessage, ...]
    seq: int = 0
    """The batch's number in its partition, from 0 in each run: batches may finish out of order
    (:mod:`streams.schedule`), and the committer commits them in this order (:mod:`streams.commit`)."""

    @property
    def next_offset(self) -> int:
        return self.messages[-1].offset + 1


_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""Group-coordinator errors a starting broker answers with for a few seconds."""


def part_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def parse_part(name: str) -> tuple[str, int]:
    topic, _, partition = name.rpartition(":")
    return topic, int(partition)


class _KafkaPartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self,
        conf: dict[str, Any],
        topic: str,
        partition: int,
        start: int,
        max_messages: int,
        max_wait_s: float,
        stop: threading.Event | None,
        stop_when_idle_s: float | None,
        max_bytes: int,
    ) -> None:
        self._consumer = Consumer(conf)
        self._consumer.assign([TopicPartition(topic, partition, start)])
        self._topic, self._partition = topic, partition
        self._max_messages, self._max_wait_s, self._max_bytes = max_messages, max_wait_s, max_bytes
        self._buffer: list[RawMessage] = []
        self._buffer_bytes = 0
        self._first_at = 0.0
        self._next_offset = start  # position after the last emitted message
        self._seq = 0
        self._stop = stop
        self._stop_when_idle_s = stop_when_idle_s
        self._last_activity = time.monotonic()
        self._idle = False
        # Idle only counts once the end was reached: a broker slow to answer the first fetch
        # (a loaded host) must not end a backfill before it read anything.
        self._at_end = False

    def next_batch(self) -> list[RawBatch]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        msgs = self._consumer.consume(num_messages=self._max_messages - len(self._buffer), timeout=0)
        now = time.monotonic()
        ready: list[RawBatch] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end = True
                    continue
                raise KafkaException(err)
            self._at_end = False
            size = len(msg.value() or b"") + len(msg.key() or b"")
            if self._buffer and self._buffer_bytes + size > self._max_bytes:
                # a large document starts its own batch: the ones before it need not wait for it
                ready.append(self._seal())
            if not self._buffer:
                self._first_at = now
            ts_type, ts = msg.timestamp()
            self._buffer.append(
                RawMessage(
                    self._topic,
                    self._partition,
                    int(msg.offset() or 0),
                    msg.key(),
                    msg.value(),
                    ts if ts_type else 0,
                )
            )
            self._buffer_bytes += size
        self._idle = not msgs
        if msgs:
            self._last_activity = now
        elif (
            self._stop_when_idle_s is not None
            and self._at_end
            and now - self._last_activity > self._stop_when_idle_s
            and not self._buffer
        ):
            raise StopIteration
        if self._buffer and (
            len(self._buffer) >= self._max_messages
            or self._buffer_bytes >= self._max_bytes
            or now - self._first_at >= self._max_wait_s
        ):
            ready.append(self._seal())
        return ready

    def _seal(self) -> RawBatch:
        batch = RawBatch(self._topic, self._partition, tuple(self._buffer), self._seq)
        self._seq += 1
        self._buffer = []
        self._buffer_bytes = 0
        self._next_offset = batch.next_offset
        return batch

    def next_awake(self) -> datetime | None:
        if self._buffer:
            wait = max(0.0, self._first_at + self._max_wait_s - time.monotonic())
            return datetime.now(UTC) + timedelta(seconds=min(wait, IDLE_POLL_S))
        if self._idle:
            return datetime.now(UTC) + timedelta(seconds=IDLE_POLL_S)
        return None

    def snapshot(self) -> int:
        return self._next_offset

    def close(self) -> None:
        self._consumer.close()


class KafkaPartitionedSource(FixedPartitionedSource[RawBatch, int]):
    """Every partition of ``topics``, positioned by ``group_id``'s committed offsets.

    ``stop`` (an event) ends every partition when set: used to stop an in-process pipeline.
    ``stop_when_idle_s`` ends a partition that long after it last had new messages, once it has
    read to the partition's end (backfills, tests): never before the backlog was read.
    """

    def __init__(
        self,
        conf: dict[str, Any],
        topics: list[str],
        group_id: str,
        max_messages: int = 64,
        max_wait_s: float = 0.1,
        stop: threading.Event | None = None,
        stop_when_idle_s: float | None = None,
        max_bytes: int = 64 * 1024,
    ) -> None:
        self._conf = conf
        self._topics = topics
        self._group_id = group_id
        self._max_messages = max_messages
        self._max_wait_s = max_wait_s
        self._stop = stop
        self._stop_when_idle_s = stop_when_idle_s
        self._max_bytes = max_bytes

    def _consumer_conf(self) -> dict[str, Any]:
        return {
            **self._conf,
            "group.id": self._group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # the end of a partition is what ``stop_when_idle_s`` waits for
            "enable.partition.eof": self._stop_when_idle_s is not None,
            # How long the broker holds a fetch while the partition has nothing new; it answers at
            # once when data arrives, so this costs no latency. At 50 ms, the caught-up consumers'
            # fetches took 0.1 of a core from the broker on a 2-core host (bench/RESULTS.md).
            "fetch.wait.max.ms": 500,
            "isolation.level": "read_committed",
        }

    def list_parts(self) -> list[str]:
        admin = Consumer(self._consumer_conf())
        try:
            metadata = admin.list_topics(timeout=15)
            parts: list[str] = []
            for topic in self._topics:
                tmeta = metadata.topics.get(topic)
                if tmeta is None or tmeta.error is not None:
                    raise KafkaException(f"source topic {topic!r} does not exist (run `streamrag stack up`)")
                parts.extend(part_name(topic, p) for p in sorted(tmeta.partitions))
            return parts
        finally:
            admin.close()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        topic, partition = parse_part(for_part)
        start = resume_state if resume_state is not None else self.committed_offset(topic, partition)
        log.info(
            "reading %s from offset %s", for_part, "the beginning" if start == OFFSET_BEGINNING else start
        )
        return _KafkaPartition(
            self._consumer_conf(),
            topic,
            partition,
            start,
            self._max_messages,
            self._max_wait_s,
            self._stop,
            self._stop_when_idle_s,
            self._max_bytes,
        )

    def committed_offset(self, topic: str, partition: int, timeout_s: float = 60.0) -> int:
        """The group's committed offset for the partition, or the beginning when none.

        A broker that is still loading its group coordinator (a fresh or restarted cluster) answers
        with a retriable error for a few seconds: retried with backoff until ``timeout_s``."""
        consumer = Consumer(self._consumer_conf())
        deadline = time.monotonic() + timeout_s
        pause = 0.2
        try:
            while True:
                try:
                    (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=15)
                    break
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    retriable = isinstance(err, KafkaError) and (
                        err.retriable() or err.code() in _COORDINATOR_NOT_READY
                    )
                    if not retriable or time.monotonic() + pause > deadline:
                        raise
                    log.info(
                        "committed offsets of %s:%d not readable yet (%s); retrying", topic, partition, err
                    )
                    time.sleep(pause)
                    pause = min(pause * 2, 2.0)
        finally:
            consumer.close()
        return tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
