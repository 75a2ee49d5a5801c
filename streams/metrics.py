"""Prometheus metrics of the feature pipeline (served on ``metrics_port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from streamrag.contracts import utcnow
from streams.batch import Work


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "streamrag_pipeline_events_in_total", "Messages read, by topic.", ["topic"], registry=r
        )
        self.chunks_written = Counter(
            "streamrag_pipeline_chunks_written_total", "Chunk points written.", registry=r
        )
        self.docs_deleted = Counter(
            "streamrag_pipeline_documents_deleted_total", "Delete events applied.", registry=r
        )
        self.dead_lettered = Counter(
            "streamrag_pipeline_dead_lettered_total", "Messages sent to the DLQ.", ["topic"], registry=r
        )
        self.fenced = Counter(
            "streamrag_pipeline_fenced_total",
            "Events dropped as not newer than the index (or superseded in their batch).",
            registry=r,
        )
        self.tombstones = Counter("streamrag_pipeline_tombstones_total", "Tombstones skipped.", registry=r)
        self.store_retries = Counter(
            "streamrag_pipeline_store_retries_total",
            "Store calls retried because the vector store was unavailable (the batch waited).",
            registry=r,
        )
        self.embed_batch_size = Histogram(
            "streamrag_pipeline_embed_batch_chunks",
            "Chunks per embedding call.",
            buckets=(1, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.embed_seconds = Histogram(
            "streamrag_pipeline_embed_seconds",
            "Latency of one embedding call.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.freshness = Histogram(
            "streamrag_pipeline_freshness_seconds",
            "Source timestamp to searchable (committed), per event.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.batches = Counter("streamrag_pipeline_batches_committed_total", "Batches committed.", registry=r)

    def on_validated(self, work: Work) -> None:
        self.events_in.labels(work.topic).inc(work.received)
        if work.dead:
            self.dead_lettered.labels(work.topic).inc(len(work.dead))
        if work.tombstones:
            self.tombstones.inc(work.tombstones)

    def on_committed(self, work: Work) -> None:
        self.batches.inc()
        self.fenced.inc(work.fenced)
        self.chunks_written.inc(work.written_chunks)
        now = utcnow()
        for doc in work.docs:
            if not doc.chunks:
                self.docs_deleted.inc()
            self.freshness.observe(max(0.0, (now - doc.src.event.source_ts).total_seconds()))
