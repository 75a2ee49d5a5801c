"""The all-in-one API for integration tests: the real LLM server, the feature pipeline in a thread
(a fresh group starting at the CDC topic's end) and the API on a free port, one per test module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamrag.config import QdrantSettings
from streamrag.contracts import Topics
from tests.utils.net import free_port


def commit_at_end(conf: dict[str, Any], group: str, topic: str) -> None:
    """Commit ``group`` at the end of every partition of ``topic`` (without joining it)."""
    consumer = Consumer({**conf, "group.id": group})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = [
        TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
        for p in parts
    ]
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


@contextmanager
def running_api(
    stack: Any, tmp: Path, name: str, span_processor: Any = None, **api_settings: Any
) -> Iterator[dict[str, Any]]:
    """Yield ``{"url", "dsn", "state"}`` of an API answering from CDC rows; ``api_settings`` go to
    ``ApiSettings`` (api_keys, token limits, topics, guardrails ...)."""
    from app.embedded import Embedded, serve_in_thread
    from serving.api.app import build_state, create_app
    from serving.llm.launch import start_llm
    from serving.settings import ApiSettings
    from streams.runner import start_in_thread
    from streams.settings import PipelineSettings

    group = f"{name}-pipe-{uuid.uuid4().hex[:8]}"
    commit_at_end(stack.kafka.librdkafka(), group, Topics.CDC_DOCUMENTS)
    qdrant = QdrantSettings(path=tmp / "q", collection=name)
    llm_port, api_port = free_port(), free_port()
    embedded = Embedded()
    try:
        embedded.processes.append(start_llm(llm_port, run_dir=tmp))
        client = qdrant.store()
        pipe = PipelineSettings(
            source_topics=[Topics.CDC_DOCUMENTS],
            group_id=group,
            qdrant=qdrant,
            features_topic=None,
            metrics_port=None,
            max_wait_s=0.05,
        )
        embedded.pipeline = start_in_thread(pipe, store=client)
        settings = ApiSettings(
            source_topics=[Topics.CDC_DOCUMENTS],
            qdrant=qdrant,
            pipeline_group=group,
            port=api_port,
            llm_port=llm_port,
            **{"queries_topic": None, **api_settings},
        )
        state = build_state(settings, store=client, span_processor=span_processor)
        embedded.servers.append(
            serve_in_thread(create_app(settings, state), "127.0.0.1", api_port, "api", ready_path="/healthz")
        )
        yield {"url": f"http://127.0.0.1:{api_port}", "dsn": stack.postgres.dsn(), "state": state}
    finally:
        embedded.stop()
