"""A real 3-node Qdrant cluster, each shard on all three (writes and reads at 2 replicas): kill -9
one node during ingest and
during queries. No acknowledged write is lost, nothing is duplicated or stale, queries keep
answering, and the node rejoins and catches up."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from producers.publisher import Publisher
from streamrag.config import QdrantSettings
from streams.clean import clean_text
from tests.utils.builders import document_event
from tests.utils.pipeline import expected_points, group_progress, pipeline_settings, start_harness
from tests.utils.wait import wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _replicas_active(url: str, collection: str) -> bool:
    """Every replica of every shard of ``collection`` is Active (the rejoined node caught up)."""
    body = httpx.get(f"{url}/collections/{collection}/cluster", timeout=5).json()["result"]
    states = [s["state"] for s in body["local_shards"]] + [s["state"] for s in body["remote_shards"]]
    return bool(states) and all(state == "Active" for state in states)


def test_kill_9_of_one_node_during_ingest_and_queries_loses_nothing(
    stack: Any, topic_factory: Any, group_factory: Any, qdrant_cluster: Any
) -> None:
    from serving.retrieval.search import QueryEncoder, Retriever
    from streams.embed import Embedder

    cluster = qdrant_cluster
    docs, dlq = topic_factory("docs", partitions=2), topic_factory("dlq", partitions=1)
    group, tenant = group_factory("pipe-cluster"), f"t{uuid.uuid4().hex[:6]}"
    qdrant = QdrantSettings(url=cluster.url, replication_factor=3, write_consistency_factor=2, shard_number=3)
    settings = pipeline_settings(
        [docs], group, qdrant, "c", dlq, None, max_batch_messages=2, store_retry_max_s=0.5
    )
    conf = settings.kafka.librdkafka()
    events = [
        document_event(
            f"d{i}", tenant=tenant, version=1, body=f"Cluster document {i}: {'alpha beta ' * (10 + i)}"
        )
        for i in range(30)
    ]
    events += [
        document_event(f"d{i}", tenant=tenant, version=2, body=f"Shorter {i}.") for i in range(0, 30, 3)
    ]
    harness = start_harness(settings, Embedder())
    encoder = QueryEncoder()
    errors: list[BaseException] = []
    answered = [0]
    stop = threading.Event()
    try:
        with Publisher(stack.kafka, topic=docs) as pub:
            pub.publish_many(events[:15])
        wait_until(
            lambda: group_progress(conf, group, [docs])[0] > 0, "a first committed batch", timeout_s=180
        )
        cluster.kill(2)  # during ingest
        with Publisher(stack.kafka, topic=docs) as pub:
            pub.publish_many(events[15:])
        harness.wait(timeout_s=300)
        collection = harness.store.collection

        def query() -> None:
            retriever = Retriever(qdrant.store(), "c", encoder)
            while not stop.is_set():
                try:
                    retriever.search("alpha beta", tenant, k=3)
                    answered[0] += 1
                except Exception as exc:  # any failure is the test's finding
                    errors.append(exc)

        prober = threading.Thread(target=query, daemon=True)
        prober.start()
        wait_until(lambda: answered[0] >= 3, "queries with one node down", timeout_s=180)
        cluster.start(2)  # rejoins
        wait_until(
            lambda: _replicas_active(cluster.url, collection),
            "the rejoined node's replicas to be Active",
            timeout_s=180,
        )
        before = answered[0]
        cluster.kill(1)  # during queries
        wait_until(lambda: answered[0] >= before + 10, "queries after a second node loss", timeout_s=180)
        stop.set()
        prober.join(30)
        assert errors == []
        chunker = harness.running.runtime.chunker
        assert harness.store.chunk_index() == expected_points(
            events, chunker, clean_text, settings.embedding_model_version
        )
    finally:
        stop.set()
        harness.stop()
