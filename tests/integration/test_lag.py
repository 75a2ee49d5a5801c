"""Lag, status, freshness and DLQ against the real local Kafka, and ``streamrag lag`` end to end."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from confluent_kafka import TopicPartition

from serving.lag.cli import lag as lag_command
from serving.lag.monitor import LagMonitor
from serving.lag.offsets import OffsetReader
from serving.lag.settings import LagOptions, LagSettings
from serving.lag.status import Status
from stack.kafka import java_command

pytestmark = pytest.mark.stack

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "serving" / "lag" / "schema.json").read_text())


# --- helpers --------------------------------------------------------------------------------------


def produce(producer: Any, topic: str, partition: int, count: int, timestamp_ms: int | None = None) -> None:
    for i in range(count):
        kwargs = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        producer.produce(topic, value=f"m{i}".encode(), partition=partition, **kwargs)
    assert producer.flush(10) == 0


def commit(consumer: Any, topic: str, offsets: dict[int, int]) -> None:
    """Commit offsets for a group without joining it (no subscribe: the group stays memberless)."""
    consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)


def lag_settings(stack: Any, groups: list[str], **options: Any) -> LagSettings:
    base: dict[str, Any] = {"groups": groups, "discover_groups": False, "request_timeout_s": 10.0}
    return LagSettings(kafka=stack.kafka, lag=LagOptions(**{**base, **options}))


@pytest.fixture
def monitors() -> Iterator[Callable[..., LagMonitor]]:
    made: list[LagMonitor] = []

    def make(settings: LagSettings, freshness: bool = False) -> LagMonitor:
        monitor = LagMonitor(settings, freshness=freshness)
        made.append(monitor)
        return monitor

    yield make
    for monitor in made:
        monitor.close()


@pytest.fixture
def lagging_group(
    stack: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[..., str],
    producer_factory: Any,
    consumer_factory: Any,
) -> tuple[str, str, float]:
    """A group caught up on a 2-partition topic (10 + 6 messages) that then stops; 4 + 3 more arrive.

    Returns (topic, group, epoch seconds just before the 7 unconsumed messages were produced).
    """
    topic = topic_factory("lag", partitions=2)
    group = group_factory("lag")
    producer = producer_factory()
    produce(producer, topic, 0, 10)
    produce(producer, topic, 1, 6)
    commit(consumer_factory(group), topic, {0: 10, 1: 6})
    before = time.time()
    produce(producer, topic, 0, 4)
    produce(producer, topic, 1, 3)
    return topic, group, before


def _group(monitor: LagMonitor, group: str) -> Any:
    report = monitor.sample()
    return next(g for g in report.groups if g.group == group)


# --- lag in messages and seconds ------------------------------------------------------------------


def test_lag_counts_unconsumed_messages_and_their_age(
    stack: Any, lagging_group: tuple[str, str, float], monitors: Callable[..., LagMonitor]
) -> None:
    topic, group, produced_at = lagging_group
    monitor = monitors(lag_settings(stack, [group]))

    first = _group(monitor, group)
    assert first.total_lag == 7
    parts = {p.partition: p for p in first.partitions}
    assert (parts[0].committed_offset, parts[0].log_end_offset, parts[0].lag) == (10, 14, 4)
    assert (parts[1].committed_offset, parts[1].log_end_offset, parts[1].lag) == (6, 9, 3)
    assert all(p.topic == topic for p in first.partitions)
    assert first.state == "EMPTY" and first.members == 0
    # The oldest unconsumed message was produced after produced_at, and sampling came after that.
    age_bound = time.time() - produced_at
    for part in first.partitions:
        assert part.lag_seconds is not None
        assert 0 <= part.lag_seconds <= age_bound + 0.05

    time.sleep(1.5)
    second = _group(monitor, group)
    assert second.total_lag == 7  # nothing consumed, nothing produced
    for before, after in zip(first.partitions, second.partitions, strict=True):
        assert before.lag_seconds is not None and after.lag_seconds is not None
        assert 1.4 <= after.lag_seconds - before.lag_seconds <= 3.0
    assert second.max_lag_seconds == max(p.lag_seconds or 0 for p in second.partitions)


def test_partitions_without_a_commit_count_the_whole_log(
    stack: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[..., str],
    producer_factory: Any,
    consumer_factory: Any,
    monitors: Callable[..., LagMonitor],
) -> None:
    topic = topic_factory("lag", partitions=3)
    group = group_factory("lag")
    producer = producer_factory()
    produce(producer, topic, 0, 5)
    produce(producer, topic, 2, 8)
    commit(consumer_factory(group), topic, {0: 2})  # nothing committed on partitions 1 and 2
    parts = {p.partition: p for p in _group(monitors(lag_settings(stack, [group])), group).partitions}
    assert parts[0].lag == 3
    assert (parts[1].committed_offset, parts[1].lag, parts[1].lag_seconds) == (None, 0, 0.0)
    assert (parts[2].committed_offset, parts[2].lag) == (None, 8)
    assert parts[2].lag_seconds is not None and parts[2].lag_seconds >= 0


# --- status ---------------------------------------------------------------------------------------


def test_stopped_group_goes_stalled_then_stopped_and_recovers_when_drained(
    stack: Any,
    lagging_group: tuple[str, str, float],
    consumer_factory: Any,
    monitors: Callable[..., LagMonitor],
) -> None:
    topic, group, _ = lagging_group
    monitor = monitors(lag_settings(stack, [group], window_s=1.5, stopped_after_s=3.0))

    seen: list[Status] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = _group(monitor, group).status
        if not seen or seen[-1] is not status:
            seen.append(status)
        if status is Status.STOPPED:
            break
        time.sleep(0.25)
    assert seen == [Status.OK, Status.STALLED, Status.STOPPED]
    stuck = _group(monitor, group).partitions[0]
    assert "unchanged for" in stuck.reason

    # A consumer joins, reads the 7 messages from the committed offsets and commits.
    consumer = consumer_factory(group)
    consumer.subscribe([topic])
    consumed = 0
    deadline = time.monotonic() + 30
    while consumed < 7 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            consumed += 1
    assert consumed == 7
    consumer.commit(asynchronous=False)
    consumer.close()

    drained = _group(monitor, group)
    assert drained.total_lag == 0
    assert drained.status is Status.OK
    assert all(p.lag_seconds == 0.0 for p in drained.partitions)


def test_committing_an_older_offset_is_rewound(
    stack: Any,
    lagging_group: tuple[str, str, float],
    consumer_factory: Any,
    monitors: Callable[..., LagMonitor],
) -> None:
    topic, group, _ = lagging_group
    monitor = monitors(lag_settings(stack, [group], window_s=30.0, stopped_after_s=60.0))
    assert _group(monitor, group).status is Status.OK
    commit(consumer_factory(group), topic, {0: 3})  # reset partition 0 back from 10 to 3
    rewound = _group(monitor, group)
    assert rewound.status is Status.REWOUND
    assert rewound.status_code == 4
    part0 = next(p for p in rewound.partitions if p.partition == 0)
    assert (part0.committed_offset, part0.lag, part0.status) == (3, 11, Status.REWOUND)
    assert "from 10 to 3" in part0.reason


# --- agreement with Kafka's own tool --------------------------------------------------------------


def _describe_with_kafka(stack: Any, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(topic, partition) -> (CURRENT-OFFSET, LOG-END-OFFSET, LAG) from kafka-consumer-groups --describe."""
    cmd = java_command(
        stack,
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        stack.kafka.bootstrap_servers,
        "--describe",
        "--group",
        group,
    )
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    header = next(i for i, cols in enumerate(lines) if cols[:2] == ["GROUP", "TOPIC"])
    names = lines[header]
    rows = {}
    for cols in lines[header + 1 :]:
        row = dict(zip(names, cols, strict=False))
        assert row["GROUP"] == group
        rows[(row["TOPIC"], int(row["PARTITION"]))] = (
            int(row["CURRENT-OFFSET"]),
            int(row["LOG-END-OFFSET"]),
            int(row["LAG"]),
        )
    return rows


def test_numbers_equal_kafka_consumer_groups_describe(
    stack: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[..., str],
    producer_factory: Any,
    consumer_factory: Any,
) -> None:
    topic = topic_factory("lag", partitions=3)
    other = topic_factory("lag", partitions=1)
    group = group_factory("lag")
    producer = producer_factory()
    for partition, count in ((0, 12), (1, 4), (2, 7)):
        produce(producer, topic, partition, count)
    produce(producer, other, 0, 9)
    consumer = consumer_factory(group)
    commit(consumer, topic, {0: 5, 1: 0, 2: 7})
    commit(consumer, other, {0: 2})
    # No members and no producing from here on: both readings see the same offsets.
    kafka_rows = _describe_with_kafka(stack, group)
    reader = OffsetReader(stack.kafka, timeout_s=10)
    (ours,) = reader.read([group])
    our_rows = {
        (p.topic, p.partition): (p.committed, p.high, p.lag)
        for p in ours.partitions
        if p.committed is not None
    }
    assert our_rows == kafka_rows
    assert kafka_rows == {
        (topic, 0): (5, 12, 7),
        (topic, 1): (0, 4, 4),
        (topic, 2): (7, 7, 0),
        (other, 0): (2, 9, 7),
    }


# --- freshness and the dead-letter topic ----------------------------------------------------------


def _feature(source: datetime, freshness_s: float) -> bytes:
    """A FeatureRecord-shaped record (only the fields freshness reads need to be real)."""
    return json.dumps(
        {
            "schema_version": 1,
            "tenant": "acme",
            "doc_id": "d",
            "version": 1,
            "chunk_index": 0,
            "model_id": "m",
            "embedding": [0.0] * 8,
            "source_ts": source.isoformat(),
            "indexed_ts": (source + timedelta(seconds=freshness_s)).isoformat(),
            "source_topic": "streamrag.documents",
            "source_partition": 0,
            "source_offset": 0,
        }
    ).encode()


def test_freshness_percentiles_and_dlq(
    stack: Any, topic_factory: Callable[..., str], producer_factory: Any, monitors: Callable[..., LagMonitor]
) -> None:
    features = topic_factory("features", partitions=2)
    dlq = topic_factory("dlq", partitions=2)
    producer = producer_factory()
    source = datetime.now(UTC) - timedelta(minutes=1)
    two_hours_ago_ms = int((time.time() - 7200) * 1000)
    # Outside the 10-minute lookback (broker timestamp 2 h ago): must not count.
    for _ in range(3):
        producer.produce(features, _feature(source, 999.0), partition=0, timestamp=two_hours_ago_ms)
    for i, value in enumerate(range(1, 21)):  # freshness 1..20 s
        producer.produce(features, _feature(source, float(value)), partition=i % 2)
    producer.produce(features, b"not a feature record", partition=1)
    for i in range(5):
        producer.produce(dlq, b"dead", partition=i % 2)
    assert producer.flush(10) == 0

    monitor = monitors(
        lag_settings(
            stack,
            [],
            features_topic=features,
            dlq_topic=dlq,
            freshness_lookback_s=600,
            freshness_bucket_s=60,
            dlq_rate_window_s=100,
        ),
        freshness=True,
    )
    monitor.sample()
    report = monitor.freshness_report()
    assert report is not None and report.error is None
    overall = report.overall
    assert overall.count == 20
    assert overall.p50_s == pytest.approx(10.5)
    assert overall.p95_s == pytest.approx(19.05)
    assert overall.p99_s == pytest.approx(19.81)
    assert overall.max_s == pytest.approx(20.0)
    assert report.invalid_records == 1
    assert sum(w.count for w in report.windows) == 20
    assert (report.dlq.exists, report.dlq.depth) == (True, 5)
    assert report.dlq.rate_per_s == pytest.approx(5 / 100)

    registry = monitor.registry
    assert registry.get_sample_value("streamrag_freshness_seconds_count") == 20
    assert registry.get_sample_value("streamrag_freshness_seconds_sum") == pytest.approx(210.0)
    assert registry.get_sample_value("streamrag_dlq_depth", {"topic": dlq}) == 5

    # Later samples read only what is new: the histogram never counts a record twice.
    for late in (30.0, 40.0):
        producer.produce(features, _feature(source, late), partition=0)
    assert producer.flush(10) == 0
    monitor.sample()
    report = monitor.freshness_report()
    assert report is not None
    assert report.overall.count == 22 and report.overall.max_s == pytest.approx(40.0)
    assert registry.get_sample_value("streamrag_freshness_seconds_count") == 22
    assert registry.get_sample_value("streamrag_freshness_seconds_sum") == pytest.approx(280.0)


# --- the monitor thread and metrics ---------------------------------------------------------------


def test_background_monitor_publishes_metrics_and_history(
    stack: Any, lagging_group: tuple[str, str, float], monitors: Callable[..., LagMonitor]
) -> None:
    topic, group, _ = lagging_group
    monitor = monitors(lag_settings(stack, [group], interval_s=0.2, window_s=30.0, stopped_after_s=60.0))
    monitor.start()
    assert monitor.running

    def points() -> list[Any]:
        groups = monitor.history(group).groups
        return groups[0].points if groups else []

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(points()) < 3:
        time.sleep(0.1)
    monitor.stop()
    assert not monitor.running
    kept = points()
    assert len(kept) >= 3 and all(p.total_lag == 7 for p in kept)
    value = monitor.registry.get_sample_value
    assert value("streamrag_consumergroup_lag", {"group": group, "topic": topic, "partition": "0"}) == 4
    assert value("streamrag_consumergroup_lag", {"group": group, "topic": topic, "partition": "1"}) == 3
    lag_s = value("streamrag_consumergroup_lag_seconds", {"group": group, "topic": topic, "partition": "0"})
    assert lag_s is not None and lag_s > 0
    assert value("streamrag_consumergroup_status", {"group": group}) == 0


def test_any_group_name_can_be_asked_for(
    stack: Any,
    lagging_group: tuple[str, str, float],
    group_factory: Callable[..., str],
    monitors: Callable[..., LagMonitor],
) -> None:
    _, group, _ = lagging_group
    monitor = monitors(lag_settings(stack, []))
    assert monitor.sample().groups == []
    asked = monitor.report(group)
    assert [g.group for g in asked.groups] == [group] and asked.groups[0].total_lag == 7
    # From now on it is monitored.
    assert group in {g.group for g in monitor.sample().groups}
    unknown = group_factory("never-used")
    nobody = monitor.report(unknown).groups
    assert len(nobody) == 1 and nobody[0].partitions == [] and nobody[0].status is Status.OK


# --- the CLI --------------------------------------------------------------------------------------


def _run_cli(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(lag_command, args, env=env, catch_exceptions=False)


def test_cli_json_validates_and_exits_0_when_ok(
    stack: Any,
    lagging_group: tuple[str, str, float],
    topic_factory: Callable[..., str],
    consumer_factory: Any,
) -> None:
    topic, group, _ = lagging_group
    commit(consumer_factory(group), topic, {0: 14, 1: 9})  # the group catches up: lag 0
    features = topic_factory("features", partitions=1)
    env = {
        "STREAMRAG_LAG__FEATURES_TOPIC": features,
        "STREAMRAG_KAFKA__BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers,
    }
    result = _run_cli(["--group", group, "--json", "--interval", "0.3"], env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["lag"]["ok"] is True and doc["lag"]["samples"] == 2
    assert [g["group"] for g in doc["lag"]["groups"]] == [group]
    assert doc["lag"]["groups"][0]["total_lag"] == 0
    assert doc["freshness"]["topic"] == features and doc["freshness"]["overall"]["count"] == 0


def test_cli_exits_1_when_a_group_is_not_ok(stack: Any, lagging_group: tuple[str, str, float]) -> None:
    """A group with lag that did not commit between the two looks is not OK, with the default
    settings (a one-shot run once said OK for a pipeline stuck at lag 909)."""
    _, group, _ = lagging_group
    env = {"STREAMRAG_KAFKA__BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers}
    result = _run_cli(["-g", group, "--json", "--no-freshness", "--interval", "1"], env)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["freshness"] is None
    assert doc["lag"]["ok"] is False and doc["lag"]["groups"][0]["status"] == "STALLED"

    table = _run_cli(["-g", group, "--no-freshness", "--interval", "1"], env)
    assert table.exit_code == 1
    assert "STALLED" in table.stdout and "TOTAL (2 partitions, EMPTY, 0 members)" in table.stdout


def test_cli_exits_2_when_kafka_is_unreachable() -> None:
    env = {"STREAMRAG_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1", "STREAMRAG_LAG__REQUEST_TIMEOUT_S": "2"}
    started = time.monotonic()
    result = _run_cli(["--json"], env)
    assert result.exit_code == 2
    assert "cannot reach Kafka" in result.stderr
    assert result.stdout == ""
    assert time.monotonic() - started < 15


def test_cli_prints_its_schema() -> None:
    result = _run_cli(["--schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == SCHEMA
    help_text = _run_cli(["--help"]).stdout
    assert "Exit codes:" in help_text and "serving/lag/schema.json" in help_text
