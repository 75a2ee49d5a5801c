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


# --- Qdrant: the embedded engine (Edge) and a real server ---------------------------------------


def _require_qdrant_binary() -> None:
    from stack import qdrant

    if not qdrant.available():
        pytest.skip(f"Qdrant server tests need the server binary: {qdrant.HOW_TO_GET}")


class QdrantNodes:
    """Real Qdrant processes of one test or session, laid out and started by the stack's own code
    (:mod:`stack.qdrant`) on free ports under ``root``: start, kill -9, restart, stop."""

    def __init__(self, root: Any, count: int) -> None:
        from stack import qdrant
        from tests.utils.net import free_port_block

        self.root, self.count = root, count
        self.base = free_port_block(qdrant.ports_span(count))
        self.nodes = qdrant.nodes(root, self.base, count)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, i: int | None = None, timeout_s: float = 60.0) -> None:
        from stack import qdrant

        if i is None:
            qdrant.start(self.root, self.base, self.count, timeout_s, log=lambda _m: None)
        else:  # a restarted node rejoins through its stored peer state
            qdrant.start_node(self.nodes[i], qdrant.ensure_binary(), self.count > 1, self.nodes[0], timeout_s)

    def kill(self, i: int = 0) -> None:
        import signal

        pid = self.nodes[i].managed.pid()
        assert pid is not None, f"node {i} is not running"
        os.kill(pid, signal.SIGKILL)
        import time

        deadline = time.monotonic() + 10
        while self.nodes[i].managed.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        from stack import qdrant

        qdrant.stop(self.root, self.base, self.count, timeout_s=10)


@contextlib.contextmanager
def _running_nodes(root: Any, count: int) -> Iterator[QdrantNodes]:
    _require_qdrant_binary()
    nodes = QdrantNodes(root, count)
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="session")
def qdrant_server(tmp_path_factory: Any) -> Iterator[QdrantNodes]:
    """One real Qdrant server node for the session (collections are uuid-named per test)."""
    with _running_nodes(tmp_path_factory.mktemp("qdrant-server"), 1) as nodes:
        yield nodes


@pytest.fixture
def qdrant_private_server(tmp_path: Any) -> Iterator[QdrantNodes]:
    """A real Qdrant server of this test alone (it may kill and restart it)."""
    with _running_nodes(tmp_path / "qdrant", 1) as nodes:
        yield nodes


@pytest.fixture
def qdrant_cluster(tmp_path: Any) -> Iterator[QdrantNodes]:
    """A real 3-node Qdrant cluster of this test alone."""
    with _running_nodes(tmp_path / "qdrant-cluster", 3) as nodes:
        yield nodes


@pytest.fixture(params=["edge", "server", "server-grpc"])
def engine(request: Any) -> str:
    """Run the test on the embedded engine and on a real Qdrant server, over REST and over gRPC."""
    return str(request.param)


@pytest.fixture
def qdrant_settings_factory(engine: str, tmp_path: Any, request: Any) -> Callable[..., Any]:
    """QdrantSettings for ``engine``: a fresh folder (Edge) or the session's server, with a
    uuid-named alias either way."""
    from streamrag.config import QdrantSettings

    def make(collection: str | None = None, **extra: Any) -> Any:
        name = collection or f"c{uuid.uuid4().hex[:8]}"
        if engine.startswith("server"):
            server = request.getfixturevalue("qdrant_server")
            grpc = {"prefer_grpc": True} if engine == "server-grpc" else {}
            return QdrantSettings(url=server.url, collection=name, **grpc, **extra)
        return QdrantSettings(path=tmp_path / f"q-{uuid.uuid4().hex[:6]}", collection=name, **extra)

    return make


@pytest.fixture
def store_factory(qdrant_settings_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``(store, settings)`` on the test's engine; closed after the test."""
    made: list[Any] = []

    def make(**kw: Any) -> tuple[Any, Any]:
        settings = qdrant_settings_factory(**kw)
        store = settings.store()
        made.append(store)
        return store, settings

    yield make
    for store in made:
        store.close()
