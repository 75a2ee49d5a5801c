"""Running the real feature pipeline in tests and computing the index it must produce."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamrag.config import QdrantSettings
from streamrag.contracts import DocumentEvent, Op
from streams.index_store import IndexStore, chunk_point_id
from streams.runner import RunningPipeline, start_in_thread
from streams.settings import PipelineSettings


def group_progress(conf: dict[str, Any], group: str, topics: list[str]) -> tuple[int, int]:
    """(sum of committed offsets, sum of log-end offsets) of ``group`` over ``topics``."""
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        parts = []
        for topic in topics:
            md = consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p) for p in md.partitions]
        committed = consumer.committed(parts, timeout=10)
        done = sum(max(tp.offset, 0) for tp in committed)
        end = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
        return done, end
    finally:
        consumer.close()


def wait_caught_up(
    conf: dict[str, Any],
    group: str,
    topics: list[str],
    timeout_s: float = 120.0,
    pipeline: RunningPipeline | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    done, end = 0, -1
    while time.monotonic() < deadline:
        if pipeline is not None and not pipeline.alive():
            raise AssertionError(f"pipeline died: {pipeline.error!r}")
        done, end = group_progress(conf, group, topics)
        if done == end:
            return
        time.sleep(0.3)
    raise AssertionError(f"group {group} not caught up after {timeout_s}s: committed {done} of {end}")


def pipeline_settings(
    topics: list[str],
    group: str,
    qdrant: Path | QdrantSettings,
    collection: str,
    dlq: str,
    features: str | None,
    cdc_topics: list[str] | None = None,
    **extra: Any,
) -> PipelineSettings:
    return PipelineSettings(
        source_topics=topics,
        cdc_topics=cdc_topics or [],
        group_id=group,
        qdrant=qdrant.model_copy(update={"collection": collection})
        if isinstance(qdrant, QdrantSettings)
        else QdrantSettings(path=qdrant, collection=collection),
        dead_letter_topic=dlq,
        features_topic=features,
        metrics_port=None,
        max_wait_s=0.05,
        **extra,
    )


@dataclass
class Harness:
    settings: PipelineSettings
    running: RunningPipeline

    @property
    def store(self) -> IndexStore:
        return self.running.runtime.store

    def wait(self, timeout_s: float = 120.0) -> None:
        wait_caught_up(
            self.settings.kafka.librdkafka(),
            self.settings.group_id,
            self.settings.source_topics,
            timeout_s,
            self.running,
        )

    def stop(self) -> None:
        self.running.stop()

    def wait_for(self, doc_key: str, version: int, timeout_s: float = 120.0) -> None:
        """Until ``doc_key`` is indexed at ``version`` or newer and its batch is committed (CDC has latency)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running.alive():
                raise AssertionError(f"pipeline died: {self.running.error!r}")
            top = self.store.latest([doc_key]).get(doc_key)
            if top is not None and top.version >= version:
                self.wait(timeout_s)  # the event is in Kafka: caught up = its whole batch committed
                return
            time.sleep(0.2)
        raise AssertionError(f"{doc_key} not indexed at version {version} after {timeout_s}s")


def start_harness(settings: PipelineSettings, embedder: Any) -> Harness:
    return Harness(settings, start_in_thread(settings, embedder=embedder))


def final_states(events: list[DocumentEvent]) -> dict[str, DocumentEvent]:
    """What the source of truth implies: each document's event with the largest order key."""
    out: dict[str, DocumentEvent] = {}
    for ev in events:
        cur = out.get(ev.key)
        if cur is None or ev.order_key > cur.order_key:
            out[ev.key] = ev
    return out


def expected_points(
    events: list[DocumentEvent], chunker: Any, clean: Any, model_version: str, title_every: bool = True
) -> dict[str, tuple[int, int]]:
    """Point id -> (version, chunk index) of exactly the chunks the index must hold.

    ``title_every`` (the default ``chunk_title="every"``): the body alone is cut into windows (the
    title is every window's header; a document with a title and no body is one chunk); else the
    title and body are cut as one text."""
    out: dict[str, tuple[int, int]] = {}
    for ev in final_states(events).values():
        if ev.op is Op.DELETE:
            continue
        title, body = clean(ev.title), clean(ev.body)
        if title_every:
            indexes = [ch.index for ch in chunker.chunk(body)] or ([0] if title else [])
        else:
            indexes = [
                ch.index for ch in chunker.chunk(f"{title}\n\n{body}" if title and body else title or body)
            ]
        for index in indexes:
            out[chunk_point_id(ev.tenant, ev.doc_id, ev.version, index, model_version)] = (ev.version, index)
    return out


def default_chunker(embedder: Any) -> Any:
    """The chunker the pipeline builds with its default settings (:func:`streams.flow.make_chunker`)."""
    from streams.flow import make_chunker
    from streams.settings import PipelineSettings

    return make_chunker(PipelineSettings(), embedder.tokenizer, embedder.max_tokens)[0]
