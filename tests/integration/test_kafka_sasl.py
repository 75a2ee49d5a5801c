"""SASL/PLAIN against a real broker: a second local Kafka (KRaft) whose only client listener asks for a
user and password, and publish, the feature pipeline and the lag monitor all going through it with
the one typed connection model (``KafkaSettings`` with a ``SecretStr`` password)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from streamrag.config import KafkaSettings, QdrantSettings
from tests.utils.builders import document_event
from tests.utils.net import free_port
from tests.utils.pipeline import wait_caught_up
from tests.utils.wait import wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def sasl_kafka(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from stack import kafka as kafka_stack
    from stack.settings import StackSettings

    tmp: Path = tmp_path_factory.mktemp("sasl")
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="streamrag",
        sasl_password=SecretStr(uuid.uuid4().hex),
        partitions=2,
    )
    settings = StackSettings(
        data_dir=tmp, kafka=kafka, kafka_controller_port=free_port(), kafka_heap="-Xms128m -Xmx512m"
    )
    kafka_stack.start(settings)
    try:
        wait_until(lambda: _coordinator_ready(kafka), "the new broker's group coordinator", 60)
        yield settings
    finally:
        kafka_stack.stop(settings)


def _coordinator_ready(kafka: KafkaSettings) -> bool:
    """A fresh broker answers group requests with NOT_COORDINATOR until its offsets topic is loaded."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka.librdkafka(), "group.id": "probe", "enable.auto.commit": False})
    try:
        consumer.committed([TopicPartition("probe", 0)], timeout=5)
        return True
    except KafkaException:
        return False
    finally:
        consumer.close()


def test_a_wrong_password_is_refused(sasl_kafka: Any) -> None:
    wrong = sasl_kafka.kafka.model_copy(update={"sasl_password": SecretStr("not-it")})
    with pytest.raises(KafkaException):
        AdminClient(wrong.librdkafka()).list_topics(timeout=5)


def test_publish_pipeline_and_lag_through_sasl(sasl_kafka: Any, tmp_path: Path) -> None:
    from producers.publisher import Publisher
    from serving.lag.monitor import LagMonitor
    from serving.lag.settings import LagOptions, LagSettings
    from stack.kafka import ensure_topics
    from streams.runner import start_in_thread
    from streams.settings import PipelineSettings

    kafka: KafkaSettings = sasl_kafka.kafka
    topic, dlq, group = (
        f"sasl.docs.{uuid.uuid4().hex[:6]}",
        f"sasl.dlq.{uuid.uuid4().hex[:6]}",
        f"sasl-{uuid.uuid4().hex[:6]}",
    )
    ensure_topics(sasl_kafka, {topic: {"cleanup.policy": "compact"}, dlq: {}})
    events = [
        document_event(f"d{i}", version=1, body=f"Document {i} travels through SASL.") for i in range(6)
    ]
    with Publisher(kafka, topic=topic) as pub:
        pub.publish_many(events)
    settings = PipelineSettings(
        kafka=kafka,
        source_topics=[topic],
        cdc_topics=[],
        group_id=group,
        dead_letter_topic=dlq,
        features_topic=None,
        metrics_port=None,
        qdrant=QdrantSettings(path=tmp_path / "q", collection="sasl"),
        max_wait_s=0.05,
    )
    running = start_in_thread(settings)
    try:
        wait_caught_up(kafka.librdkafka(), group, [topic], 120, running)
        store = running.runtime.store
        assert set(store.latest([e.key for e in events])) == {e.key for e in events}
    finally:
        running.stop()
    with LagMonitor(
        LagSettings(kafka=kafka, lag=LagOptions(groups=[group], discover_groups=False)), freshness=False
    ) as monitor:
        [lag] = monitor.sample().groups
    assert lag.group == group and lag.total_lag == 0 and lag.errors == []
    assert sum(p.committed_offset or 0 for p in lag.partitions) == len(events)
