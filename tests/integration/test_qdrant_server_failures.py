"""A real Qdrant server killed with SIGKILL under the pipeline and under the API, then restarted.

The pipeline waits and retries, commits no offset past a write the server did not acknowledge,
and ends with exactly the expected points; the API answers 503 with a message (never 500) while
the server is down, ``/readyz`` names the failing check, and both recover without a restart.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from producers.publisher import Publisher
from streamrag.config import QdrantSettings
from streams.clean import clean_text
from tests.utils.builders import document_event
from tests.utils.pipeline import expected_points, group_progress, pipeline_settings, start_harness
from tests.utils.wait import wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def embedder() -> Any:
    from streams.embed import Embedder

    return Embedder()


def test_pipeline_waits_for_a_killed_server_commits_nothing_unwritten_and_ends_exact(
    stack: Any,
    embedder: Any,
    topic_factory: Any,
    group_factory: Any,
    qdrant_private_server: Any,
    tmp_path: Path,
) -> None:
    docs, dlq = topic_factory("docs", partitions=2), topic_factory("dlq", partitions=1)
    group, tenant = group_factory("pipe-qkill"), f"t{uuid.uuid4().hex[:6]}"
    server = qdrant_private_server
    settings = pipeline_settings(
        [docs],
        group,
        QdrantSettings(url=server.url),
        "c",
        dlq,
        None,
        max_batch_messages=2,
        store_retry_max_s=0.5,
    )
    conf = settings.kafka.librdkafka()
    events = [
        document_event(
            f"d{i}", tenant=tenant, version=1, body=f"Document {i} says {' '.join(['word'] * (20 + i))}."
        )
        for i in range(40)
    ]
    harness = start_harness(settings, embedder)
    try:
        with Publisher(stack.kafka, topic=docs) as pub:
            pub.publish_many(events[:20])
        wait_until(lambda: group_progress(conf, group, [docs])[0] > 0, "a first committed batch")
        server.kill()
        with Publisher(stack.kafka, topic=docs) as pub:
            pub.publish_many(events[20:])  # arrives while the store is down
        retries = harness.running.runtime.metrics.store_retries
        wait_until(lambda: retries._value.get() >= 1, "the pipeline to retry against the dead server")
        held = group_progress(conf, group, [docs])[0]
        seen = retries._value.get()
        wait_until(lambda: retries._value.get() >= seen + 3, "three more retries")
        done, end = group_progress(conf, group, [docs])
        assert done == held < end, (held, done, end)  # nothing committed while nothing was written
        assert harness.running.alive()
        server.start(0)
        harness.wait(timeout_s=240)
        chunker = harness.running.runtime.chunker  # the pipeline's own windows
        assert harness.store.chunk_index() == expected_points(
            events, chunker, clean_text, settings.embedding_model_version
        )
    finally:
        harness.stop()


def test_api_answers_503_while_the_server_is_down_and_recovers(
    stack: Any, qdrant_private_server: Any
) -> None:
    from serving.api.app import build_state, create_app
    from serving.settings import ApiSettings
    from streamrag.contracts import IndexSchema as S
    from streamrag.store import CollectionSpec

    server = qdrant_private_server
    qdrant = QdrantSettings(url=server.url, collection=f"a{uuid.uuid4().hex[:6]}")
    store = qdrant.store()
    settings = ApiSettings(qdrant=qdrant, api_keys={"k": "t"}, queries_topic=None, llm_port=1)
    physical = S.collection_for(qdrant.collection, settings.embedding_model_version)
    store.ensure_collection(physical, CollectionSpec(dense={"dense": 384}, sparse=["sparse"]))
    store.point_alias(qdrant.collection, physical)
    state = build_state(settings, store=store)
    state.extras.pop("lag_monitor", None)
    headers = {"X-API-Key": "k"}
    with TestClient(create_app(settings, state), raise_server_exceptions=False) as api:
        ok = api.post("/v1/search", json={"query": "how do I reset it?", "k": 3}, headers=headers)
        assert ok.status_code == 200 and ok.json()["results"] == []
        server.kill()
        down = api.post("/v1/search", json={"query": "how do I reset it?", "k": 3}, headers=headers)
        assert down.status_code == 503, down.text
        assert server.url in down.json()["detail"] and "cannot reach" in down.json()["detail"]
        ready = api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["qdrant"] is False
        assert server.url in ready.json()["detail"]["qdrant"]
        server.start(0)
        wait_until(
            lambda: (
                api.post("/v1/search", json={"query": "reset", "k": 3}, headers=headers).status_code == 200
            ),
            "search to answer again after the restart",
            timeout_s=60,
        )
        assert api.get("/readyz").json()["checks"]["qdrant"] is True
    store.close()
