"""Per consumer group, topic and partition: committed offset, watermarks and lag, read from Kafka.

Definitions (all offsets and lags in messages):

* ``committed``: the group's committed offset, the next message it will read; ``None`` when the
  group has committed nothing on the partition.
* ``low`` / ``high``: the partition's log start offset and log end offset (high watermark).
* ``lag``: ``high - committed``, as Kafka's ``kafka-consumer-groups --describe`` reports it. When
  nothing is committed it is ``high - low``: everything in the log counts as unread (true for a
  consumer that starts from the earliest offset, which is how the project's consumers start).
  Never negative (a committed offset past the end, after a topic was recreated, counts as 0).
* ``lag_seconds``: ``sampled_at - broker timestamp`` of the oldest unconsumed message (the one at
  the committed offset, or the log start when nothing is committed or retention removed it);
  ``0.0`` when ``lag`` is 0; ``None`` when that message could not be read.

A group's partitions are those it has committed offsets for, plus every partition of the topics its
members are assigned (so a partition it has not committed on yet still shows its full lag).
Nothing here joins a group or commits: the monitor is invisible to the groups it watches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, OffsetSpec

from serving.lag.kafkaconf import client_config
from serving.lag.timestamps import MessageTimestamps, PartitionKey
from streamrag.config import KafkaSettings


class KafkaUnavailable(RuntimeError):
    """The cluster could not be reached (or did not answer) within the request timeout."""


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """One (group, topic, partition) at one moment; see the module docstring for the definitions."""

    group: str
    topic: str
    partition: int
    committed: int | None
    low: int
    high: int
    lag: int
    lag_seconds: float | None
    sampled_at: float
    """Epoch seconds."""

    @property
    def key(self) -> PartitionKey:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class GroupOffsets:
    """One group at one moment."""

    group: str
    state: str
    """The broker's group state name (STABLE, EMPTY, DEAD, ...); UNKNOWN when it could not be read."""
    members: int
    partitions: tuple[PartitionOffsets, ...]
    errors: tuple[str, ...] = ()

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)


class _Row(NamedTuple):
    key: PartitionKey
    committed: int | None
    low: int
    high: int
    lag: int


def partition_lag(committed: int | None, low: int, high: int) -> int:
    """Lag in messages (module docstring): ``high - committed``, or ``high - low`` if none committed."""
    start = low if committed is None else committed
    return max(0, high - start)


def first_unread(committed: int | None, low: int) -> int:
    """Offset of the oldest unconsumed message still in the log."""
    return low if committed is None else max(low, committed)


class OffsetReader:
    """Reads :class:`GroupOffsets` for any group names through one AdminClient.

    ``timeout_s`` bounds every admin request and the message reads for lag in seconds. ``clock``
    gives "now" in epoch seconds (tests may pass their own). Use from one thread at a time.
    """

    def __init__(
        self, kafka: KafkaSettings, timeout_s: float = 10.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._admin = AdminClient(client_config(kafka))
        self._timeout_s = timeout_s
        self._clock = clock
        self._timestamps = MessageTimestamps(kafka, timeout_s)

    @property
    def admin(self) -> AdminClient:
        return self._admin

    def discover_groups(self) -> list[str]:
        """Every consumer group the cluster knows, sorted."""
        try:
            result = self._admin.list_consumer_groups(request_timeout=self._timeout_s).result()
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot list consumer groups: {exc}") from exc
        return sorted({listing.group_id for listing in result.valid})

    def metadata(self) -> ClusterMetadata:
        """Cluster metadata (topics and partitions); :class:`KafkaUnavailable` when unreachable."""
        try:
            return self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot reach Kafka: {exc}") from exc

    def watermarks(self, partitions: Iterable[PartitionKey]) -> dict[PartitionKey, tuple[int, int]]:
        """(low, high) watermarks per partition, via ``list_offsets`` earliest and latest.

        A partition whose offsets could not be read (its topic was just deleted) is left out.
        """
        keys = sorted(set(partitions))
        low = self.list_offsets({key: OffsetSpec.earliest() for key in keys})
        high = self.list_offsets({key: OffsetSpec.latest() for key in keys})
        return {key: (low[key], high[key]) for key in keys if key in low and key in high}

    def list_offsets(self, specs: dict[PartitionKey, OffsetSpec]) -> dict[PartitionKey, int]:
        """``AdminClient.list_offsets`` keyed by (topic, partition); -1 where the spec matched nothing.

        Partitions that fail on their own (unknown topic or partition) are left out of the result;
        :class:`KafkaUnavailable` only when every partition failed.
        """
        if not specs:
            return {}
        futures = self._admin.list_offsets(
            {TopicPartition(topic, part): spec for (topic, part), spec in specs.items()},
            request_timeout=self._timeout_s,
        )
        offsets: dict[PartitionKey, int] = {}
        failure: KafkaException | None = None
        for tp, fut in futures.items():
            try:
                offsets[(tp.topic, tp.partition)] = fut.result().offset
            except KafkaException as exc:
                failure = exc
        if failure is not None and not offsets:
            raise KafkaUnavailable(f"cannot list offsets: {failure}") from failure
        return offsets

    def read(self, groups: Sequence[str]) -> list[GroupOffsets]:
        """The offsets of ``groups`` (in that order) right now."""
        groups = list(dict.fromkeys(groups))
        metadata = self.metadata()
        # Committed offsets first, watermarks after: the high watermark only grows, so a commit read
        # earlier can never be past it and the lag is never under-reported.
        committed, errors = self._committed(groups)
        states, assigned = self._describe(groups, errors)
        topic_sizes = {
            name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None
        }

        wanted: dict[str, set[PartitionKey]] = {}
        for group in groups:
            topics = {topic for topic, _ in committed[group]} | assigned[group]
            keys: set[PartitionKey] = set()
            for topic in sorted(topics):
                if topic not in topic_sizes:
                    errors[group].append(
                        f"topic {topic!r} does not exist (deleted?); its offsets are skipped"
                    )
                    continue
                keys.update((topic, part) for part in range(topic_sizes[topic]))
            wanted[group] = keys

        marks = self.watermarks(set().union(*wanted.values()) if wanted else set())
        rows: dict[str, list[_Row]] = {}
        for group in groups:
            rows[group] = []
            for key in sorted(wanted[group]):
                if key not in marks:
                    errors[group].append(f"{key[0]}[{key[1]}]: watermarks unavailable; skipped")
                    continue
                low, high = marks[key]
                offset = committed[group].get(key)
                rows[group].append(_Row(key, offset, low, high, partition_lag(offset, low, high)))
        timestamps = self._timestamps_for(rows)
        sampled_at = self._clock()

        result = []
        for group in groups:
            parts = []
            for row in rows[group]:
                if row.lag == 0:
                    lag_s: float | None = 0.0
                else:
                    ts = timestamps.get((*row.key, first_unread(row.committed, row.low)))
                    lag_s = None if ts is None else max(0.0, sampled_at - ts)
                topic, part = row.key
                parts.append(
                    PartitionOffsets(
                        group, topic, part, row.committed, row.low, row.high, row.lag, lag_s, sampled_at
                    )
                )
            state, members = states[group]
            result.append(GroupOffsets(group, state, members, tuple(parts), tuple(errors[group])))
        return result

    def _timestamps_for(self, rows: dict[str, list[_Row]]) -> dict[tuple[str, int, int], float]:
        """Timestamps of every (topic, partition, first unread offset) with lag > 0.

        Groups reading the same partition at different offsets need separate lookups; they are done
        in rounds so each round asks for at most one offset per partition.
        """
        needed: set[tuple[str, int, int]] = set()
        for group_rows in rows.values():
            for row in group_rows:
                if row.lag > 0:
                    needed.add((*row.key, first_unread(row.committed, row.low)))
        found: dict[tuple[str, int, int], float] = {}
        while needed:
            batch: dict[PartitionKey, int] = {}
            for topic, part, offset in sorted(needed):
                batch.setdefault((topic, part), offset)
            for key, ts in self._timestamps.lookup(batch).items():
                found[(*key, batch[key])] = ts
            needed -= {(*key, offset) for key, offset in batch.items()}
        return found

    def _committed(
        self, groups: Sequence[str]
    ) -> tuple[dict[str, dict[PartitionKey, int]], dict[str, list[str]]]:
        """Committed offsets per group (only partitions with a valid commit) and per-group errors."""
        # The API takes one group per request; issue them all, then wait.
        futures: dict[str, Future[Any]] = {}
        for group in groups:
            futures.update(
                self._admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)], request_timeout=self._timeout_s
                )
            )
        committed: dict[str, dict[PartitionKey, int]] = {}
        errors: dict[str, list[str]] = {group: [] for group in groups}
        for group in groups:
            committed[group] = {}
            try:
                answer = futures[group].result()
            except KafkaException as exc:
                errors[group].append(f"cannot read committed offsets: {exc}")
                continue
            for tp in answer.topic_partitions or []:
                if tp.error is not None:
                    errors[group].append(f"{tp.topic}[{tp.partition}]: {tp.error}")
                elif tp.offset >= 0:  # OFFSET_INVALID (-1001): no commit on this partition
                    committed[group][(tp.topic, tp.partition)] = tp.offset
        return committed, errors

    def _describe(
        self, groups: Sequence[str], errors: dict[str, list[str]]
    ) -> tuple[dict[str, tuple[str, int]], dict[str, set[str]]]:
        """(state name, member count) and the topics assigned to members, per group."""
        states: dict[str, tuple[str, int]] = {}
        assigned: dict[str, set[str]] = {group: set() for group in groups}
        futures = (
            self._admin.describe_consumer_groups(list(groups), request_timeout=self._timeout_s)
            if groups
            else {}
        )
        for group in groups:
            try:
                desc = futures[group].result()
            except KafkaException as exc:
                states[group] = ("UNKNOWN", 0)
                errors[group].append(f"cannot describe group: {exc}")
                continue
            state = getattr(desc.state, "name", str(desc.state))
            states[group] = (state, len(desc.members))
            for member in desc.members:
                if member.assignment is not None:
                    assigned[group].update(tp.topic for tp in member.assignment.topic_partitions)
        return states, assigned
