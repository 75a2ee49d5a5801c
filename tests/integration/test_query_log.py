"""Every API request is published to the queries topic as a QueryRecord (monitoring, drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from streamrag.config import QdrantSettings
from streamrag.contracts import QueryRecord
from tests.utils.kafka import read_from

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_search_requests_are_published(
    stack: Any, topic_factory: Any, kafka_conf: dict, tmp_path: Path
) -> None:
    from serving.api.app import build_state, create_app
    from serving.settings import ApiSettings
    from streams.index_store import IndexStore

    topic = topic_factory("queries", partitions=1)
    qdrant = QdrantSettings(path=tmp_path / "q", collection="ql")
    store = qdrant.store()
    IndexStore(store, "ql", "minilm-l6-v2", 384, "m").ensure()
    settings = ApiSettings(qdrant=qdrant, queries_topic=topic, api_keys={"k": "acme"})
    state = build_state(settings, store=store)
    with TestClient(create_app(settings, state)) as client:
        for q in ("first question", "second question"):
            assert client.post("/v1/search", json={"query": q}, headers={"X-API-Key": "k"}).status_code == 200
    msgs = read_from(kafka_conf, topic, {0: 0}, lambda ms: len(ms) >= 2, timeout_s=30)
    records = [QueryRecord.model_validate_json(m.value()) for m in msgs]
    assert [r.query for r in records] == ["first question", "second question"]
    assert all(
        r.tenant == "acme" and r.endpoint == "search" and len(r.embedding or []) == 384 for r in records
    )
    assert all(m.key() == b"acme" for m in msgs)
