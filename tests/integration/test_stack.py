"""The local stack: real Kafka (KRaft), PostgreSQL, Kafka Connect + Debezium, all from the project."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stack import kafka
from stack.manager import status, up
from streamrag.contracts import Topics

pytestmark = pytest.mark.stack


def test_stack_is_up_and_reports_every_component(stack: Any) -> None:
    rows = {s.name: s for s in status(stack)}
    local_qdrant = {
        name for name in rows if re.fullmatch(r"qdrant\d", name)
    }  # `stack up --qdrant server|cluster`
    assert set(rows) - local_qdrant == {"kafka", "postgres", "connect", "debezium", "qdrant"}
    assert all(s.healthy for s in rows.values()), rows
    assert rows["kafka"].address == stack.kafka.bootstrap_servers


def test_up_is_idempotent(stack: Any) -> None:
    lines: list[str] = []
    up(stack, log=lines.append)
    assert any("kafka      already running" in line for line in lines), lines
    assert any("connect    already running" in line for line in lines), lines


def test_up_kafka_only_touches_nothing_but_kafka(stack: Any) -> None:
    lines: list[str] = []
    up(stack, log=lines.append, kafka_only=True)
    assert any("kafka      already running" in line for line in lines), lines
    assert not any(line.startswith(("postgres", "connect", "debezium")) for line in lines), lines


def test_status_cli_json_and_exit_code(stack: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamrag", "stack", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= {"kafka", "postgres", "connect", "debezium"}


def test_source_topics_are_compacted_with_configured_partitions(stack: Any) -> None:
    for topic in Topics.COMPACTED:
        assert kafka.describe_configs(stack, topic)["cleanup.policy"] == "compact"
        md = kafka.admin(stack).list_topics(topic, timeout=10)
        assert len(md.topics[topic].partitions) == stack.kafka.partitions


def test_produced_message_is_consumed_back(
    topic_factory: Any, producer_factory: Any, consumer_factory: Any
) -> None:
    topic = topic_factory("roundtrip", partitions=1)
    producer = producer_factory()
    value = uuid.uuid4().bytes
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(10) == 0
    consumer = consumer_factory()
    consumer.assign([TopicPartition(topic, 0, 0)])
    msg = None
    deadline = time.monotonic() + 20
    while msg is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
    assert msg is not None and msg.error() is None
    assert (msg.key(), msg.value()) == (b"k", value)


def test_broker_restart_loses_no_committed_message(stack: Any, topic_factory: Any, kafka_conf: dict) -> None:
    topic = topic_factory("durable", partitions=3)
    producer = Producer({**kafka_conf, "enable.idempotence": True, "acks": "all"})
    sent = [f"m{i}".encode() for i in range(300)]
    for i, v in enumerate(sent):
        producer.produce(topic, key=str(i % 17).encode(), value=v)
        producer.poll(0)
    assert producer.flush(30) == 0  # every message acknowledged (committed) before the restart

    assert kafka.stop(stack) is True
    assert not kafka.healthy(stack)
    assert kafka.start(stack) == "started"

    consumer = Consumer(
        {**kafka_conf, "group.id": f"restart-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < len(sent) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    assert sorted(got) == sorted(sent)
    # The connector recovers too (other tests rely on it).
    up(stack, log=lambda _m: None)


def test_a_local_qdrant_server_starts_reports_ready_and_stops(tmp_path: Path) -> None:
    from stack import qdrant

    if not qdrant.available():
        pytest.skip(qdrant.HOW_TO_GET)
    from tests.utils.net import free_port_block

    base = free_port_block(qdrant.ports_span(1))
    (node,) = qdrant.start(tmp_path, base, 1, log=lambda _m: None)
    try:
        assert node.ready() and [n.index for n in qdrant.running(tmp_path, base, 1)] == [0]
        import httpx

        assert httpx.get(f"{node.url}/").json()["version"] == qdrant.VERSION
        again: list[str] = []
        qdrant.start(tmp_path, base, 1, log=again.append)  # idempotent
        assert any("already running" in line for line in again), again
    finally:
        assert qdrant.stop(tmp_path, base, 1) == [True]
    assert qdrant.running(tmp_path, base, 1) == [] and not node.ready()


def test_a_local_qdrant_cluster_forms_with_three_peers_and_stops(tmp_path: Path) -> None:
    from stack import qdrant

    if not qdrant.available():
        pytest.skip(qdrant.HOW_TO_GET)
    from tests.utils.net import free_port_block

    base = free_port_block(qdrant.ports_span(3))
    nodes = qdrant.start(tmp_path, base, 3, log=lambda _m: None)
    try:
        assert all(n.ready() for n in nodes)
        assert qdrant._peers(nodes[0]) == 3  # node 0 bootstrapped, 1 and 2 joined it
    finally:
        assert qdrant.stop(tmp_path, base, 3) == [True, True, True]
