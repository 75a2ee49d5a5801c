"""Session-scoped real services and factories for tests.

Integration tests (marked ``stack``) run against the real local stack: the session fixture brings
it up (idempotent) and leaves it running. Each test gets fresh uuid-named topics and groups from
the factories, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def stack_settings() -> Any:
    from stack.settings import StackSettings

    return StackSettings()


@pytest.fixture(scope="session")
def stack(stack_settings: Any) -> Iterator[Any]:
    """The real local stack (Kafka, PostgreSQL, Connect + Debezium), started if it is not up.

    It is left running; the consumer groups the session created are deleted at its end."""
    from confluent_kafka.admin import AdminClient

    from stack.manager import up

    up(stack_settings, log=lambda _msg: None)
    before = _groups(AdminClient(stack_settings.kafka.librdkafka()))
    yield stack_settings
    _forget_new_groups(stack_settings, before)


def _groups(admin: Any) -> set[str]:
    return {g.group_id for g in admin.list_consumer_groups(request_timeout=30).result().valid}


def _forget_new_groups(stack_settings: Any, before: set[str]) -> None:
    """Delete the consumer groups the session created (uuid-named, one or more per test): left
    behind, they pile up on the dev broker, and every lag monitor samples each of them."""
    from confluent_kafka.admin import AdminClient

    from streamrag.contracts import Groups

    admin = AdminClient(stack_settings.kafka.librdkafka())
    with contextlib.suppress(Exception):  # best effort: a leftover group harms no test
        keep = {Groups.PIPELINE, Groups.DRIFT, Groups.TRAINING}
        new = sorted(_groups(admin) - before - keep)
        if new:
            for fut in admin.delete_consumer_groups(new, request_timeout=30).values():
                with contextlib.suppress(Exception):  # a group still in use stays
                    fut.result(30)


@pytest.fixture
def kafka_conf(stack: Any) -> dict[str, Any]:
    conf: dict[str, Any] = stack.kafka.librdkafka()
    return conf


@pytest.fixture
def topic_factory(stack: Any) -> Iterator[Callable[..., str]]:
    """Create uuid-named topics; they are deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(stack.kafka.librdkafka())
    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 2, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(30)
        created.append(name)
        return name

    yield make
    if created:
        for fut in admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # best effort: a leftover uuid topic harms nobody
                fut.result(30)


@pytest.fixture
def group_factory() -> Callable[[str], str]:
    return lambda prefix="test-group": f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def producer_factory(kafka_conf: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """Idempotent confluent-kafka producers, flushed after the test."""
    from confluent_kafka import Producer

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        producer = Producer({**kafka_conf, "enable.idempotence": True, "acks": "all", **overrides})
        made.append(producer)
        return producer

    yield make
    for p in made:
        p.flush(10)


@pytest.fixture
def consumer_factory(kafka_conf: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """Consumers reading from the earliest offset; closed after the test."""
    from confluent_kafka import Consumer

    made: list[Any] = []

    def make(group: str | None = None, **overrides: Any) -> Any:
        consumer = Consumer(
            {
                **kafka_conf,
                "group.id": group or f"test-{uuid.uuid4().hex[:10]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **overrides,
            }
        )
        made.append(consumer)
        return consumer

    yield make
    for c in made:
        with contextlib.suppress(RuntimeError):  # already closed by the test
            c.close()
