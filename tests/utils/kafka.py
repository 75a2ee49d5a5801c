"""Reading topics in tests: from a known position, until a condition holds or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition


def end_offsets(conf: dict[str, Any], topic: str) -> dict[int, int]:
    """High watermark of every partition of ``topic`` now."""
    consumer = Consumer({**conf, "group.id": "streamrag-test-probe", "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        consumer.close()


def read_from(
    conf: dict[str, Any],
    topic: str,
    start: dict[int, int],
    until: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
) -> list[Any]:
    """Messages of ``topic`` from ``start`` offsets until ``until(messages)`` or the timeout."""
    consumer = Consumer(
        {
            **conf,
            "group.id": "streamrag-test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(out):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append(msg)
        return out
    finally:
        consumer.close()
