"""Depth and inflow rate of the dead-letter topic.

* depth: messages currently in the topic, the sum over partitions of ``high - low`` watermark.
* rate: messages appended per second over the last ``window_s`` seconds: per partition,
  ``high`` minus the first offset whose broker timestamp is within the window (``list_offsets`` for
  a timestamp), summed, divided by ``window_s``. One look suffices; no history is needed, and
  retention deleting old dead letters does not make the rate negative.
"""

from __future__ import annotations

from confluent_kafka.admin import OffsetSpec

from serving.lag.models import DlqStats
from serving.lag.offsets import OffsetReader


def appended_since(first_in_window: int, high: int) -> int:
    """Messages appended from ``first_in_window`` to ``high``; -1 (no record in the window) counts 0."""
    return 0 if first_in_window < 0 else max(0, high - first_in_window)


def dlq_stats(reader: OffsetReader, topic: str, window_s: float, now: float) -> DlqStats:
    """The dead-letter topic's depth and rate at ``now`` (epoch seconds); zeros when it does not exist."""
    described = reader.metadata().topics.get(topic)
    if described is None or described.error is not None:
        return DlqStats(topic=topic, exists=False, depth=0, rate_per_s=0.0, window_s=window_s)
    keys = [(topic, part) for part in sorted(described.partitions)]
    marks = reader.watermarks(keys)
    since = reader.list_offsets({key: OffsetSpec.for_timestamp(int((now - window_s) * 1000)) for key in keys})
    depth = sum(high - low for low, high in marks.values())
    appended = sum(appended_since(since[key], marks[key][1]) for key in keys if key in marks and key in since)
    return DlqStats(topic=topic, exists=True, depth=depth, rate_per_s=appended / window_s, window_s=window_s)
