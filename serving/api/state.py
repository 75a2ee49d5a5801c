"""The API's long-lived services, built once at startup and handed to routes through deps."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, Counter, Histogram

from serving.events import EventWriter
from serving.feedback.store import FeedbackStore
from serving.generation.client import Generator
from serving.guardrails.policy import Guardrails
from serving.retrieval.search import QueryEncoder, Retriever
from serving.settings import ApiSettings
from serving.tracing.recorder import RequestTrace
from serving.tracing.store import TraceStore
from streamrag.contracts import GuardrailDecision, Op, QueryRecord
from streamrag.contracts import IndexSchema as S
from streamrag.store import Match, VectorStore

log = logging.getLogger("streamrag.serving")


def record_decisions(state: ApiState, trace: RequestTrace, decisions: list[GuardrailDecision]) -> None:
    """Put guardrail decisions in the trace and count them in /metrics."""
    for d in decisions:
        state.metrics.guardrails.labels(d.stage, d.rule, d.action).inc()
    trace.decide(decisions)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "streamrag_api_requests_total", "Requests by route and status.", ["route", "status"], registry=r
        )
        self.stage = Histogram(
            "streamrag_api_stage_seconds",
            "Latency of each stage.",
            ["stage"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.ttft = Histogram(
            "streamrag_api_time_to_first_token_seconds",
            "Answer time to first token.",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.tokens_per_s = Histogram(
            "streamrag_api_generation_tokens_per_second",
            "Streamed pieces per second.",
            registry=r,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
        )
        self.errors = Counter("streamrag_api_errors_total", "Errors by kind.", ["kind"], registry=r)
        self.guardrails = Counter(
            "streamrag_guardrail_decisions_total",
            "Guardrail decisions by stage (input, context, output), rule and action.",
            ["stage", "rule", "action"],
            registry=r,
        )
        self.undelivered = Counter(
            "streamrag_api_undelivered_events_total",
            "Events (queries, traces) the broker did not take; requests were answered regardless.",
            ["topic"],
            registry=r,
        )


class QueryLog:
    """Publishes a :class:`QueryRecord` per request to the queries topic, without blocking requests."""

    def __init__(self, conf: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._writer = EventWriter(conf, topic, "streamrag-api-queries")

    def publish(self, record: QueryRecord) -> None:
        self._writer.publish(record.tenant, record.to_bytes())

    def close(self) -> None:
        self._writer.close()


@dataclass
class ApiState:
    settings: ApiSettings
    store: VectorStore
    encoder: QueryEncoder
    retriever: Retriever
    generator: Generator
    registry: CollectorRegistry
    metrics: ApiMetrics
    queries: QueryLog | None
    guardrails: Guardrails
    tracer: Tracer | None
    """None: no spans (tracing off, or no exporter to receive them); records follow ``settings.tracing``."""
    traces: TraceStore | None = None
    feedback: FeedbackStore | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    owns_store: bool = False
    """``close`` closes the store too (it was opened for this state, not handed to it)."""
    _offsets: Any = field(default=None, repr=False)
    _offsets_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def physical_collection(self) -> str:
        """The collection the alias points at now (re-read: a re-index may have switched it)."""
        return self.retriever.physical_collection()

    def embedding_version(self, collection: str) -> str:
        """The embedding model of a physical collection (``<alias>__<version>``)."""
        return collection.rpartition("__")[2] if "__" in collection else self.settings.embedding_model_version

    def index_position(self) -> tuple[dict[str, int], datetime | None]:
        """The pipeline group's committed offsets (``'topic:partition' -> offset``) as the lag monitor
        last sampled them, and when: the index position an answer was read at, to within a sample."""
        monitor = self.extras.get("lag_monitor")
        report = monitor.latest() if monitor is not None else None
        if report is None:
            return {}, None
        offsets = {
            f"{p.topic}:{p.partition}": p.committed_offset
            for g in report.groups
            if g.group == self.settings.pipeline_group
            for p in g.partitions
            if p.committed_offset is not None
        }
        return offsets, report.sampled_at

    def document_state(self, tenant: str, doc_id: str) -> dict[str, Any]:
        key = f"{tenant}/{doc_id}"
        registry = self.physical_collection() + S.REGISTRY_SUFFIX
        if not self.store.exists(registry):
            return {"indexed_version": None, "deleted": False, "chunk_count": 0, "indexed_at": None}
        fields = [S.ORDER, S.OP, S.VERSION, S.CHUNK_COUNT, S.INDEXED_TS]
        payloads = [pl for _, pl in self.store.scroll(registry, [Match.eq(S.DOC_KEY, key)], fields)]
        if not payloads:
            return {"indexed_version": None, "deleted": False, "chunk_count": 0, "indexed_at": None}
        top = max(payloads, key=lambda pl: pl[S.ORDER])
        deleted = top[S.OP] == Op.DELETE.value
        return {
            "indexed_version": top[S.VERSION],
            "deleted": deleted,
            "chunk_count": 0 if deleted else top[S.CHUNK_COUNT],
            "indexed_at": top[S.INDEXED_TS],
        }

    def committed_offset(self, topic: str, partition: int) -> int:
        """The pipeline group's committed offset (one reused consumer: this runs every 100 ms while
        a read-your-writes request waits; the lock because a consumer is not safe across threads)."""
        with self._offsets_lock:
            if self._offsets is None:
                self._offsets = Consumer(
                    {**self.settings.kafka.librdkafka(), "group.id": self.settings.pipeline_group,
                     "enable.auto.commit": False}
                )  # fmt: skip
            (tp,) = self._offsets.committed([TopicPartition(topic, partition)], timeout=5)
            return int(tp.offset)

    def start(self) -> None:
        """Start the background readers (trace and feedback views)."""
        for store in (self.traces, self.feedback):
            if store is not None:
                store.start()

    def close(self) -> None:
        if self.queries is not None:
            self.queries.close()
        for store in (self.traces, self.feedback):
            if store is not None:
                store.close()
        provider = self.extras.pop("tracer_provider", None)
        if provider is not None:
            provider.shutdown()
        if self.owns_store:
            self.store.close()
        with self._offsets_lock:
            if self._offsets is not None:
                self._offsets.close()
                self._offsets = None

    async def wait_fresh(
        self,
        tenant: str,
        doc_id: str | None,
        min_version: int | None,
        after: tuple[str, int, int] | None,
        timeout_s: float,
        deleted: bool = False,
    ) -> bool:
        """Wait until the index holds ``min_version`` of the document / the pipeline passed ``after``."""
        deadline = time.monotonic() + min(timeout_s, self.settings.freshness_timeout_s * 6)
        while True:
            ok = True
            if doc_id is not None and min_version is not None:
                st = await asyncio.to_thread(self.document_state, tenant, doc_id)
                v = st["indexed_version"]
                ok = v is not None and (
                    v > min_version or (v == min_version and (st["deleted"] or not deleted))
                )
            if ok and after is not None:
                ok = await asyncio.to_thread(self.committed_offset, after[0], after[1]) > after[2]
            if ok:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
