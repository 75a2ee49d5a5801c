"""The feature pipeline's dataflow: Kafka in, validate, fence, clean, chunk, embed, write, commit.

Read top to bottom, it is the path every document change takes. The stream carries whole
micro-batches of one topic-partition (:class:`~streams.batch.Work`) from input to commit, and a
batch's offset is committed only after everything it caused is durable: its dead letters, its
index writes and its feature records. The embed step is keyed by partition, so from there on a
partition's batches are on one worker; they may finish out of order (a small batch overtakes one
with a large document, :mod:`streams.schedule`) and the commit step restores the order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from streamrag.store import StoreUnavailable
from streams import steps
from streams.batch import Work
from streams.clean import clean_text
from streams.commit import OffsetCommitSink
from streams.embed import Embedder
from streams.index_store import IndexStore
from streams.kafka_out import TopicWriter
from streams.kafka_source import KafkaPartitionedSource, RawBatch
from streams.metrics import PipelineMetrics
from streams.schedule import EmbedQueue, InFlight
from streams.settings import PipelineSettings
from streams.validate import validate

log = logging.getLogger("streamrag.streams")
T = TypeVar("T")


@dataclass
class Runtime:
    """The pipeline's collaborators, built once per process and shared by its workers."""

    settings: PipelineSettings
    embedder: Embedder
    chunker: Any
    store: IndexStore
    dead_letters: TopicWriter
    features: TopicWriter | None
    metrics: PipelineMetrics
    stop: threading.Event
    # Threads for model calls, shared by the process's workers and partitions, one per embedder
    # stream: up to that many partitions' slices are embedded at once (the embedder's streams take
    # their batches in turn) while the workers do everything else.
    model_threads: ThreadPoolExecutor | None = None
    # The slices in the model, oldest first: a worker waits only for the oldest (streams.schedule).
    inflight: InFlight = field(default_factory=InFlight)
    # chunk_title=every: the title embedded as every chunk's header.
    title_header: steps.TitleHeader | None = None

    @classmethod
    def create(
        cls,
        settings: PipelineSettings,
        store: Any = None,
        stop: threading.Event | None = None,
        embedder: Embedder | None = None,
    ) -> Runtime:
        embedder = embedder or Embedder(
            settings.embedding_model_path,
            settings.embedding_dtype,
            settings.embed_batch_size,
            settings.torch_threads,
            settings.embedding_device,
            settings.embed_streams,
        )
        chunker, title_header = make_chunker(settings, embedder.tokenizer, embedder.max_tokens)
        store = IndexStore(
            store or settings.qdrant.store(),
            settings.qdrant.collection,
            settings.embedding_model_version,
            embedder.dim,
            settings.embedding_model_id,
        )
        store.ensure()
        conf = settings.kafka.librdkafka()
        return cls(
            settings=settings,
            embedder=embedder,
            chunker=chunker,
            store=store,
            dead_letters=TopicWriter(conf, settings.dead_letter_topic, "streamrag-pipeline-dlq"),
            features=TopicWriter(conf, settings.features_topic, "streamrag-pipeline-features")
            if settings.features_topic
            else None,
            metrics=PipelineMetrics(),
            stop=stop or threading.Event(),
            model_threads=ThreadPoolExecutor(embedder.streams, thread_name_prefix="streamrag-model")
            if settings.embed_in_background
            else None,
            title_header=title_header,
        )

    # --- steps (thin: the logic is in streams.steps and the collaborators) ------------------------

    def validate(self, raw: RawBatch) -> Work:
        work = validate(raw, frozenset(self.settings.cdc_topics))
        self.metrics.on_validated(work)
        return work

    def write_dead_letters(self, work: Work) -> Work:
        if work.dead:
            self.dead_letters.write(
                [(f"{d.topic}:{d.partition}:{d.offset}".encode(), d.to_bytes()) for d in work.dead]
            )
            for d in work.dead:
                log.warning("dead-lettered %s:%s@%s: %s", d.topic, d.partition, d.offset, d.reason)
        return replace(work, dead=())

    def fence(self, work: Work) -> Work:
        if not work.events:
            return work
        keys = [src.event.key for src in work.events]
        return steps.fence(
            work, self.until_stored("read the version registry", lambda: self.store.latest(keys))
        )

    def clean(self, work: Work) -> Work:
        return steps.clean(work, clean_text)

    def chunk(self, work: Work) -> Work:
        return steps.chunk(work, self.chunker, self.title_header)

    def embed_queue(self, _resume_state: None) -> EmbedQueue:
        return EmbedQueue(
            lambda work: steps.EmbedJob(work, self.embedder),
            self.embed_slice,
            self.settings.embed_slice_chunks,
            finish=self.write,
            executor=self.model_threads,
            # A slice takes ~0.2-0.5 s on a CPU; the wait bounds how late new input is read meanwhile.
            wait_s=0.02,
            inflight=self.inflight,
        )

    def embed_slice(self, plan: list[tuple[steps.EmbedJob, int]]) -> int:
        start = time.perf_counter()
        done = steps.embed_together(self.embedder, plan)
        if done:
            self.metrics.embed_batch_size.observe(done)
            self.metrics.embed_seconds.observe(time.perf_counter() - start)
        return done

    def write(self, work: Work) -> Work:
        docs = list(work.docs)
        return replace(work, written_chunks=self.until_stored("write chunks", lambda: self.store.apply(docs)))

    def until_stored(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, retried while the vector store is unavailable (a server down or restarting):
        the batch waits, nothing after it is committed, and every write is idempotent, so the
        retry redoes whatever part of the batch had been applied. Stopping ends the wait."""
        delay = 0.2
        while True:
            try:
                return call()
            except StoreUnavailable as exc:
                self.metrics.store_retries.inc()
                log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, self.settings.store_retry_max_s)

    def emit_features(self, work: Work) -> Work:
        if self.features is not None:
            self.features.write(steps.feature_records(work, self.store.model_id))
        return work

    def on_commit(self, work: Work) -> None:
        self.metrics.on_committed(work)


def make_chunker(
    settings: PipelineSettings, tokenizer: Any, model_max_tokens: int
) -> tuple[Any, steps.TitleHeader | None]:
    """The pipeline's chunker and title header for ``settings``: with ``chunk_title="every"`` the
    windows are ``title_tokens`` shorter, so header and window fit the model's ``model_max_tokens``
    (special tokens included) together."""
    from streams.chunk import Chunker, ChunkingConfig

    header = settings.title_tokens if settings.chunk_title == "every" else 0
    chunker = Chunker(
        tokenizer,
        ChunkingConfig(
            max_tokens=settings.chunk_tokens - header,
            overlap=settings.chunk_overlap,
            parent_max_tokens=settings.parent_tokens,
        ),
        model_max_tokens=model_max_tokens - header,
    )
    return chunker, steps.TitleHeader(tokenizer, header) if header else None


def partition_key(work: Work) -> str:
    return f"{work.topic}:{work.partition}"


def build_flow(
    settings: PipelineSettings, runtime: Runtime | None = None, source: Any = None, sink: Any = None
) -> Dataflow:
    """The dataflow. ``source``/``sink`` replace Kafka in and the offset commit (benchmarks only)."""
    rt = runtime or Runtime.create(settings)
    source = source or KafkaPartitionedSource(
        settings.kafka.librdkafka(),
        settings.source_topics,
        settings.group_id,
        settings.max_batch_messages,
        settings.max_wait_s,
        stop=rt.stop,
        stop_when_idle_s=settings.stop_when_idle_s,
        max_bytes=settings.max_batch_bytes,
    )
    flow = Dataflow("streamrag_features")
    raw = op.input("kafka_in", flow, source)
    # RawBatch: up to max_batch_messages consecutive messages of one topic-partition
    work = op.map("validate", raw, rt.validate)
    # Work: DocumentEvents + DeadLetters (malformed input as data)
    work = op.map("dead_letter", work, rt.write_dead_letters)
    # Work: dead letters acknowledged by the DLQ topic
    work = op.map("version_fence", work, rt.fence)
    # Work: one event per document, each newer than what the index holds
    work = op.map("clean", work, rt.clean)
    # Work: PreparedDocs with normalised title and body (deletes pass through)
    work = op.map("chunk", work, rt.chunk)
    # Work: token windows with overlap and parent sections
    by_partition = op.key_on("by_partition", work, partition_key)
    # (topic:partition, Work): each partition's batches to one worker, in order
    written = op.stateful_batch("embed_write", by_partition, rt.embed_queue)
    # (topic:partition, Work): chunks embedded (unit dense + sparse lexical vectors) a slice at a
    # time, each batch written as soon as it is embedded: its documents' chunk sets replaced in
    # Qdrant, stale chunks deleted (acknowledged). The model runs on a background thread while the
    # worker reads, cleans, chunks and writes. A small batch may overtake a large one
    # (streams.schedule); the commit puts them back in order.
    work = op.key_rm("unkey", written)
    work = op.map("features", work, rt.emit_features)
    # Work: feature records acknowledged by the features topic
    op.output(
        "commit", work, sink or OffsetCommitSink(settings.kafka.librdkafka(), settings.group_id, rt.on_commit)
    )
    # offsets committed to the consumer group: the pipeline's true, durable progress
    return flow
