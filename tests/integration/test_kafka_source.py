"""The pipeline's Kafka source on a real broker: read, snapshot, rebuild, no gap and no duplicate.

Its position comes only from its resume state (a snapshot), else the group's committed offset,
else the beginning; batches close at a count, a size in bytes or a wait, and a large message
starts its own batch.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.kafka_source import KafkaPartitionedSource, RawBatch

pytestmark = [pytest.mark.stack]

SMALL, LARGE = 100, 5_000  # value bytes


def publish(producer: Any, topic: str, sizes: list[int]) -> None:
    for i, size in enumerate(sizes):
        producer.produce(topic, key=f"k{i}".encode(), value=bytes([65 + i % 26]) * size, partition=0)
        producer.poll(0)
    producer.flush(10)


def read_all(part: Any, expect: int, timeout_s: float = 30.0) -> list[RawBatch]:
    """Batches from ``part`` until ``expect`` messages came (max_wait_s closes the last batch)."""
    out: list[RawBatch] = []
    deadline = time.monotonic() + timeout_s
    while sum(len(b.messages) for b in out) < expect:
        assert time.monotonic() < deadline, f"read {sum(len(b.messages) for b in out)} of {expect}"
        out.extend(part.next_batch())
        time.sleep(0.01)
    return out


def offsets(batches: list[RawBatch]) -> list[int]:
    return [m.offset for b in batches for m in b.messages]


def source(conf: dict[str, Any], topic: str, group: str, **kw: Any) -> KafkaPartitionedSource:
    return KafkaPartitionedSource(conf, [topic], group, **{"max_messages": 4, "max_wait_s": 0.2, **kw})


def test_read_snapshot_rebuild_without_gap_or_duplicate(
    kafka_conf: dict, topic_factory: Any, group_factory: Any, producer_factory: Any
) -> None:
    topic = topic_factory("src", partitions=1)
    group = group_factory("src")
    sizes = [SMALL, SMALL, LARGE, SMALL, SMALL, SMALL, SMALL, SMALL, LARGE, LARGE, SMALL, SMALL]
    publish(producer_factory(), topic, sizes)
    src = source(kafka_conf, topic, group, max_bytes=LARGE)
    assert src.list_parts() == [f"{topic}:0"]

    part = src.build_part("in", f"{topic}:0", None)  # no snapshot, nothing committed: the beginning
    first = read_all(part, 6)
    snapshot = part.snapshot()
    part.close()
    assert offsets(first) == list(range(len(offsets(first))))
    assert snapshot == first[-1].next_offset
    # a batch closes before a message that would take it past max_bytes; a large one is alone
    for b in first:
        total = sum(len(m.value or b"") + len(m.key or b"") for m in b.messages)
        assert len(b.messages) <= 4
        assert total <= LARGE + 3 or len(b.messages) == 1, [len(m.value or b"") for m in b.messages]
    assert [b.seq for b in first] == list(range(len(first)))
    large = [b for b in first if any(len(m.value or b"") == LARGE for m in b.messages)]
    assert large and all(len(b.messages) == 1 for b in large)  # never batched with small ones

    rebuilt = src.build_part("in", f"{topic}:0", snapshot)  # rebuilt from the snapshot alone
    rest = read_all(rebuilt, len(sizes) - snapshot)
    rebuilt.close()
    assert offsets(first) + offsets(rest) == list(range(len(sizes)))  # no gap, no duplicate
    assert [b.seq for b in rest] == list(range(len(rest)))  # numbered from 0 in each run


def test_without_a_snapshot_it_resumes_from_the_group_committed_offset(
    kafka_conf: dict, topic_factory: Any, group_factory: Any, producer_factory: Any
) -> None:
    topic = topic_factory("src", partitions=1)
    group = group_factory("src")
    publish(producer_factory(), topic, [SMALL] * 7)
    committer = Consumer({**kafka_conf, "group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    committer.close()
    part = source(kafka_conf, topic, group).build_part("in", f"{topic}:0", None)
    try:
        assert offsets(read_all(part, 2)) == [5, 6]
    finally:
        part.close()


def test_until_idle_reads_to_the_end_before_it_counts_idle(
    kafka_conf: dict, topic_factory: Any, group_factory: Any, producer_factory: Any
) -> None:
    """An idle limit shorter than the first fetch takes (here: ~0) must not end a backfill early:
    the partition stops only after it has read to the end and stayed idle."""
    topic = topic_factory("src", partitions=1)
    publish(producer_factory(), topic, [SMALL] * 9)
    part = source(kafka_conf, topic, group_factory("src"), stop_when_idle_s=0.001).build_part(
        "in", f"{topic}:0", None
    )
    got: list[RawBatch] = []
    deadline = time.monotonic() + 30
    try:
        with pytest.raises(StopIteration):
            while True:
                assert time.monotonic() < deadline, "the partition never stopped"
                got.extend(part.next_batch())
                time.sleep(0.005)
    finally:
        part.close()
    assert offsets(got) == list(range(9))

    # an empty partition stops too: its end is reached at once
    empty = topic_factory("src", partitions=1)
    part = source(kafka_conf, empty, group_factory("src"), stop_when_idle_s=0.2).build_part(
        "in", f"{empty}:0", None
    )
    started = time.monotonic()
    try:
        with pytest.raises(StopIteration):
            while time.monotonic() - started < 30:
                assert part.next_batch() == []
                time.sleep(0.01)
    finally:
        part.close()
    assert time.monotonic() - started >= 0.2
